/**
 * The byte-level fast paths of entry encoding and decoding: splicing the `sig` map in and out of
 * canonical bytes (so a signed entry is not encoded twice, nor its signing bytes re-encoded), decoding
 * bytes this storage wrote itself without checks, reading one store's data without building the
 * entry, and the hand-written structural check `decode` tries before the Entry schema (how the
 * bytes are decoded, watched and their links read, is `EntryDecoding.ts`). Each is an optimisation
 * equal to a plain path of `Entry.ts` (and falls back to it); kept apart so `Entry.ts` reads as the
 * format's rules. `Entry.ts` re-exports the public ones.
 *
 * Imports `Entry.ts` back (its encoders, for the fallbacks): a cycle that is safe because neither
 * module touches the other at load time, only inside functions.
 */
import * as dagCbor from "@ipld/dag-cbor"
import * as cborg from "cborg"
import * as Either from "effect/Either"
import { CID } from "multiformats/cid"
import type { KeyHint, SigKey } from "../../schema/Auth.js"
import type { Entry, SubTreeNode } from "../../schema/Entry.js"
import { PUBKEY_PATTERN } from "../../schema/Ids.js"
import { encode, height, signingBytes, type StoredEntry } from "../Entry.js"
import { Bounded } from "./Bounded.js"
import { readCanonical } from "./CanonicalEntry.js"
import { CID_TAG, decodeFaithful, Link, sameBytes, WITH_LINKS } from "./EntryDecoding.js"

/**
 * The encoding of a signed entry from the signing bytes of the same entry: CBOR is concatenative
 * and `sig` is the first key of the canonical top-level map, so only the `sig` map is re-encoded and
 * swapped in. Equal to `encode(signed)` (which it falls back to if the layout is not the expected one).
 */
