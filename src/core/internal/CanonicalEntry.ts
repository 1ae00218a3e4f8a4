/**
 * A direct reader of the common entry's canonical bytes: the DAG-CBOR of an entry with a direct
 * signer, read byte by byte into the entry `fastEntry` builds, with no token objects and no
 * intermediate value. It takes only what the general path (`decodeWatched`, then `fastEntry`) takes
 * and knows canonical without re-encoding: exactly the keys the encoder writes, in DAG-CBOR order,
 * minimal integer and length widths, no floats, no other tags or simple values, text valid UTF-8
 * without U+FFFD, ID links to entry CIDs, nothing after the entry. Anything else (every invalid
 * entry among it) gives undefined, and `Entry.decode` takes the general path, which also words the
 * error. Pure apart from the ID link cache it shares with that path.
 */
import type { KeyHint } from "../../schema/Auth.js"
import type { Entry, SubTreeNode } from "../../schema/Entry.js"
import { PUBKEY_PATTERN } from "../../schema/Ids.js"
import { entryLinkAt } from "./EntryDecoding.js"

/** An entry read from its canonical bytes, and the offset just past its `sig` map. */
export interface CanonicalEntry {
  readonly entry: Entry
  readonly sigEnd: number
}

/**
 * The entry these bytes are the canonical encoding of, when they are the common kind (see above);
 * undefined otherwise, which says nothing about the bytes but that this reader leaves them to the
 * general path.
 */
export const readCanonical = (bytes: Uint8Array): CanonicalEntry | undefined => {
  const r = new Reader(bytes)
  // {sig, tree, subtrees}: a `_v` would make it four keys, which the general path reads
  if (r.head(MAP) !== 3 || !r.key(K_SIG)) return undefined
  const sig = readSig(r)
  if (sig === undefined) return undefined
  const sigEnd = r.at
  if (!r.key(K_TREE)) return undefined
  const tree = readTree(r)
  if (tree === undefined || !r.key(K_SUBTREES)) return undefined
  const count = r.count()
  if (count < 0) return undefined
  const subtrees = new Array<SubTreeNode>(count)
  for (let i = 0; i < count; i++) {
    const node = readSubtree(r)
    if (node === undefined) return undefined
    subtrees[i] = node
  }
  if (r.at !== bytes.length) return undefined
  return { entry: { tree, subtrees, sig } as Entry, sigEnd }
}

// ---------------------------------------------------------------------------------------------
// The parts of an entry, each map's keys in DAG-CBOR order (shorter first, then bytewise)

/** `{key: {Direct: {hint}}, sig?}`. */
const readSig = (r: Reader): Entry["sig"] | undefined => {
  let left = r.head(MAP)
  if (left < 1 || !r.key(K_KEY)) return undefined
  left--
  if (r.head(MAP) !== 1 || !r.key(K_DIRECT) || r.head(MAP) !== 1 || !r.key(K_HINT)) return undefined
  const hint = readHint(r)
  if (hint === undefined) return undefined
  if (left > 0 && r.key(K_SIG)) {
    const sig = r.text()
    if (sig === undefined) return undefined
    return left === 1 ? { sig, key: { Direct: { hint } } } : undefined
  }
  return left === 0 ? { key: { Direct: { hint } } } : undefined
}

/** `{name?, pubkey?, is_global?: true}`, built in the order `fastEntry` builds it. */
const readHint = (r: Reader): KeyHint | undefined => {
  let left = r.head(MAP)
  if (left < 0) return undefined
  let name: string | undefined
  let pubkey: string | undefined
  let global = false
  if (left > 0 && r.key(K_NAME)) {
    if ((name = r.text()) === undefined) return undefined
    left--
  }
  if (left > 0 && r.key(K_PUBKEY)) {
    if ((pubkey = r.pubkey()) === undefined) return undefined
    left--
  }
  if (left > 0 && r.key(K_IS_GLOBAL)) {
    if (!r.isTrue()) return undefined
    global = true
    left--
  }
  if (left !== 0) return undefined
  const hint: { pubkey?: string; name?: string; is_global?: true } = {}
  if (pubkey !== undefined) hint.pubkey = pubkey
  if (name !== undefined) hint.name = name
  if (global) hint.is_global = true
  return hint
}

