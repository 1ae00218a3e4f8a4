/**
 * Entries and IDs: canonical building, DAG-CBOR encoding, CIDv1 (dag-cbor, BLAKE3-256) IDs,
 * signing bytes, decoding through the Entry schema, metadata and the reference's structural
 * validation rules. Pure functions. The byte-level fast paths (splicing signatures into and out of
 * encoded bytes, trusted decoding, the hand-written structural check) live in
 * `internal/EntryBytes.ts`; the public ones are re-exported here.
 */
import * as dagCbor from "@ipld/dag-cbor"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import { CID } from "multiformats/cid"
import type { SigKey } from "../schema/Auth.js"
import type { Entry, EntryMetadata, SubTreeNode } from "../schema/Entry.js"
import { decodeEntryEither } from "../schema/Entry.js"
import { compareIds, compareNames } from "../schema/Ids.js"
import { blake3 } from "./internal/blake3.js"
import { base32Multibase } from "./internal/Base32.js"
import { Bounded } from "./internal/Bounded.js"
import { readCanonical } from "./internal/CanonicalEntry.js"
import { fastEntry, rememberSigEnd, stripUndefined } from "./internal/EntryBytes.js"
import { decodeWatched, knownCanonical, Link, rememberLink, sameBytes, type Watched } from "./internal/EntryDecoding.js"

export { decodeTrusted, encodeSigned, signingBytesOf, storeDataOfBytes } from "./internal/EntryBytes.js"

/** The multicodec of DAG-CBOR. */
export const DAG_CBOR = 0x71
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
    .sort((a, b) => compareNames(a.name, b.name))
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

/** The bytes a CIDv1 of an entry starts with: version 1, DAG-CBOR, BLAKE3, a 32-byte digest. */
const CID_PREFIX = Uint8Array.of(1, DAG_CBOR, BLAKE3, 32)

/**
 * The CIDv1 string of encoded entry bytes: the base32 multibase string `CID#toString` gives, of
 * the CID's bytes written out here. No CID object is made (one weighs ~2.3 KB; a received entry's
 * was rarely used, and `toCid` parses the string when an entry built here names it as a parent):
 * 1.9 against 4.2 us for an entry of 400 bytes.
 */
export const idOfBytes = (bytes: Uint8Array): string => {
  const cidBytes = new Uint8Array(CID_PREFIX.length + 32)
  cidBytes.set(CID_PREFIX)
  cidBytes.set(blake3(bytes), CID_PREFIX.length)
  const text = base32Multibase(cidBytes)
  // a new ID is soon a parent to decode: keep its string, so decoding the child does not build it again
  rememberLink(cidBytes, text)
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
  // the common entry, read straight from canonical bytes; anything else takes the general path
  const direct = readCanonical(bytes)
  if (direct !== undefined) return finish(direct.entry, bytes, idOfTheseBytes, direct.sigEnd, true)
  let watched: Watched
  try {
    watched = decodeWatched(bytes)
  } catch (e) {
    return Either.left(`not canonical DAG-CBOR: ${e instanceof Error ? e.message : String(e)}`)
  }
  // The fast structural check accepts only what the schema accepts, building the same value; anything
  // else (including every invalid entry) takes the schema path, which also words the error.
  let entry = fastEntry(watched.raw)
  const known = entry !== undefined && knownCanonical(watched, entry)
  if (entry === undefined) {
    const plain = fromCbor(watched.raw)
    if (typeof plain === "string") return Either.left(plain)
    const decoded = decodeEntryEither(plain)
    if (Either.isLeft(decoded)) return Either.left(ParseResult.TreeFormatter.formatErrorSync(decoded.left))
    entry = decoded.right
  }
  return finish(entry, bytes, idOfTheseBytes, watched.sigEnd, known)
}

/** A decoded entry, validated and (unless known to be) checked canonical, then stored with its ID and where its `sig` map ends. */
const finish = (
  entry: Entry,
  bytes: Uint8Array,
  idOfTheseBytes: string | undefined,
  sigEnd: number,
  canonical: boolean
): Either.Either<StoredEntry, string> => {
  const reason = validate(entry)
  if (reason !== undefined) return Either.left(reason)
  // One entry, one encoding: bytes that decode but are not what encoding the entry gives (map keys
  // out of order, non-minimal integers, defaults written out) would give the same signed content
  // a second ID. The common case is known canonical from decoding alone; any doubt re-encodes.
  if (!canonical && !sameBytes(encode(entry), bytes))
    return Either.left("not in canonical form: re-encoding the entry gives other bytes")
  const result = stored(entry, bytes, idOfTheseBytes)
  rememberSigEnd(result, sigEnd)
  return Either.right(result)
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
    if (i > 0 && compareNames(entry.subtrees[i - 1]!.name, s.name) >= 0)
      return "subtrees must be sorted by name and unique"
    if (!isCanonicalIdList(s.parents)) return `parents of subtree ${s.name} must be sorted and without duplicates`
  }
  return undefined
}

/** Encode entry metadata as the JSON bytes carried in `tree.metadata`. */
export const encodeMetadata = (meta: EntryMetadata): Uint8Array =>
  textEncoder.encode(JSON.stringify({ settings_tips: sortedUnique(meta.settings_tips), entropy: meta.entropy }))

/**
 * Read an entry's metadata; an entry without metadata pins no settings. The entries of a batch are
 * read one after another and nearly all pin the same settings tips: metadata of the same bytes as
 * the last read gives the same (read-only) result without parsing it again.
 */
export const metadata = (entry: Entry): EntryMetadata | undefined => {
  const bytes = entry.tree.metadata
  if (bytes === undefined) return undefined
  if (lastMetadata !== undefined && sameBytes(bytes, lastMetadata.bytes)) return lastMetadata.read
  const read = readMetadata(bytes)
  lastMetadata = { bytes, read }
  return read
}

/** The metadata bytes last read, and what they read as (the bytes are an entry's: nobody modifies them). */
let lastMetadata: { readonly bytes: Uint8Array; readonly read: EntryMetadata | undefined } | undefined

const readMetadata = (bytes: Uint8Array): EntryMetadata | undefined => {
  try {
    const parsed = JSON.parse(textDecoder.decode(bytes)) as { settings_tips?: unknown; entropy?: unknown }
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

/**
 * The CIDs of the IDs most recently encoded as links (parsed from their strings once): a tip is
 * soon a parent again, and a tree's root is named by every entry. Kept small, the least recently
 * used dropped first (half at a time, see `Bounded`): a CID holds ~2.3 KB here, and the 100,000
 * kept before grew a busy process's heap by ~230 MB before it was cleared.
 */
export const CID_CACHE_SIZE = 4_096
const cidCache = new Bounded<string, CID>(CID_CACHE_SIZE)
const rememberCid = (s: string, c: CID): void => cidCache.set(s, c)
/** How many CIDs the cache holds (for tests). */
export const cidCacheSize = (): number => cidCache.size
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

/** Turn decoded CBOR into the string-ID shape the schema checks; a string result is the reason it fails. */
const fromCbor = (raw: unknown): unknown => {
  const convert = (v: unknown, path: string): unknown => {
    if (v instanceof Link) return v.text
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
