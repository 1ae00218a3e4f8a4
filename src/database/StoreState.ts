/**
 * Store states: the CRDT fold of every entry of a store, in (store height, ID) order. The cache
 * (StateCache.ts) keeps each folded state with the last insertion seq it covers, so reading after an
 * append merges only the new deltas instead of refolding history. An entry that sorts inside history
 * (a peer's concurrent write) cannot be merged on top: the state is refolded from the latest
 * checkpoint before it (an intermediate state of the fold, kept a few dozen to a few thousand entries
 * back), not from the start. Large states are saved to storage, so a new process starts from them.
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { compareByHeight, firstAfter } from "../core/Dag.js"
import { Doc, DocFormatError } from "../core/Doc.js"
import { compareIds } from "../schema/Ids.js"
import { InvalidEntry, type StorageError } from "../schema/Errors.js"
import { Storage, type StoreEntryRef } from "../services/Storage.js"
import {
  type Cached,
  type Checkpoint,
  type CheckpointPolicy,
  remember,
  serialized,
  StateCache,
  stateKey,
  touch,
  type Unsaved
} from "./StateCache.js"

// the cache's public names (the package exports this module, not StateCache.ts, whose bookkeeping is internal)
export {
  type CheckpointPolicy,
  DEFAULT_MAX_SLOTS,
  defaultCheckpoints,
  invalidate,
  layerCache,
  layerCacheWith,
  StateCache
} from "./StateCache.js"

/** How a store's raw entry data becomes a Doc delta (plain JSON, or decrypted first). */
export interface DeltaCodec {
  /** Distinguishes caches of the same store read through different codecs. */
  readonly id: string
  readonly decode: (data: Uint8Array) => Effect.Effect<Doc, InvalidEntry>
}

/** The codec of ordinary stores: the data is the Doc's JSON. */
export const plainCodec: DeltaCodec = {
  id: "plain",
  decode: (data) =>
    Effect.try({
      try: () => Doc.decode(data),
      catch: (e) => new InvalidEntry({ reason: e instanceof DocFormatError ? e.message : String(e) })
    })
}

/**
 * A delta's entry data (its JSON). Data nested deeper than replicas read (`MAX_JSON_DEPTH`) fails
 * with InvalidEntry naming the store and where, before anything is signed or stored.
 */
export const encodeDelta = (store: string, delta: Doc): Effect.Effect<Uint8Array, InvalidEntry> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(delta.encode())
    } catch (e) {
      if (e instanceof DocFormatError) {
        const where = e.dataPath === undefined ? e.message : `${e.dataPath === "" ? "(the store)" : e.dataPath}: ${e.reason}`
        return Effect.fail(new InvalidEntry({ reason: `store ${store}: ${where}` }))
      }
      throw e
    }
  })

/**
 * The current state of a store. The returned Doc is shared with the cache: read it, clone it, never
 * mutate it.
 */
export const stateOf = (
  treeId: string,
  store: string,
  codec: DeltaCodec = plainCodec
): Effect.Effect<Doc, StorageError | InvalidEntry, Storage | StateCache> =>
  Effect.flatMap(StateCache, (cache) => {
    const key = stateKey(treeId, store, codec.id)
    const cached = cache.states.get(key)
    if (cached === undefined || cache.updating.has(key)) return serialized(cache, key, update(treeId, store, codec, cache, key))
    // The common read (every commit reads `_index`): a cached state that no update holds. If storage
    // has nothing after it, it is current, and the lock (a Deferred and a finalizer, about a third of
    // the read) is not needed; if an update started meanwhile, or there is something new, take it.
    return Effect.flatMap(Storage, (storage) =>
      Effect.flatMap(storage.storeEntriesSince(treeId, store, cached.seq), (since) => {
        if (since.length === 0 && !cache.updating.has(key) && cache.states.get(key) === cached) {
          touch(cache, key, cached)
          return Effect.succeed(cached.doc)
        }
        return serialized(cache, key, update(treeId, store, codec, cache, key))
      }))
  })