/** `{h?, root?, parents, metadata?}`; a tree height of 0 is written by no encoder, so it is left to the general path. */
const readTree = (r: Reader): Entry["tree"] | undefined => {
  let left = r.head(MAP)
  if (left < 1) return undefined
  let h = -1
  let root: string | undefined
  if (r.key(K_H)) {
    if ((h = r.uint()) <= 0) return undefined
    left--
  }
  if (left > 0 && r.key(K_ROOT)) {
    if ((root = r.link()) === undefined) return undefined
    left--
  }
  if (left < 1 || !r.key(K_PARENTS)) return undefined
  const parents = r.links()
  if (parents === undefined) return undefined
  left--
  let metadata: Uint8Array | undefined
  if (left > 0 && r.key(K_METADATA)) {
    if ((metadata = r.bytes()) === undefined) return undefined
    left--
  }
  if (left !== 0) return undefined
  const tree: { root?: string; parents: Array<string>; metadata?: Uint8Array; h?: number } =
    root !== undefined ? { root, parents } : { parents }
  if (metadata !== undefined) tree.metadata = metadata
  if (h >= 0) tree.h = h
  return tree
}

/** `{h?, data?, name, parents}`, the name not empty. */
const readSubtree = (r: Reader): SubTreeNode | undefined => {
  let left = r.head(MAP)
  if (left < 2) return undefined
  let h = -1
  let data: Uint8Array | undefined
  if (r.key(K_H)) {
    if ((h = r.uint()) < 0) return undefined
    left--
  }
  if (r.key(K_DATA)) {
    if ((data = r.bytes()) === undefined) return undefined
    left--
  }
  if (left !== 2 || !r.key(K_NAME)) return undefined
  const name = r.text()
  if (name === undefined || name.length === 0 || !r.key(K_PARENTS)) return undefined
  const parents = r.links()
  if (parents === undefined) return undefined
  const node: { name: string; parents: Array<string>; data?: Uint8Array; h?: number } = { name, parents }
  if (data !== undefined) node.data = data
  if (h >= 0) node.h = h
  return node
}

// ---------------------------------------------------------------------------------------------
// The reader: strict DAG-CBOR items, each read or refused (-1 / undefined) without throwing

const UINT = 0
const BYTES = 2
const TEXT = 3
const ARRAY = 4
const MAP = 5
/** The encoding of `true`. */
const TRUE = 0xf5
/** Tag 42 (a CID link), as its one minimal head. */
const LINK_TAG_0 = 0xd8
const LINK_TAG_1 = 42

/** Texts this short are joined character by character when ASCII; longer or other ones go through the UTF-8 decoder. */
const SHORT_TEXT = 16
/** Valid UTF-8 only, a leading byte order mark kept as text (as the general path keeps it). */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** Text of valid UTF-8 without U+FFFD (which the general path leaves to re-encoding), else undefined. */
const decodeUtf8 = (b: Uint8Array, from: number, to: number): string | undefined => {
  let text: string
  try {
    text = utf8.decode(b.subarray(from, to))
  } catch {
    return undefined
  }
  return text.includes("\uFFFD") ? undefined : text
}

/** The encoded text item of the last public key read, and its text. */
let lastPubkey: { readonly bytes: Uint8Array; readonly text: string } | undefined

class Reader {
  at = 0
  constructor(readonly b: Uint8Array) {}

  /**
   * The argument of the next item's head if it is of major type `major`, in its minimal width and
   * a safe integer, the reader moved past the head; -1 otherwise (an indefinite length included).
   */
  head(major: number): number {
    const b = this.b
    const at = this.at
    if (at >= b.length) return -1
    const first = b[at]!
    if (first >> 5 !== major) return -1
    const info = first & 31
    if (info < 24) {
      this.at = at + 1
      return info
    }
    let value: number
    let width: number
    if (info === 24) {
      width = 1
      if (at + 1 >= b.length || (value = b[at + 1]!) < 24) return -1
    } else if (info === 25) {
      width = 2
      if (at + 2 >= b.length || (value = (b[at + 1]! << 8) | b[at + 2]!) < 0x100) return -1
    } else if (info === 26) {
      width = 4
      if (at + 4 >= b.length || (value = b[at + 1]! * 0x1000000 + ((b[at + 2]! << 16) | (b[at + 3]! << 8) | b[at + 4]!)) < 0x10000) return -1
    } else if (info === 27) {
      width = 8
      if (at + 8 >= b.length) return -1
      const high = b[at + 1]! * 0x1000000 + ((b[at + 2]! << 16) | (b[at + 3]! << 8) | b[at + 4]!)
      const low = b[at + 5]! * 0x1000000 + ((b[at + 6]! << 16) | (b[at + 7]! << 8) | b[at + 8]!)
      // at least 2^32 (else a narrower width), at most 2^53 - 1
      if (high === 0 || high > 0x1fffff) return -1
      value = high * 0x100000000 + low
    } else return -1
    this.at = at + 1 + width
    return value
  }

