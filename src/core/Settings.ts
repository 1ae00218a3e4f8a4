/**
 * The `_settings` store read as auth: keys, the global grant, signer resolution and the rules a
 * settings change must obey. Pure functions over the settings Doc.
 */
import type { AuthKey, AuthSettings, SigKey } from "../schema/Auth.js"
import { hintOf } from "../schema/Auth.js"
import * as Permission from "../schema/Permission.js"
import { Deleted, Doc } from "./Doc.js"

/** The auth section of a settings state: absent, corrupt (not a map), or read. */
export type AuthState =
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Corrupt"; readonly reason: string }
  | { readonly _tag: "Present"; readonly auth: AuthSettings }

/** One way a signer can be authorised: the public key to verify with and the permission it grants. */
export interface Candidate {
  readonly pubkey: string
  readonly permission: Permission.Permission
}

/**
 * Read `auth` from a settings Doc: every key, or only the keys `only` names (unless it says `all`),
 * which is all `checkChange` looks at when given the same AuthTouch: a grant in a database of many
 * keys then reads one key, not all of them.
 */
export const authOf = (settings: Doc, only?: AuthTouch): AuthState => {
  const raw = settings.rawEntries().get("auth")
  if (raw === undefined) return { _tag: "Missing" }
  if (!(raw instanceof Doc)) return { _tag: "Corrupt", reason: "auth is not a map" }
  const keys: Record<string, AuthKey> = {}
  const keysDoc = raw.get("keys")
  if (keysDoc !== undefined && !(keysDoc instanceof Doc)) return { _tag: "Corrupt", reason: "auth.keys is not a map" }
  if (keysDoc instanceof Doc) {
    for (const pubkey of only !== undefined && !only.all ? [...only.keys].sort() : keysDoc.keys()) {
      const key = readAuthKey(keysDoc.get(pubkey))
      if (key !== undefined) keys[pubkey] = key
    }
  }
  const global = readAuthKey(raw.get("global"))
  return { _tag: "Present", auth: global !== undefined ? { keys, global } : { keys } }
}

/**
 * The auth after a settings change: `state` (whose auth is `before`) with `delta` merged on top,
 * read only for the keys the delta writes (`touched`, all `checkChange` looks at), or whole when
 * there was no auth before (then it is the auth the change itself is checked under).
 */
export const authAfterChange = (state: Doc, before: AuthState, delta: Doc, touched: AuthTouch): AuthState =>
  authOf(state.mergeSharing(delta), before._tag === "Present" ? touched : undefined)

/**
 * The auth of a settings state from the auth of the state below it, given what the delta between
 * them writes: the keys it names read again, the rest kept. Undefined when it replaces auth or its
 * keys as a whole, or there was no auth below (read the state whole then).
 */
export const authAfter = (below: AuthState, after: Doc, touched: AuthTouch): AuthState | undefined => {
  if (touched.all || below._tag !== "Present") return undefined
  if (touched.keys.size === 0 && !touched.global) return below
  const read = authOf(after, touched)
  if (read._tag !== "Present") return read
  const keys = { ...below.auth.keys }
  for (const pubkey of touched.keys) {
    const key = read.auth.keys[pubkey]
    if (key !== undefined) keys[pubkey] = key
    else delete keys[pubkey]
  }
  return { _tag: "Present", auth: read.auth.global !== undefined ? { keys, global: read.auth.global } : { keys } }
}

/** Whether auth has anything that can sign (a key or a global grant). */
export const isConfigured = (auth: AuthSettings): boolean => {
  if (auth.global !== undefined) return true
  for (const _ in auth.keys) return true
  return false
}

/** Whether a database is open to all: its auth holds an active global grant (anyone may read, and push). */
export const isOpen = (state: AuthState): boolean => state._tag === "Present" && activeGlobal(state.auth) !== undefined

/** The active global grant, if any. */
export const activeGlobal = (auth: AuthSettings): AuthKey | undefined =>
  auth.global !== undefined && auth.global.status === "Active" ? auth.global : undefined

/**
 * The ways a signature key can be authorised under these settings: by public key (an active key),
 * by name (every active key of that name), or under the active global grant with its real key.
 */
