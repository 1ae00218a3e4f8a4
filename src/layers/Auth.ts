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
import { Worker } from "node:worker_threads"
import { CryptoError } from "../schema/Errors.js"
import { Auth, type AuthShape, type KeyPair, type VerifyItem } from "../services/Auth.js"

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

const decodeSecretKey = (secretKey: string, decode: Decoder): Effect.Effect<Uint8Array, CryptoError> => {
  const seed = decodeKey(secretKey, decode)
  return seed
    ? Effect.succeed(seed)
    : Effect.fail(new CryptoError({ detail: "malformed secret key: expected ed25519:<base64 of a 32-byte seed>" }))
}

/** A Map that forgets its oldest insertion beyond `max` entries (FIFO; cheap on the hot path). */
const boundedCache = <V>(max: number) => {
  const map = new Map<string, V>()
  return (key: string, build: () => V | undefined): V | undefined => {
    const hit = map.get(key)
    if (hit !== undefined) return hit
    const value = build()
    if (value === undefined) return undefined
    if (map.size >= max) {
      const oldest = map.keys().next()
      if (!oldest.done) map.delete(oldest.value)
    }
    map.set(key, value)
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

  const privateKeyOf = (secretKey: string): Effect.Effect<crypto.KeyObject, CryptoError> =>
    Effect.try({
      try: () => privateKeys(secretKey, () => {
        const seed = decodeKey(secretKey, decodeNode)
        return seed && privateKeyObject(seed)
      }),
      catch: (cause) => new CryptoError({ detail: "cannot build the private key", cause })
    }).pipe(
      Effect.filterOrFail(
        (key): key is crypto.KeyObject => key !== undefined,
        () => new CryptoError({ detail: "malformed secret key: expected ed25519:<base64 of a 32-byte seed>" })
      )
    )

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
    sign: (secretKey, message) =>
      Effect.flatMap(privateKeyOf(secretKey), (key) =>
        Effect.try({
          try: () => crypto.sign(null, message, key).toString("base64"),
          catch: (cause) => new CryptoError({ detail: "signing failed", cause })
        })
      ),
    verify: (publicKey, signature, message) => Effect.sync(() => verifyOne(publicKey, signature, message)),
    verifyBatch: (items: ReadonlyArray<VerifyItem>) =>
      pool.usable() && (items.length >= poolThreshold || verdicts.anyInFlight(items))
        ? Effect.async<ReadonlyArray<boolean>>((resume) =>
          verifyInPool(pool, items, verifyOne, verdicts, (results) => resume(Effect.succeed(results)))
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
            else verifyInPool(pool, items, verifyOne, verdicts, () => {})
          })
      }
      : {}),
    randomBytes
  }
}

// ---------------------------------------------------------------------------------------------
// verification pool

/** How many pool verdicts one node-backed service remembers (see `Verdicts`). */
export const verdictCacheSize = 32_768

/**
 * The outcome of one pool verification of (public key, signature, message), or undefined while it is
 * in flight (then `waiters` are called when it lands). Verification is deterministic, so a batch
 * that asks again for exactly the same triple (same key, same signature, byte-equal message) takes
 * the outcome, or waits for it, instead of verifying twice: a sync client verifies a received page
 * ahead, while the previous page is stored, and ingestion then finds the verdicts.
 */
interface Verdict {
  readonly publicKey: string
  readonly message: Uint8Array
  ok: boolean | undefined
  waiters: Array<() => void> | undefined
}

