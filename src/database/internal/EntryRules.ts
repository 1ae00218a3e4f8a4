/**
 * The per-entry rules of ingestion, as pure functions: the structural checks that need no settings
 * (`structureOf`), the signer checks under the pinned settings (`authorise`), and the spreading of a
 * rejection to the entries that depend on it (`rejectDependents`). Separate from `Ingest.ts` so the
 * rules read apart from the pipeline that fetches, verifies and stores (no Effect, no services here).
 */
import { Doc, DocFormatError } from "../../core/Doc.js"
import type { StoredEntry } from "../../core/Entry.js"
import * as Entry from "../../core/Entry.js"
import * as Settings from "../../core/Settings.js"
import type { EntryMetadata, SubTreeNode } from "../../schema/Entry.js"
import { InvalidEntry } from "../../schema/Errors.js"
import * as Permission from "../../schema/Permission.js"
import { pinnedAuthOf } from "../PinnedSettings.js"

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

/** What the checks before the pinned settings found: the entry's dependencies and settings inputs. */
export interface Structure {
  readonly deps: Array<string>
  readonly root: boolean
  readonly tips: ReadonlyArray<string>
  /** The entry's own `_settings` node, and its decoded delta when it carries data. */
  readonly settingsNode: SubTreeNode | undefined
  readonly settingsDelta: Doc | undefined
}

/** An entry past every check but its signature's: who may have signed it, and what it depends on. */
export interface Pending {
  readonly entry: StoredEntry
  /** Public keys that may have signed it, each with its permission. */
  readonly candidates: ReadonlyArray<Settings.Candidate>
  /** Entries this one depends on inside the batch (parents, store parents, pinned settings). */
  readonly deps: ReadonlyArray<string>
}

/**
 * An entry of the batch (`overlay`) or fetched for it (`known`). The two maps are passed down rather
 * than a lookup closure: a closure made per batch is a new call target each batch, for which V8
 * throws away the optimised code of `structureOf` and compiles it again (three times in a bootstrap).
 */
const find = (overlay: ReadonlyMap<string, StoredEntry>, known: ReadonlyMap<string, StoredEntry>, id: string) =>
  overlay.get(id) ?? known.get(id)

/**
 * The checks that need no settings: structure, signature present, parents present in this tree with
 * the height one more than the highest, store parents, well-formed plain deltas, pinned tips.
 * Returns the reason the entry is invalid, or what the settings checks need.
 */
export const structureOf = (
  e: StoredEntry,
  meta: EntryMetadata | undefined,
  overlay: ReadonlyMap<string, StoredEntry>,
  known: ReadonlyMap<string, StoredEntry>,
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
    const p = find(overlay, known, parent)
    if (p === undefined) return `unknown parent ${parent}`
    if (p.treeId !== e.treeId) return `parent ${parent} belongs to another database`
    if (overlay.has(parent)) deps.push(parent)
    maxParent = Math.max(maxParent, p.height)
  }
  if (!root) {
    const r = find(overlay, known, e.treeId)
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
      const p = find(overlay, known, parent)
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
    const tip = find(overlay, known, t)
    if (tip === undefined || tip.treeId !== e.treeId) return `pinned settings tip ${t} is not a known entry of this database`
    if (tip.height >= e.height) return belowEntry(`pinned settings tip ${t}`, tip.height, e.height)
    if (overlay.has(t)) deps.push(t)
  }
  return { deps, root, tips, settingsNode, settingsDelta }
}

/** The signer checks under the pinned settings (and the change rules when the entry edits `_settings`). */
export const authorise = (e: StoredEntry, s: Structure, pinned: Doc): Pending | string => {
  const entry = e.entry
  const settingsNode = s.settingsNode
  const before = s.root ? Settings.authOf(pinned) : pinnedAuthOf(pinned)
  const touched = settingsNode !== undefined ? Settings.touchedBy(s.settingsDelta ?? Doc.empty()) : undefined
  let effective = before
  let after = before
  if (s.settingsDelta !== undefined) {
    after = Settings.authAfterChange(pinned, before, s.settingsDelta, touched!)
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

/**
 * Reject, transitively, every entry that depends on a rejected one (its dependencies are below it,
 * but a verdict such as a failed signature comes after the whole batch was checked), so the
 * verdicts spread along the dependency edges.
 */
export const rejectDependents = (pending: ReadonlyArray<Pending>, bad: Set<string>, rejected: Array<InvalidEntry>) => {
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

// ---------------------------------------------------------------------------------------------
// helpers

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
