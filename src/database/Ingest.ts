/**
 * The one way entries get stored: local commits and entries received from peers alike are checked
 * here (structure, parents present and in the same tree, incremental heights, pinned settings,
 * signer authorised with enough permission, settings-change rules, signature) and only then put,
 * in one atomic batch, and announced as a write event. This module is the pipeline (fetch what the
 * batch refers to, fold the pinned settings, verify signatures, store); the per-entry rules it
 * applies are the pure functions of `internal/EntryRules.ts`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { Doc } from "../core/Doc.js"
import type { StoredEntry } from "../core/Entry.js"
import * as Entry from "../core/Entry.js"
import { compareIds } from "../schema/Ids.js"
import { InvalidEntry, type StorageError } from "../schema/Errors.js"
import { Auth, type VerifyItem } from "../services/Auth.js"
import { Storage } from "../services/Storage.js"
import { type WriteSource, WriteEvents } from "../services/WriteEvents.js"
import { authorise, type Pending, rejectDependents, structureOf } from "./internal/EntryRules.js"
import { cachedSettingsAt, lookupWith, settingsAt } from "./PinnedSettings.js"
import { StateCache } from "./StateCache.js"
import { decodeVerifyingAhead } from "./VerifyAhead.js"

export { FREE_STORE_HEIGHT, MAX_ENTRY_BYTES, MAX_SETTINGS_TIPS } from "./internal/EntryRules.js"

/** What happened to a batch: the IDs newly stored, and every entry refused with its reason. */
export interface IngestReport {
  readonly stored: ReadonlyArray<string>
  readonly rejected: ReadonlyArray<InvalidEntry>
}

/** Services ingestion needs. */
export type IngestEnv = Storage | Auth | StateCache | WriteEvents

/**
 * Validate and store a batch all-or-nothing: the first invalid entry fails the whole batch with
 * InvalidEntry and nothing is stored. Used for local commits and for callers that want atomicity.
 */
export const ingest = (
  entries: ReadonlyArray<StoredEntry>,
  source: WriteSource,
  peer?: string
): Effect.Effect<ReadonlyArray<string>, InvalidEntry | StorageError, IngestEnv> =>
  Effect.gen(function* () {
    const { valid, rejected } = yield* check(entries, true)
    if (rejected.length > 0) return yield* rejected[0]!
    return yield* store(valid, source, peer)
  })

/**
 * Decode encoded entries and validate and store them all-or-nothing, as `ingest` does. Large
 * batches are decoded slice by slice, the signatures of known signers (the active keys of a root
 * among them) sent to the verifier as they go, so verification runs alongside the
 * decoding instead of after it. An entry that does not decode fails the batch, naming its position.
 */
export const ingestEncoded = (
  encoded: ReadonlyArray<Uint8Array>,
  source: WriteSource,
  peer?: string
): Effect.Effect<ReadonlyArray<string>, InvalidEntry | StorageError, IngestEnv> =>
  Effect.gen(function* () {
    const decoded = yield* decodeVerifyingAhead(encoded, new Set(), yield* Auth)
    const entries: Array<StoredEntry> = []
    for (let i = 0; i < decoded.length; i++) {
      const result = decoded[i]!
      if (Either.isLeft(result)) return yield* new InvalidEntry({ reason: `entry ${i} does not decode: ${result.left}` })
      entries.push(result.right)
    }
    return yield* ingest(entries, source, peer)
  })

/**
 * Store entries this process has just signed itself: every check but the signature's runs (the
 * signature was made here with the key the checks authorise, so verifying it again proves nothing),
 * and store deltas other than `_settings` are not parsed back (they were encoded here from Docs).
 */
