/**
 * Transactions: stage changes to any number of stores, then commit them as ONE signed entry, so
 * writes across stores are atomic. Parents are the tips at commit time; every store's parents are
 * that store's tips; the entry pins the current `_settings` tips. The entry goes through the same
 * validation as anything received from a peer before it is stored.
 */
import * as Effect from "effect/Effect"
import { Doc } from "../core/Doc.js"
import type { StoredEntry } from "../core/Entry.js"
import * as Entry from "../core/Entry.js"
import * as Settings from "../core/Settings.js"
import {
  CorruptedAuthConfiguration,
  type CryptoError,
  InvalidEntry,
  PermissionDenied,
  type StorageError
} from "../schema/Errors.js"
import type { SigKey } from "../schema/Auth.js"
import * as Permission from "../schema/Permission.js"
import { Auth } from "../services/Auth.js"
import { Storage, type StorageShape } from "../services/Storage.js"
import { checkSigner, type Database, type DatabaseEnv, type Signer, sigKeyOf } from "./Database.js"
import { ingestSignedHere } from "./Ingest.js"
import { cachedSettingsAt, lookupWith, pinnedAuthOf, settingsAt } from "./PinnedSettings.js"
import { StateCache } from "./StateCache.js"
import { type DeltaCodec, encodeDelta, plainCodec, stateOf } from "./StoreState.js"

/** How a store's staged delta becomes entry data (plain JSON, or encrypted). */
export interface StoreCodec extends DeltaCodec {
  readonly encode: (store: string, delta: Doc) => Effect.Effect<Uint8Array, CryptoError | InvalidEntry>
}

/** The plain codec for ordinary stores. */
export const plainStoreCodec: StoreCodec = {
  ...plainCodec,
  encode: encodeDelta
}

interface Staged {
  readonly delta: Doc
  readonly typeId: string
  codec: StoreCodec
  config?: Doc | undefined
}

/** An open transaction: its database, signer and staged deltas. */
export interface Transaction {
  readonly db: Database
  readonly signer: Signer
  readonly staged: Map<string, Staged>
  committed: boolean
  /** A commit is running (a second one at the same time would sign a second entry). */
  committing: boolean
}

/** Begin a transaction signed by `signer`. */
export const begin = (db: Database, signer: Signer): Transaction => ({
  db,
  signer,
  staged: new Map(),
  committed: false,
  committing: false
})

/** The staged delta of a store, created on first use. Reserved stores keep their own type. */
export const stage = (txn: Transaction, store: string, typeId: string, codec: StoreCodec = plainStoreCodec): Doc => {
  // misuse, a defect (the Promise API's InvalidArgument): the write would never be stored
  if (txn.committed) throw new TypeError("this transaction is committed, so a write to it would never be stored; begin a new one")
  if (txn.committing)
    throw new TypeError("this transaction is being committed, so a write to it now might not be in its entry; await commit() first, or begin a new one")
  return stagedDelta(txn, store, typeId, codec)
}

/** The staged delta of a store, created on first use, unguarded: what the commit itself adds (`_index`). */
const stagedDelta = (txn: Transaction, store: string, typeId: string, codec: StoreCodec = plainStoreCodec): Doc => {
  let s = txn.staged.get(store)
  if (s === undefined) {
    s = { delta: Doc.empty(), typeId, codec }
    txn.staged.set(store, s)
  }
  return s.delta
}

/** Set the codec of a staged store (PasswordStore uses it to encrypt), and optionally its `_index` config. */
export const setCodec = (txn: Transaction, store: string, typeId: string, codec: StoreCodec, config?: Doc) => {
  stage(txn, store, typeId, codec)
  const s = txn.staged.get(store)!
  s.codec = codec
  if (config !== undefined) s.config = config
}

/**
 * The state of a store as this transaction sees it: committed state with the staged delta on top.
 * Shared with the state cache (as `stateOf`'s): read it, never mutate it.
 */
