/**
 * The multibase base32 string of bytes ("b", then RFC 4648 lowercase without padding): what
 * multiformats' `base32.encode` gives, which every entry ID is. Its encoder appends one character at
 * a time, so an ID was a chain of 59 string pieces (about 1.8 KB to build, and flattened again
 * before its first use as a Map key); this writes the character codes and makes one flat string.
 */
const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
const CODES = Array.from(ALPHABET, (c) => c.charCodeAt(0))
/** The multibase prefix of base32. */
const PREFIX = "b".charCodeAt(0)

/** The characters of the multibase base32 string of `n` bytes: the prefix, then 5 bits a character. */
const encodedLength = (n: number): number => 1 + Math.ceil((n * 8) / 5)
/** The characters of an entry ID's string: an entry CID's 36 bytes. */
const ID_LENGTH = encodedLength(36)
/** The character codes of the last ID written, reused (a new array was ~490 of an ID's ~900 bytes allocated); every call writes each slot. */
const idCodes = new Array<number>(ID_LENGTH).fill(0)

/** `base32.encode(bytes)` of multiformats, as one flat string. */
export const base32Multibase = (bytes: Uint8Array): string => {
  const length = encodedLength(bytes.length)
  const codes = length === ID_LENGTH ? idCodes : new Array<number>(length)
  codes[0] = PREFIX
  let n = 1
  let buffer = 0
  let bits = 0
  for (let i = 0; i < bytes.length; i++) {
    buffer = ((buffer << 8) | bytes[i]!) & 0xffff
    bits += 8
    while (bits >= 5) {
      bits -= 5
      codes[n++] = CODES[(buffer >> bits) & 31]!
    }
  }
  if (bits > 0) codes[n++] = CODES[(buffer << (5 - bits)) & 31]!
  return String.fromCharCode.apply(null, codes)
}
