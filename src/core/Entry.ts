/**
 * Entries and IDs: canonical building, DAG-CBOR encoding, CIDv1 (dag-cbor, BLAKE3-256) IDs,
 * signing bytes and the reference's structural validation rules. Pure functions.
 */
import * as dagCbor from "@ipld/dag-cbor"
import * as cborg from "cborg"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import { base32 } from "multiformats/bases/base32"
import { CID } from "multiformats/cid"
import * as Digest from "multiformats/hashes/digest"
import type { SigKey } from "../schema/Auth.js"
import type { Entry, EntryMetadata, SubTreeNode } from "../schema/Entry.js"
import { decodeEntryEither } from "../schema/Entry.js"
import { compareIds } from "../schema/Ids.js"
import { blake3 } from "./internal/blake3.js"

/** The multicodec of DAG-CBOR. */
export const DAG_CBOR = 0x71
/** The CBOR tag of a CID link in DAG-CBOR. */
const CID_TAG = 42
/** The multihash code of BLAKE3-256. */
export const BLAKE3 = 0x1e
/** Reserved store names. */
export const SETTINGS = "_settings"
export const INDEX = "_index"
export const ROOT = "_root"

/** An entry that passed decoding and validation, with everything derived from it computed once. */
export interface StoredEntry {
  readonly id: string
  readonly entry: Entry
  /** The DAG-CBOR bytes the ID was computed over. */
  readonly bytes: Uint8Array
  /** The database (tree) this entry belongs to: `tree.root`, or its own ID for a root. */
  readonly treeId: string
  /** The main-tree height. */
  readonly height: number
}

/** What a caller supplies to build an entry; the builder makes it canonical. */
export interface EntryInput {
  readonly root?: string | undefined
  readonly parents: ReadonlyArray<string>
  readonly metadata?: Uint8Array | undefined
  readonly height: number
  readonly subtrees: ReadonlyArray<{
    readonly name: string
    readonly parents: ReadonlyArray<string>
    readonly data?: Uint8Array | undefined
    readonly h?: number | undefined
  }>
  readonly key: SigKey
}

/** Build a canonical, unsigned entry: parents sorted and de-duplicated, subtrees sorted by name, defaults omitted. */
export const make = (input: EntryInput): Entry => ({
  tree: {
    ...(input.root !== undefined ? { root: input.root } : {}),
    parents: sortedUnique(input.parents),
    ...(input.metadata !== undefined ? { metadata: input.metadata } : {}),
    ...(input.height !== 0 ? { h: input.height } : {})
  },
  subtrees: [...input.subtrees]
    .sort((a, b) => compareIds(a.name, b.name))
    .map((s): SubTreeNode => ({
      name: s.name,
      parents: sortedUnique(s.parents),
      ...(s.data !== undefined ? { data: s.data } : {}),
      ...(s.h !== undefined ? { h: s.h } : {})
    })),
  sig: { key: input.key }
})

/** The same entry carrying a signature (standard padded base64). */
export const withSignature = (entry: Entry, sig: string): Entry => ({ ...entry, sig: { ...entry.sig, sig } })

/** The DAG-CBOR encoding of the whole entry, signature included; the ID is computed over these bytes. */
export const encode = (entry: Entry): Uint8Array => dagCbor.encode(toCbor(entry, true))

/** The bytes a signature covers: the entry without `sig.sig` (the key hint stays in). */
export const signingBytes = (entry: Entry): Uint8Array => dagCbor.encode(toCbor(entry, false))

/**
 * The encoding of a signed entry from the signing bytes of the same entry: CBOR is concatenative
 * and `sig` is the first key of the canonical top-level map, so only the `sig` map is re-encoded and
 * swapped in. Equal to `encode(signed)` (which it falls back to if the layout is not the expected one).
 */
