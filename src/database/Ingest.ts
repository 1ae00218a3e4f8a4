/**
 * The one way entries get stored: local commits and entries received from peers alike are checked
 * here (structure, parents present and in the same tree, incremental heights, pinned settings,
 * signer authorised with enough permission, settings-change rules, signature) and only then put,
 * in one atomic batch, and announced as a write event.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { Doc, DocFormatError } from "../core/Doc.js"
import type { StoredEntry } from "../core/Entry.js"
import * as Entry from "../core/Entry.js"
import * as Settings from "../core/Settings.js"
import { compareIds } from "../schema/Ids.js"
import * as Permission from "../schema/Permission.js"
import { InvalidEntry, type StorageError } from "../schema/Errors.js"
import { Auth, type VerifyItem } from "../services/Auth.js"
import { Storage } from "../services/Storage.js"
import { type WriteSource, WriteEvents } from "../services/WriteEvents.js"
import type { EntryMetadata, SubTreeNode } from "../schema/Entry.js"
import { cachedSettingsAt, lookupWith, pinnedAuthOf, settingsAt } from "./PinnedSettings.js"
import { StateCache } from "./StateCache.js"
import { decodeVerifyingAhead } from "./VerifyAhead.js"

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
  Effect.gen(function* () {
    const { valid, rejected } = yield* check(entries, false, false)
    if (rejected.length > 0) return yield* rejected[0]!
    return yield* store(valid, "local", undefined)
  })

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
const store = (valid: ReadonlyArray<StoredEntry>, source: WriteSource, peer: string | undefined) =>
  Effect.uninterruptible(Effect.gen(function* () {
    if (valid.length === 0) return [] as ReadonlyArray<string>
    const storage = yield* Storage
    const events = yield* WriteEvents
    const stored = yield* storage.put(valid)
    const byTree = new Map<string, Array<string>>()
    const treeOf = new Map(valid.map((e) => [e.id, e.treeId]))
    for (const id of stored) {
      const tree = treeOf.get(id)!
      const list = byTree.get(tree)
      if (list === undefined) byTree.set(tree, [id])
      else list.push(id)
    }
    for (const [treeId, entryIds] of byTree) yield* events.publish({ treeId, entryIds, source, peer })
    return stored
  }))

interface Pending {
  readonly entry: StoredEntry
  /** Public keys that may have signed it, each with its permission. */
  readonly candidates: ReadonlyArray<Settings.Candidate>
  /** Entries this one depends on inside the batch (parents, store parents, pinned settings). */
  readonly deps: ReadonlyArray<string>
}

/**
 * The largest entry: one must fit in one sync message (MAX_MESSAGE_BYTES, 8 MiB, carrying it as
 * base64), or a database holding it could never be synced again. A commit past it is refused.
 */
export const MAX_ENTRY_BYTES = 4 * 1024 * 1024

/**
 * Store heights up to here are free (the reference's timestamp heights, milliseconds since 1970,
 * stay under it until the year 2527); past it a store height may only be one above its store
 * parents' (or the entry's own height), so no writer can push a store to the end of the safe
 * integers, where the next entry would have no height left.
 */
export const FREE_STORE_HEIGHT = 2 ** 44

/**
 * The most `_settings` tips one entry may pin. An entry pins the settings tips its writer saw, one
 * per concurrent settings change not merged yet; past this many, the pin only costs the validator.
 */
export const MAX_SETTINGS_TIPS = 1_024

/** Entries per verification slice: large enough for the Auth layer's worker pool, small enough to pipeline. */
const VERIFY_SLICE = 1_024
/** The first slice sent ahead: as small as the pool takes, so verification starts early. */
const FIRST_SLICE = 256

/** What the checks before the pinned settings found: the entry's dependencies and settings inputs. */
interface Structure {
  readonly deps: Array<string>
  readonly root: boolean
  readonly tips: ReadonlyArray<string>
  /** The entry's own `_settings` node, and its decoded delta when it carries data. */
  readonly settingsNode: SubTreeNode | undefined
  readonly settingsDelta: Doc | undefined
}

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
    const find = (id: string): StoredEntry | undefined => overlay.get(id) ?? known.get(id)
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
      const structure = structureOf(e, metas[i], find, overlay, parseDeltas)
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

