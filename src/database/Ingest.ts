/**
 * The one way entries get stored: local commits and entries received from peers alike are checked
 * here (structure, parents present and in the same tree, incremental heights, pinned settings,
 * signer authorised with enough permission, settings-change rules, signature) and only then put,
 * in one atomic batch, and announced as a write event.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Doc } from "../core/Doc.js"
import type { StoredEntry } from "../core/Entry.js"
import * as Entry from "../core/Entry.js"
import * as Settings from "../core/Settings.js"
import { compareIds } from "../schema/Ids.js"
import * as Permission from "../schema/Permission.js"
import { InvalidEntry, type StorageError } from "../schema/Errors.js"
import { Auth } from "../services/Auth.js"
import { Storage } from "../services/Storage.js"
import { type WriteSource, WriteEvents } from "../services/WriteEvents.js"
import { type Lookup, lookupWith, plainCodec, settingsAt, StateCache } from "./StoreState.js"

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
 * Store entries this process has just signed itself: every check but the signature's runs (the
 * signature was made here with the key the checks authorise, so verifying it again proves nothing).
 */
export const ingestSignedHere = (
  entries: ReadonlyArray<StoredEntry>
): Effect.Effect<ReadonlyArray<string>, InvalidEntry | StorageError, IngestEnv> =>
  Effect.gen(function* () {
    const { valid, rejected } = yield* check(entries, false)
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

const store = (valid: ReadonlyArray<StoredEntry>, source: WriteSource, peer: string | undefined) =>
  Effect.gen(function* () {
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
  })

interface Pending {
  readonly entry: StoredEntry
  /** Public keys that may have signed it, each with its permission. */
  readonly candidates: ReadonlyArray<Settings.Candidate>
  /** Entries this one depends on inside the batch (parents, store parents, pinned settings). */
  readonly deps: ReadonlyArray<string>
}

const check = (
  input: ReadonlyArray<StoredEntry>,
  verifySignatures: boolean
): Effect.Effect<{ valid: Array<StoredEntry>; rejected: Array<InvalidEntry> }, StorageError, Storage | Auth | StateCache> =>
  Effect.gen(function* () {
    const storage = yield* Storage
    const auth = yield* Auth
    const unique = new Map<string, StoredEntry>()
    for (const e of input) unique.set(e.id, e)
    const already = yield* storage.has([...unique.keys()])
    const batch = [...unique.values()]
      .filter((e) => !already.has(e.id))
      .sort((a, b) => (a.height !== b.height ? a.height - b.height : compareIds(a.id, b.id)))
    const overlay = new Map(batch.map((e) => [e.id, e]))
    const lookup = yield* lookupWith(overlay)
    const rejected: Array<InvalidEntry> = []
    const pending: Array<Pending> = []
    for (const e of batch) {
      const result = yield* prepare(e, lookup, overlay).pipe(
        Effect.map((p): Pending | InvalidEntry => p),
        Effect.catchTag("InvalidEntry", (err) => Effect.succeed(err))
      )
      if (result instanceof InvalidEntry) rejected.push(withId(result, e.id))
      else pending.push(result)
    }
    // verify every candidate signature in one batch
    const items = pending.flatMap((p) =>
      p.candidates.map((c) => ({ publicKey: c.pubkey, signature: p.entry.entry.sig.sig ?? "", message: Entry.signingBytes(p.entry.entry) }))
    )
    const results = verifySignatures ? yield* auth.verifyBatch(items) : items.map(() => true)
    const bad = new Set(rejected.map((r) => r.entryId!))
    const valid: Array<StoredEntry> = []
    let k = 0
    for (const p of pending) {
      let ok = false
      for (let i = 0; i < p.candidates.length; i++) if (results[k++]) ok = true
      const badDep = p.deps.find((d) => bad.has(d))
      if (!ok) {
        bad.add(p.entry.id)
        rejected.push(new InvalidEntry({ entryId: p.entry.id, reason: "the signature does not verify" }))
      } else if (badDep !== undefined) {
        bad.add(p.entry.id)
        rejected.push(new InvalidEntry({ entryId: p.entry.id, reason: `it depends on invalid entry ${badDep}` }))
      } else valid.push(p.entry)
    }
    return { valid, rejected }
  })

const withId = (e: InvalidEntry, entryId: string) =>
  e.entryId === entryId ? e : new InvalidEntry({ entryId, reason: e.reason })

const fail = (reason: string) => Effect.fail(new InvalidEntry({ reason }))

const prepare = (
  e: StoredEntry,
  lookup: Lookup,
  overlay: ReadonlyMap<string, StoredEntry>
): Effect.Effect<Pending, InvalidEntry | StorageError, StateCache> =>
  Effect.gen(function* () {
    const entry = e.entry
    const structural = Entry.validate(entry)
    if (structural !== undefined) return yield* fail(structural)
    if (entry.sig.sig === undefined) return yield* fail("the entry is not signed")
    const deps: Array<string> = []
    const root = Entry.isRoot(entry)
    // parents: present, same tree, and the height is one more than the highest
    let maxParent = -1
    for (const parent of entry.tree.parents) {
      const p = yield* lookup(parent)
      if (Option.isNone(p)) return yield* fail(`unknown parent ${parent}`)
      if (p.value.treeId !== e.treeId) return yield* fail(`parent ${parent} belongs to another database`)
      if (overlay.has(parent)) deps.push(parent)
      maxParent = Math.max(maxParent, p.value.height)
    }
    if (!root) {
      const r = yield* lookup(e.treeId)
      if (Option.isNone(r) || !Entry.isRoot(r.value.entry)) return yield* fail(`unknown database root ${e.treeId}`)
    }
    if (e.height !== maxParent + 1) return yield* fail(`height ${e.height} should be ${maxParent + 1}`)
    // store parents: present, same tree, touching the same store, lower store height
    for (const node of entry.subtrees) {
      const h = Entry.storeHeight(entry, node.name)
      for (const parent of node.parents) {
        const p = yield* lookup(parent)
        if (Option.isNone(p)) return yield* fail(`unknown parent ${parent} of store ${node.name}`)
        if (p.value.treeId !== e.treeId) return yield* fail(`store parent ${parent} belongs to another database`)
        if (Entry.subtree(p.value.entry, node.name) === undefined)
          return yield* fail(`store parent ${parent} does not touch store ${node.name}`)
        if (Entry.storeHeight(p.value.entry, node.name) >= h) return yield* fail(`store ${node.name} height must grow`)
        if (overlay.has(parent)) deps.push(parent)
      }
      if (node.data !== undefined && node.name !== Entry.ROOT) {
        // every plain store delta must be a well-formed Doc
        yield* plainCodec.decode(node.data)
      }
    }
    // the settings the entry pins, and the settings it would produce
    const meta = Entry.metadata(entry)
    if (!root && entry.tree.metadata !== undefined && meta === undefined) return yield* fail("malformed metadata")
    const tips = meta?.settings_tips ?? []
    // only the root may start auth from nothing; every later entry pins the settings it was written under
    if (!root && tips.length === 0) return yield* fail("the entry pins no settings tips")
    for (const t of tips) if (overlay.has(t)) deps.push(t)
    const pinned = root ? Doc.empty() : yield* settingsAt(e.treeId, tips, lookup)
    const settingsNode = Entry.subtree(entry, Entry.SETTINGS)
    const before = Settings.authOf(pinned)
    let effective = before
    let after = before
    if (settingsNode?.data !== undefined) {
      after = Settings.authOf(pinned.merge(yield* plainCodec.decode(settingsNode.data)))
      if (before._tag !== "Present") effective = after
    }
    if (effective._tag !== "Present" || !Settings.isConfigured(effective.auth))
      return yield* fail("the database has no auth configured")
    const candidates = Settings.candidates(effective.auth, entry.sig.key)
    if (candidates.length === 0) return yield* fail("the signing key is not an active key of this database")
    const allowed = candidates.filter((c) =>
      settingsNode !== undefined ? Permission.canAdmin(c.permission) : Permission.canWrite(c.permission)
    )
    if (allowed.length === 0)
      return yield* fail(
        `the signing key has ${Permission.format(candidates[0]!.permission)}; ${settingsNode !== undefined ? "changing _settings needs Admin" : "writing needs Write"}`
      )
    if (settingsNode !== undefined) {
      const permitted = allowed.filter((c) => Settings.checkChange(before, after, c.permission) === undefined)
      if (permitted.length === 0) return yield* fail(Settings.checkChange(before, after, allowed[0]!.permission)!)
      return { entry: e, candidates: permitted, deps }
    }
    return { entry: e, candidates: allowed, deps }
  })