export const encodeSigned = (signed: Entry, signing: Uint8Array): Uint8Array => {
  const key = stripUndefined(signed.sig.key)
  const without = unsignedSigMap(key)
  const at = SIG_MAP_OFFSET
  if (
    signed._v !== undefined || signed.sig.sig === undefined || signing.length < at + without.length ||
    !SIG_PREFIX.every((b, i) => signing[i] === b) || !without.every((b, i) => signing[at + i] === b)
  ) return encode(signed)
  const withSig = dagCbor.encode({ key, sig: signed.sig.sig })
  const out = new Uint8Array(signing.length - without.length + withSig.length)
  out.set(signing.subarray(0, at))
  out.set(withSig, at)
  out.set(signing.subarray(at + without.length), at + withSig.length)
  return out
}

/**
 * The signing bytes of a stored entry, cut from its canonical bytes: the inverse of `encodeSigned`
 * (only the `sig` map is re-encoded). Equal to `signingBytes(e.entry)`, which it falls back to when
 * the bytes do not have the expected layout.
 */
export const signingBytesOf = (e: StoredEntry): Uint8Array => {
  // a received entry's signing bytes are asked for twice (verified ahead by sync, then by ingestion):
  // kept per entry, so both get the same array (which nobody may modify)
  let kept = signingKept.get(e)
  if (kept === undefined) {
    kept = cutSigningBytes(e)
    signingKept.set(e, kept)
  }
  return kept
}

const signingKept = new WeakMap<StoredEntry, Uint8Array>()

const cutSigningBytes = (e: StoredEntry): Uint8Array => {
  const signed = e.entry
  const bytes = e.bytes
  if (signed._v !== undefined || signed.sig.sig === undefined) return signingBytes(signed)
  const key = stripUndefined(signed.sig.key)
  const withSig = dagCbor.encode({ key, sig: signed.sig.sig })
  const at = SIG_MAP_OFFSET
  if (bytes.length < at + withSig.length || !startsWith(bytes, SIG_PREFIX, 0) || !startsWith(bytes, withSig, at))
    return signingBytes(signed)
  const without = unsignedSigMap(key)
  const out = new Uint8Array(bytes.length - withSig.length + without.length)
  out.set(bytes.subarray(0, at))
  out.set(without, at)
  out.set(bytes.subarray(at + withSig.length), at + without.length)
  return out
}

/** The encoded `sig` map without a signature, `{key}`: the same for every entry a signer writes, so kept. */
const unsignedSigMaps = new Map<string, Uint8Array>()
const unsignedSigMap = (key: unknown): Uint8Array => {
  const text = JSON.stringify(key)
  let bytes = unsignedSigMaps.get(text)
  if (bytes === undefined) {
    bytes = dagCbor.encode({ key })
    if (unsignedSigMaps.size > 1_000) unsignedSigMaps.clear()
    unsignedSigMaps.set(text, bytes)
  }
  return bytes
}

const startsWith = (bytes: Uint8Array, prefix: ArrayLike<number>, at: number): boolean => {
  for (let i = 0; i < prefix.length; i++) if (bytes[at + i] !== prefix[i]) return false
  return true
}

/** A three-key map whose first key is "sig": how every encoded entry (no `_v`) starts. */
const SIG_PREFIX = [0xa3, 0x63, 0x73, 0x69, 0x67]
const SIG_MAP_OFFSET = SIG_PREFIX.length

/** The CIDv1 string of encoded entry bytes. */
export const idOfBytes = (bytes: Uint8Array): string => {
  const cid = CID.createV1(DAG_CBOR, Digest.create(BLAKE3, blake3(bytes)))
  // the base32 multibase string, as CID#toString gives for a v1 CID, without its per-CID string cache
  const text = base32.encode(cid.bytes)
  // a new ID is soon a parent to encode: keep its CID so encoding the child does not parse the string
  rememberCid(text, cid)
  return text
}

/** The ID of an entry. */
export const id = (entry: Entry): string => idOfBytes(encode(entry))

/** Whether the entry is a database root: a `_root` store, no parents and no `tree.root`. */
export const isRoot = (entry: Entry): boolean =>
  entry.tree.root === undefined && entry.tree.parents.length === 0 && entry.subtrees.some((s) => s.name === ROOT)

/** The main-tree height (0 when omitted). */
export const height = (entry: Entry): number => entry.tree.h ?? 0

