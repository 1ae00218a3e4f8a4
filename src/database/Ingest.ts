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
import type { EntryMetadata } from "../schema/Entry.js"
import { compareIds } from "../schema/Ids.js"
import { InvalidEntry, type StorageError } from "../schema/Errors.js"
import { Auth, type VerifyItem } from "../services/Auth.js"
import { Storage } from "../services/Storage.js"
import { type WriteSource, WriteEvents } from "../services/WriteEvents.js"
import { authorise, type Pending, rejectDependents, type Structure, structureOf } from "./internal/EntryRules.js"
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

/**
 * Check a batch: the entries already stored dropped, the rest sorted parents-first and checked by
 * the rules of `internal/EntryRules.ts`, their signatures verified. The loops are plain functions
 * (`sortBatch`, `AuthorisePass`, `verdictsOf`) and this generator only runs the effects between
 * them: a generator's optimised code carries every resume point, so a hot loop inside one costs the
 * compiler several times what the same loop costs outside (a cold bootstrap compiled it twice, at
 * a tenth of V8's compile time).
 */
const check = (
  input: ReadonlyArray<StoredEntry>,
  verifySignatures: boolean,
  parseDeltas = true
): Effect.Effect<{ valid: Array<StoredEntry>; rejected: Array<InvalidEntry> }, StorageError, Storage | Auth | StateCache> =>
  Effect.gen(function* () {
    const storage = yield* Storage
    const auth = yield* Auth
    const unique = byId(input)
    const batch = sortBatch(unique, yield* storage.has([...unique.keys()]))
    const outside = outsideOf(batch)
    const known = new Map<string, StoredEntry>()
    if (outside.size > 0) for (const f of yield* storage.getMany([...outside])) known.set(f.id, f)
    // what to verify, slice by slice: each slice goes to the verifier (when it can work in the
    // background) as soon as it is authorised, so signatures are checked while the next entries are
    // (a first, smaller slice gets the verifier going early; a large batch lets it start up at once)
    const verifyAhead = verifySignatures ? auth.verifyAhead : undefined
    const pass = new AuthorisePass(batch, known, parseDeltas, yield* StateCache, verifyAhead !== undefined)
    if (verifyAhead !== undefined && batch.entries.length >= FIRST_SLICE) yield* verifyAhead([])
    for (let stop = pass.run(); stop !== undefined; stop = pass.run()) {
      if (stop._tag === "Slice") {
        yield* verifyAhead!(stop.items)
        continue
      }
      // the pinned settings are not cached: fold them
      const folded = yield* Effect.either(settingsAt(stop.entry.treeId, stop.structure.tips, yield* lookupWith(batch.overlay)))
      if (folded._tag === "Left") {
        if (folded.left._tag !== "InvalidEntry") return yield* folded.left
        pass.reject(folded.left.reason)
      } else pass.authoriseWith(stop.structure, folded.right)
    }
    // verify every candidate signature, the signing bytes encoded once per entry (the slices sent
    // ahead are found in flight or done); a large slice goes to the pool, a small one (a single
    // pushed entry) is verified here, which is quicker than a round trip to a worker
    const answers = verifySignatures
      ? yield* Effect.forEach(pass.allSlices(), (items) => auth.verifyBatch(items), { concurrency: "unbounded" })
      : undefined
    return verdictsOf(pass.pending, pass.rejected, answers)
  })

/** A batch's entries by ID, each once. */
const byId = (input: ReadonlyArray<StoredEntry>): Map<string, StoredEntry> => {
  const unique = new Map<string, StoredEntry>()
  for (const e of input) unique.set(e.id, e)
  return unique
}

/** The entries of a batch not stored already, parents first (by height, then ID), with their metadata. */
interface SortedBatch {
  readonly entries: ReadonlyArray<StoredEntry>
  readonly metas: ReadonlyArray<EntryMetadata | undefined>
  readonly overlay: ReadonlyMap<string, StoredEntry>
}

const sortBatch = (unique: ReadonlyMap<string, StoredEntry>, already: ReadonlySet<string>): SortedBatch => {
  const entries: Array<StoredEntry> = []
  for (const e of unique.values()) if (!already.has(e.id)) entries.push(e)
  entries.sort((a, b) => (a.height !== b.height ? a.height - b.height : compareIds(a.id, b.id)))
  const overlay = new Map<string, StoredEntry>()
  const metas: Array<EntryMetadata | undefined> = []
  for (const e of entries) {
    overlay.set(e.id, e)
    metas.push(Entry.metadata(e.entry))
  }
  return { entries, metas, overlay }
}

/** Every entry the batch refers to outside itself (pinned settings tips included), to fetch in one call. */
const outsideOf = ({ entries, metas, overlay }: SortedBatch): Set<string> => {
  const outside = new Set<string>()
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    for (const p of e.entry.tree.parents) if (!overlay.has(p)) outside.add(p)
    if (!overlay.has(e.treeId)) outside.add(e.treeId)
    for (const node of e.entry.subtrees) for (const p of node.parents) if (!overlay.has(p)) outside.add(p)
    for (const t of metas[i]?.settings_tips ?? []) if (!overlay.has(t)) outside.add(t)
  }
  return outside
}