/** Bring the state under `key` up to date and return it (its lock held: see `serialized`). */
const update = (
  treeId: string,
  store: string,
  codec: DeltaCodec,
  cache: Context.Tag.Service<StateCache>,
  key: string
): Effect.Effect<Doc, StorageError | InvalidEntry, Storage | StateCache> =>
  Effect.gen(function* () {
    const storage = yield* Storage
    const policy = cache.checkpoints
    let cached = cache.states.get(key)
    if (cached === undefined && codec.id === plainCodec.id) {
      // a state saved by an earlier process (plain stores only: decrypted states never touch disk),
      // with the checkpoint saved beside it: later entries that sort after either refold from there
      cached = yield* loadSaved(treeId, store)
      if (cached !== undefined) remember(cache, key, cached)
    }
    if (cached === undefined) return (yield* refold(treeId, store, codec, key, undefined, undefined)).doc
    const since = yield* storage.storeEntriesSince(treeId, store, cached.seq)
    if (since.length === 0) {
      touch(cache, key, cached)
      return cached.doc
    }
    const sorted = [...since].sort(compareByHeight)
    const first = sorted[0]!
    if (sortsAfter(first, cached.maxHeight, cached.maxId)) {
      // everything new sorts after everything folded: merge on top (a long run keeps checkpoints as a
      // fold does, unless copying the state costs more than the run: 201 entries landing on a
      // 100,000-key state copied all of it, ~100 ms, for checkpoints a refold of the run replaces)
      const cheap = policy.slotsPerEntry === undefined || cached.slots <= sorted.length * policy.slotsPerEntry
      const keepAt = cheap ? lagPositions(policy, sorted.length) : undefined
      const before = cached.checkpoints.length
      const next = yield* foldRefs(treeId, store, sorted, cached.doc, codec, cached, keepAt, cached.checkpoints)
      cached.seq = next.seq
      cached.maxHeight = next.maxHeight
      cached.maxId = next.maxId
      if (cached.checkpoints.length > before) {
        cached.merged = 0
        cached.slots = cached.doc.slots()
      } else cached.merged += sorted.length
      if (cached.merged >= checkpointInterval(policy, cached.slots)) {
        cached.checkpoints.push({ doc: cached.doc.clone(), height: cached.maxHeight, id: cached.maxId })
        cached.slots = cached.doc.slots()
        cached.merged = 0
      }
      trim(cached.checkpoints, policy.max)
      cached.unsaved.entries += sorted.length
      cached.unsaved.bytes += next.bytes
      remember(cache, key, cached)
      yield* save(treeId, store, codec, cached)
      return cached.doc
    }
    // something arrived that sorts inside history: refold from the latest checkpoint before it
    // (checkpoints after it no longer hold: they miss the new entry)
    const valid = cached.checkpoints.filter((c) => compareByHeight(first, c) > 0)
    return (yield* refold(treeId, store, codec, key, valid, cached.unsaved)).doc
  })

/** Entries merged on top between two checkpoints: `every`, or more for a state of many slots. */
const checkpointInterval = (policy: CheckpointPolicy, slots: number): number =>
  policy.slotsPerEntry === undefined ? policy.every : Math.max(policy.every, Math.floor(slots / policy.slotsPerEntry))

/** Where a fold of `count` entries keeps checkpoints: the positions the policy's distances before its end. */
const lagPositions = (policy: CheckpointPolicy, count: number): ReadonlySet<number> =>
  new Set(policy.lags.map((lag) => count - 1 - lag).filter((i) => i >= 0))

/** Whether a store entry sorts after (height, id) in fold order. */
const sortsAfter = (ref: StoreEntryRef, height: number, id: string): boolean =>
  ref.height > height || (ref.height === height && compareIds(ref.id, id) > 0)

/** Drop checkpoints beyond `max`, keeping the oldest (deep history) and the newest. */
const trim = (checkpoints: Array<Checkpoint>, max: number): void => {
  while (checkpoints.length > Math.max(max, 1)) checkpoints.splice(checkpoints.length > 1 ? 1 : 0, 1)
}

