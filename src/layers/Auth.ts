/**
 * Implementations of the Auth port. `layerNode` (native: libsodium through sodium-native, else
 * node:crypto's OpenSSL) is the default; `layerNodeCrypto` is the native layer on OpenSSL alone;
 * `layerNoble` (@noble/ed25519, pure JS) is portable; `layerSeeded` draws keys and randomness from
 * Effect's `Random` for deterministic simulation and is NOT for production. All of them produce and
 * accept the same strings: keys `ed25519:<padded base64 of 32 bytes>`, signatures padded base64 of 64
 * bytes. Non-canonical base64 is treated as malformed, so one signature has exactly one string form;
 * and all of them accept exactly the same signatures (see internal/Ed25519.ts).
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
import {
  acceptablePublicKey,
  acceptableSignature,
  type Ed25519Engine,
  type EngineName,
  loadSodium,
  opensslEngine,
  sodiumEngine
} from "./internal/Ed25519.js"
import { makePool, makeVerdicts, type RawDecoders, verdictCacheSize, verifyInPool, type VerifyPool } from "./internal/VerifyPool.js"

/** The Auth service tag (re-exported from the port). */
export { Auth }

/** How many public (and, separately, secret) KeyObjects one node-backed service keeps. */
export const keyCacheSize = 10_000

/** Batches of at least this many items are verified in the worker pool; smaller ones on the calling thread. */
export const poolThreshold = 256

/** Worker threads of one node-backed service's verification pool: one per core, at most 4. */
export const poolSize = Math.min(4, Math.max(1, availableParallelism()))

/** sodium-native, loaded on the first native service (undefined where its addon does not load). */
let sodium: ReturnType<typeof loadSodium> | null = null
const sodiumOnce = () => (sodium === null ? (sodium = loadSodium()) : sodium)

/** The engine `layerNode` signs and verifies with on this machine: "libsodium", or "node:crypto" where sodium-native does not load. */
export const nativeEngine = (): EngineName => (sodiumOnce() === undefined ? "node:crypto" : "libsodium")

/**
 * A native Auth service on `engine`, with a verification pool (its workers on the same engine) that
 * lives as long as the enclosing scope: started on the first large batch, terminated on close.
 */
const makeNative = <Pub, Priv>(
  engine: Ed25519Engine<Pub, Priv>,
  newSeed: Effect.Effect<Uint8Array>,
  randomBytes: (n: number) => Effect.Effect<Uint8Array>,
  ahead: boolean
): Effect.Effect<AuthShape, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(Effect.sync(() => makePool(poolSize, engine.name)), (pool) => pool.close),
    (pool) => makeNativeWith(engine, newSeed, randomBytes, pool, ahead)
  )

/** `makeNative` on libsodium where sodium-native loads, else on OpenSSL. */
const makeOnNativeEngine = (
  newSeed: Effect.Effect<Uint8Array>,
  randomBytes: (n: number) => Effect.Effect<Uint8Array>,
  ahead: boolean
): Effect.Effect<AuthShape, never, Scope.Scope> =>
  Effect.suspend(() => {
    const lib = sodiumOnce()
    return lib === undefined
      ? makeNative(opensslEngine, newSeed, randomBytes, ahead)
      : makeNative(sodiumEngine(lib), newSeed, randomBytes, ahead)
  })

const systemSeed = Effect.sync(() => crypto.randomFillSync(new Uint8Array(32)))
const systemBytes = (n: number) => Effect.sync(() => nodeRandomBytes(n))

/**
 * Builds the native Auth service; each call has its own key caches and its own verification pool
 * (started on the first large batch, terminated when the scope closes).
 */
export const makeNode: Effect.Effect<AuthShape, never, Scope.Scope> = makeOnNativeEngine(systemSeed, systemBytes, true)

/**
 * Native Auth: ed25519 on libsodium (sodium-native's prebuilt addon) where it loads, else on
 * node:crypto; cached keys, randomness from `crypto.randomFillSync`, large verification batches spread
 * over worker threads.
 */
export const layerNode: Layer.Layer<Auth> = Layer.scoped(Auth, makeNode)