export const read = (
  txn: Transaction,
  store: string,
  codec: DeltaCodec = plainCodec
): Effect.Effect<Doc, StorageError | InvalidEntry, Storage | DatabaseEnv> =>
  Effect.map(stateOf(txn.db.rootId, store, codec), (state) => {
    const staged = txn.staged.get(store)
    return staged === undefined || staged.delta.isEmpty() ? state : state.mergeSharing(staged.delta)
  })

const noOverlay: ReadonlyMap<string, StoredEntry> = new Map()

/** Where the next entry of a tree goes: its parents are the current tips, its height one above the highest. */
const nextPosition = (storage: StorageShape, treeId: string) =>
  Effect.flatMap(storage.tips(treeId), (parents) =>
    Effect.map(storage.heights(parents), (heights) => {
      let highest = -1
      for (const p of parents) highest = Math.max(highest, heights.get(p) ?? 0)
      return { parents, height: highest + 1 }
    }))

/**
 * The unsigned entry that comes next in a tree: parents and height from `nextPosition`, pinning
 * `settingsTips`. A store's height is the entry's (left out) unless a store parent is as high, as a
 * peer's entry may be (the reference lets stores keep heights of their own): then it is one above
 * the highest, so the store's order still follows its history and no store parent blocks a commit.
 * (Written as a chain of flatMaps, not a generator: it runs on every commit, and a nested
 * `Effect.gen` costs several times a flatMap.)
 */
export const nextEntry = (
  storage: StorageShape,
  treeId: string,
  settingsTips: ReadonlyArray<string>,
  subtrees: Entry.EntryInput["subtrees"],
  key: SigKey
) =>
  Effect.flatMap(nextPosition(storage, treeId), ({ height, parents }) => {
    const storeParents = [...new Set(subtrees.flatMap((s) => s.parents))]
    const held = storeParents.length === 0 ? Effect.succeed([]) : storage.getMany(storeParents)
    return Effect.map(held, (entries) => {
      const byId = new Map(entries.map((e) => [e.id, e.entry]))
      const placed = subtrees.map((s) => {
        let h = height
        for (const p of s.parents) {
          const parent = byId.get(p)
          if (parent !== undefined) h = Math.max(h, Entry.storeHeight(parent, s.name) + 1)
        }
        return h === height ? s : { ...s, h }
      })
      return Entry.make({
        root: treeId,
        parents,
        height,
        metadata: Entry.encodeMetadata({ settings_tips: settingsTips, entropy: null }),
        subtrees: placed,
        key
      })
    })
  })

/** Errors a commit can fail with. */
export type CommitError = CorruptedAuthConfiguration | PermissionDenied | InvalidEntry | StorageError | CryptoError

/**
 * Commit: build, sign, validate and store one entry; returns its ID. A transaction commits once:
 * committing it again, or while its commit runs, is misuse (a defect; the Promise API's
 * InvalidArgument), and so is a write while its commit runs. A commit that fails leaves it open to be
 * committed again; one interrupted (a timeout) after its entry was stored leaves it committed.
 */
export const commit = (txn: Transaction): Effect.Effect<string, CommitError, DatabaseEnv> =>
  Effect.suspend(() => {
    if (txn.committed) return Effect.die(new TypeError("this transaction is committed already; begin a new one"))
    if (txn.committing) return Effect.die(new TypeError("this transaction is being committed already"))
    txn.committing = true
    return Effect.ensuring(commitOnce(txn), Effect.sync(() => void (txn.committing = false)))
  })

