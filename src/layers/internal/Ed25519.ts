/**
 * The native ed25519 engines of the Auth layers, and the acceptance rule every engine shares.
 *
 * libsodium (through `sodium-native`'s prebuilt addon) signs and verifies about twice as fast as
 * node:crypto's OpenSSL on the machines we measured (19,300 against 9,300 verifies/s, 55,000
 * against 28,500 signatures/s), so the native layer uses it when the addon loads and OpenSSL when it
 * does not. The two libraries do not accept the same signatures: libsodium refuses a public key that
 * is a non-canonical encoding or a point of small order, and a signature whose R is of small order,
 * where OpenSSL verifies them (for the identity key, anyone can then "sign" anything). A peer on one
 * engine and a peer on the other would then disagree about an entry for ever, so every engine checks
 * `acceptablePublicKey` and `acceptableSignature` first: libsodium's rule, for all of them.
 */
import * as crypto from "node:crypto"
import { createRequire } from "node:module"

/** What the native Auth layers need of a signature library; `Pub` and `Priv` are its prepared keys. */
export interface Ed25519Engine<Pub, Priv> {
  /** "libsodium" or "node:crypto" (the verification workers load the same one by this name). */
  readonly name: EngineName
  /** A prepared public key from 32 acceptable bytes; throws if the library refuses them. */
  readonly publicKey: (raw: Uint8Array) => Pub
  /** A prepared private key from a 32-byte seed; throws if the library refuses it. */
  readonly privateKey: (seed: Uint8Array) => Priv
  readonly rawPublicKey: (key: Priv) => Uint8Array
  /** The 64-byte signature, as a Buffer (the layers encode it as base64). */
  readonly sign: (key: Priv, message: Uint8Array) => Buffer
  /** Whether the signature verifies; the bytes must have passed the acceptance checks. */
  readonly verify: (key: Pub, signature: Uint8Array, message: Uint8Array) => boolean
}

export type EngineName = "libsodium" | "node:crypto"

/** The part of sodium-native these layers call. */
interface Sodium {
  readonly crypto_sign_seed_keypair: (pk: Uint8Array, sk: Uint8Array, seed: Uint8Array) => void
  readonly crypto_sign_detached: (sig: Uint8Array, message: Uint8Array, sk: Uint8Array) => void
  readonly crypto_sign_verify_detached: (sig: Uint8Array, message: Uint8Array, pk: Uint8Array) => boolean
}

/** sodium-native, or undefined where its addon does not load (no prebuild for the platform). */
export const loadSodium = (): Sodium | undefined => {
  try {
    return createRequire(import.meta.url)("sodium-native") as Sodium
  } catch {
    return undefined
  }
}

/** libsodium's engine: keys are the raw 32 bytes and the 64-byte seed-and-key. */
export const sodiumEngine = (sodium: Sodium): Ed25519Engine<Uint8Array, { readonly sk: Buffer; readonly pk: Buffer }> => ({
  name: "libsodium",
  publicKey: (raw) => raw,
  privateKey: (seed) => {
    const pk = Buffer.alloc(32)
    const sk = Buffer.alloc(64)
    sodium.crypto_sign_seed_keypair(pk, sk, seed)
    return { sk, pk }
  },
  rawPublicKey: (key) => key.pk,
  sign: (key, message) => {
    const sig = Buffer.allocUnsafe(64)
    sodium.crypto_sign_detached(sig, message, key.sk)
    return sig
  },
  verify: (key, signature, message) => sodium.crypto_sign_verify_detached(signature, message, key)
})

const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex")

/** OpenSSL's engine through node:crypto: KeyObjects. */
export const opensslEngine: Ed25519Engine<crypto.KeyObject, crypto.KeyObject> = {
  name: "node:crypto",
  publicKey: (raw) => crypto.createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki" }),
  privateKey: (seed) => crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" }),
  rawPublicKey: (key) =>
    crypto.createPublicKey(key).export({ format: "der", type: "spki" }).subarray(SPKI_ED25519_PREFIX.length),
  sign: (key, message) => crypto.sign(null, message, key),
  verify: (key, signature, message) => crypto.verify(null, message, key, signature)
}

/**
 * The encodings of the eight points of small order, the sign bit (bit 255) aside, with the
 * non-canonical encodings of 0 and 1 (y = p, y = p + 1): libsodium's list. y = 1 is the identity.
 */
const SMALL_ORDER: ReadonlyArray<Uint8Array> = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
].map((hex) => Uint8Array.from(Buffer.from(hex, "hex")))

/** Whether the first 32 bytes encode a point of small order (whatever their sign bit). */
const hasSmallOrder = (bytes: Uint8Array): boolean => {
  next: for (const point of SMALL_ORDER) {
    for (let i = 0; i < 31; i++) if (bytes[i] !== point[i]) continue next
    if ((bytes[31]! & 0x7f) === point[31]) return true
  }
  return false
}

/** Whether 32 bytes are a canonical field encoding: y below p = 2^255 - 19 (the sign bit aside). */
export const isCanonicalPoint = (bytes: Uint8Array): boolean => {
  if ((bytes[31]! & 0x7f) !== 0x7f) return true
  for (let i = 30; i > 0; i--) if (bytes[i] !== 0xff) return true
  return bytes[0]! < 0xed
}

/** A public key every engine may verify under: canonical and not of small order. */
export const acceptablePublicKey = (raw: Uint8Array): boolean => isCanonicalPoint(raw) && !hasSmallOrder(raw)

/** A signature every engine may verify: its R not of small order (S below the group order is each library's own check). */
export const acceptableSignature = (raw: Uint8Array): boolean => !hasSmallOrder(raw)
