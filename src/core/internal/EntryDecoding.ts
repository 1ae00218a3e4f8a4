/**
 * How entry bytes are decoded: strictly, as DAG-CBOR (`@ipld/dag-cbor`'s rules), with two things
 * the plain decoder does not give. The tokens are watched as they go by (`decodeWatched`), so
 * `Entry.decode` knows the common entry is in canonical form without encoding it again
 * (`knownCanonical`) and where its `sig` map ends; and tag-42 ID links decode as their ID strings
 * (`Link`), found by a hash of their bytes among the IDs seen last, instead of being parsed and
 * base32-encoded each time. Every text is read as written, a leading byte order mark kept (cborg
 * alone drops it; `decodeFaithful` for the paths that watch nothing). Used by `Entry.ts` and
 * `EntryBytes.ts`; pure apart from those caches.
 */
import * as dagCbor from "@ipld/dag-cbor"
import * as cborg from "cborg"
import { CID } from "multiformats/cid"
import type { Entry } from "../../schema/Entry.js"
import { base32Multibase } from "./Base32.js"
import { Bounded } from "./Bounded.js"

/** The CBOR tag of a CID link in DAG-CBOR. */
export const CID_TAG = 42

/**
 * What decoding entry bytes saw besides the value: whether every token was in the form re-encoding
 * gives back (see `WatchingTokenizer`), and where the top-level `sig` map ends.
 */
export interface Watched {
  readonly raw: unknown
  /** No float, no string with U+FFFD, every map's keys in DAG-CBOR order. */
  readonly tokensCanonical: boolean
  /** The offset just past the top-level `sig` map's value, or -1 if there is none. */
  readonly sigEnd: number
}

/**
 * DAG-CBOR-decode entry bytes (strictly, as `dagCbor.decode`: minimal integers and lengths, no
 * duplicate keys, no indefinite lengths, only tag 42), watching the tokens go by. Throws as
 * `dagCbor.decode` does on bytes that are not DAG-CBOR.
 */
export const decodeWatched = (bytes: Uint8Array): Watched => {
  const view = plainView(bytes)
  const tokenizer = new WatchingTokenizer(view)
  const raw = cborg.decode(view, { ...WITH_LINKS, tokenizer })
  return { raw, tokensCanonical: tokenizer.canonical, sigEnd: tokenizer.sigEnd }
}

/**
 * Whether bytes whose tokens are canonical (`decodeWatched`) and whose value `fastEntry` accepted
 * as `entry` are exactly what encoding `entry` gives, known without encoding it. Strict decoding
 * already refused every other freedom CBOR leaves (integer and length widths, duplicate keys,
 * indefinite lengths, other tags and simple values), and `fastEntry` refused every field the
 * encoder would not write; what remains are the two defaults the encoder drops (`_v`, and a tree
 * height of 0). False means "not known", not "not canonical": the caller then re-encodes.
 */
export const knownCanonical = (watched: Watched, entry: Entry): boolean =>
  watched.tokensCanonical && entry._v === undefined && entry.tree.h !== 0

/**
 * An ID link as decoding gives it: a tag-42 CID that is a CIDv1 dag-cbor (an entry ID), as its
 * string, with the CID's bytes to tell two links of one hash apart. Links of other CIDs decode as
 * CID objects, which the structural check refuses and the schema path reports.
 */
export class Link {
  constructor(readonly text: string, readonly bytes: Uint8Array) {}
}

/** How many links are remembered (`links`). */
export const LINK_CACHE_SIZE = 4_096

/**
 * Links by a hash of their CID bytes. The IDs an entry names are nearly always of entries decoded
 * or made moments before (its parents, its root), so a link is found here by hashing its bytes and
 * comparing them, instead of parsing the CID and encoding its base32 string.
 */
const links = new Bounded<number, Link>(LINK_CACHE_SIZE)

/** FNV-1a over bytes[from..to): the key of a link's CID bytes in `links`. */
const hashOf = (bytes: Uint8Array, from: number, to: number): number => {
  let h = 0x811c9dc5
  for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193)
  return h
}

/** Remember the ID string of CID bytes just made (an entry's own ID: soon a parent to decode). */
export const rememberLink = (cidBytes: Uint8Array, text: string): void => links.set(hashOf(cidBytes, 0, cidBytes.length), new Link(text, cidBytes))

