import { describe, expect, it } from "@effect/vitest"
import * as ed from "@noble/ed25519"
import { sha512 } from "@noble/hashes/sha2.js"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import fc from "fast-check"
import { Worker } from "node:worker_threads"
import { Auth, layerNode, layerNodeCrypto, layerNoble, layerSeeded, nativeEngine } from "../../src/layers/Auth.js"
import { acceptablePublicKey, isCanonicalPoint, loadSodium, opensslEngine } from "../../src/layers/internal/Ed25519.js"

ed.hashes.sha512 = sha512
const sodium = loadSodium()!
const L = 2n ** 252n + 27742317777372353535851937790883648493n
const P = 2n ** 255n - 19n

const le32 = (n: bigint): Uint8Array => {
  const out = new Uint8Array(32)
  for (let i = 0; i < 32; i++) out[i] = Number((n >> BigInt(8 * i)) & 0xffn)
  return out
}
const fromLe = (bytes: Uint8Array): bigint => bytes.reduceRight((acc, b) => (acc << 8n) | BigInt(b), 0n)
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64")
const keyString = (raw: Uint8Array) => "ed25519:" + b64(raw)
const concat = (...parts: Array<Uint8Array>) => Uint8Array.from(Buffer.concat(parts))

/** An ed25519 signature with a chosen R, made with the real secret scalar: S = r + h·a for R = r·B. */
const signWithR = (seed: Uint8Array, r: bigint, message: Uint8Array) => {
  const { pointBytes, scalar } = ed.utils.getExtendedPublicKey(seed)
  const R = r === 0n ? le32(1n) /* the identity */ : ed.Point.BASE.multiply(r).toBytes()
  const h = fromLe(sha512(concat(R, pointBytes, message))) % L
  return { publicKey: pointBytes, signature: concat(R, le32((r + h * scalar) % L)) }
}

/** Inputs where OpenSSL and libsodium, left to themselves, disagree or nearly do. */
const edgeCases = () => {
  const seed = new Uint8Array(32).fill(9)
  const message = new TextEncoder().encode("edge")
  // R = identity (small order) with a real key: OpenSSL verifies it, libsodium refuses it
  const identityR = signWithR(seed, 0n, message)
  // the identity as public key: R = s·B, S = s verifies for any message under OpenSSL
  const identityKey = { publicKey: le32(1n), signature: concat(ed.Point.BASE.multiply(5n).toBytes(), le32(5n)) }
  // S + L: the same point, a non-canonical scalar
  const honest = signWithR(seed, 12345n, message)
  const sPlusL = {
    publicKey: honest.publicKey,
    signature: concat(honest.signature.subarray(0, 32), le32(fromLe(honest.signature.subarray(32)) + L))
  }
  return { message, honest, identityR, identityKey, sPlusL }
}