export const candidates = (auth: AuthSettings, sigKey: SigKey): ReadonlyArray<Candidate> => {
  if (!("Direct" in sigKey)) return [] // delegation is not resolved yet
  const hint = hintOf(sigKey)
  if (hint.is_global === true) {
    const g = activeGlobal(auth)
    return g !== undefined && hint.pubkey !== undefined ? [{ pubkey: hint.pubkey, permission: g.permissions }] : []
  }
  if (hint.pubkey !== undefined) {
    const k = auth.keys[hint.pubkey]
    return k !== undefined && k.status === "Active" ? [{ pubkey: hint.pubkey, permission: k.permissions }] : []
  }
  if (hint.name !== undefined) {
    // in public-key order, whatever order the keys were read in
    return Object.entries(auth.keys)
      .filter(([, k]) => k.name === hint.name && k.status === "Active")
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([pubkey, k]) => ({ pubkey, permission: k.permissions }))
  }
  return []
}

/**
 * Of `signers`, the one whose own key in auth is active with the most authority (the first of
 * equals), with that permission; undefined when none is an active key.
 */
export const strongest = <S extends { readonly publicKey: string }>(
  auth: AuthSettings,
  signers: Iterable<S>
): { readonly signer: S; readonly permission: Permission.Permission } | undefined => {
  let best: { readonly signer: S; readonly permission: Permission.Permission } | undefined
  for (const signer of signers) {
    const own = auth.keys[signer.publicKey]
    if (own === undefined || own.status !== "Active") continue
    if (best === undefined || Permission.compare(own.permissions, best.permission) > 0) best = { signer, permission: own.permissions }
  }
  return best
}

/** The permission a public key holds: its own active key, else the active global grant, else none. */
export const permissionOf = (auth: AuthSettings, pubkey: string): Permission.Permission | undefined => {
  const k = auth.keys[pubkey]
  if (k !== undefined) return k.status === "Active" ? k.permissions : undefined
  return activeGlobal(auth)?.permissions
}

/**
 * What a `_settings` delta writes in auth: the keys it names, whether it names the global grant, or
 * `all` when it replaces auth or auth.keys as a whole (an atomic Doc, a tombstone or another value).
 * `partial` names the first key record it writes other than whole (see `isWholeRecord`).
 */
export interface AuthTouch {
  readonly all: boolean
  readonly keys: ReadonlySet<string>
  readonly global: boolean
  readonly partial?: string
}

const NO_KEYS: ReadonlySet<string> = new Set()

/**
 * A key record as a delta may write it: one atomic Doc that reads as a key, or a tombstone. A record
 * written in part (one field, or a non-atomic Doc) would merge field by field with a concurrent write
 * of the same key, each checked alone: two edits within an Admin(5)'s authority (Write(10) to
 * Write(0) on one fork, to Admin(10) on another) would merge into Admin(0). Whole records merge
 * as one of them, each checked.
 */
const isWholeRecord = (value: unknown): boolean =>
  value === Deleted || (value instanceof Doc && value.atomic && readAuthKey(value) !== undefined)

/** The auth a `_settings` delta writes (see AuthTouch). */
export const touchedBy = (delta: Doc): AuthTouch => {
  const auth = delta.rawEntries().get("auth")
  if (auth === undefined) return { all: false, keys: NO_KEYS, global: false }
  if (!(auth instanceof Doc)) return { all: true, keys: NO_KEYS, global: true }
  const partial = partialRecord(auth)
  const withPartial = partial !== undefined ? { partial } : {}
  if (auth.atomic) return { all: true, keys: NO_KEYS, global: true, ...withPartial }
  const global = auth.rawEntries().has("global")
  const keys = auth.rawEntries().get("keys")
  if (keys === undefined) return { all: false, keys: NO_KEYS, global, ...withPartial }
  if (!(keys instanceof Doc) || keys.atomic) return { all: true, keys: NO_KEYS, global, ...withPartial }
  return { all: false, keys: new Set(keys.rawEntries().keys()), global, ...withPartial }
}

/** The path of the first key record (or global grant) an auth delta writes other than whole. */
const partialRecord = (auth: Doc): string | undefined => {
  const global = auth.rawEntries().get("global")
  if (global !== undefined && !isWholeRecord(global)) return "auth.global"
  const keys = auth.rawEntries().get("keys")
  if (keys instanceof Doc) {
    for (const [pubkey, record] of keys.rawEntries()) if (!isWholeRecord(record)) return `auth.keys.${pubkey}`
  }
  return undefined
}

