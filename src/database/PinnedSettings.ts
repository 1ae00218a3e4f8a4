/**
 * The `_settings` state an entry pins (its metadata's settings tips): the fold of every `_settings`
 * entry reachable from those tips, against which the entry is validated and a transaction is
 * signed. Immutable once folded, so kept in the StateCache (the oldest dropped past 10,000 states,
 * 4 million characters of keys or a million slots); a new settings entry's state is its parents'
 * plus its delta.
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Doc } from "../core/Doc.js"
import type { StoredEntry } from "../core/Entry.js"
import * as Entry from "../core/Entry.js"
import * as Settings from "../core/Settings.js"
import { compareIds } from "../schema/Ids.js"
import { InvalidEntry, type StorageError } from "../schema/Errors.js"
import { Storage } from "../services/Storage.js"
import { StateCache } from "./StateCache.js"
import { plainCodec } from "./StoreState.js"

/** The most settings states cached. */
const SETTINGS_STATES = 10_000
/** The most characters of keys the settings cache holds (~8 MB). */
const SETTINGS_KEY_CHARS = 4_000_000
/** The most slots (map keys and list items, as `Doc.slots` counts them) its states hold together. */
const SETTINGS_SLOTS = 1_000_000

/** Where entries are looked up while validating a batch: the batch itself first, then storage. */
export type Lookup = (id: string) => Effect.Effect<Option.Option<StoredEntry>, StorageError>

/** A lookup over storage with an overlay of not-yet-stored entries. */
export const lookupWith = (overlay: ReadonlyMap<string, StoredEntry>) =>
  Effect.map(Storage, (storage): Lookup => (id) => {
    const hit = overlay.get(id)
    return hit !== undefined ? Effect.succeed(Option.some(hit)) : storage.get(id)
  })

/**
 * The `_settings` state pinned by a list of settings tips: the fold of every `_settings` entry
 * reachable from them through store parents. Cached, since it never changes.
 */
export const settingsAt = (
  treeId: string,
  tips: ReadonlyArray<string>,
  lookup: Lookup
): Effect.Effect<Doc, StorageError | InvalidEntry, StateCache> =>
  Effect.gen(function* () {
    const cache = yield* StateCache
    const key = settingsKey(treeId, tips)
    const hit = cache.settings.get(key)
    if (hit !== undefined) return hit.doc
    // the usual miss: one new settings entry (a grant, a rename) on top of tips folded already
    if (tips.length === 1) {
      const stacked = yield* onTopOfParents(cache, treeId, tips[0]!, lookup)
      if (stacked !== undefined) return remember(cache, key, stacked.doc, stacked.slots)
    }
    const seen = new Map<string, StoredEntry>()
    const stack = [...tips]
    while (stack.length > 0) {
      const id = stack.pop()!
      if (seen.has(id)) continue
      const found = yield* lookup(id)
      if (Option.isNone(found) || found.value.treeId !== treeId)
        return yield* new InvalidEntry({ reason: `pinned settings tip ${id} is not a known entry of this database` })
      const node = Entry.subtree(found.value.entry, Entry.SETTINGS)
      if (node === undefined)
        return yield* new InvalidEntry({ reason: `pinned settings tip ${id} does not touch _settings` })
      seen.set(id, found.value)
      stack.push(...node.parents)
    }
    const ordered = [...seen.values()].sort((a, b) => {
      const ha = Entry.storeHeight(a.entry, Entry.SETTINGS)
      const hb = Entry.storeHeight(b.entry, Entry.SETTINGS)
      return ha !== hb ? ha - hb : compareIds(a.id, b.id)
    })
    const doc = Doc.empty()
    for (const e of ordered) {
      const data = Entry.subtree(e.entry, Entry.SETTINGS)?.data
      if (data !== undefined) doc.mergeInPlace(yield* plainCodec.decode(data))
    }
    return remember(cache, key, doc, doc.slots())
  })

/**
 * The state at one settings entry from the cached state at its store parents: that state with the
 * entry's delta merged last, since its store height is above every ancestor's (so the fold of all of
 * them ends with it). A grant then costs one delta, not a refold of the whole settings history,
 * and the new state shares every part of its parents' the delta leaves alone (both are immutable):
 * what it holds of its own (`slots`) is the maps on the delta's paths, copied, and the delta.
 * Undefined when the entry or its parents' state is not at hand (the caller folds in full).
 */
const onTopOfParents = (cache: Context.Tag.Service<StateCache>, treeId: string, tip: string, lookup: Lookup) =>
  Effect.gen(function* () {
    const found = yield* lookup(tip)
    if (Option.isNone(found) || found.value.treeId !== treeId) return undefined
    const node = Entry.subtree(found.value.entry, Entry.SETTINGS)
    if (node === undefined || node.parents.length === 0) return undefined
    const below = cache.settings.get(settingsKey(treeId, node.parents))?.doc
    if (below === undefined) return undefined
    if (node.data === undefined) return { doc: below, slots: 0 }
    const copied = { slots: 0 }
    const delta = yield* plainCodec.decode(node.data)
    const doc = below.mergeSharing(delta, copied)
    // and its auth from theirs, when read already: the keys the delta writes read again
    const belowAuth = authCache.get(below)
    const auth = belowAuth !== undefined ? Settings.authAfter(belowAuth, doc, Settings.touchedBy(delta)) : undefined
    if (auth !== undefined) authCache.set(doc, auth)
    return { doc, slots: copied.slots }
  })

/** Auth read from the pinned settings states (immutable), once per state. */
const authCache = new WeakMap<Doc, Settings.AuthState>()

/** The auth of a pinned settings state (one `settingsAt` returned); computed once per state. */
export const pinnedAuthOf = (pinned: Doc): Settings.AuthState => {
  let auth = authCache.get(pinned)
  if (auth === undefined) {
    auth = Settings.authOf(pinned)
    authCache.set(pinned, auth)
  }
  return auth
}

/**
 * Keep a folded state. The cache is bounded by states, by the characters of their keys (up to
 * MAX_SETTINGS_TIPS IDs each) and by the slots they hold of their own (a database with many keys
 * has large states, one per settings change): the oldest go first, as the newest are what commits
 * and arriving entries pin.
 */
const remember = (cache: Context.Tag.Service<StateCache>, key: string, doc: Doc, slots: number): Doc => {
  const held = cache.settingsHeld
  const replaced = cache.settings.get(key)
  if (replaced !== undefined) {
    cache.settings.delete(key)
    held.chars -= key.length
    held.slots -= replaced.slots
  }
  cache.settings.set(key, { doc, slots })
  held.chars += key.length
  held.slots += slots
  for (const [k, d] of cache.settings) {
    if (cache.settings.size <= SETTINGS_STATES && held.chars <= SETTINGS_KEY_CHARS && held.slots <= SETTINGS_SLOTS) break
    if (k === key) break
    cache.settings.delete(k)
    held.chars -= k.length
    held.slots -= d.slots
  }
  return doc
}

const settingsKey = (treeId: string, tips: ReadonlyArray<string>): string =>
  `${treeId}\u0000${(tips.length > 1 ? [...tips].sort(compareIds) : tips).join(",")}`

/** The cached `_settings` state pinned by these tips, if `settingsAt` already folded it (synchronous). */
export const cachedSettingsAt = (
  cache: Context.Tag.Service<StateCache>,
  treeId: string,
  tips: ReadonlyArray<string>
): Doc | undefined => cache.settings.get(settingsKey(treeId, tips))?.doc
