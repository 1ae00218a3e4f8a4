/**
 * Implementations of the Auth port. `layerNode` (node:crypto, native speed) is the default;
 * `layerNoble` (@noble/ed25519, pure JS) is portable; `layerSeeded` draws keys and randomness from
 * Effect's `Random` for deterministic simulation and is NOT for production. All three produce and
 * accept the same strings: keys `ed25519:<padded base64 of 32 bytes>`, signatures padded base64 of 64
 * bytes. Non-canonical base64 is treated as malformed, so one signature has exactly one string form.
 */
import * as ed from "@noble/ed25519"
import { sha512 } from "@noble/hashes/sha2.js"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as crypto from "node:crypto"
import { availableParallelism } from "node:os"
import { Bounded } from "../core/internal/Bounded.js"
import { CryptoError } from "../schema/Errors.js"
import { Auth, type AuthShape, type KeyPair, type VerifyItem } from "../services/Auth.js"
import { makePool, makeVerdicts, type RawDecoders, verdictCacheSize, verifyInPool, type VerifyPool } from "./internal/VerifyPool.js"

/** The Auth service tag (re-exported from the port). */
export { Auth }

/** How many public (and, separately, secret) KeyObjects one node-backed service keeps. */
export const keyCacheSize = 10_000

/** Batches of at least this many items are verified in the worker pool; smaller ones on the calling thread. */
export const poolThreshold = 256

/** Worker threads of one node-backed service's verification pool: one per core, at most 4. */
export const poolSize = Math.min(4, Math.max(1, availableParallelism()))

/** A verification pool that lives as long as the enclosing scope. */
const scopedPool: Effect.Effect<VerifyPool, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => makePool(poolSize)),
  (pool) => pool.close
)

/**
 * Builds the node:crypto Auth service; each call has its own KeyObject caches and its own
 * verification pool (started on the first large batch, terminated when the scope closes).
 */
export const makeNode: Effect.Effect<AuthShape, never, Scope.Scope> = Effect.map(scopedPool, (pool) =>
  makeNodeWith(
    Effect.sync(() => crypto.randomFillSync(new Uint8Array(32))),
    (n) => Effect.sync(() => nodeRandomBytes(n)),
    pool,
    true
  )
)

/**
 * Auth on node:crypto: native ed25519 with cached KeyObjects, randomness from `crypto.randomFillSync`,
 * large verification batches spread over worker threads.
 */
export const layerNode: Layer.Layer<Auth> = Layer.scoped(Auth, makeNode)

/** Builds the @noble/ed25519 Auth service (sync API, SHA-512 from @noble/hashes). */
export const makeNoble: Effect.Effect<AuthShape> = Effect.sync(() => {
  ed.hashes.sha512 = sha512
  const randomBytes = (n: number) => Effect.sync(() => webRandomBytes(n))
  const publicKeyOf = (secretKey: string) =>
    Effect.flatMap(decodeSecretKey(secretKey, decodePortable), (seed) =>
      Effect.try({
        try: () => encodeKey(ed.getPublicKey(seed), Encoding.encodeBase64),
        catch: (cause) => new CryptoError({ detail: "cannot derive the public key", cause })
      })
    )
  const verifyOne = (publicKey: string, signature: string, message: Uint8Array): boolean => {
    const pub = decodeKey(publicKey, decodePortable)
    const sig = pub && decodePortable(signature, 64)
    if (!pub || !sig) return false
    try {
      // zip215: false is noble's strict RFC 8032 branch, the closest to OpenSSL's acceptance rules.
      return ed.verify(sig, message, pub, { zip215: false })
    } catch {
      return false
    }
  }
  const service: AuthShape = {
    generateKey: Effect.sync(() => {
      const seed = webRandomBytes(32)
      return {
        publicKey: encodeKey(ed.getPublicKey(seed), Encoding.encodeBase64),
        secretKey: encodeKey(seed, Encoding.encodeBase64)
      } satisfies KeyPair
    }),
    publicKeyOf,
    sign: (secretKey, message) =>
      Effect.flatMap(decodeSecretKey(secretKey, decodePortable), (seed) =>
        Effect.try({
          try: () => Encoding.encodeBase64(ed.sign(message, seed)),
          catch: (cause) => new CryptoError({ detail: "signing failed", cause })
        })
      ),
    verify: (publicKey, signature, message) => Effect.sync(() => verifyOne(publicKey, signature, message)),
    verifyBatch: (items) => Effect.sync(() => items.map((i) => verifyOne(i.publicKey, i.signature, i.message))),
    randomBytes
  }
  return service
})