export const ingestSignedHere = (
  entries: ReadonlyArray<StoredEntry>
): Effect.Effect<ReadonlyArray<string>, InvalidEntry | StorageError, IngestEnv> =>
  Effect.flatMap(
    check(entries, false, false),
    ({ rejected, valid }): Effect.Effect<ReadonlyArray<string>, InvalidEntry | StorageError, IngestEnv> =>
      rejected.length > 0 ? Effect.fail(rejected[0]!) : store(valid, "local", undefined)
  )

/**
 * Validate a batch and store every entry that is valid (and whose ancestors are valid); report the
 * rest. Used for entries received from peers: one bad entry does not keep the good ones out.
 */
export const ingestPartial = (
  entries: ReadonlyArray<StoredEntry>,
  source: WriteSource,
  peer?: string
): Effect.Effect<IngestReport, StorageError, IngestEnv> =>
  Effect.gen(function* () {
    const { valid, rejected } = yield* check(entries, true)
    const stored = yield* store(valid, source, peer)
    return { stored, rejected }
  })

// Uninterruptible: a request cut short between the put and the announcement (a client gone) would
// leave entries stored that no write listener, relay or sync-on-commit ever heard of.
// (A chain, not a generator: it runs once per commit, where a nested Effect.gen is a measurable share.)
const store = (
  valid: ReadonlyArray<StoredEntry>,
  source: WriteSource,
  peer: string | undefined
): Effect.Effect<ReadonlyArray<string>, StorageError, Storage | WriteEvents> =>
  valid.length === 0
    ? Effect.succeed([])
    : Effect.uninterruptible(Effect.flatMap(Effect.context<Storage | WriteEvents>(), (context) => {
      const events = Context.get(context, WriteEvents)
      return Effect.flatMap(Context.get(context, Storage).put(valid), (stored) => {
        const byTree = new Map<string, Array<string>>()
        const treeOf = new Map(valid.map((e) => [e.id, e.treeId]))
        for (const id of stored) {
          const tree = treeOf.get(id)!
          const list = byTree.get(tree)
          if (list === undefined) byTree.set(tree, [id])
          else list.push(id)
        }
        const announce = [...byTree].map(([treeId, entryIds]) => events.publish({ treeId, entryIds, source, peer }))
        return Effect.as(announce.length === 1 ? announce[0]! : Effect.all(announce, { discard: true }), stored)
      })
    }))

/** Entries per verification slice: large enough for the Auth layer's worker pool, small enough to pipeline. */
const VERIFY_SLICE = 1_024
/** The first slice sent ahead: as small as the pool takes, so verification starts early. */
const FIRST_SLICE = 256