/** The height of a store in an entry: its own `h`, or the tree height it inherits. */
export const storeHeight = (entry: Entry, store: string): number => {
  const s = entry.subtrees.find((t) => t.name === store)
  return s?.h ?? height(entry)
}

/** The subtree node of a store, if the entry touches it. */
export const subtree = (entry: Entry, store: string): SubTreeNode | undefined =>
  entry.subtrees.find((s) => s.name === store)

/**
 * Decode DAG-CBOR bytes into a validated StoredEntry, computing its ID over exactly these bytes
 * (or taking `idOfTheseBytes`, when the caller has just computed `idOfBytes(bytes)` itself).
 */
export const decode = (bytes: Uint8Array, idOfTheseBytes?: string): Either.Either<StoredEntry, string> => {
  let raw: unknown
  try {
    raw = dagCbor.decode(bytes)
  } catch (e) {
    return Either.left(`not canonical DAG-CBOR: ${e instanceof Error ? e.message : String(e)}`)
  }
  // The fast structural check accepts only what the schema accepts, building the same value; anything
  // else (including every invalid entry) takes the schema path, which also words the error.
  let entry = fastEntry(raw)
  if (entry === undefined) {
    const plain = fromCbor(raw)
    if (typeof plain === "string") return Either.left(plain)
    const decoded = decodeEntryEither(plain)
    if (Either.isLeft(decoded)) return Either.left(ParseResult.TreeFormatter.formatErrorSync(decoded.left))
    entry = decoded.right
  }
  const reason = validate(entry)
  if (reason !== undefined) return Either.left(reason)
  // One entry, one encoding: bytes that decode but are not what encoding the entry gives (map keys
  // out of order, non-minimal integers, defaults written out) would give the same signed content
  // a second ID.
  if (!sameBytes(encode(entry), bytes)) return Either.left("not in canonical form: re-encoding the entry gives other bytes")
  return Either.right(stored(entry, bytes, idOfTheseBytes))
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * Decode bytes this storage wrote itself, trusting them: CBOR-decode and convert only, with no
 * schema check, no validation and no hashing (the caller supplies the ID it stored them under).
 */
export const decodeTrusted = (bytes: Uint8Array, entryId: string): Either.Either<StoredEntry, string> => {
  let raw: unknown
  try {
    raw = dagCbor.decode(bytes)
  } catch (e) {
    return Either.left(`not DAG-CBOR: ${e instanceof Error ? e.message : String(e)}`)
  }
  let entry: Entry
  try {
    entry = fromCborTrusted(raw as RawEntry)
  } catch (e) {
    return Either.left(`not an entry: ${e instanceof Error ? e.message : String(e)}`)
  }
  return Either.right({ id: entryId, entry, bytes, treeId: entry.tree.root ?? entryId, height: height(entry) })
}

/**
 * DAG-CBOR's decoding rules with every CID link (tag 42) read past and left as null: a fold needs
 * only store names and data, and building the links' CID objects was about 40% of decoding an entry.
 */
const linksSkipped: cborg.DecodeOptions = {
  ...dagCbor.decodeOptions,
  tags: {
    ...dagCbor.decodeOptions.tags,
    [CID_TAG]: (decode: cborg.TagDecodeControl) => {
      decode()
      return null
    }
  }
}

/**
 * The data a store's node carries in entry bytes this storage wrote itself (trusted), read without
 * building the entry: its ID links are skipped, not decoded. Undefined when the entry has no data
 * for the store; Left when the bytes do not decode as an entry.
 */
export const storeDataOfBytes = (bytes: Uint8Array, store: string): Either.Either<Uint8Array | undefined, string> => {
  let raw: unknown
  try {
    raw = cborg.decode(bytes, linksSkipped)
  } catch (e) {
    return Either.left(`not DAG-CBOR: ${e instanceof Error ? e.message : String(e)}`)
  }
  const subtrees = (raw as { readonly subtrees?: unknown } | null)?.subtrees
  if (!Array.isArray(subtrees)) return Either.left("not an entry: no subtrees")
  for (const node of subtrees as ReadonlyArray<{ readonly name?: unknown; readonly data?: unknown }>) {
    if (node?.name !== store) continue
    return Either.right(node.data instanceof Uint8Array ? node.data : undefined)
  }
  return Either.right(undefined)
}

/** Wrap an entry (already valid) with its bytes, ID (when not given, computed over the bytes), tree and height. */
export const stored = (entry: Entry, bytes: Uint8Array = encode(entry), knownId?: string): StoredEntry => {
  const entryId = knownId ?? idOfBytes(bytes)
  return { id: entryId, entry, bytes, treeId: entry.tree.root ?? entryId, height: height(entry) }
}

/**
 * The reference's structural rules plus canonical form. Returns the reason the entry is invalid,
 * or undefined when it is well formed. Parents' existence, heights and signatures are checked elsewhere.
 */
export const validate = (entry: Entry): string | undefined => {
  const hasRootStore = entry.subtrees.some((s) => s.name === ROOT)
  if (hasRootStore && entry.tree.parents.length > 0) return "a _root entry must not have parents"
  if (hasRootStore && entry.tree.root !== undefined) return "a _root entry must not name a root"
  if (!hasRootStore) {
    if (entry.tree.root === undefined) return "a non-root entry must name its root"
    if (entry.tree.parents.length === 0) return "a non-root entry needs at least one parent"
  }
  if (hasRootStore && height(entry) !== 0) return "a root entry has height 0"
  if (!isCanonicalIdList(entry.tree.parents)) return "tree parents must be sorted and without duplicates"
  for (let i = 0; i < entry.subtrees.length; i++) {
    const s = entry.subtrees[i]!
    if (s.name.length === 0) return "a subtree name must not be empty"
    if (i > 0 && compareIds(entry.subtrees[i - 1]!.name, s.name) >= 0)
      return "subtrees must be sorted by name and unique"
    if (!isCanonicalIdList(s.parents)) return `parents of subtree ${s.name} must be sorted and without duplicates`
  }
  return undefined
}

/** Encode entry metadata as the JSON bytes carried in `tree.metadata`. */
export const encodeMetadata = (meta: EntryMetadata): Uint8Array =>
  textEncoder.encode(JSON.stringify({ settings_tips: sortedUnique(meta.settings_tips), entropy: meta.entropy }))

/** Read an entry's metadata; an entry without metadata pins no settings. */
export const metadata = (entry: Entry): EntryMetadata | undefined => {
  if (entry.tree.metadata === undefined) return undefined
  try {
    const parsed = JSON.parse(textDecoder.decode(entry.tree.metadata)) as { settings_tips?: unknown; entropy?: unknown }
    const tips = parsed.settings_tips ?? []
    // the IDs are strings, or the metadata is malformed (as the reference's serde reads it)
    if (!Array.isArray(tips) || !tips.every((t) => typeof t === "string")) return undefined
    return { settings_tips: tips, entropy: typeof parsed.entropy === "number" ? parsed.entropy : null }
  } catch {
    return undefined
  }
}

/** Sort and de-duplicate a list of IDs. */
export const sortedUnique = (ids: ReadonlyArray<string>): Array<string> => {
  const out = [...new Set(ids)]
  out.sort(compareIds)
  return out
}

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

/** Whether IDs are sorted and without duplicates (or empty ones), as parents and pinned tips must be. */
export const isCanonicalIdList = (ids: ReadonlyArray<string>): boolean => {
  for (let i = 0; i < ids.length; i++) {
    if (ids[i]!.length === 0) return false
    if (i > 0 && compareIds(ids[i - 1]!, ids[i]!) >= 0) return false
  }
  return true
}

const cidCache = new Map<string, CID>()
const rememberCid = (s: string, c: CID): void => {
  if (cidCache.size > 100_000) cidCache.clear()
  cidCache.set(s, c)
}
const toCid = (s: string): CID => {
  let c = cidCache.get(s)
  if (c === undefined) {
    c = CID.parse(s)
    rememberCid(s, c)
  }
  return c
}

const toCbor = (entry: Entry, withSig: boolean): Record<string, unknown> => {
  const tree: Record<string, unknown> = { parents: entry.tree.parents.map(toCid) }
  if (entry.tree.root !== undefined) tree.root = toCid(entry.tree.root)
  if (entry.tree.metadata !== undefined) tree.metadata = entry.tree.metadata
  if (entry.tree.h !== undefined && entry.tree.h !== 0) tree.h = entry.tree.h
  const subtrees = entry.subtrees.map((s) => {
    const node: Record<string, unknown> = { name: s.name, parents: s.parents.map(toCid) }
    if (s.data !== undefined) node.data = s.data
    if (s.h !== undefined) node.h = s.h
    return node
  })
  const sig: Record<string, unknown> = { key: stripUndefined(entry.sig.key) }
  if (withSig && entry.sig.sig !== undefined) sig.sig = entry.sig.sig
  return { tree, subtrees, sig }
}

const stripUndefined = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(stripUndefined)
  if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = stripUndefined(v)
    return out
  }
  return value
}