/** The CID in bytes[from..to) as a Link, or as a CID when it is not an entry ID; throws when it is no CID. */
const linkAt = (bytes: Uint8Array, from: number, to: number): Link | CID => {
  const h = hashOf(bytes, from, to)
  const hit = links.get(h)
  if (hit !== undefined && sameRange(bytes, from, to, hit.bytes)) return hit
  const cid = CID.decode(bytes.subarray(from, to))
  if (cid.version !== 1 || cid.code !== dagCbor.code) return cid
  // a copy: a slice would keep the whole received message alive
  const link = new Link(base32Multibase(cid.bytes), cid.bytes.slice())
  links.set(h, link)
  return link
}

/** The content of tag 42 (0x00 then CID bytes) as a Link, or as a CID when it is not an entry ID. */
const linkOfTagged = (tagged: unknown): Link | CID => {
  // as @ipld/dag-cbor's own tag-42 decoder refuses
  if (!(tagged instanceof Uint8Array) || tagged[0] !== 0) throw new Error("Invalid CID for CBOR tag 42; expected leading 0x00")
  return linkAt(tagged, 1, tagged.length)
}

/** The entry ID whose CID bytes are bytes[from..to) as a Link; undefined when they are not an entry ID's CID. */
export const entryLinkAt = (bytes: Uint8Array, from: number, to: number): Link | undefined => {
  try {
    const link = linkAt(bytes, from, to)
    return link instanceof Link ? link : undefined
  } catch {
    return undefined
  }
}

/** DAG-CBOR's decoding rules, tag-42 links decoded as `Link`s. */
export const WITH_LINKS: cborg.DecodeOptions = {
  ...dagCbor.decodeOptions,
  tags: { ...dagCbor.decodeOptions.tags, [CID_TAG]: (decode: cborg.TagDecodeControl) => linkOfTagged(decode()) }
}

/** A plain view of a Buffer, as dagCbor.decode takes it: byte strings decode as slices of it. */
export const plainView = (bytes: Uint8Array): Uint8Array =>
  bytes.constructor === Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)

// ---------------------------------------------------------------------------------------------
// The tokenizers

/** cborg's own tokens, each text keeping a leading byte order mark (`keepMark`). */
class FaithfulTokenizer implements DecodeTokenizer {
  protected readonly inner: DecodeTokenizer
  constructor(protected readonly data: Uint8Array) {
    this.inner = new cborg.Tokenizer(data, DAG_CBOR_DECODE)
  }

  done(): boolean {
    return this.inner.done()
  }

  pos(): number {
    return this.inner.pos()
  }

  next(): cborg.Token {
    const start = this.inner.pos()
    const token = this.inner.next()
    if (token.type.major === MAJOR_STRING) keepMark(this.data, start, this.inner.pos(), token)
    return token
  }
}

/**
 * A cborg tokenizer that hands out the faithful tokenizer's tokens while checking what the decoded
 * value cannot show: that no number was a float (a height written as 3.0 decodes as 3), that no
 * text held U+FFFD (invalid UTF-8 decodes to it), and that each map's keys come in DAG-CBOR order
 * (shorter first, then bytewise); and noting where the top-level `sig` map's value ends. It follows
 * the nesting by counting items: a map of n entries holds 2n, an array n, a tag wraps the next item.
 */
class WatchingTokenizer extends FaithfulTokenizer {
  canonical = true
  sigEnd = -1
  /** Per open container (index 0 is the top level, never closed): items it holds, whether a map, items read, and the last key's span. */
  private readonly size: Array<number> = [1]
  private readonly isMap: Array<boolean> = [false]
  private readonly read: Array<number> = [0]
  private readonly keyStart: Array<number> = [0]
  private readonly keyLength: Array<number> = [0]
  private depth = 0
  /** The item index, in the top-level map, of the `sig` key's value (-1 until that key is read). */
  private sigValue = -1

  override next(): cborg.Token {
    const start = this.inner.pos()
    const token = super.next()
    const d = this.depth
    const major = token.type.major
    if (this.isMap[d] && (this.read[d]! & 1) === 0) {
      // a key (DAG-CBOR keys are text; the decoder refuses any other)
      const length = token.encodedLength ?? 0
      if (this.read[d]! > 0 && !keyBefore(this.data, this.keyStart[d]!, this.keyLength[d]!, start, length)) this.canonical = false
      this.keyStart[d] = start
      this.keyLength[d] = length
      if (d === 1 && token.value === "sig") this.sigValue = this.read[d]! + 1
    }
    if (major === MAJOR_MAP || major === MAJOR_ARRAY) {
      const count = major === MAJOR_MAP ? (token.value as number) * 2 : (token.value as number)
      if (count > 0) {
        this.depth = d + 1
        this.size[d + 1] = count
        this.isMap[d + 1] = major === MAJOR_MAP
        this.read[d + 1] = 0
        return token
      }
    } else if (major === MAJOR_TAG) {
      return token // the tagged item that follows completes it
    } else if (major === MAJOR_STRING) {
      if ((token.value as string).includes("\uFFFD")) this.canonical = false
    } else if (major === MAJOR_SIMPLE && typeof token.value === "number") {
      this.canonical = false
    }
    this.complete()
    return token
  }