/**
 * Reject, transitively, every entry that depends on a rejected one. A dependency may come later in
 * the batch's (height, ID) order than the entry (a pinned settings tip, or a store parent of lower
 * store height but greater tree height), so the verdicts spread along the dependency edges, not in
 * one pass over the batch.
 */
const rejectDependents = (pending: ReadonlyArray<Pending>, bad: Set<string>, rejected: Array<InvalidEntry>) => {
  const dependents = new Map<string, Array<string>>()
  for (const p of pending) {
    for (const d of p.deps) {
      const list = dependents.get(d)
      if (list === undefined) dependents.set(d, [p.entry.id])
      else list.push(p.entry.id)
    }
  }
  const queue = [...bad]
  while (queue.length > 0) {
    const id = queue.pop()!
    for (const dependent of dependents.get(id) ?? []) {
      if (bad.has(dependent)) continue
      bad.add(dependent)
      rejected.push(new InvalidEntry({ entryId: dependent, reason: `it depends on invalid entry ${id}` }))
      queue.push(dependent)
    }
  }
}

/**
 * Why an entry whose store parent or pinned settings tip is not below it in the tree is refused.
 * Peers send entries by tree height (then ID), parents first, and store each page on arrival: such an
 * entry (an honest one names ancestors only) would come before what it depends on, be refused by
 * every peer pulling from a node that holds it, and stop their pulls at that page for good.
 */
const belowEntry = (what: string, height: number, entryHeight: number): string =>
  `${what} is at tree height ${height}, not below the entry's ${entryHeight}: an entry depends only on entries below it`

/** A plain store delta as a Doc, or the reason it is not one (worded as `plainCodec` words it). */
const plainDelta = (data: Uint8Array): Doc | string => {
  try {
    return Doc.decode(data)
  } catch (e) {
    return e instanceof DocFormatError ? e.message : String(e)
  }
}

/**
 * The checks that need no settings: structure, signature present, parents present in this tree with
 * the height one more than the highest, store parents, well-formed plain deltas, pinned tips.
 * Returns the reason the entry is invalid, or what the settings checks need.
 */