/**
 * Fold a store from the latest of `checkpoints` (all of them before every unfolded entry), or from
 * the start when there is none, keeping new checkpoints at the policy's distances from the end.
 */
const refold = (
  treeId: string,
  store: string,
  codec: DeltaCodec,
  key: string,
  checkpoints: ReadonlyArray<Checkpoint> | undefined,
  unsaved: Unsaved | undefined
): Effect.Effect<Cached, StorageError | InvalidEntry, Storage | StateCache> =>
  Effect.gen(function* () {
    const storage = yield* Storage
    const cache = yield* StateCache
    const policy = cache.checkpoints
    const refs = yield* storage.storeEntries(treeId, store)
    const from = checkpoints?.at(-1)
    // refs are in fold order: the entries after the checkpoint start after the last one at or before it
    const start = from === undefined ? 0 : firstAfter(refs, from)
    const tail = start === 0 ? refs : refs.slice(start)
    const keepAt = lagPositions(policy, tail.length)
    const kept: Array<Checkpoint> = checkpoints === undefined ? [] : [...checkpoints]
    const base = from === undefined ? Doc.empty() : from.doc.clone()
    // every ref is folded (the checkpoint's share before `start`): the seq watermark is the largest of all
    let seq = 0
    for (let i = 0; i < start; i++) if (refs[i]!.seq > seq) seq = refs[i]!.seq
    const previous = from === undefined ? undefined : { seq, maxHeight: from.height, maxId: from.id }
    const folded = yield* foldRefs(treeId, store, tail, base, codec, previous, keepAt, kept)
    trim(kept, policy.max)
    // a refold from a checkpoint counts what it folds as unsaved (a little more than is new: saved sooner)
    const fresh: Cached = {
      doc: folded.doc,
      seq: folded.seq,
      maxHeight: folded.maxHeight,
      maxId: folded.maxId,
      checkpoints: kept,
      merged: 0,
      slots: folded.doc.slots(),
      unsaved: {
        entries: (from === undefined ? 0 : unsaved?.entries ?? 0) + tail.length,
        bytes: (from === undefined ? 0 : unsaved?.bytes ?? 0) + folded.bytes,
        savedSize: unsaved?.savedSize ?? 0
      },
      weight: 0
    }
    remember(cache, key, fresh)
    yield* save(treeId, store, codec, fresh)
    return fresh
  })

/** A state is saved no sooner than this many entries after it was last saved (or loaded). */
export const PERSIST_AFTER = 1_000

/**
 * ...and once the store data folded in since then is at least 1/PERSIST_GROWTH of the saved state's
 * size. A save writes the whole state, so a store that keeps growing (a new key per entry) would
 * otherwise pay for its whole state every 1,000 entries: at 20,000 keys a read stalled 160-430 ms
 * every 1,000 commits here. This way saves come at sizes growing by half each time (a constant
 * cost per byte of data, amortised), and a reopened instance refolds at most about a third of a
 * state's data (a store of few keys rewritten over and over is still saved every 1,000 entries).
 */
export const PERSIST_GROWTH = 2

/**
 * Where a store's saved checkpoint is kept: under its tree ID with this suffix (no entry ID, being
 * base32, contains `#`, so no store of a real tree can collide with it).
 */
const CHECKPOINT_SUFFIX = "#checkpoint"

/**
 * Save the state when enough is new in it, with its latest checkpoint before its end (so that after a
 * reopen a concurrent entry sorting a little before the end does not refold from the start). Both
 * rows carry the state's seq: a checkpoint row of another seq (a save interrupted between the rows)
 * is not used.
 */