const cidText = new Map<string, string>()

/** The string form of a CID link, cached by its bytes (base32 is the slow part; IDs recur). */
const linkText = (cid: CID): string => {
  const key = String.fromCharCode.apply(null, cid.bytes as unknown as Array<number>)
  let text = cidText.get(key)
  if (text === undefined) {
    text = cid.toString()
    if (cidText.size > 100_000) cidText.clear()
    cidText.set(key, text)
  }
  return text
}

type RawMap = Record<string, unknown>

/** A plain CBOR map whose keys are all among `allowed`. */
const isMapOf = (v: unknown, allowed: ReadonlySet<string>): v is RawMap => {
  if (v === null || typeof v !== "object" || Object.getPrototypeOf(v) !== Object.prototype) return false
  for (const k in v) if (!allowed.has(k)) return false
  return Object.getOwnPropertySymbols(v).length === 0
}

const isHeight = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0

/** An entry ID from a CIDv1 dag-cbor link, or undefined. */
const fastLink = (v: unknown): string | undefined => {
  const cid = CID.asCID(v)
  return cid !== null && cid.version === 1 && cid.code === DAG_CBOR ? linkText(cid) : undefined
}

const fastLinks = (v: unknown): Array<string> | undefined => {
  if (!Array.isArray(v)) return undefined
  const out = new Array<string>(v.length)
  for (let i = 0; i < v.length; i++) {
    const id = fastLink(v[i])
    if (id === undefined) return undefined
    out[i] = id
  }
  return out
}

