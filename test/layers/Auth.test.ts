import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import { readdirSync, readFileSync, readlinkSync } from "node:fs"
import { Auth, layerNode, layerNodeCrypto, layerNoble, layerSeeded, poolSize } from "../../src/layers/Auth.js"

const PUBLIC_KEY = /^ed25519:[A-Za-z0-9+/]{43}=$/
const SIGNATURE = /^[A-Za-z0-9+/]{86}==$/
const bytes = (text: string) => new TextEncoder().encode(text)

/** Flips one bit of a padded-base64 string's decoded bytes and re-encodes it. */
const flipBit = (b64: string, byte = 0): string => {
  const buf = Buffer.from(b64, "base64")
  buf[byte] = buf[byte]! ^ 1
  return buf.toString("base64")
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

/** The same bytes as `b64` (which ends in "=="), with a non-zero unused bit: not canonical base64. */
const nonCanonical = (b64: string): string => {
  const last = b64.length - 3
  return b64.slice(0, last) + ALPHABET[ALPHABET.indexOf(b64[last]!) ^ 1] + "=="
}

/** The Auth contract: every implementation must pass it unchanged. */
const contract = (name: string, layer: Layer.Layer<Auth>) =>
  describe(`Auth contract: ${name}`, () => {
    it.effect("generated keys have the ed25519:<base64> form", () =>
      Effect.gen(function*() {
        const auth = yield* Auth
        const { publicKey, secretKey } = yield* auth.generateKey
        expect(publicKey).toMatch(PUBLIC_KEY)
        expect(secretKey).toMatch(PUBLIC_KEY)
        expect(Buffer.from(secretKey.slice(8), "base64")).toHaveLength(32)
        expect(secretKey).not.toBe(publicKey)
      }).pipe(Effect.provide(layer)))

    it.effect("sign then verify round-trips; signatures are padded base64 of 64 bytes", () =>
      Effect.gen(function*() {
        const auth = yield* Auth
        const { publicKey, secretKey } = yield* auth.generateKey
        const message = bytes("hello eidetica")
        const sig = yield* auth.sign(secretKey, message)
        expect(sig).toMatch(SIGNATURE)
        expect(yield* auth.verify(publicKey, sig, message)).toBe(true)
        // ed25519 is deterministic
        expect(yield* auth.sign(secretKey, message)).toBe(sig)
        expect(yield* auth.verify(publicKey, yield* auth.sign(secretKey, new Uint8Array(0)), new Uint8Array(0)))
          .toBe(true)
      }).pipe(Effect.provide(layer)))

    it.effect("a flipped bit in the message, the signature or the key fails", () =>
      Effect.gen(function*() {
        const auth = yield* Auth
        const { publicKey, secretKey } = yield* auth.generateKey
        const other = yield* auth.generateKey
        const message = bytes("pay 10 to alice")
        const sig = yield* auth.sign(secretKey, message)
        const tampered = Uint8Array.from(message)
        tampered[4] = tampered[4]! ^ 1
        expect(yield* auth.verify(publicKey, sig, tampered)).toBe(false)
        expect(yield* auth.verify(publicKey, flipBit(sig, 0), message)).toBe(false)
        expect(yield* auth.verify(publicKey, flipBit(sig, 40), message)).toBe(false)
        expect(yield* auth.verify(publicKey, flipBit(sig, 63), message)).toBe(false)
        expect(yield* auth.verify(other.publicKey, sig, message)).toBe(false)
      }).pipe(Effect.provide(layer)))

    it.effect("malformed public keys and signatures verify false and never fail", () =>
      Effect.gen(function*() {
        const auth = yield* Auth
        const { publicKey, secretKey } = yield* auth.generateKey
        const message = bytes("m")
        const sig = yield* auth.sign(secretKey, message)
        const raw = publicKey.slice("ed25519:".length)
        const badKeys = [
          "",
          "ed25519:",
          raw, // no prefix
          "ed448:" + raw,
          "ed25519:" + raw.slice(0, -1), // padding dropped
          "ed25519:" + raw.slice(0, -4) + "!!!=",
          "ed25519:" + Buffer.alloc(31, 7).toString("base64"),
          "ed25519:" + Buffer.alloc(33, 7).toString("base64"),
          "ed25519:" + Buffer.alloc(32, 0xff).toString("base64") // not a canonical point encoding
        ]
        for (const key of badKeys) expect(yield* auth.verify(key, sig, message), key).toBe(false)
        const badSigs = [
          "",
          "not base64 at all",
          sig.slice(0, -2), // unpadded
          sig.slice(0, -4),
          Buffer.alloc(63).toString("base64"),
          Buffer.alloc(65).toString("base64"),
          Buffer.alloc(64).toString("base64"),
          nonCanonical(sig) // same bytes, unused trailing bits set
        ]
        for (const s of badSigs) expect(yield* auth.verify(publicKey, s, message), s).toBe(false)
      }).pipe(Effect.provide(layer)))

    it.effect("signing or deriving with a malformed secret key fails with CryptoError", () =>
      Effect.gen(function*() {
        const auth = yield* Auth
        for (const secret of ["", "ed25519:", "ed25519:AAAA", "x25519:" + Buffer.alloc(32).toString("base64")]) {
          const signed = yield* Effect.flip(auth.sign(secret, bytes("m")))
          expect(signed._tag).toBe("CryptoError")
          const derived = yield* Effect.flip(auth.publicKeyOf(secret))
          expect(derived._tag).toBe("CryptoError")
        }
      }).pipe(Effect.provide(layer)))

    it.effect("publicKeyOf matches the generated public key", () =>
      Effect.gen(function*() {
        const auth = yield* Auth
        for (let i = 0; i < 5; i++) {
          const { publicKey, secretKey } = yield* auth.generateKey
          expect(yield* auth.publicKeyOf(secretKey)).toBe(publicKey)
        }
      }).pipe(Effect.provide(layer)))

    it.effect("verifyBatch answers per item, in order, mixing good and bad", () =>
      Effect.gen(function*() {
        const auth = yield* Auth
        const a = yield* auth.generateKey
        const b = yield* auth.generateKey
        const m1 = bytes("one")
        const m2 = bytes("two")
        const s1 = yield* auth.sign(a.secretKey, m1)
        const s2 = yield* auth.sign(b.secretKey, m2)
        const results = yield* auth.verifyBatch([
          { publicKey: a.publicKey, signature: s1, message: m1 },
          { publicKey: b.publicKey, signature: s1, message: m1 },
          { publicKey: b.publicKey, signature: s2, message: m2 },
          { publicKey: "garbage", signature: s2, message: m2 },
          { publicKey: a.publicKey, signature: "garbage", message: m1 },
          { publicKey: a.publicKey, signature: s1, message: m2 }
        ])
        expect(results).toEqual([true, false, true, false, false, false])
        expect(yield* auth.verifyBatch([])).toEqual([])
      }).pipe(Effect.provide(layer)))

    it.effect("randomBytes has the asked length and is not constant", () =>
      Effect.gen(function*() {
        const auth = yield* Auth
        expect(yield* auth.randomBytes(0)).toHaveLength(0)
        const a = yield* auth.randomBytes(32)
        const b = yield* auth.randomBytes(32)
        expect(a).toBeInstanceOf(Uint8Array)
        expect(a).toHaveLength(32)
        expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false)
        expect(new Set(a).size).toBeGreaterThan(1)
        expect(yield* auth.randomBytes(70_000)).toHaveLength(70_000)
      }).pipe(Effect.provide(layer)))
  })

