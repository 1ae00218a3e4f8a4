/**
 * The node implementation of the Cipher port: Argon2id from hash-wasm (WASM, no native build) and
 * AES-256-GCM from node:crypto.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { argon2id } from "hash-wasm"
import * as crypto from "node:crypto"
import { CryptoError, DecryptionFailed } from "../schema/Errors.js"
import { Cipher, type CipherShape, type Sealed } from "../services/Cipher.js"

/** The Cipher service tag (re-exported from the port). */
export { Cipher }

/** Argon2id parameters: the Rust `argon2` crate defaults the reference uses (v19, m=19456 KiB, t=2, p=1). */
export const argon2Params = { memorySize: 19_456, iterations: 2, parallelism: 1, hashLength: 32 } as const

/**
 * Prepended to every password before Argon2id. hash-wasm rejects an empty password, and an empty
 * password is valid here (distinct from none); a fixed prefix keeps the mapping injective, so ""
 * and every other password still derive distinct keys. Consequence: keys differ from a plain Argon2id
 * of the same password, so sealed data is not interchangeable with the Rust reference.
 */
export const passwordDomain = "eidetica-ts/argon2id/v1:"

/** Builds the node Cipher service. */
export const makeNode: Effect.Effect<CipherShape> = Effect.sync(() => {
  const service: CipherShape = {
    deriveKey: (password, salt) =>
      Effect.tryPromise({
        try: () =>
          argon2id({
            ...argon2Params,
            password: new TextEncoder().encode(passwordDomain + password),
            salt,
            outputType: "binary"
          }),
        catch: (cause) => new CryptoError({ detail: "Argon2id key derivation failed", cause })
      }),
    encrypt: (key, plaintext) =>
      Effect.flatMap(checkKey(key), () =>
        Effect.try({
          try: (): Sealed => {
            const nonce = crypto.randomBytes(NONCE_BYTES)
            const cipher = crypto.createCipheriv("aes-256-gcm", key, nonce)
            const body = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()])
            return { ciphertext: body.toString("base64"), nonce: nonce.toString("base64") }
          },
          catch: (cause) => new CryptoError({ detail: "AES-256-GCM encryption failed", cause })
        })
      ),
    decrypt: (key, sealed) =>
      Effect.flatMap(checkKey(key), () => {
        const nonce = decodeBase64(sealed.nonce)
        const body = decodeBase64(sealed.ciphertext)
        if (nonce === undefined || nonce.length !== NONCE_BYTES) {
          return Effect.fail(new DecryptionFailed({ detail: "malformed nonce" }))
        }
        if (body === undefined || body.length < TAG_BYTES) {
          return Effect.fail(new DecryptionFailed({ detail: "malformed ciphertext" }))
        }
        return Effect.try({
          try: () => {
            const decipher = crypto.createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES })
            decipher.setAuthTag(body.subarray(body.length - TAG_BYTES))
            const plain = Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()])
            return new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength)
          },
          // GCM cannot tell a wrong key from altered data: both fail the tag check in final().
          catch: () => new DecryptionFailed({})
        })
      }),
    newSalt: Effect.sync(() => crypto.randomFillSync(new Uint8Array(SALT_BYTES)))
  }
  return service
})

/** Cipher on hash-wasm Argon2id and node:crypto AES-256-GCM. */
export const layerNode: Layer.Layer<Cipher> = Layer.effect(Cipher, makeNode)

// ---------------------------------------------------------------------------------------------
// helpers

const NONCE_BYTES = 12
const TAG_BYTES = 16
const SALT_BYTES = 16

const checkKey = (key: Uint8Array): Effect.Effect<void, CryptoError> =>
  key.length === 32
    ? Effect.void
    : Effect.fail(new CryptoError({ detail: `AES-256-GCM needs a 32-byte key, got ${key.length} bytes` }))

/** Strict padded base64 (Buffer.from alone silently skips bad characters). */
const decodeBase64 = (text: string): Buffer | undefined => {
  const bytes = Buffer.from(text, "base64")
  return bytes.toString("base64") === text ? bytes : undefined
}