const ENTRY_KEYS = new Set(["_v", "tree", "subtrees", "sig"])
const TREE_KEYS = new Set(["root", "parents", "metadata", "h"])
const SUBTREE_KEYS = new Set(["name", "parents", "data", "h"])
const SIG_KEYS = new Set(["sig", "key"])
const DIRECT_KEYS = new Set(["Direct"])
const HINT_WRAPPER_KEYS = new Set(["hint"])
const HINT_KEYS = new Set(["pubkey", "name", "is_global"])
const PUBKEY = /^ed25519:[A-Za-z0-9+/]{43}=$/

/**
 * The common shape of a well-formed entry (direct signer), checked by hand and built field by field
 * in the schema's order; undefined for anything else, which then goes through the Entry schema.
 */
const fastEntry = (raw: unknown): Entry | undefined => {
  if (!isMapOf(raw, ENTRY_KEYS)) return undefined
  if ("_v" in raw && raw._v !== 0) return undefined
  const t = raw.tree
  if (!isMapOf(t, TREE_KEYS)) return undefined
  const parents = fastLinks(t.parents)
  if (parents === undefined) return undefined
  const root = "root" in t ? fastLink(t.root) : undefined
  if ("root" in t && root === undefined) return undefined
  const tree: { root?: string; parents: Array<string>; metadata?: Uint8Array; h?: number } =
    root !== undefined ? { root, parents } : { parents }
  if ("metadata" in t) {
    if (!(t.metadata instanceof Uint8Array)) return undefined
    tree.metadata = t.metadata
  }
  if ("h" in t) {
    if (!isHeight(t.h)) return undefined
    tree.h = t.h
  }
  if (!Array.isArray(raw.subtrees)) return undefined
  const subtrees = new Array<SubTreeNode>(raw.subtrees.length)
  for (let i = 0; i < raw.subtrees.length; i++) {
    const n: unknown = raw.subtrees[i]
    if (!isMapOf(n, SUBTREE_KEYS)) return undefined
    if (typeof n.name !== "string" || n.name.length === 0) return undefined
    const sp = fastLinks(n.parents)
    if (sp === undefined) return undefined
    const node: { name: string; parents: Array<string>; data?: Uint8Array; h?: number } = { name: n.name, parents: sp }
    if ("data" in n) {
      if (!(n.data instanceof Uint8Array)) return undefined
      node.data = n.data
    }
    if ("h" in n) {
      if (!isHeight(n.h)) return undefined
      node.h = n.h
    }
    subtrees[i] = node
  }
  const g = raw.sig
  if (!isMapOf(g, SIG_KEYS) || !("key" in g)) return undefined
  if ("sig" in g && typeof g.sig !== "string") return undefined
  const k = g.key
  if (!isMapOf(k, DIRECT_KEYS) || !("Direct" in k)) return undefined
  const d = k.Direct
  if (!isMapOf(d, HINT_WRAPPER_KEYS) || !("hint" in d)) return undefined
  const h = d.hint
  if (!isMapOf(h, HINT_KEYS)) return undefined
  const hint: { pubkey?: string; name?: string; is_global?: true } = {}
  if ("pubkey" in h) {
    if (typeof h.pubkey !== "string" || !PUBKEY.test(h.pubkey)) return undefined
    hint.pubkey = h.pubkey
  }
  if ("name" in h) {
    if (typeof h.name !== "string") return undefined
    hint.name = h.name
  }
  if ("is_global" in h) {
    if (h.is_global !== true) return undefined
    hint.is_global = true
  }
  const sig: { sig?: string; key: SigKey } = "sig" in g
    ? { sig: g.sig as string, key: { Direct: { hint } } }
    : { key: { Direct: { hint } } }
  const entry = { tree, subtrees, sig }
  return ("_v" in raw ? { _v: 0 as const, ...entry } : entry) as Entry
}