/** Pool verdicts by signature (bounded FIFO); a lookup matches only the same key and byte-equal message. */
const makeVerdicts = (max: number) => {
  const map = new Map<string, Verdict>()
  return {
    get: (item: VerifyItem): Verdict | undefined => {
      const v = map.get(item.signature)
      return v !== undefined && v.publicKey === item.publicKey && sameBytes(v.message, item.message) ? v : undefined
    },
    /** Whether some item's verdict is in flight (a batch asking for it should wait, not verify again). */
    anyInFlight: (items: ReadonlyArray<VerifyItem>): boolean => {
      for (const item of items) {
        const v = map.get(item.signature)
        if (v !== undefined && v.ok === undefined && v.publicKey === item.publicKey && sameBytes(v.message, item.message))
          return true
      }
      return false
    },
    /** A new in-flight verdict for `item` (replacing any other triple with the same signature). */
    start: (item: VerifyItem): Verdict => {
      const v: Verdict = { publicKey: item.publicKey, message: item.message, ok: undefined, waiters: undefined }
      if (map.size >= max && !map.has(item.signature)) {
        const oldest = map.keys().next()
        if (!oldest.done) map.delete(oldest.value)
      }
      map.set(item.signature, v)
      return v
    }
  }
}
type Verdicts = ReturnType<typeof makeVerdicts>

/** Settle a verdict and wake whoever waits for it. */
const settle = (v: Verdict, ok: boolean) => {
  v.ok = ok
  const waiters = v.waiters
  v.waiters = undefined
  if (waiters !== undefined) for (const w of waiters) w()
}

/** Byte equality (native comparison: messages are hundreds of bytes, looked up several times each). */
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a === b || (a.length === b.length && crypto.timingSafeEqual(a, b))

/** Bytes before each message in a packed request: u32 length, 32-byte key, 64-byte signature. */
const ITEM_HEADER = 100

/** The worker threads that verify packed chunks; each chunk's callback gets one byte per item, or undefined if the pool failed. */
interface VerifyPool {
  readonly size: number
  /** False once the pool is closed or a worker failed: callers then verify on their own thread. */
  readonly usable: () => boolean
  readonly submit: (buffer: ArrayBuffer, done: (results: Uint8Array | undefined) => void) => void
  /** Start the workers now if they are not running yet. */
  readonly warm: () => void
  readonly close: Effect.Effect<void>
}

interface PoolTask {
  readonly buffer: ArrayBuffer
  readonly done: (results: Uint8Array | undefined) => void
  /** The task's share of its worker's backlog (its buffer's size; the buffer itself is transferred). */
  readonly cost: number
}

/**
 * A lazily started pool of `size` verification workers. Each task is posted at once to the worker
 * with the smallest backlog, which works through its messages in order without waiting for this
 * thread (busy as it may be) to hand out the next; replies come back in the same order. Workers
 * with nothing outstanding are unref'd so they never keep a process alive.
 */
const makePool = (size: number): VerifyPool => {
  let workers: Array<Worker> | undefined
  let broken = false
  /** Each worker's outstanding tasks, oldest first, and their total cost. */
  const backlog = new Map<Worker, { readonly tasks: Array<PoolTask>; cost: number }>()

  const fail = () => {
    broken = true
    const orphans = [...backlog.values()].flatMap((b) => b.tasks.splice(0))
    backlog.clear()
    const all = workers ?? []
    workers = []
    for (const w of all) void w.terminate()
    for (const t of orphans) t.done(undefined)
  }

  const start = () => {
    workers = []
    for (let i = 0; i < size; i++) {
      const worker = new Worker(new URL("./internal/verifyWorker.mjs", import.meta.url), { execArgv: [] })
      worker.unref()
      const queue = { tasks: [] as Array<PoolTask>, cost: 0 }
      backlog.set(worker, queue)
      worker.on("message", (results: Uint8Array) => {
        const task = queue.tasks.shift()
        if (task === undefined) return
        queue.cost -= task.cost
        if (queue.tasks.length === 0) worker.unref()
        task.done(results)
      })
      worker.on("error", fail)
      worker.on("exit", () => {
        if (!broken) fail()
      })
      workers.push(worker)
    }
  }

  return {
    size,
    usable: () => !broken,
    submit: (buffer, done) => {
      if (broken) return done(undefined)
      if (workers === undefined) start()
      let target: Worker | undefined
      let least = Infinity
      for (const [worker, queue] of backlog) {
        if (queue.cost < least) {
          least = queue.cost
          target = worker
        }
      }
      const queue = backlog.get(target!)!
      const task: PoolTask = { buffer, done, cost: buffer.byteLength }
      if (queue.tasks.length === 0) target!.ref()
      queue.tasks.push(task)
      queue.cost += task.cost
      target!.postMessage(buffer, [buffer])
    },
    warm: () => {
      if (!broken && workers === undefined) start()
    },
    close: Effect.sync(() => {
      if (!broken) fail()
    })
  }
}