describe("ed25519 engines", () => {
  it("this machine loads libsodium, so the native layer runs on it", () => {
    expect(sodium).toBeDefined()
    expect(nativeEngine()).toBe("libsodium")
  })

  it("left to themselves, OpenSSL takes what libsodium refuses (why the shared rule exists)", () => {
    const { honest, identityKey, identityR, message, sPlusL } = edgeCases()
    const openssl = (c: { publicKey: Uint8Array; signature: Uint8Array }) =>
      opensslEngine.verify(opensslEngine.publicKey(c.publicKey), c.signature, message)
    const libsodium = (c: { publicKey: Uint8Array; signature: Uint8Array }) =>
      sodium.crypto_sign_verify_detached(c.signature, message, c.publicKey)
    expect([openssl(honest), libsodium(honest)]).toEqual([true, true])
    expect([openssl(identityR), libsodium(identityR)]).toEqual([true, false])
    expect([openssl(identityKey), libsodium(identityKey)]).toEqual([true, false])
    expect([openssl(sPlusL), libsodium(sPlusL)]).toEqual([false, false])
  })

  it("the non-canonical encodings are the 19 values of y from p to 2^255 - 1, either sign", () => {
    for (let y = P - 2n; y < 2n ** 255n; y++) {
      for (const sign of [0, 0x80]) {
        const bytes = le32(y)
        bytes[31] = bytes[31]! | sign
        expect(isCanonicalPoint(bytes), `${y - P} ${sign}`).toBe(y < P)
      }
    }
    expect(isCanonicalPoint(le32(P - 1n))).toBe(true)
  })

  const layers: ReadonlyArray<readonly [string, Layer.Layer<Auth>]> = [
    ["native (libsodium)", layerNode],
    ["node:crypto", layerNodeCrypto],
    ["@noble/ed25519", layerNoble],
    ["seeded", layerSeeded]
  ]

  for (const [name, layer] of layers) {
    it.effect(`${name}: refuses small-order R and keys, non-canonical keys and S, one by one and pooled`, () =>
      Effect.gen(function*() {
        const auth = yield* Auth
        const { honest, identityKey, identityR, message, sPlusL } = edgeCases()
        const item = (c: { publicKey: Uint8Array; signature: Uint8Array }, m = message) => ({
          publicKey: keyString(c.publicKey),
          signature: b64(c.signature),
          message: m
        })
        const bad = [identityR, identityKey, sPlusL].map((c) => item(c))
        // every non-canonical key, every small-order key, under the identity-key forgery
        for (let y = P; y < 2n ** 255n; y++) bad.push(item({ publicKey: le32(y), signature: identityKey.signature }))
        for (const k of ["0100", "ecff", "0000"]) {
          const raw = k === "ecff" ? le32(P - 1n) : le32(BigInt(k === "0100" ? 1 : 0))
          raw[31] = raw[31]! | 0x80
          bad.push(item({ publicKey: raw, signature: identityKey.signature }))
        }
        const good = item(honest)
        for (const i of bad) expect(yield* auth.verify(i.publicKey, i.signature, i.message), i.publicKey).toBe(false)
        expect(yield* auth.verify(good.publicKey, good.signature, good.message)).toBe(true)
        // a batch large enough for the pool, where the native layers have one
        const batch = Array.from({ length: 300 }, (_, n) => (n % 3 === 0 ? bad[n % bad.length]! : good))
        expect(yield* auth.verifyBatch(batch)).toEqual(batch.map((i) => i === good))
      }).pipe(Effect.provide(layer)), 30_000)
  }

  it.effect("every layer answers as libsodium on arbitrary keys, signatures and messages", () =>
    Effect.gen(function*() {
      const auths = yield* Effect.forEach(layers, ([, layer]) => Effect.provide(Auth, layer), { concurrency: 1 })
      const cases = fc.sample(
        fc.record({
          seed: fc.uint8Array({ minLength: 32, maxLength: 32 }),
          message: fc.uint8Array({ maxLength: 64 }),
          // half honest, three in ten with one bit of the signature or the key flipped, two in ten under random key bytes
          kind: fc.integer({ min: 0, max: 9 }),
          bit: fc.nat({ max: 64 * 8 + 32 * 8 - 1 }),
          rawKey: fc.uint8Array({ minLength: 32, maxLength: 32 })
        }),
        { numRuns: 300, seed: 7 }
      )
      let accepted = 0
      for (const c of cases) {
        const { publicKey, signature } = signWithR(c.seed, fromLe(c.seed) % L, c.message)
        const pub = Uint8Array.from(c.kind >= 8 ? c.rawKey : publicKey)
        const sig = Uint8Array.from(signature)
        if (c.kind >= 5 && c.kind < 8) {
          const bit = c.bit
          if (bit < 512) sig[bit >> 3] = sig[bit >> 3]! ^ (1 << (bit & 7))
          else pub[(bit - 512) >> 3] = pub[(bit - 512) >> 3]! ^ (1 << (bit & 7))
        }
        const truth = sodium.crypto_sign_verify_detached(sig, c.message, pub)
        if (truth) accepted++
        for (const auth of auths) {
          expect(yield* auth.verify(keyString(pub), b64(sig), c.message)).toBe(truth)
        }
        if (!acceptablePublicKey(pub)) expect(truth).toBe(false)
      }
      expect(accepted).toBeGreaterThan(100)
    }).pipe(Effect.scoped), 60_000)
})

describe("verification worker engines", () => {
  /** One packed item through a worker started on `engine`: its verdict byte. */
  const askWorker = (engine: string, c: { publicKey: Uint8Array; signature: Uint8Array }, message: Uint8Array) =>
    new Promise<number>((resolve, reject) => {
      const worker = new Worker(new URL("../../src/layers/internal/verifyWorker.mjs", import.meta.url), {
        workerData: { engine }
      })
      const packed = new Uint8Array(100 + message.length)
      new DataView(packed.buffer).setUint32(0, message.length, true)
      packed.set(c.publicKey, 4)
      packed.set(c.signature, 36)
      packed.set(message, 100)
      worker.once("message", (out: Uint8Array) => {
        resolve(out[0]!)
        void worker.terminate()
      })
      worker.once("error", reject)
      worker.postMessage(packed.buffer, [packed.buffer])
    })

  it("a worker verifies on the engine it is started with", async () => {
    const { honest, identityR, message } = edgeCases()
    // an item the pool would never send (R of small order): the two engines tell themselves apart on it
    expect(await askWorker("libsodium", identityR, message)).toBe(0)
    expect(await askWorker("node:crypto", identityR, message)).toBe(1)
    expect(await askWorker("libsodium", honest, message)).toBe(1)
    expect(await askWorker("node:crypto", honest, message)).toBe(1)
  })
})