/**
 * The rules a settings change must obey, given auth before and after and the signer's permission:
 * auth stays a map; only Admin may change settings; an admin may not create, modify or revoke a key
 * (or the global grant) that has, or would get, more authority than its own.
 * `touched` (what the delta writes) counts as modified even where it equals the state before: the
 * entry may pin older settings than those it is folded after, so restating a key's old value (a
 * revoked key's Active status, say) is a change all the same.
 * Returns the reason the change is refused, or undefined.
 */
export const checkChange = (
  before: AuthState,
  after: AuthState,
  signer: Permission.Permission,
  touched?: AuthTouch
): string | undefined => {
  if (after._tag === "Corrupt") return after.reason
  if (before._tag === "Present" && after._tag === "Missing") return "auth must not be deleted"
  if (!Permission.canAdmin(signer)) return `changing _settings needs Admin, the signer has ${Permission.format(signer)}`
  if (touched?.partial !== undefined)
    return `${touched.partial} must be written whole: one atomic record with permissions and status (or a tombstone)`
  const old: AuthSettings = before._tag === "Present" ? before.auth : { keys: {} }
  const now: AuthSettings = after._tag === "Present" ? after.auth : { keys: {} }
  const tooHigh = (p: Permission.Permission) => Permission.compare(p, signer) > 0
  const changed = (a: AuthKey | undefined, b: AuthKey | undefined) => JSON.stringify(a) !== JSON.stringify(b)
  // when the delta is known, the keys it does not write are the same before and after (both are
  // read from the same pinned state), so only its keys are looked at: a grant in a database of
  // many keys costs one key, not all of them
  const pubkeys = touched !== undefined && touched.all !== true
    ? touched.keys
    : new Set([...Object.keys(old.keys), ...Object.keys(now.keys)].sort())
  for (const pubkey of pubkeys) {
    const a = old.keys[pubkey]
    const b = now.keys[pubkey]
    if (!changed(a, b) && touched?.all !== true && touched?.keys.has(pubkey) !== true) continue
    if (a !== undefined && tooHigh(a.permissions))
      return `a ${Permission.format(signer)} key cannot modify key ${pubkey}, which has ${Permission.format(a.permissions)}`
    if (b !== undefined && tooHigh(b.permissions))
      return `a ${Permission.format(signer)} key cannot grant ${Permission.format(b.permissions)} to ${pubkey}`
  }
  if (changed(old.global, now.global) || touched?.all === true || touched?.global === true) {
    if (old.global !== undefined && tooHigh(old.global.permissions))
      return `a ${Permission.format(signer)} key cannot modify the global grant ${Permission.format(old.global.permissions)}`
    if (now.global !== undefined && tooHigh(now.global.permissions))
      return `a ${Permission.format(signer)} key cannot set the global grant to ${Permission.format(now.global.permissions)}`
  }
  return undefined
}

/** The settings Doc form of an auth key, as stored under `auth.keys.<pubkey>` (an atomic Doc). */
export const authKeyDoc = (key: AuthKey): Doc => {
  const doc = Doc.empty()
  doc.atomic = true
  if (key.name !== undefined) doc.set("name", key.name)
  const perm = Doc.empty()
  perm.set("type", key.permissions.type)
  if (key.permissions.type !== "Read") perm.set("priority", key.permissions.priority)
  doc.set("permissions", perm)
  doc.set("status", key.status)
  return doc
}

const readAuthKey = (value: unknown): AuthKey | undefined => {
  if (!(value instanceof Doc)) return undefined
  const perm = value.get("permissions")
  if (!(perm instanceof Doc)) return undefined
  const type = perm.get("type")
  const priority = perm.get("priority")
  let permissions: Permission.Permission
  if (type === "Read") permissions = Permission.Read
  else if ((type === "Admin" || type === "Write") && Permission.isPriority(priority))
    permissions = type === "Admin" ? Permission.Admin(priority) : Permission.Write(priority)
  else return undefined
  const status = value.get("status")
  if (status !== "Active" && status !== "Revoked") return undefined
  const name = value.get("name")
  return typeof name === "string" ? { name, permissions, status } : { permissions, status }
}