/**
 * Verify a batch across the pool, calling `done` with one boolean per item: items whose verdict is
 * known or in flight are not sent again; items whose key or signature is malformed never leave this
 * thread. Returns at once (`done` may be called before it returns).
 */
const verifyInPool = (
  pool: VerifyPool,
  items: ReadonlyArray<VerifyItem>,
  verifyOne: (publicKey: string, signature: string, message: Uint8Array) => boolean,
  verdicts: Verdicts,
  done: (results: ReadonlyArray<boolean>) => void
): void => {
  const results = new Array<boolean>(items.length).fill(false)
  const rawKeys = new Map<string, Uint8Array | undefined>()
  const sendable: Array<{ index: number; key: Uint8Array; sig: Uint8Array; verdict: Verdict }> = []
  const waiting: Array<{ index: number; verdict: Verdict }> = []
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!
    const known = verdicts.get(item)
    if (known !== undefined) {
      if (known.ok !== undefined) results[i] = known.ok
      else waiting.push({ index: i, verdict: known })
      continue
    }
    let key = rawKeys.get(item.publicKey)
    if (key === undefined && !rawKeys.has(item.publicKey)) {
      key = decodeKey(item.publicKey, decodeNode)
      rawKeys.set(item.publicKey, key)
    }
    const sig = key && decodeNode(item.signature, 64)
    if (key !== undefined && sig !== undefined) sendable.push({ index: i, key, sig, verdict: verdicts.start(item) })
  }
  // two chunks per worker, so a worker slowed by other load does not hold the batch back
  const chunkCount = Math.min(sendable.length, pool.size * 2)
  const per = Math.ceil(sendable.length / Math.max(1, chunkCount))
  let remaining = (sendable.length === 0 ? 0 : Math.ceil(sendable.length / per)) + waiting.length
  if (remaining === 0) return done(results)
  const landed = () => {
    if (--remaining === 0) done(results)
  }
  // verdicts another batch has in flight: wait for them (registered first, so a chunk of this
  // batch that lands at once cannot finish the count early)
  for (const { index, verdict } of waiting) {
    ;(verdict.waiters ??= []).push(() => {
      results[index] = verdict.ok === true
      landed()
    })
  }
  for (let from = 0; from < sendable.length; from += per) {
    const chunk = sendable.slice(from, from + per)
    let total = 0
    for (const s of chunk) total += ITEM_HEADER + items[s.index]!.message.length
    const buffer = new ArrayBuffer(total)
    const bytes = new Uint8Array(buffer)
    const view = new DataView(buffer)
    let at = 0
    for (const s of chunk) {
      const message = items[s.index]!.message
      view.setUint32(at, message.length, true)
      bytes.set(s.key, at + 4)
      bytes.set(s.sig, at + 36)
      bytes.set(message, at + ITEM_HEADER)
      at += ITEM_HEADER + message.length
    }
    pool.submit(buffer, (answers) => {
      for (let j = 0; j < chunk.length; j++) {
        const { index, verdict } = chunk[j]!
        const item = items[index]!
        // a failed pool answers undefined: verify this chunk here instead
        const ok = answers === undefined ? verifyOne(item.publicKey, item.signature, item.message) : answers[j] === 1
        results[index] = ok
        settle(verdict, ok)
      }
      landed()
    })
  }
}

const toBase64 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")
