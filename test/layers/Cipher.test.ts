import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { Cipher, layerNode } from "../../src/layers/Cipher.js"

const bytes = (text: string) => new TextEncoder().encode(text)
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")

describe("Cipher (node)", () => {
  it.effect("deriveKey: same password and salt give the same 32-byte key; another salt differs", () =>
    Effect.gen(function*() {
      const cipher = yield* Cipher
      const salt = yield* cipher.newSalt
      expect(salt).toHaveLength(16)
      const k1 = yield* cipher.deriveKey("correct horse", salt)
      const k2 = yield* cipher.deriveKey("correct horse", Uint8Array.from(salt))
      expect(k1).toHaveLength(32)
      expect(hex(k2)).toBe(hex(k1))
      const otherSalt = yield* cipher.newSalt
      expect(hex(otherSalt)).not.toBe(hex(salt))
      expect(hex(yield* cipher.deriveKey("correct horse", otherSalt))).not.toBe(hex(k1))
      expect(hex(yield* cipher.deriveKey("correct horsf", salt))).not.toBe(hex(k1))
    }).pipe(Effect.provide(layerNode)))

  it.effect("an empty password is valid and differs from \"x\"", () =>
    Effect.gen(function*() {
      const cipher = yield* Cipher
      const salt = yield* cipher.newSalt
      const empty = yield* cipher.deriveKey("", salt)
      expect(empty).toHaveLength(32)
      expect(hex(yield* cipher.deriveKey("", salt))).toBe(hex(empty))
      expect(hex(yield* cipher.deriveKey("x", salt))).not.toBe(hex(empty))
    }).pipe(Effect.provide(layerNode)))

  it.effect("encrypt then decrypt round-trips with a fresh 12-byte nonce each time", () =>
    Effect.gen(function*() {
      const cipher = yield* Cipher
      const key = yield* cipher.deriveKey("pw", yield* cipher.newSalt)
      const plaintext = bytes("ed25519:c2VjcmV0IHNlZWQgYnl0ZXMgZ28gaGVyZSEhISEhISE=")
      const sealed = yield* cipher.encrypt(key, plaintext)
      expect(Buffer.from(sealed.nonce, "base64")).toHaveLength(12)
      expect(Buffer.from(sealed.ciphertext, "base64")).toHaveLength(plaintext.length + 16)
      expect(Buffer.from(yield* cipher.decrypt(key, sealed)).toString()).toBe(Buffer.from(plaintext).toString())
      const again = yield* cipher.encrypt(key, plaintext)
      expect(again.nonce).not.toBe(sealed.nonce)
      expect(again.ciphertext).not.toBe(sealed.ciphertext)
      const empty = yield* cipher.encrypt(key, new Uint8Array(0))
      expect(yield* cipher.decrypt(key, empty)).toHaveLength(0)
    }).pipe(Effect.provide(layerNode)))

  it.effect("a wrong key fails with DecryptionFailed", () =>
    Effect.gen(function*() {
      const cipher = yield* Cipher
      const salt = yield* cipher.newSalt
      const right = yield* cipher.deriveKey("right", salt)
      const wrong = yield* cipher.deriveKey("wrong", salt)
      const sealed = yield* cipher.encrypt(right, bytes("secret"))
      const error = yield* Effect.flip(cipher.decrypt(wrong, sealed))
      expect(error._tag).toBe("DecryptionFailed")
      expect(error.message).toContain("wrong password or corrupted data")
    }).pipe(Effect.provide(layerNode)))

  it.effect("tampered ciphertext, tag or nonce fails with DecryptionFailed", () =>
    Effect.gen(function*() {
      const cipher = yield* Cipher
      const key = yield* cipher.deriveKey("pw", yield* cipher.newSalt)
      const sealed = yield* cipher.encrypt(key, bytes("some secret data"))
      const flip = (b64: string, i: number) => {
        const buf = Buffer.from(b64, "base64")
        buf[i] = buf[i]! ^ 0x01
        return buf.toString("base64")
      }
      const body = Buffer.from(sealed.ciphertext, "base64")
      const cases = [
        { ...sealed, ciphertext: flip(sealed.ciphertext, 0) },
        { ...sealed, ciphertext: flip(sealed.ciphertext, body.length - 1) }, // in the tag
        { ...sealed, nonce: flip(sealed.nonce, 3) },
        { ...sealed, ciphertext: body.subarray(0, body.length - 1).toString("base64") },
        { ...sealed, ciphertext: body.subarray(0, 10).toString("base64") }, // shorter than a tag
        { ...sealed, ciphertext: "%%% not base64 %%%" },
        { ...sealed, nonce: Buffer.alloc(16).toString("base64") }
      ]
      for (const tampered of cases) {
        const error = yield* Effect.flip(cipher.decrypt(key, tampered))
        expect(error._tag).toBe("DecryptionFailed")
      }
    }).pipe(Effect.provide(layerNode)))

  it.effect("a key that is not 32 bytes fails with CryptoError", () =>
    Effect.gen(function*() {
      const cipher = yield* Cipher
      const error = yield* Effect.flip(cipher.encrypt(new Uint8Array(16), bytes("x")))
      expect(error._tag).toBe("CryptoError")
    }).pipe(Effect.provide(layerNode)))
})
