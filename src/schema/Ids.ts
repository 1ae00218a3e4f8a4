/**
 * Identifier schemas: entry IDs (CIDv1 base32 strings) and ed25519 public keys.
 */
import * as Schema from "effect/Schema"

/** An entry ID: CIDv1 (dag-cbor, BLAKE3-256) in base32lower, `bafyr4i…`. */
export const EntryId = Schema.String.pipe(
  Schema.pattern(/^b[a-z2-7]{20,}$/, { message: () => "an entry ID must be a base32 CIDv1 string (b…)" })
)
/** An entry ID as a plain string (IDs cross many boundaries; branding buys little here). */
export type EntryId = string

/** The form of a public key string, `ed25519:<base64 of 32 bytes>` (for hot paths that test it without the schema). */
export const PUBKEY_PATTERN = /^ed25519:[A-Za-z0-9+/]{43}=$/

/** A public key string, `ed25519:<base64 of 32 bytes>`. */
export const PubKey = Schema.String.pipe(
  Schema.pattern(PUBKEY_PATTERN, {
    message: () => "a public key must look like ed25519:<base64 of 32 bytes>"
  })
)
/** A public key string. */
export type PubKey = string

/** Whether a value is a well-formed public key, `ed25519:<base64 of 32 bytes>`. */
export const isPubKey: (value: unknown) => value is PubKey = Schema.is(PubKey)

/** Strings compared unit by unit through `rank` (injective), the shorter first when one is a prefix of the other. */
const byRank = (rank: (unit: number) => number) => (a: string, b: string): number => {
  if (a === b) return 0
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) return rank(x) - rank(y)
  }
  return a.length - b.length
}

/**
 * The value of a base32 (RFC 4648, lower case) digit from its character code: `a`=0 … `z`=25,
 * `2`=26 … `7`=31; any other character after them all, by its code (so the order stays total on
 * strings that are not IDs).
 */
const base32Value = (code: number): number =>
  code >= 97 && code <= 122 ? code - 97 : code >= 50 && code <= 55 ? code - 24 : code + 256

/** A UTF-16 unit ranked so that comparing units compares code points: surrogates (D800..DFFF) above E000..FFFF. */
const codePointRank = (unit: number): number => (unit >= 0xe000 ? unit - 0x800 : unit >= 0xd800 ? unit + 0x2000 : unit)


/**
 * The reference's ID order (Rust `Cid` Ord), used wherever IDs are sorted: parent lists (so entry
 * bytes, hence IDs, are the reference's), pinned settings tips, and the (height, ID) tie-break of the
 * CRDT fold. For the CIDs of entries (one version, codec and hash, all one-byte varints) that is the
 * order of their bytes, which is the order of their base32 digits by value: `a`..`z` are 0..25 and
 * `2`..`7` are 26..31, so `…7…` sorts after `…a…`, unlike in plain string order. The empty ID sorts
 * first.
 */
export const compareIds: (a: string, b: string) => number = byRank(base32Value)

/**
 * The order of names (store names, map keys) as the reference sorts its Strings: by their UTF-8
 * bytes, which is code point order. Plain string order compares UTF-16 units and differs for
 * characters past U+FFFF against U+E000..U+FFFF (`"😀"` sorts before `"\uFF01"` that way).
 */
export const compareNames: (a: string, b: string) => number = byRank(codePointRank)