const check = (
  input: ReadonlyArray<StoredEntry>,
  verifySignatures: boolean,
  parseDeltas = true
): Effect.Effect<{ valid: Array<StoredEntry>; rejected: Array<InvalidEntry> }, StorageError, Storage | Auth | StateCache> =>
  Effect.gen(function* () {
    const storage = yield* Storage
    const auth = yield* Auth
    const cache = yield* StateCache
    const unique = new Map<string, StoredEntry>()
    for (const e of input) unique.set(e.id, e)
    const already = yield* storage.has([...unique.keys()])
    const batch = [...unique.values()]
      .filter((e) => !already.has(e.id))
      .sort((a, b) => (a.height !== b.height ? a.height - b.height : compareIds(a.id, b.id)))
    const overlay = new Map(batch.map((e) => [e.id, e]))
    const metas = batch.map((e) => Entry.metadata(e.entry))
    // every entry the batch refers to outside itself (pinned settings tips included), fetched in one call
    const outside = new Set<string>()
    for (let i = 0; i < batch.length; i++) {
      const e = batch[i]!
      for (const p of e.entry.tree.parents) if (!overlay.has(p)) outside.add(p)
      if (!overlay.has(e.treeId)) outside.add(e.treeId)
      for (const node of e.entry.subtrees) for (const p of node.parents) if (!overlay.has(p)) outside.add(p)
      for (const t of metas[i]?.settings_tips ?? []) if (!overlay.has(t)) outside.add(t)
    }
    const known = new Map<string, StoredEntry>()
    if (outside.size > 0) for (const f of yield* storage.getMany([...outside])) known.set(f.id, f)
    const rejected: Array<InvalidEntry> = []
    const pending: Array<Pending> = []
    // what to verify, slice by slice: each slice goes to the verifier (when it can work in the
    // background) as soon as it is authorised, so signatures are checked while the next entries are
    // (a first, smaller slice gets the verifier going early; a large batch lets it start up at once)
    const verifyAhead = verifySignatures ? auth.verifyAhead : undefined
    if (verifyAhead !== undefined && batch.length >= FIRST_SLICE) yield* verifyAhead([])
    const slices: Array<Array<VerifyItem>> = []
    let sliced = 0
    const sliceSize = () => (slices.length === 0 ? FIRST_SLICE : VERIFY_SLICE)
    const cutSlice = (): Array<VerifyItem> => {
      const end = Math.min(pending.length, sliced + sliceSize())
      const items: Array<VerifyItem> = []
      for (let i = sliced; i < end; i++) {
        const p = pending[i]!
        const message = Entry.signingBytesOf(p.entry)
        const signature = p.entry.entry.sig.sig ?? ""
        for (const c of p.candidates) items.push({ publicKey: c.pubkey, signature, message })
      }
      sliced = end
      slices.push(items)
      return items
    }
    for (let i = 0; i < batch.length; i++) {
      const e = batch[i]!
      if (verifyAhead !== undefined && pending.length - sliced >= sliceSize()) yield* verifyAhead(cutSlice())
      const structure = structureOf(e, metas[i], overlay, known, parseDeltas)
      if (typeof structure === "string") {
        rejected.push(new InvalidEntry({ entryId: e.id, reason: structure }))
        continue
      }
      let pinned: Doc
      if (structure.root) pinned = Doc.empty()
      else {
        // the pinned settings are nearly always cached: only a miss pays for an effect
        const hit = cachedSettingsAt(cache, e.treeId, structure.tips)
        if (hit !== undefined) pinned = hit
        else {
          const lookup = yield* lookupWith(overlay)
          const folded = yield* Effect.either(settingsAt(e.treeId, structure.tips, lookup))
          if (folded._tag === "Left") {
            if (folded.left._tag === "InvalidEntry") {
              rejected.push(new InvalidEntry({ entryId: e.id, reason: folded.left.reason }))
              continue
            }
            return yield* folded.left
          }
          pinned = folded.right
        }
      }
      const result = authorise(e, structure, pinned)
      if (typeof result === "string") rejected.push(new InvalidEntry({ entryId: e.id, reason: result }))
      else pending.push(result)
    }
    // verify every candidate signature, the signing bytes encoded once per entry (the slices sent
    // ahead are found in flight or done)
    const results: Array<boolean> = []
    if (verifySignatures) {
      // the rest are verified now: a large slice in the pool, a small one (a single pushed entry) here,
      // which is quicker than a round trip to a worker
      while (sliced < pending.length) cutSlice()
      const answers = yield* Effect.forEach(slices, (items) => auth.verifyBatch(items), { concurrency: "unbounded" })
      for (const a of answers) for (const r of a) results.push(r)
    }
    const bad = new Set(rejected.map((r) => r.entryId!))
    let k = 0
    for (const p of pending) {
      let ok = !verifySignatures
      for (let i = 0; i < p.candidates.length; i++) if (verifySignatures && results[k++]) ok = true
      if (!ok) {
        bad.add(p.entry.id)
        rejected.push(new InvalidEntry({ entryId: p.entry.id, reason: "the signature does not verify" }))
      }
    }
    if (bad.size > 0) rejectDependents(pending, bad, rejected)
    const valid: Array<StoredEntry> = []
    for (const p of pending) if (!bad.has(p.entry.id)) valid.push(p.entry)
    return { valid, rejected }
  })