/** As `layerNode`, on node:crypto's OpenSSL alone (about half libsodium's speed; no addon). */
export const layerNodeCrypto: Layer.Layer<Auth> = Layer.scoped(
  Auth,
  makeNative(opensslEngine, systemSeed, systemBytes, true)
)

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
    const pub = decodePublicKey(publicKey, decodePortable)
    const sig = pub && decodeSignature(signature, decodePortable)
    if (!pub || !sig) return false
    try {
      // zip215: false is noble's strict RFC 8032 branch; the shared acceptance rule did the rest
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
export const makeSeeded: Effect.Effect<AuthShape, never, Scope.Scope> = Effect.suspend(() =>
  // no `verifyAhead`: background verification lands at times a simulation's clock cannot see
  makeOnNativeEngine(seededBytes(32), seededBytes, false)
)

/**
 * DETERMINISTIC SIMULATION ONLY, NEVER PRODUCTION: keys and randomness come from the fiber's
 * `Random` (seed it with `Effect.withRandom(Random.make(seed))`), so they are guessable.
 */
export const layerSeeded: Layer.Layer<Auth> = Layer.scoped(Auth, makeSeeded)

// ---------------------------------------------------------------------------------------------
// helpers

const KEY_PREFIX = "ed25519:"

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

/** A public key's bytes, if well-formed and acceptable to every engine (else it verifies nothing). */
const decodePublicKey = (key: string, decode: Decoder): Uint8Array | undefined => {
  const raw = decodeKey(key, decode)
  return raw && acceptablePublicKey(raw) ? raw : undefined
}

/** A signature's bytes, if well-formed and acceptable to every engine. */
const decodeSignature = (signature: string, decode: Decoder): Uint8Array | undefined => {
  const raw = decode(signature, 64)
  return raw && acceptableSignature(raw) ? raw : undefined
}

/** The raw bytes of keys and signatures for the pool (node's base64): what fails here never leaves this thread. */
const raw: RawDecoders = {
  publicKey: (key) => decodePublicKey(key, decodeNode),
  signature: (signature) => decodeSignature(signature, decodeNode)
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

const nodeRandomBytes = (n: number): Uint8Array => crypto.randomFillSync(new Uint8Array(n))

/** getRandomValues fills at most 65,536 bytes per call. */
const webRandomBytes = (n: number): Uint8Array => {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i += 65_536) globalThis.crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65_536)))
  return out
}

const seededBytes = (n: number): Effect.Effect<Uint8Array> =>
  Effect.map(Effect.replicateEffect(Random.nextIntBetween(0, 256), n), (bytes) => Uint8Array.from(bytes))

/** The native signature service on one engine, with a pluggable source of seeds and random bytes. */
const makeNativeWith = <Pub, Priv>(
  engine: Ed25519Engine<Pub, Priv>,
  newSeed: Effect.Effect<Uint8Array>,
  randomBytes: (n: number) => Effect.Effect<Uint8Array>,
  pool: VerifyPool,
  ahead: boolean
): AuthShape => {
  const publicKeys = boundedCache<Pub>(keyCacheSize)
  const privateKeys = boundedCache<Priv>(keyCacheSize)
  const verdicts = makeVerdicts(verdictCacheSize)

  /** The cached prepared key of a secret key; undefined when it is malformed; throws if the engine refuses it. */
  const privateKeyFor = (secretKey: string): Priv | undefined =>
    privateKeys(secretKey, () => {
      const seed = decodeKey(secretKey, decodeNode)
      return seed && engine.privateKey(seed)
    })

  const privateKeyOf = (secretKey: string): Effect.Effect<Priv, CryptoError> =>
    Effect.try({
      try: () => privateKeyFor(secretKey),
      catch: keyNotBuilt
    }).pipe(Effect.filterOrFail((key): key is Priv => key !== undefined, malformedSecretKey))

  const verifyOne = (publicKey: string, signature: string, message: Uint8Array): boolean => {
    try {
      const key = publicKeys(publicKey, () => {
        const raw = decodePublicKey(publicKey, decodeNode)
        return raw && engine.publicKey(raw)
      })
      if (key === undefined) return false
      const sig = decodeSignature(signature, decodeNode)
      return sig !== undefined && engine.verify(key, sig, message)
    } catch {
      // OpenSSL refuses bytes that are not a curve point: a malformed key, so not verified.
      return false
    }
  }

  return {
    generateKey: Effect.map(newSeed, (seed) => ({
      publicKey: encodeKey(engine.rawPublicKey(engine.privateKey(seed)), toBase64),
      secretKey: encodeKey(seed, toBase64)
    })),
    publicKeyOf: (secretKey) =>
      Effect.flatMap(privateKeyOf(secretKey), (key) =>
        Effect.try({
          try: () => encodeKey(engine.rawPublicKey(key), toBase64),
          catch: (cause) => new CryptoError({ detail: "cannot derive the public key", cause })
        })
      ),
    // one step, not a chain of four: every commit signs
    sign: (secretKey, message) =>
      Effect.suspend(() => {
        let key: Priv | undefined
        try {
          key = privateKeyFor(secretKey)
        } catch (cause) {
          return Effect.fail(keyNotBuilt(cause))
        }
        if (key === undefined) return Effect.fail(malformedSecretKey())
        try {
          return Effect.succeed(engine.sign(key, message).toString("base64"))
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
