/**
 * The Storage port: entries, DAG queries, store membership, cached store states and instance
 * metadata. Layers: `layerMemory` (tests, embedded) and `layerSqlite` (the embedded default).
 * Every method is atomic on its own; `put` is atomic for the whole batch.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type { StoredEntry } from "../core/Entry.js"
import type { StorageError } from "../schema/Errors.js"

/** A store's entry as the state fold needs it: its store height, ID, data and insertion sequence. */
export interface StoreEntryRef {
  readonly id: string
  /** The store height (the subtree's own `h`, or the tree height it inherits). */
  readonly height: number
  /** Insertion sequence number, increasing over the life of the storage. */
  readonly seq: number
}

/** A cached store state: the fold of every entry of the store up to `seq`. */
export interface CachedState {
  /** The JSON of the folded state (possibly encrypted by the caller). */
  readonly state: string
  /** The largest insertion seq folded in. */
  readonly seq: number
  /** The largest (height, id) folded in, to tell whether later entries can simply be merged on top. */
  readonly maxHeight: number
  readonly maxId: string
}

/** The Storage service interface. */
export interface StorageShape {
  /** Store a batch atomically. Entries already present are skipped. Returns the IDs newly stored, in batch order. */
  readonly put: (entries: ReadonlyArray<StoredEntry>) => Effect.Effect<ReadonlyArray<string>, StorageError>
  /** One entry by ID. */
  readonly get: (id: string) => Effect.Effect<Option.Option<StoredEntry>, StorageError>
  /** The entries found among these IDs, in the order asked (missing ones left out). */
  readonly getMany: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<StoredEntry>, StorageError>
  /** The stored bytes of the entries found among these IDs, in the order asked, without decoding them (serving peers). */
  readonly getBytes: (
    ids: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyArray<{ readonly id: string; readonly bytes: Uint8Array }>, StorageError>
  /**
   * The data one store carries in each of these entries (undefined where an entry has none for it),
   * in the order asked, missing entries left out: what a fold reads, without decoding whole entries.
   */
  readonly storeData: (
    ids: ReadonlyArray<string>,
    store: string
  ) => Effect.Effect<ReadonlyArray<{ readonly id: string; readonly data: Uint8Array | undefined }>, StorageError>
  /** Which of these IDs are stored. */
  readonly has: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlySet<string>, StorageError>
  /** The height of each stored ID among these. */
  readonly heights: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, number>, StorageError>
  /** IDs of every database root held. */
  readonly roots: Effect.Effect<ReadonlyArray<string>, StorageError>
  /** The number of entries of a tree. */
  readonly count: (treeId: string) => Effect.Effect<number, StorageError>
  /** Tips of a tree (entries with no stored child), sorted. Empty when the tree is unknown. */
  readonly tips: (treeId: string) => Effect.Effect<ReadonlyArray<string>, StorageError>
  /** Tips of a store inside a tree, sorted. */
  readonly storeTips: (treeId: string, store: string) => Effect.Effect<ReadonlyArray<string>, StorageError>
  /** Ancestors-or-self of `ids` within the tree, in topological order (parents first; by height, then ID). */
  readonly ancestors: (treeId: string, ids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, StorageError>
  /** Ancestors-or-self of `ids` that touch `store`, sorted by (store height, ID). */
  readonly storeAncestors: (
    treeId: string,
    store: string,
    ids: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyArray<string>, StorageError>
  /**
   * The entries of the tree a peer lacks, given IDs the peer is known to hold (unknown IDs are
   * ignored): everything here that is not an ancestor-or-self of a known ID, parents first.
   */
  readonly missing: (treeId: string, known: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, StorageError>
  /**
   * A sparse sample of the tree for finding a common frontier with a peer: the tips, then for each
   * tip ancestors at exponentially spaced distances (1, 2, 4, 8, …) down to the root.
   */
  readonly sample: (treeId: string) => Effect.Effect<ReadonlyArray<string>, StorageError>
  /** Every entry of a store in (store height, ID) order. */
  readonly storeEntries: (treeId: string, store: string) => Effect.Effect<ReadonlyArray<StoreEntryRef>, StorageError>
  /** Entries of a store stored after insertion sequence `seq`, in insertion order. */
  readonly storeEntriesSince: (
    treeId: string,
    store: string,
    seq: number
  ) => Effect.Effect<ReadonlyArray<StoreEntryRef>, StorageError>
  /** The cached state of a store, if one was saved. */
  readonly getCachedState: (treeId: string, store: string) => Effect.Effect<Option.Option<CachedState>, StorageError>
  /** Save the cached state of a store. */
  readonly putCachedState: (treeId: string, store: string, state: CachedState) => Effect.Effect<void, StorageError>
  /** Instance metadata: a JSON string by key. */
  readonly getMeta: (key: string) => Effect.Effect<Option.Option<string>, StorageError>
  /** Set instance metadata. */
  readonly setMeta: (key: string, value: string) => Effect.Effect<void, StorageError>
  /** Delete instance metadata. */
  readonly deleteMeta: (key: string) => Effect.Effect<void, StorageError>
  /** All metadata keys with this prefix, with their values, sorted by key. */
  readonly listMeta: (prefix: string) => Effect.Effect<ReadonlyArray<readonly [string, string]>, StorageError>
}

/** The Storage service tag. */
export class Storage extends Context.Tag("eidetica-ts/Storage")<Storage, StorageShape>() {}

/**
 * A metadata value this engine wrote as JSON, parsed; undefined when it is not JSON or `looksRight`
 * says it is not of the expected shape (a damaged row is skipped by its reader, not a defect).
 */
export const readMetaRecord = <A>(value: string, looksRight: (record: Readonly<Record<string, unknown>>) => boolean): A | undefined => {
  try {
    const parsed: unknown = JSON.parse(value)
    return typeof parsed === "object" && parsed !== null && looksRight(parsed as Record<string, unknown>) ? (parsed as A) : undefined
  } catch {
    return undefined
  }
}