const structureOf = (
  e: StoredEntry,
  meta: EntryMetadata | undefined,
  find: (id: string) => StoredEntry | undefined,
  overlay: ReadonlyMap<string, StoredEntry>,
  parseDeltas: boolean
): Structure | string => {
  const entry = e.entry
  if (e.bytes.length > MAX_ENTRY_BYTES) {
    return `the entry is ${e.bytes.length} bytes, over the ${MAX_ENTRY_BYTES} one sync message can carry; keep large values outside the database and store a reference`
  }
  const structural = Entry.validate(entry)
  if (structural !== undefined) return structural
  if (entry.sig.sig === undefined) return "the entry is not signed"
  const deps: Array<string> = []
  const root = Entry.isRoot(entry)
  // parents: present, same tree, and the height is one more than the highest
  let maxParent = -1
  for (const parent of entry.tree.parents) {
    const p = find(parent)
    if (p === undefined) return `unknown parent ${parent}`
    if (p.treeId !== e.treeId) return `parent ${parent} belongs to another database`
    if (overlay.has(parent)) deps.push(parent)
    maxParent = Math.max(maxParent, p.height)
  }
  if (!root) {
    const r = find(e.treeId)
    if (r === undefined || !Entry.isRoot(r.entry)) return `unknown database root ${e.treeId}`
  }
  if (e.height !== maxParent + 1) return `height ${e.height} should be ${maxParent + 1}`
  // store parents: present, same tree, touching the same store, lower store height
  let settingsNode: SubTreeNode | undefined
  let settingsDelta: Doc | undefined
  for (const node of entry.subtrees) {
    const h = node.h ?? e.height
    let highest = -1
    for (const parent of node.parents) {
      const p = find(parent)
      if (p === undefined) return `unknown parent ${parent} of store ${node.name}`
      if (p.treeId !== e.treeId) return `store parent ${parent} belongs to another database`
      const theirs = Entry.subtree(p.entry, node.name)
      if (theirs === undefined) return `store parent ${parent} does not touch store ${node.name}`
      if (p.height >= e.height) return belowEntry(`store parent ${parent} of store ${node.name}`, p.height, e.height)
      highest = Math.max(highest, theirs.h ?? p.height)
      if (overlay.has(parent)) deps.push(parent)
    }
    if (highest >= h) return `store ${node.name} height must grow`
    if (h > FREE_STORE_HEIGHT && h > Math.max(e.height, highest + 1))
      return `store ${node.name} height ${h} jumps: past ${FREE_STORE_HEIGHT} a store height is at most one above its store parents' or the entry's`
    if (node.data !== undefined && node.name !== Entry.ROOT && (parseDeltas || node.name === Entry.SETTINGS)) {
      // every plain store delta must be a well-formed Doc
      const delta = plainDelta(node.data)
      if (typeof delta === "string") return delta
      if (node.name === Entry.SETTINGS) settingsDelta = delta
    }
    if (node.name === Entry.SETTINGS) settingsNode = node
  }
  // the settings the entry pins: each tip stored already or in this batch (then a dependency), so an
  // entry is never authorised by settings that were not stored, even when their fold is cached
  if (!root && entry.tree.metadata !== undefined && meta === undefined) return "malformed metadata"
  const tips = meta?.settings_tips ?? []
  // only the root may start auth from nothing; every later entry pins the settings it was written under
  if (!root && tips.length === 0) return "the entry pins no settings tips"
  if (!Entry.isCanonicalIdList(tips)) return "pinned settings tips must be sorted and without duplicates"
  if (tips.length > MAX_SETTINGS_TIPS) return `an entry pins at most ${MAX_SETTINGS_TIPS} settings tips, this one ${tips.length}`
  for (const t of tips) {
    const tip = find(t)
    if (tip === undefined || tip.treeId !== e.treeId) return `pinned settings tip ${t} is not a known entry of this database`
    if (tip.height >= e.height) return belowEntry(`pinned settings tip ${t}`, tip.height, e.height)
    if (overlay.has(t)) deps.push(t)
  }
  return { deps, root, tips, settingsNode, settingsDelta }
}

/** The signer checks under the pinned settings (and the change rules when the entry edits `_settings`). */
const authorise = (e: StoredEntry, s: Structure, pinned: Doc): Pending | string => {
  const entry = e.entry
  const settingsNode = s.settingsNode
  const before = s.root ? Settings.authOf(pinned) : pinnedAuthOf(pinned)
  // what a settings change writes: all `after` is read for, unless the auth before is not there
  // (then `after` is the auth the entry is checked under, read whole)
  const touched = settingsNode !== undefined ? Settings.touchedBy(s.settingsDelta ?? Doc.empty()) : undefined
  let effective = before
  let after = before
  if (s.settingsDelta !== undefined) {
    after = Settings.authOf(pinned.mergeSharing(s.settingsDelta), before._tag === "Present" ? touched : undefined)
    if (before._tag !== "Present") effective = after
  }
  if (effective._tag !== "Present") return "the database has no auth configured"
  const candidates = Settings.candidates(effective.auth, entry.sig.key)
  if (candidates.length === 0) {
    return Settings.isConfigured(effective.auth)
      ? "the signing key is not an active key of this database"
      : "the database has no auth configured"
  }
  const allowed = candidates.filter((c) =>
    settingsNode !== undefined ? Permission.canAdmin(c.permission) : Permission.canWrite(c.permission)
  )
  if (allowed.length === 0)
    return `the signing key has ${Permission.format(candidates[0]!.permission)}; ${settingsNode !== undefined ? "changing _settings needs Admin" : "writing needs Write"}`
  if (touched !== undefined) {
    // no data: nothing touched (before and after are the same state)
    const permitted = allowed.filter((c) => Settings.checkChange(before, after, c.permission, touched) === undefined)
    if (permitted.length === 0) return Settings.checkChange(before, after, allowed[0]!.permission, touched)!
    return { entry: e, candidates: permitted, deps: s.deps }
  }
  return { entry: e, candidates: allowed, deps: s.deps }
}
