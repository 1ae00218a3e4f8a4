/**
 * The simulation's invariants as functions over a set of peers (anything with a storage): the
 * peers converged (same tips, same store states), nothing was lost (every peer holds the union of
 * all entries and every entry the test wrote), every entry is signed with a signature that
 * verifies, and no forged or unauthorized entry was accepted anywhere.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Entry from "../core/Entry.js"
import { layerCache } from "../database/StateCache.js"
import { stateOf } from "../database/StoreState.js"
import { hintOf } from "../schema/Auth.js"
import type { AuthShape } from "../services/Auth.js"
import { Storage, type StorageShape } from "../services/Storage.js"

/** What an invariant check found: `ok`, and a line per violation. */
export interface InvariantResult {
  readonly ok: boolean
  readonly violations: ReadonlyArray<string>
}

/** A peer as the checks see it: a name and its storage. */
export interface CheckedPeer {
  readonly name: string
  readonly storage: StorageShape
}

/** Every peer has the same tips of `treeId` and, for each store named, the same state. */
export const converged = (
  peers: ReadonlyArray<CheckedPeer>,
  treeId: string,
  stores: ReadonlyArray<string> = ["data", Entry.SETTINGS]
): Effect.Effect<InvariantResult> =>
  Effect.gen(function* () {
    const violations: Array<string> = []
    const first = peers[0]
    if (first === undefined) return ok
    const tips0 = JSON.stringify(yield* first.storage.tips(treeId))
    for (const p of peers.slice(1)) {
      const tips = JSON.stringify(yield* p.storage.tips(treeId))
      if (tips !== tips0) violations.push(`${p.name} has tips ${tips}, ${first.name} has ${tips0}`)
    }
    for (const store of stores) {
      const state0 = yield* stateJson(first.storage, treeId, store)
      for (const p of peers.slice(1)) {
        const state = yield* stateJson(p.storage, treeId, store)
        if (state !== state0) violations.push(`${p.name} reads store ${store} as ${clip(state)}, ${first.name} as ${clip(state0)}`)
      }
    }
    return result(violations)
  }).pipe(Effect.orDie)

/** Every peer holds every entry of `treeId` any peer holds, and every ID in `written`. */
export const noLostEntries = (
  peers: ReadonlyArray<CheckedPeer>,
  treeId: string,
  written: Iterable<string> = []
): Effect.Effect<InvariantResult> =>
  Effect.gen(function* () {
    const violations: Array<string> = []
    const held = new Map<string, ReadonlySet<string>>()
    const union = new Set<string>(written)
    for (const p of peers) {
      const ids = new Set(yield* allIds(p.storage, treeId))
      held.set(p.name, ids)
      for (const id of ids) union.add(id)
    }
    for (const p of peers) {
      const ids = held.get(p.name)!
      const missing = [...union].filter((id) => !ids.has(id))
      if (missing.length > 0) violations.push(`${p.name} lacks ${missing.length} entries, e.g. ${missing.slice(0, 3).join(", ")}`)
    }
    return result(violations)
  }).pipe(Effect.orDie)

/** Every entry of each tree at every peer carries a signature that verifies against the key it names. */
export const allSigned = (
  peers: ReadonlyArray<CheckedPeer>,
  treeIds: ReadonlyArray<string>,
  auth: AuthShape
): Effect.Effect<InvariantResult> =>
  Effect.gen(function* () {
    const violations: Array<string> = []
    for (const p of peers) {
      for (const treeId of treeIds) {
        const ids = yield* allIds(p.storage, treeId)
        const entries = yield* p.storage.getMany(ids)
        if (entries.length !== ids.length) violations.push(`${p.name} lists ${ids.length} entries of ${treeId} but returns ${entries.length}`)
        const items = []
        for (const e of entries) {
          const pubkey = hintOf(e.entry.sig.key).pubkey
          const sig = e.entry.sig.sig
          if (pubkey === undefined || sig === undefined) {
            violations.push(`${p.name} holds ${e.id} without a signature or a public key`)
            continue
          }
          items.push({ id: e.id, publicKey: pubkey, signature: sig, message: Entry.signingBytes(e.entry) })
        }
        for (let i = 0; i < items.length; i += 200) {
          const batch = items.slice(i, i + 200)
          const verdicts = yield* auth.verifyBatch(batch)
          batch.forEach((item, k) => {
            if (verdicts[k] !== true) violations.push(`${p.name} holds ${item.id} whose signature does not verify`)
          })
        }
      }
    }
    return result(violations)
  }).pipe(Effect.orDie)