const save = (treeId: string, store: string, codec: DeltaCodec, state: Cached) =>
  Effect.gen(function* () {
    const unsaved = state.unsaved
    if (codec.id !== plainCodec.id || unsaved.entries < PERSIST_AFTER || unsaved.bytes * PERSIST_GROWTH < unsaved.savedSize) return
    const storage = yield* Storage
    const serialized = state.doc.serialize()
    yield* storage.putCachedState(treeId, store, {
      state: serialized,
      seq: state.seq,
      maxHeight: state.maxHeight,
      maxId: state.maxId
    })
    const before = state.checkpoints.filter((c) => c.height !== state.maxHeight || c.id !== state.maxId)
    const checkpoint = before[before.length - 1]
    if (checkpoint !== undefined)
      yield* storage.putCachedState(`${treeId}${CHECKPOINT_SUFFIX}`, store, {
        state: checkpoint.doc.serialize(),
        seq: state.seq,
        maxHeight: checkpoint.height,
        maxId: checkpoint.id
      })
    state.unsaved = { entries: 0, bytes: 0, savedSize: serialized.length }
  })

/** The saved state of a store and its checkpoints (the saved one, and the state itself), if any. */
const loadSaved = (treeId: string, store: string): Effect.Effect<Cached | undefined, StorageError, Storage> =>
  Effect.gen(function* () {
    const storage = yield* Storage
    const parse = (text: string) => Option.getOrUndefined(Option.liftThrowable(Doc.deserialize)(text))
    const saved = Option.getOrUndefined(yield* storage.getCachedState(treeId, store))
    const doc = saved === undefined ? undefined : parse(saved.state)
    if (saved === undefined || doc === undefined) return undefined
    const { seq, maxHeight, maxId } = saved
    const checkpoints: Array<Checkpoint> = []
    const row = Option.getOrUndefined(yield* storage.getCachedState(`${treeId}${CHECKPOINT_SUFFIX}`, store))
    const earlier = row === undefined || row.seq !== seq ? undefined : parse(row.state)
    if (row !== undefined && earlier !== undefined) checkpoints.push({ doc: earlier, height: row.maxHeight, id: row.maxId })
    checkpoints.push({ doc: doc.clone(), height: maxHeight, id: maxId })
    return {
      doc,
      seq,
      maxHeight,
      maxId,
      checkpoints,
      merged: 0,
      slots: doc.slots(),
      unsaved: { entries: 0, bytes: 0, savedSize: saved.state.length },
      weight: 0
    }
  })

const CHUNK = 2_000

const foldRefs = (
  treeId: string,
  store: string,
  refs: ReadonlyArray<StoreEntryRef>,
  base: Doc,
  codec: DeltaCodec,
  previous?: { readonly seq: number; readonly maxHeight: number; readonly maxId: string },
  keepAt?: ReadonlySet<number>,
  kept?: Array<Checkpoint>
): Effect.Effect<{ doc: Doc; seq: number; maxHeight: number; maxId: string; bytes: number }, StorageError | InvalidEntry, Storage> =>
  Effect.gen(function* () {
    const storage = yield* Storage
    const doc = base
    let seq = previous?.seq ?? 0
    let maxHeight = previous?.maxHeight ?? -1
    let maxId = previous?.maxId ?? ""
    let bytes = 0
    for (let i = 0; i < refs.length; i += CHUNK) {
      const chunk = refs.slice(i, i + CHUNK)
      const rows = yield* storage.storeData(chunk.map((r) => r.id), store)
      const byId = new Map(rows.map((row) => [row.id, row]))
      for (let j = 0; j < chunk.length; j++) {
        const ref = chunk[j]!
        const row = byId.get(ref.id)
        if (row === undefined) return yield* Effect.die(new Error(`store ${store} of ${treeId} lists missing entry ${ref.id}`))
        if (row.data !== undefined) {
          bytes += row.data.length
          doc.mergeInPlace(yield* codec.decode(row.data))
        }
        if (ref.seq > seq) seq = ref.seq
        if (sortsAfter(ref, maxHeight, maxId)) {
          maxHeight = ref.height
          maxId = ref.id
        }
        if (keepAt?.has(i + j)) kept?.push({ doc: doc.clone(), height: ref.height, id: ref.id })
      }
    }
    return { doc, seq, maxHeight, maxId, bytes }
  })