  /** The length of an array, at most the bytes left (each item takes one at least): a claimed length is never allocated blindly. */
  count(): number {
    const n = this.head(ARRAY)
    return n <= this.b.length - this.at ? n : -1
  }

  /** An unsigned integer. */
  uint(): number {
    return this.head(UINT)
  }

  /** Whether the next item is the text key encoded as `key` (head and bytes); moves past it if so. */
  key(key: Uint8Array): boolean {
    const b = this.b
    const at = this.at
    if (at + key.length > b.length) return false
    for (let i = 0; i < key.length; i++) if (b[at + i] !== key[i]) return false
    this.at = at + key.length
    return true
  }

  /** A text string, valid UTF-8 without U+FFFD. */
  text(): string | undefined {
    const length = this.head(TEXT)
    if (length < 0) return undefined
    const b = this.b
    const from = this.at
    const to = from + length
    if (to > b.length) return undefined
    this.at = to
    if (length <= SHORT_TEXT) {
      // a few ASCII characters (a store name) are quicker joined than decoded
      let text = ""
      for (let i = from; i < to; i++) {
        const c = b[i]!
        if (c >= 0x80) return decodeUtf8(b, from, to)
        text += String.fromCharCode(c)
      }
      return text
    }
    return decodeUtf8(b, from, to)
  }

  /**
   * A hint's public key (text of the form `fastEntry` takes). The signer of the last entry read is
   * remembered: a database's entries are mostly signed by a few keys, so its text is taken again
   * when the bytes are the same.
   */
  pubkey(): string | undefined {
    const b = this.b
    const start = this.at
    const last = lastPubkey
    if (last !== undefined && start + last.bytes.length <= b.length) {
      let same = true
      for (let i = 0; i < last.bytes.length; i++) {
        if (b[start + i] !== last.bytes[i]) {
          same = false
          break
        }
      }
      if (same) {
        this.at = start + last.bytes.length
        return last.text
      }
    }
    const text = this.text()
    if (text === undefined || !PUBKEY_PATTERN.test(text)) return undefined
    lastPubkey = { bytes: b.slice(start, this.at), text }
    return text
  }

  /**
   * A byte string, as a plain Uint8Array over the entry's own bytes: no copy (a copy of each store's
   * data was a quarter of reading an entry), and nothing more kept alive than the entry's bytes,
   * which its StoredEntry holds anyway. Like those bytes, nobody may modify it.
   */
  bytes(): Uint8Array | undefined {
    const length = this.head(BYTES)
    const b = this.b
    const from = this.at
    if (length < 0 || from + length > b.length) return undefined
    this.at = from + length
    return new Uint8Array(b.buffer, b.byteOffset + from, length)
  }

  /** `true`. */
  isTrue(): boolean {
    if (this.b[this.at] !== TRUE) return false
    this.at++
    return true
  }

  /** An ID link: tag 42 over a byte string of 0x00 and an entry's CID. */
  link(): string | undefined {
    const b = this.b
    if (b[this.at] !== LINK_TAG_0 || b[this.at + 1] !== LINK_TAG_1) return undefined
    this.at += 2
    const length = this.head(BYTES)
    const from = this.at
    if (length < 2 || from + length > b.length || b[from] !== 0) return undefined
    this.at = from + length
    return entryLinkAt(b, from + 1, from + length)?.text
  }

  /** An array of ID links. */
  links(): Array<string> | undefined {
    const count = this.count()
    if (count < 0) return undefined
    const out = new Array<string>(count)
    for (let i = 0; i < count; i++) {
      const id = this.link()
      if (id === undefined) return undefined
      out[i] = id
    }
    return out
  }
}

/** A map key as encoded: its text head and its ASCII bytes. */
const encodedKey = (key: string): Uint8Array => {
  const out = new Uint8Array(key.length + 1)
  out[0] = (TEXT << 5) | key.length
  for (let i = 0; i < key.length; i++) out[i + 1] = key.charCodeAt(i)
  return out
}

const K_SIG = encodedKey("sig")
const K_TREE = encodedKey("tree")
const K_SUBTREES = encodedKey("subtrees")
const K_KEY = encodedKey("key")
const K_DIRECT = encodedKey("Direct")
const K_HINT = encodedKey("hint")
const K_NAME = encodedKey("name")
const K_PUBKEY = encodedKey("pubkey")
const K_IS_GLOBAL = encodedKey("is_global")
const K_H = encodedKey("h")
const K_ROOT = encodedKey("root")
const K_PARENTS = encodedKey("parents")
const K_METADATA = encodedKey("metadata")
const K_DATA = encodedKey("data")