/** Auth on @noble/ed25519: portable (no node APIs in its path), about 15 times slower to verify. */
export const layerNoble: Layer.Layer<Auth> = Layer.effect(Auth, makeNoble)

/**
 * DETERMINISTIC SIMULATION ONLY, NEVER PRODUCTION: signatures as in `layerNode`, but `generateKey`
 * and `randomBytes` draw from Effect's `Random` service, so under `Effect.withRandom(Random.make(seed))`
 * every key and nonce is reproducible, and therefore predictable to anyone who knows the seed.
 */
export const makeSeeded: Effect.Effect<AuthShape, never, Scope.Scope> = Effect.map(scopedPool, (pool) =>
  // no `verifyAhead`: background verification lands at times a simulation's clock cannot see
  makeNodeWith(seededBytes(32), seededBytes, pool, false)
)

/**
 * DETERMINISTIC SIMULATION ONLY, NEVER PRODUCTION: keys and randomness come from the fiber's
 * `Random` (seed it with `Effect.withRandom(Random.make(seed))`), so they are guessable.
 */
export const layerSeeded: Layer.Layer<Auth> = Layer.scoped(Auth, makeSeeded)

// ---------------------------------------------------------------------------------------------
// helpers

const KEY_PREFIX = "ed25519:"
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex")

/** Decodes canonical padded base64 of exactly `length` bytes, or undefined. */
type Decoder = (text: string, length: number) => Uint8Array | undefined

const base64Length = (bytes: number) => Math.ceil(bytes / 3) * 4

/** Buffer-based decoder (node layers): lenient `Buffer.from`, made strict by re-encoding. */
const decodeNode: Decoder = (text, length) => {
  if (text.length !== base64Length(length)) return undefined
  const bytes = Buffer.from(text, "base64")
  return bytes.length === length && bytes.toString("base64") === text ? bytes : undefined
}

/** Effect's Encoding decoder (noble layer), made strict by re-encoding. */
const decodePortable: Decoder = (text, length) => {
  if (text.length !== base64Length(length)) return undefined
  const decoded = Encoding.decodeBase64(text)
  if (Either.isLeft(decoded)) return undefined
  const bytes = decoded.right
  return bytes.length === length && Encoding.encodeBase64(bytes) === text ? bytes : undefined
}

const encodeKey = (raw: Uint8Array, encode: (bytes: Uint8Array) => string) => KEY_PREFIX + encode(raw)

const decodeKey = (key: string, decode: Decoder): Uint8Array | undefined =>
  key.startsWith(KEY_PREFIX) ? decode(key.slice(KEY_PREFIX.length), 32) : undefined

/** The raw bytes of keys and signatures for the pool (node's base64). */
const raw: RawDecoders = {
  publicKey: (key) => decodeKey(key, decodeNode),
  signature: (signature) => decodeNode(signature, 64)
}

const malformedSecretKey = () => new CryptoError({ detail: "malformed secret key: expected ed25519:<base64 of a 32-byte seed>" })
const keyNotBuilt = (cause: unknown) => new CryptoError({ detail: "cannot build the private key", cause })

const decodeSecretKey = (secretKey: string, decode: Decoder): Effect.Effect<Uint8Array, CryptoError> => {
  const seed = decodeKey(secretKey, decode)
  return seed ? Effect.succeed(seed) : Effect.fail(malformedSecretKey())
}

/** A cache of at most `max` values built on demand (the least recently used dropped first). */
const boundedCache = <V>(max: number) => {
  const map = new Bounded<string, V>(max)
  return (key: string, build: () => V | undefined): V | undefined => {
    const hit = map.get(key)
    if (hit !== undefined) return hit
    const value = build()
    if (value !== undefined) map.set(key, value)
    return value
  }
}

const publicKeyObject = (raw: Uint8Array): crypto.KeyObject =>
  crypto.createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki" })

const privateKeyObject = (seed: Uint8Array): crypto.KeyObject =>
  crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" })

const rawPublicKey = (privateKey: crypto.KeyObject): Uint8Array =>
  crypto.createPublicKey(privateKey).export({ format: "der", type: "spki" }).subarray(SPKI_ED25519_PREFIX.length)