  /** One item is complete: count it in its container, closing every container it completes. */
  private complete(): void {
    let d = this.depth
    while (d > 0) {
      const read = ++this.read[d]!
      if (d === 1 && read === this.sigValue + 1) this.sigEnd = this.inner.pos()
      if (read < this.size[d]!) break
      d--
    }
    this.depth = d
  }
}

/** What cborg asks of a tokenizer (its `DecodeTokenizer` interface, which the package's entry point does not re-export). */
type DecodeTokenizer = NonNullable<cborg.DecodeOptions["tokenizer"]>

const MAJOR_STRING = 3
const MAJOR_ARRAY = 4
const MAJOR_MAP = 5
const MAJOR_TAG = 6
const MAJOR_SIMPLE = 7

/** A UTF-8 decoder that keeps a leading byte order mark (invalid input becomes U+FFFD, as in cborg's). */
const faithful = new TextDecoder("utf-8", { ignoreBOM: true })

/** The length of an item's head from its first byte (strict decoding has refused indefinite lengths). */
const headLength = (first: number): number => {
  const info = first & 31
  return info < 24 ? 1 : info === 24 ? 2 : info === 25 ? 3 : info === 26 ? 5 : 9
}

/**
 * cborg's UTF-8 decoder drops a leading byte order mark; the text item data[start..end) keeps it:
 * when its bytes begin with EF BB BF, the token's value is decoded again from them.
 */
const keepMark = (data: Uint8Array, start: number, end: number, token: cborg.Token): void => {
  const at = start + headLength(data[start]!)
  if (markAt(data, at)) token.value = faithful.decode(data.subarray(at, end))
}

/** Whether the UTF-8 byte order mark (EF BB BF) starts at `at`. */
const markAt = (bytes: Uint8Array, at: number): boolean => bytes[at] === 0xef && bytes[at + 1] === 0xbb && bytes[at + 2] === 0xbf

/** Whether the UTF-8 byte order mark is anywhere in the bytes. */
const holdsMark = (bytes: Uint8Array): boolean => {
  for (let i = bytes.indexOf(0xef); i >= 0; i = bytes.indexOf(0xef, i + 1)) if (markAt(bytes, i)) return true
  return false
}

/**
 * DAG-CBOR-decode bytes with `options` (DAG-CBOR's rules, its tags as the caller wants them), every
 * text as written: a leading byte order mark is kept, which cborg alone drops (then a store named
 * "\uFEFFa" would read as "a"). Throws as `cborg.decode` does. The faithful tokenizer is used only
 * when the mark's bytes occur at all.
 */
export const decodeFaithful = (bytes: Uint8Array, options: cborg.DecodeOptions): unknown => {
  const view = plainView(bytes)
  return holdsMark(view) ? cborg.decode(view, { ...options, tokenizer: new FaithfulTokenizer(view) }) : cborg.decode(view, options)
}

/** DAG-CBOR's decoding rules, as the inner tokenizer reads them (strict widths, no indefinite lengths). */
const DAG_CBOR_DECODE: cborg.DecodeOptions = dagCbor.decodeOptions

/** Whether the encoded key at `a` sorts strictly before the one at `b`: shorter first, then bytewise. */
const keyBefore = (data: Uint8Array, a: number, aLength: number, b: number, bLength: number): boolean => {
  if (aLength !== bLength) return aLength < bLength
  for (let i = 0; i < aLength; i++) {
    const x = data[a + i]!
    const y = data[b + i]!
    if (x !== y) return x < y
  }
  return false
}

/** Whether bytes[from..to) is exactly `part`. */
const sameRange = (bytes: Uint8Array, from: number, to: number, part: Uint8Array): boolean => {
  if (to - from !== part.length) return false
  for (let i = 0; i < part.length; i++) if (bytes[from + i] !== part[i]) return false
  return true
}

/** Whether two byte arrays are equal. */
export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => sameRange(a, 0, a.length, b)