export const encodeSigned = (signed: Entry, signing: Uint8Array): Uint8Array => {
  const maps = sigMapsOf(signed.sig.key)
  const without = maps.unsigned
  const at = SIG_MAP_OFFSET
  if (
    signed._v !== undefined || signed.sig.sig === undefined || signing.length < at + without.length ||
    !startsWith(signing, SIG_PREFIX, 0) || !startsWith(signing, without, at)
  ) return encode(signed)
  const withSig = signedSigMap(maps, signed.sig.sig)
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

/**
 * Decode bytes this storage wrote itself, trusting them: CBOR-decode and convert only, with no
 * schema check, no validation and no hashing (the caller supplies the ID it stored them under).
 */
export const decodeTrusted = (bytes: Uint8Array, entryId: string): Either.Either<StoredEntry, string> => {
  const direct = readCanonical(bytes)
  if (direct !== undefined) {
    const entry = direct.entry
    return Either.right({ id: entryId, entry, bytes, treeId: entry.tree.root ?? entryId, height: height(entry) })
  }
  let raw: unknown
  try {
    raw = decodeFaithful(bytes, WITH_LINKS)
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
 * The data a store's node carries in entry bytes this storage wrote itself (trusted), read without
 * building the entry: its ID links are skipped, not decoded. Undefined when the entry has no data
 * for the store; Left when the bytes do not decode as an entry.
 */
export const storeDataOfBytes = (bytes: Uint8Array, store: string): Either.Either<Uint8Array | undefined, string> => {
  let raw: unknown
  try {
    raw = decodeFaithful(bytes, linksSkipped)
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

/** Record the end of a decoded entry's `sig` map, for `signingBytesOf` to cut its signing bytes without encoding. */
export const rememberSigEnd = (e: StoredEntry, sigEnd: number): void => {
  if (sigEnd > 0) sigEnds.set(e, sigEnd)
}

/**
 * The common shape of a well-formed entry (direct signer), checked by hand and built field by field
 * in the schema's order; undefined for anything else, which then goes through the Entry schema.
 */
export const fastEntry = (raw: unknown): Entry | undefined => {
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
    if (typeof h.pubkey !== "string" || !PUBKEY_PATTERN.test(h.pubkey)) return undefined
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

/** A value with its undefined fields dropped, as DAG-CBOR must be given it (a `sig.key` hint's optional fields). */
export const stripUndefined = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(stripUndefined)
  if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = stripUndefined(v)
    return out
  }
  return value
}

// ---------------------------------------------------------------------------------------------
// Helpers

const signingKept = new WeakMap<StoredEntry, Uint8Array>()
/** Where the `sig` map ends in the canonical bytes of entries decoded here (`rememberSigEnd`). */
const sigEnds = new WeakMap<StoredEntry, number>()

const cutSigningBytes = (e: StoredEntry): Uint8Array => {
  const signed = e.entry
  const bytes = e.bytes
  if (signed._v !== undefined || signed.sig.sig === undefined || !startsWith(bytes, SIG_PREFIX, 0)) return signingBytes(signed)
  const maps = sigMapsOf(signed.sig.key)
  const at = SIG_MAP_OFFSET
  // canonical bytes decoded here: the sig map is known to run from `at` to its recorded end
  let end = sigEnds.get(e)
  if (end === undefined) {
    const withSig = signedSigMap(maps, signed.sig.sig)
    if (bytes.length < at + withSig.length || !startsWith(bytes, withSig, at)) return signingBytes(signed)
    end = at + withSig.length
  }
  const without = maps.unsigned
  const out = new Uint8Array(bytes.length - (end - at) + without.length)
  out.set(bytes.subarray(0, at))
  out.set(without, at)
  out.set(bytes.subarray(end), at + without.length)
  return out
}

/**
 * What a signer's key contributes to an entry's `sig` map, encoded once per key (every entry one
 * signer writes or sends has the same): `{key}`, the map of the signing bytes, and `{key, sig: ""}`
 * without its last byte (the empty string), which the encoding of a signature completes, when
 * DAG-CBOR lays it out that way (`sig` sorts after `key`; checked when the key is first seen).
 */
interface SigMaps {
  readonly key: unknown
  readonly unsigned: Uint8Array
  readonly signedHead: Uint8Array | undefined
}

/** Keys seen, by fingerprint (a signer's key is a new object in every decoded entry). */
const sigMaps = new Bounded<string, SigMaps>(1_024)

const sigMapsOf = (key: SigKey): SigMaps => {
  const print = fingerprint(key)
  let maps = sigMaps.get(print)
  if (maps === undefined) {
    const plain = stripUndefined(key)
    const unsigned = dagCbor.encode({ key: plain })
    const empty = dagCbor.encode({ key: plain, sig: "" })
    const head = empty.subarray(0, empty.length - 1)
    const laidOut = empty[empty.length - 1] === EMPTY_TEXT &&
      sameBytes(dagCbor.encode({ key: plain, sig: "A" }), concat(head, dagCbor.encode("A")))
    maps = { key: plain, unsigned, signedHead: laidOut ? head : undefined }
    sigMaps.set(print, maps)
  }
  return maps
}

/** The encoded `{key, sig}` of a signature by the key of `maps`. */
const signedSigMap = (maps: SigMaps, sig: string): Uint8Array =>
  maps.signedHead !== undefined ? concat(maps.signedHead, dagCbor.encode(sig)) : dagCbor.encode({ key: maps.key, sig })

/**
 * A string naming a key's encoding: the fields of the usual direct key, each marked absent or
 * length-prefixed (undefined counts as absent: DAG-CBOR is given the key without them); the JSON of
 * any other key.
 */
const fingerprint = (key: SigKey): string => {
  if (!isPlainDirect(key)) return `J${JSON.stringify(stripUndefined(key))}`
  const { is_global, name, pubkey } = (key as { readonly Direct: { readonly hint: KeyHint } }).Direct.hint
  return `D${is_global === undefined ? "-" : is_global ? "t" : "f"}${field(pubkey)}${field(name)}`
}

const field = (text: string | undefined): string => (text === undefined ? "-" : `${text.length}:${text}`)

/** `{Direct: {hint}}` and nothing else, the hint's fields among pubkey and name (strings) and is_global (a boolean). */
const isPlainDirect = (key: SigKey): boolean => {
  for (const k in key) if (k !== "Direct") return false
  const direct = (key as { readonly Direct?: unknown }).Direct
  if (direct === null || typeof direct !== "object") return false
  for (const k in direct) if (k !== "hint") return false
  const hint = (direct as { readonly hint?: unknown }).hint
  if (hint === null || typeof hint !== "object") return false
  for (const [k, v] of Object.entries(hint)) {
    if (v === undefined) continue
    if (k === "is_global" ? typeof v !== "boolean" : (k !== "pubkey" && k !== "name") || typeof v !== "string") return false
  }
  return true
}

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}

const startsWith = (bytes: Uint8Array, prefix: ArrayLike<number>, at: number): boolean => {
  for (let i = 0; i < prefix.length; i++) if (bytes[at + i] !== prefix[i]) return false
  return true
}

/** A three-key map whose first key is "sig": how every encoded entry (no `_v`) starts. */
const SIG_PREFIX = [0xa3, 0x63, 0x73, 0x69, 0x67]
const SIG_MAP_OFFSET = SIG_PREFIX.length
/** The DAG-CBOR encoding of the empty text string. */
const EMPTY_TEXT = 0x60

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

/** Decoded CBOR of an entry, before its CID links become strings. */
interface RawEntry {
  readonly tree: { readonly root?: unknown; readonly parents: ReadonlyArray<unknown> }
  readonly subtrees: ReadonlyArray<{ readonly parents: ReadonlyArray<unknown> }>
}

/** The fast path of `fromCbor` for trusted bytes: IDs sit only in `tree.root` and the parent lists. */
const fromCborTrusted = (raw: RawEntry): Entry => {
  const link = (v: unknown): string => {
    if (v instanceof Link) return v.text
    const cid = CID.asCID(v)
    if (cid === null) throw new Error("an ID is not a CID link")
    return cid.toString()
  }
  const tree = { ...raw.tree, parents: raw.tree.parents.map(link) }
  if (raw.tree.root !== undefined) tree.root = link(raw.tree.root)
  return { ...raw, tree, subtrees: raw.subtrees.map((s) => ({ ...s, parents: s.parents.map(link) })) } as unknown as Entry
}

type RawMap = Record<string, unknown>

/** A plain CBOR map whose keys are all among `allowed`. */
const isMapOf = (v: unknown, allowed: ReadonlySet<string>): v is RawMap => {
  if (v === null || typeof v !== "object" || Object.getPrototypeOf(v) !== Object.prototype) return false
  for (const k in v) if (!allowed.has(k)) return false
  return Object.getOwnPropertySymbols(v).length === 0
}

const isHeight = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0

/** An entry ID from a decoded link, or undefined. */
const fastLink = (v: unknown): string | undefined => (v instanceof Link ? v.text : undefined)

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
