/**
 * The Cipher port: password-based key derivation and authenticated encryption, used to seal user
 * private keys and PasswordStore contents. Layer: `layerNode` (hash-wasm Argon2id + node:crypto
 * AES-256-GCM) in `src/layers/Cipher.ts`.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { CryptoError, DecryptionFailed } from "../schema/Errors.js"

/** Ciphertext (with the 16-byte GCM tag appended) and its 12-byte nonce, both as padded base64. */
export interface Sealed {
  readonly ciphertext: string
  readonly nonce: string
}

/** The Cipher service interface. */
export interface CipherShape {
  /** Argon2id with the reference parameters (m=19456 KiB, t=2, p=1) to a 32-byte key; "" is a valid password. */
  readonly deriveKey: (password: string, salt: Uint8Array) => Effect.Effect<Uint8Array, CryptoError>
  /** AES-256-GCM under a 32-byte key with a fresh random 12-byte nonce. */
  readonly encrypt: (key: Uint8Array, plaintext: Uint8Array) => Effect.Effect<Sealed, CryptoError>
  /** Opens sealed data; a wrong key or altered data fails with DecryptionFailed, a bad key size with CryptoError. */
  readonly decrypt: (key: Uint8Array, sealed: Sealed) => Effect.Effect<Uint8Array, DecryptionFailed | CryptoError>
  /** A fresh random 16-byte salt. */
  readonly newSalt: Effect.Effect<Uint8Array>
}

/** The Cipher service tag. */
export class Cipher extends Context.Tag("eidetica-ts/Cipher")<Cipher, CipherShape>() {}