/** Where the authorisation pass stopped for an effect: a slice to send ahead, or settings to fold. */
type Stop =
  | { readonly _tag: "Slice"; readonly items: Array<VerifyItem> }
  | { readonly _tag: "Fold"; readonly entry: StoredEntry; readonly structure: Structure }

/**
 * The rules applied to a sorted batch in order, as far as they go without an effect: `run` returns
 * when a slice is ready to verify ahead, or when an entry's pinned settings are not cached (the
 * caller folds them and hands them back to `authoriseWith`, or `reject`s the entry), and undefined
 * at the end. Every authorised entry is pending; the slices cut of them cover the pending in order.
 */
class AuthorisePass {
  readonly pending: Array<Pending> = []
  readonly rejected: Array<InvalidEntry> = []
  private readonly slices: Array<Array<VerifyItem>> = []
  private sliced = 0
  /** The index of the entry to check next. */
  private next = 0

  constructor(
    private readonly batch: SortedBatch,
    private readonly known: ReadonlyMap<string, StoredEntry>,
    private readonly parseDeltas: boolean,
    private readonly cache: Context.Tag.Service<StateCache>,
    private readonly ahead: boolean
  ) {}

  run(): Stop | undefined {
    const { entries, metas, overlay } = this.batch
    while (this.next < entries.length) {
      if (this.ahead && this.pending.length - this.sliced >= this.sliceSize()) return { _tag: "Slice", items: this.cut() }
      const e = entries[this.next]!
      const structure = structureOf(e, metas[this.next], overlay, this.known, this.parseDeltas)
      if (typeof structure === "string") this.reject(structure)
      else if (structure.root) this.finish(e, structure, Doc.empty())
      else {
        // the pinned settings are nearly always cached: only a miss stops for an effect
        const pinned = cachedSettingsAt(this.cache, e.treeId, structure.tips)
        if (pinned === undefined) return { _tag: "Fold", entry: e, structure }
        this.finish(e, structure, pinned)
      }
    }
    return undefined
  }

  /** The entry `run` stopped at (of this structure) is authorised under these settings. */
  authoriseWith(structure: Structure, pinned: Doc): void {
    this.finish(this.batch.entries[this.next]!, structure, pinned)
  }

  /** The entry `run` is at is invalid. */
  reject(reason: string): void {
    this.rejected.push(new InvalidEntry({ entryId: this.batch.entries[this.next]!.id, reason }))
    this.next++
  }

  /** Every slice, the pending not sent ahead cut now. */
  allSlices(): ReadonlyArray<Array<VerifyItem>> {
    while (this.sliced < this.pending.length) this.cut()
    return this.slices
  }

  private finish(e: StoredEntry, structure: Structure, pinned: Doc): void {
    const result = authorise(e, structure, pinned)
    if (typeof result === "string") this.reject(result)
    else {
      this.pending.push(result)
      this.next++
    }
  }

  private sliceSize(): number {
    return this.slices.length === 0 ? FIRST_SLICE : VERIFY_SLICE
  }

  /** The next slice of the pending: each candidate signer of each entry, the signing bytes encoded once. */
  private cut(): Array<VerifyItem> {
    const end = Math.min(this.pending.length, this.sliced + this.sliceSize())
    const items: Array<VerifyItem> = []
    for (let i = this.sliced; i < end; i++) {
      const p = this.pending[i]!
      const message = Entry.signingBytesOf(p.entry)
      const signature = p.entry.entry.sig.sig ?? ""
      for (const c of p.candidates) items.push({ publicKey: c.pubkey, signature, message })
    }
    this.sliced = end
    this.slices.push(items)
    return items
  }
}

/**
 * The valid entries and every rejection: a pending entry is valid when one of its candidate
 * signatures verified (`answers` in slice order; undefined when signatures are not checked) and no
 * entry it depends on was rejected.
 */
const verdictsOf = (
  pending: ReadonlyArray<Pending>,
  rejected: Array<InvalidEntry>,
  answers: ReadonlyArray<ReadonlyArray<boolean>> | undefined
): { valid: Array<StoredEntry>; rejected: Array<InvalidEntry> } => {
  const results: Array<boolean> = []
  if (answers !== undefined) for (const a of answers) for (const r of a) results.push(r)
  const bad = new Set(rejected.map((r) => r.entryId!))
  let k = 0
  for (const p of pending) {
    let ok = answers === undefined
    for (let i = 0; i < p.candidates.length; i++) if (answers !== undefined && results[k++]) ok = true
    if (!ok) {
      bad.add(p.entry.id)
      rejected.push(new InvalidEntry({ entryId: p.entry.id, reason: "the signature does not verify" }))
    }
  }
  if (bad.size > 0) rejectDependents(pending, bad, rejected)
  const valid: Array<StoredEntry> = []
  for (const p of pending) if (!bad.has(p.entry.id)) valid.push(p.entry)
  return { valid, rejected }
}