const commitOnce = (txn: Transaction): Effect.Effect<string, CommitError, DatabaseEnv> =>
  Effect.gen(function* () {
    const storage = yield* Storage
    const auth = yield* Auth
    const treeId = txn.db.rootId
    yield* checkSigner(txn.signer)
    // The `_settings` state at its current tips (the same fold as its store state) is the state the
    // entry pins; validation reads it from the same cache entry, so it is folded and read once.
    const settingsTips = yield* storage.storeTips(treeId, Entry.SETTINGS)
    const cache = yield* StateCache
    const settingsState = cachedSettingsAt(cache, treeId, settingsTips) ??
      (yield* settingsAt(treeId, settingsTips, yield* lookupWith(noOverlay)))
    const before = pinnedAuthOf(settingsState)
    const staged = txn.staged.get(Entry.SETTINGS)
    const delta = staged !== undefined && !staged.delta.isEmpty() ? staged.delta : undefined
    const touched = delta !== undefined ? Settings.touchedBy(delta) : undefined
    const after = delta !== undefined ? Settings.authAfterChange(settingsState, before, delta, touched!) : before
    if (after._tag !== "Present")
      return yield* new CorruptedAuthConfiguration({
        detail: after._tag === "Corrupt" ? after.reason : "auth must not be deleted"
      })
    if (before._tag !== "Present") return yield* new CorruptedAuthConfiguration({ detail: "the database has no auth" })
    // the signer's authority, checked here for a clear error (validation checks it again)
    const candidates = Settings.candidates(before.auth, sigKeyOf(txn.signer))
    const held = candidates[0]?.permission
    if (held === undefined)
      return yield* new PermissionDenied({
        detail: `key ${txn.signer.publicKey} is not an active key of database ${treeId}; ask an admin to add it with setAuthKey`
      })
    if (touched !== undefined) {
      const refusal = Settings.checkChange(before, after, held, touched)
      if (refusal !== undefined) return yield* new PermissionDenied({ detail: refusal })
    } else if (!Permission.canWrite(held)) {
      return yield* new PermissionDenied({ detail: `key ${txn.signer.publicKey} has ${Permission.format(held)}; writing needs Write or Admin` })
    }
    // register new stores in _index
    const unreserved = [...txn.staged].filter(([name, s]) => !name.startsWith("_") && !s.delta.isEmpty())
    const index = unreserved.length > 0 ? yield* stateOf(treeId, Entry.INDEX) : Doc.empty()
    for (const [name, s] of unreserved) {
      const known = index.get(name)
      const knownType = known instanceof Doc ? known.get("type_id") : undefined
      // a store keeps its type: written as another (a table as a document, an encrypted store in
      // the clear) it would be re-registered, and its readers would lose its data or its salt
      if (typeof knownType === "string" && knownType !== s.typeId)
        return yield* new InvalidEntry({ reason: `store ${name} is a ${knownType} store, not a ${s.typeId} store: open it as one` })
      if (knownType === s.typeId && s.config === undefined) continue
      const registration = Doc.empty()
      registration.set("type_id", s.typeId)
      registration.set("config", s.config ?? Doc.empty())
      stagedDelta(txn, Entry.INDEX, "_index").set(name, registration)
    }
    const subtrees: Array<{ name: string; parents: ReadonlyArray<string>; data: Uint8Array }> = []
    for (const [name, s] of txn.staged) {
      if (s.delta.isEmpty()) continue
      subtrees.push({ name, parents: yield* storage.storeTips(treeId, name), data: yield* s.codec.encode(name, s.delta) })
    }
    const unsigned = yield* nextEntry(storage, treeId, settingsTips, subtrees, sigKeyOf(txn.signer))
    const signing = Entry.signingBytes(unsigned)
    const sig = yield* auth.sign(txn.signer.secretKey, signing)
    const signed = Entry.withSignature(unsigned, sig)
    const stored = Entry.stored(signed, Entry.encodeSigned(signed, signing))
    // marked committed in the same uninterruptible step as the store: a commit interrupted once its
    // entry is stored must not be retried into a second entry carrying the same changes
    yield* Effect.uninterruptible(Effect.tap(ingestSignedHere([stored]), () => Effect.sync(() => void (txn.committed = true))))
    return stored.id
  })