contract("native (libsodium)", layerNode)
contract("node:crypto", layerNodeCrypto)
contract("@noble/ed25519", layerNoble)
contract("seeded (simulation only)", layerSeeded)

/** A large batch goes through the worker pool; its answers must equal one-by-one verification. */
const largeBatch = (name: string, layer: Layer.Layer<Auth>) =>
  describe(`Auth large batches: ${name}`, () => {
    it.effect("a 2,000-item mixed batch (pooled) answers exactly as per-item verify", () =>
      Effect.gen(function*() {
        const auth = yield* Auth
        const keys = yield* Effect.all(Array.from({ length: 5 }, () => auth.generateKey))
        const notAPoint = "ed25519:" + Buffer.alloc(32, 0xff).toString("base64")
        const items: Array<{ publicKey: string; signature: string; message: Uint8Array }> = []
        for (let i = 0; i < 2_000; i++) {
          const key = keys[i % keys.length]!
          const message = bytes("m".repeat(i % 300) + i)
          const signature = yield* auth.sign(key.secretKey, message)
          switch (i % 7) {
            case 0: // signed by another key
              items.push({ publicKey: keys[(i + 1) % keys.length]!.publicKey, signature, message })
              break
            case 1: // tampered message
              items.push({ publicKey: key.publicKey, signature, message: bytes(`x${i}`) })
              break
            case 2: // flipped signature bit, or a malformed key or signature
              items.push({
                publicKey: i % 3 === 0 ? "garbage" : i % 3 === 1 ? notAPoint : key.publicKey,
                signature: i % 3 === 2 ? flipBit(signature, i % 64) : signature,
                message
              })
              break
            case 3:
              items.push({ publicKey: key.publicKey, signature: i % 2 === 0 ? "garbage" : nonCanonical(signature), message })
              break
            default:
              items.push({ publicKey: key.publicKey, signature, message })
          }
        }
        items.push({ publicKey: keys[0]!.publicKey, signature: yield* auth.sign(keys[0]!.secretKey, bytes("")), message: bytes("") })
        const one = yield* Effect.forEach(items, (i) => auth.verify(i.publicKey, i.signature, i.message))
        const batch = yield* auth.verifyBatch(items)
        expect(batch).toEqual(one)
        expect(one.filter((x) => x).length).toBeGreaterThan(800)
        expect(one.filter((x) => !x).length).toBeGreaterThan(1_000)
        // the pool stays usable for the next batch
        expect(yield* auth.verifyBatch(items)).toEqual(one)
      }).pipe(Effect.provide(layer)), 30_000)
  })