/** None of the `forbidden` entry IDs (forged or unauthorized entries that were offered) is stored at any peer. */
export const noUnauthorizedEntries = (
  peers: ReadonlyArray<CheckedPeer>,
  forbidden: Iterable<string>
): Effect.Effect<InvariantResult> =>
  Effect.gen(function* () {
    const ids = [...forbidden]
    const violations: Array<string> = []
    for (const p of peers) {
      for (const id of yield* p.storage.has(ids)) violations.push(`${p.name} stored the unauthorized entry ${id}`)
      // and nothing of them made it in under another ID's guise
      for (const id of ids) if (Option.isSome(yield* p.storage.get(id))) violations.push(`${p.name} returns ${id}`)
    }
    return result([...new Set(violations)])
  }).pipe(Effect.orDie)

/**
 * No entry of `treeId` at any peer was signed by `pubkey` where `forbidden` holds for it: what an
 * intruder signed without the authority for it stays out under any ID, not only the IDs the test
 * knows it offered.
 */
export const noEntriesSignedBy = (
  peers: ReadonlyArray<CheckedPeer>,
  treeId: string,
  pubkey: string,
  forbidden: (entry: Entry.StoredEntry) => boolean
): Effect.Effect<InvariantResult> =>
  Effect.gen(function* () {
    const violations: Array<string> = []
    for (const p of peers) {
      for (const e of yield* p.storage.getMany(yield* allIds(p.storage, treeId))) {
        if (hintOf(e.entry.sig.key).pubkey === pubkey && forbidden(e)) {
          violations.push(`${p.name} stored ${e.id} of ${treeId}, signed by ${pubkey} without the authority for it`)
        }
      }
    }
    return result(violations)
  }).pipe(Effect.orDie)

/** Every peer's `data` store of `treeId` holds each written key with the value written (keys written once). */
export const noLostWrites = (
  peers: ReadonlyArray<CheckedPeer>,
  treeId: string,
  writes: ReadonlyMap<string, unknown>
): Effect.Effect<InvariantResult> =>
  Effect.gen(function* () {
    const violations: Array<string> = []
    for (const p of peers) {
      const data = JSON.parse(yield* stateJson(p.storage, treeId, "data")) as Record<string, unknown>
      const wrong = [...writes].filter(([k, v]) => JSON.stringify(data[k]) !== JSON.stringify(v))
      if (wrong.length > 0) violations.push(`${p.name} reads ${wrong.length} written keys wrongly, e.g. ${wrong.slice(0, 3).map(([k, v]) => `${k}=${JSON.stringify(data[k])} (wrote ${JSON.stringify(v)})`).join(", ")}`)
    }
    return result(violations)
  }).pipe(Effect.orDie)

// ---------------------------------------------------------------------------------------------
// helpers

const ok: InvariantResult = { ok: true, violations: [] }

const result = (violations: ReadonlyArray<string>): InvariantResult => ({ ok: violations.length === 0, violations })

const allIds = (storage: StorageShape, treeId: string) =>
  Effect.flatMap(storage.tips(treeId), (tips) => (tips.length === 0 ? Effect.succeed([]) : storage.ancestors(treeId, tips)))

/** A store's state folded afresh from the peer's entries (no cached state read or written). */
const stateJson = (storage: StorageShape, treeId: string, store: string) =>
  stateOf(treeId, store).pipe(
    Effect.map((doc) => JSON.stringify(doc.toJSON())),
    Effect.provide(layerCache),
    Effect.provideService(Storage, { ...storage, getCachedState: () => Effect.succeed(Option.none()), putCachedState: () => Effect.void })
  )

const clip = (text: string) => (text.length > 120 ? `${text.slice(0, 120)}…` : text)