const nodeRandomBytes = (n: number): Uint8Array => crypto.randomFillSync(new Uint8Array(n))

/** getRandomValues fills at most 65,536 bytes per call. */
const webRandomBytes = (n: number): Uint8Array => {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i += 65_536) globalThis.crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65_536)))
  return out
}

const seededBytes = (n: number): Effect.Effect<Uint8Array> =>
  Effect.map(Effect.replicateEffect(Random.nextIntBetween(0, 256), n), (bytes) => Uint8Array.from(bytes))

/** The node:crypto signature engine with a pluggable source of seeds and random bytes. */
const makeNodeWith = (
  newSeed: Effect.Effect<Uint8Array>,
  randomBytes: (n: number) => Effect.Effect<Uint8Array>,
  pool: VerifyPool,
  ahead: boolean
): AuthShape => {
  const publicKeys = boundedCache<crypto.KeyObject>(keyCacheSize)
  const privateKeys = boundedCache<crypto.KeyObject>(keyCacheSize)
  const verdicts = makeVerdicts(verdictCacheSize)

  /** The cached KeyObject of a secret key; undefined when it is malformed; throws if node refuses it. */
  const privateKeyFor = (secretKey: string): crypto.KeyObject | undefined =>
    privateKeys(secretKey, () => {
      const seed = decodeKey(secretKey, decodeNode)
      return seed && privateKeyObject(seed)
    })

  const privateKeyOf = (secretKey: string): Effect.Effect<crypto.KeyObject, CryptoError> =>
    Effect.try({
      try: () => privateKeyFor(secretKey),
      catch: keyNotBuilt
    }).pipe(Effect.filterOrFail((key): key is crypto.KeyObject => key !== undefined, malformedSecretKey))

  const verifyOne = (publicKey: string, signature: string, message: Uint8Array): boolean => {
    try {
      const key = publicKeys(publicKey, () => {
        const raw = decodeKey(publicKey, decodeNode)
        return raw && publicKeyObject(raw)
      })
      if (key === undefined) return false
      const sig = decodeNode(signature, 64)
      return sig !== undefined && crypto.verify(null, message, key, sig)
    } catch {
      // createPublicKey rejects bytes that are not a curve point: a malformed key, so not verified.
      return false
    }
  }

  return {
    generateKey: Effect.map(newSeed, (seed) => ({
      publicKey: encodeKey(rawPublicKey(privateKeyObject(seed)), toBase64),
      secretKey: encodeKey(seed, toBase64)
    })),
    publicKeyOf: (secretKey) =>
      Effect.flatMap(privateKeyOf(secretKey), (key) =>
        Effect.try({
          try: () => encodeKey(rawPublicKey(key), toBase64),
          catch: (cause) => new CryptoError({ detail: "cannot derive the public key", cause })
        })
      ),
    // one step, not a chain of four: every commit signs
    sign: (secretKey, message) =>
      Effect.suspend(() => {
        let key: crypto.KeyObject | undefined
        try {
          key = privateKeyFor(secretKey)
        } catch (cause) {
          return Effect.fail(keyNotBuilt(cause))
        }
        if (key === undefined) return Effect.fail(malformedSecretKey())
        try {
          return Effect.succeed(crypto.sign(null, message, key).toString("base64"))
        } catch (cause) {
          return Effect.fail(new CryptoError({ detail: "signing failed", cause }))
        }
      }),
    verify: (publicKey, signature, message) => Effect.sync(() => verifyOne(publicKey, signature, message)),
    verifyBatch: (items: ReadonlyArray<VerifyItem>) =>
      pool.usable() && (items.length >= poolThreshold || verdicts.anyInFlight(items))
        ? Effect.async<ReadonlyArray<boolean>>((resume) =>
          verifyInPool(pool, items, raw, verifyOne, verdicts, (results) => resume(Effect.succeed(results)))
        )
        : Effect.sync(() =>
          items.map((i) => verdicts.get(i)?.ok ?? verifyOne(i.publicKey, i.signature, i.message))
        ),
    ...(ahead
      ? {
        verifyAhead: (items: ReadonlyArray<VerifyItem>) =>
          Effect.sync(() => {
            if (!pool.usable()) return
            // nothing yet, but more to come: have the workers start up meanwhile
            if (items.length === 0) pool.warm()
            else verifyInPool(pool, items, raw, verifyOne, verdicts, () => {})
          })
      }
      : {}),
    randomBytes
  }
}

const toBase64 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")