largeBatch("native (libsodium)", layerNode)
largeBatch("node:crypto", layerNodeCrypto)
largeBatch("seeded (simulation only)", layerSeeded)

describe("Auth verifyAhead (node:crypto)", () => {
  it.effect("verdicts found ahead are reused only for the very same key, signature and message bytes", () =>
    Effect.gen(function*() {
      const auth = yield* Auth
      const ahead = auth.verifyAhead!
      yield* ahead([]) // only warms the workers up
      const [a, b] = yield* Effect.all([auth.generateKey, auth.generateKey])
      const items: Array<{ publicKey: string; signature: string; message: Uint8Array }> = []
      for (let i = 0; i < 600; i++) {
        const message = bytes(`entry ${i}`)
        const signature = yield* auth.sign(a!.secretKey, message)
        items.push({ publicKey: a!.publicKey, signature, message: i % 5 === 0 ? bytes(`forged ${i}`) : message })
      }
      const truth = yield* Effect.forEach(items, (i) => auth.verify(i.publicKey, i.signature, i.message))
      yield* ahead(items)
      // asked again while in flight, in a large and in small batches, with byte-equal copies of the messages
      const copies = items.map((i) => ({ ...i, message: Uint8Array.from(i.message) }))
      const [large, small] = yield* Effect.all(
        [auth.verifyBatch(copies), Effect.forEach([copies.slice(0, 10), copies.slice(10, 20)], (c) => auth.verifyBatch(c))],
        { concurrency: "unbounded" }
      )
      expect(large).toEqual(truth)
      expect(small.flat()).toEqual(truth.slice(0, 20))
      // the same signatures over other messages or under another key are verified for what they are
      const altered = items.map((i, n) =>
        n % 2 === 0 ? { ...i, message: bytes(`other ${n}`) } : { ...i, publicKey: b!.publicKey }
      )
      expect(yield* auth.verifyBatch(altered)).toEqual(altered.map(() => false))
      // and a forged message now signed for real is not held against its earlier verdict
      const fixed = items.map((i, n) => (n % 5 === 0 ? { ...i, message: bytes(`entry ${n}`) } : i))
      expect(yield* auth.verifyBatch(fixed)).toEqual(fixed.map(() => true))
      expect(truth.filter((x) => !x).length).toBe(120)
    }).pipe(Effect.provide(layerNode)), 30_000)

  /** The nice value of each thread of this process (Linux: field 19 of /proc/self/task/<tid>/stat). */
  const niceByThread = (): Map<number, number> => {
    const out = new Map<number, number>()
    for (const tid of readdirSync("/proc/self/task")) {
      try {
        const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8")
        out.set(Number(tid), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]))
      } catch {
        // the thread ended meanwhile
      }
    }
    return out
  }

  it.effect.skipIf(process.platform !== "linux")("the pool's workers run at a lower priority (nice 10); the calling thread keeps its own", () =>
    Effect.gen(function*() {
      const before = new Set(niceByThread().keys())
      // threads started since `before` (the pool's) that run at nice 10; a worker lowers its own
      // priority when it starts, which may be just after it was created
      const lowered = () => [...niceByThread()].filter(([tid, nice]) => !before.has(tid) && nice === 10).length
      const auth = yield* Auth
      const key = yield* auth.generateKey
      const items = []
      for (let i = 0; i < 600; i++) {
        const message = bytes(`entry ${i}`)
        items.push({ publicKey: key.publicKey, signature: yield* auth.sign(key.secretKey, message), message })
      }
      expect((yield* auth.verifyBatch(items)).every((ok) => ok)).toBe(true)
      for (let wait = 0; wait < 50 && lowered() < poolSize; wait++) yield* Effect.promise(() => new Promise((r) => setTimeout(r, 100)))
      expect(lowered()).toBeGreaterThanOrEqual(poolSize)
      const self = Number(readlinkSync("/proc/thread-self").split("/").pop())
      expect(niceByThread().get(self)).toBe(0)
    }).pipe(Effect.provide(layerNode)), 30_000)

  it("is left out where background verification would escape the simulation's clock", () =>
    Effect.runPromise(
      Effect.scoped(Effect.gen(function*() {
        expect((yield* Effect.provide(Auth, layerSeeded)).verifyAhead).toBeUndefined()
        expect((yield* Effect.provide(Auth, layerNoble)).verifyAhead).toBeUndefined()
      }))
    ))
})

