/**
 * The `_settings` state an entry pins (its metadata's settings tips): the fold of every `_settings`
 * entry reachable from those tips, against which the entry is validated and a transaction is
 * signed. Immutable once folded, so kept in the StateCache (emptied when it would pass 10,000 states
 * or 4 million characters of keys).
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Doc } from "../core/Doc.js"
import type { StoredEntry } from "../core/Entry.js"
import * as Entry from "../core/Entry.js"
import { compareIds } from "../schema/Ids.js"
import { InvalidEntry, type StorageError } from "../schema/Errors.js"
import { Storage } from "../services/Storage.js"
import { StateCache } from "./StateCache.js"
import { plainCodec } from "./StoreState.js"

/** The most characters of keys the settings cache holds before it is emptied (~8 MB). */
const SETTINGS_KEY_CHARS = 4_000_000

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
    if (hit !== undefined) return hit
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
    // bounded by count and by the length of the keys (up to MAX_SETTINGS_TIPS IDs each)
    if (cache.settings.size >= 10_000 || cache.settingsKeys.chars + key.length > SETTINGS_KEY_CHARS) {
      cache.settings.clear()
      cache.settingsKeys.chars = 0
    }
    cache.settings.set(key, doc)
    cache.settingsKeys.chars += key.length
    return doc
  })

const settingsKey = (treeId: string, tips: ReadonlyArray<string>): string =>
  `${treeId}\u0000${(tips.length > 1 ? [...tips].sort(compareIds) : tips).join(",")}`

/** The cached `_settings` state pinned by these tips, if `settingsAt` already folded it (synchronous). */
export const cachedSettingsAt = (
  cache: Context.Tag.Service<StateCache>,
  treeId: string,
  tips: ReadonlyArray<string>
): Doc | undefined => cache.settings.get(settingsKey(treeId, tips))