/** Decoded CBOR of an entry, before its CID links become strings. */
interface RawEntry {
  readonly tree: { readonly root?: unknown; readonly parents: ReadonlyArray<unknown> }
  readonly subtrees: ReadonlyArray<{ readonly parents: ReadonlyArray<unknown> }>
}

/** The fast path of `fromCbor` for trusted bytes: IDs sit only in `tree.root` and the parent lists. */
const fromCborTrusted = (raw: RawEntry): Entry => {
  const link = (v: unknown): string => {
    const cid = CID.asCID(v)
    if (cid === null) throw new Error("an ID is not a CID link")
    return linkText(cid)
  }
  const tree = { ...raw.tree, parents: raw.tree.parents.map(link) }
  if (raw.tree.root !== undefined) tree.root = link(raw.tree.root)
  return { ...raw, tree, subtrees: raw.subtrees.map((s) => ({ ...s, parents: s.parents.map(link) })) } as unknown as Entry
}

/** Turn decoded CBOR into the string-ID shape the schema checks; a string result is the reason it fails. */
const fromCbor = (raw: unknown): unknown => {
  const convert = (v: unknown, path: string): unknown => {
    const cid = CID.asCID(v)
    if (cid !== null) {
      if (cid.version !== 1 || cid.code !== DAG_CBOR) throw new Error(`${path}: an ID must be a CIDv1 dag-cbor link`)
      return cid.toString()
    }
    if (Array.isArray(v)) return v.map((x, i) => convert(x, `${path}[${i}]`))
    if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) {
      const out: Record<string, unknown> = {}
      for (const [k, x] of Object.entries(v)) out[k] = convert(x, path ? `${path}.${k}` : k)
      return out
    }
    return v
  }
  try {
    return convert(raw, "")
  } catch (e) {
    return e instanceof Error ? e.message : String(e)
  }
}