describe("Auth interop and determinism", () => {
  const signWith = (layer: Layer.Layer<Auth>, message: Uint8Array) =>
    Effect.gen(function*() {
      const auth = yield* Auth
      const key = yield* auth.generateKey
      return { ...key, signature: yield* auth.sign(key.secretKey, message) }
    }).pipe(Effect.provide(layer))
  const verifyWith = (layer: Layer.Layer<Auth>, publicKey: string, signature: string, message: Uint8Array) =>
    Effect.flatMap(Auth, (auth) => auth.verify(publicKey, signature, message)).pipe(Effect.provide(layer))

  it.effect("a node signature verifies under noble and a noble one under node", () =>
    Effect.gen(function*() {
      const message = bytes("interop")
      const fromNode = yield* signWith(layerNode, message)
      expect(yield* verifyWith(layerNoble, fromNode.publicKey, fromNode.signature, message)).toBe(true)
      const fromNoble = yield* signWith(layerNoble, message)
      expect(yield* verifyWith(layerNode, fromNoble.publicKey, fromNoble.signature, message)).toBe(true)
      // same secret key, same public key and same signature under both
      const again = yield* Effect.flatMap(Auth, (auth) =>
        Effect.all([auth.publicKeyOf(fromNode.secretKey), auth.sign(fromNode.secretKey, message)])).pipe(
          Effect.provide(layerNoble)
        )
      expect(again).toEqual([fromNode.publicKey, fromNode.signature])
    }))

  const seededKey = (seed: number) =>
    Effect.flatMap(Auth, (auth) => Effect.all([auth.generateKey, auth.randomBytes(16)])).pipe(
      Effect.provide(layerSeeded),
      Effect.withRandom(Random.make(seed))
    )

  it.effect("layerSeeded: same seed, same keys and bytes; different seed, different keys", () =>
    Effect.gen(function*() {
      const [k1, r1] = yield* seededKey(42)
      const [k2, r2] = yield* seededKey(42)
      const [k3] = yield* seededKey(43)
      expect(k2).toEqual(k1)
      expect(Buffer.from(r2).equals(Buffer.from(r1))).toBe(true)
      expect(k3.publicKey).not.toBe(k1.publicKey)
      expect(k3.secretKey).not.toBe(k1.secretKey)
    }))
})
