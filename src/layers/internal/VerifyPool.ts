/**
 * The node Auth layer's verification pool: worker threads (`verifyWorker.mjs`) that verify packed
 * batches of ed25519 signatures, each task posted at once to the least-loaded worker, and the
 * verdicts remembered per (key, signature, message) so a batch verified ahead is not verified again.
 */
import * as Effect from "effect/Effect"
import * as crypto from "node:crypto"
import { Worker } from "node:worker_threads"
import { Bounded } from "../../core/internal/Bounded.js"
import type { VerifyItem } from "../../services/Auth.js"
import type { EngineName } from "./Ed25519.js"

/** How a caller turns key and signature strings into raw bytes (undefined when malformed). */
export interface RawDecoders {
  readonly publicKey: (key: string) => Uint8Array | undefined
  readonly signature: (signature: string) => Uint8Array | undefined
}

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

/** Pool verdicts by signature (bounded, the least recently used dropped first); a lookup matches only the same key and byte-equal message. */
export const makeVerdicts = (max: number) => {
  const map = new Bounded<string, Verdict>(max)
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
      map.set(item.signature, v)
      return v
    }
  }
}
export type Verdicts = ReturnType<typeof makeVerdicts>

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
export interface VerifyPool {
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
 * A lazily started pool of `size` verification workers on the named engine (a worker where
 * sodium-native does not load verifies on node:crypto: the callers checked the shared acceptance
 * rule before, so both give the same answers). Each task is posted at once to the worker
 * with the smallest backlog, which works through its messages in order without waiting for this
 * thread (busy as it may be) to hand out the next; replies come back in the same order. Workers
 * with nothing outstanding are unref'd so they never keep a process alive.
 */
export const makePool = (size: number, engine: EngineName): VerifyPool => {
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
      const worker = new Worker(new URL("./verifyWorker.mjs", import.meta.url), { execArgv: [], workerData: { engine } })
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
 * thread. Returns at once (`done` may be called before it returns). Its loops are functions of their
 * own (`classify`, `pack`, `settleChunk`), each compiled once it is hot with all its feedback, instead of
 * one large function the optimiser compiled early (mid-loop, the later loops never run) and again.
 */
export const verifyInPool = (
  pool: VerifyPool,
  items: ReadonlyArray<VerifyItem>,
  raw: RawDecoders,
  verifyOne: (publicKey: string, signature: string, message: Uint8Array) => boolean,
  verdicts: Verdicts,
  done: (results: ReadonlyArray<boolean>) => void
): void => {
  const results = new Array<boolean>(items.length).fill(false)
  const { sendable, waiting } = classify(items, raw, verdicts, results)
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
    pool.submit(pack(chunk, items), (answers) => {
      settleChunk(chunk, items, answers, verifyOne, results)
      landed()
    })
  }
}

/** An item to send to the pool: its index in the batch, raw key and signature, and its new verdict. */
interface Sendable {
  readonly index: number
  readonly key: Uint8Array
  readonly sig: Uint8Array
  readonly verdict: Verdict
}

/**
 * Classify a batch's items: a known verdict goes into `results`, one in flight is waited for, a
 * malformed key or signature stays false, the rest are sent (their verdicts started).
 */
const classify = (
  items: ReadonlyArray<VerifyItem>,
  raw: RawDecoders,
  verdicts: Verdicts,
  results: Array<boolean>
): { sendable: Array<Sendable>; waiting: Array<{ index: number; verdict: Verdict }> } => {
  const rawKeys = new Map<string, Uint8Array | undefined>()
  const sendable: Array<Sendable> = []
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
      key = raw.publicKey(item.publicKey)
      rawKeys.set(item.publicKey, key)
    }
    const sig = key && raw.signature(item.signature)
    if (key !== undefined && sig !== undefined) sendable.push({ index: i, key, sig, verdict: verdicts.start(item) })
  }
  return { sendable, waiting }
}

/** A chunk packed for a worker: `[u32 LE message length][32-byte key][64-byte signature][message]` per item. */
const pack = (chunk: ReadonlyArray<Sendable>, items: ReadonlyArray<VerifyItem>): ArrayBuffer => {
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
  return buffer
}

/** A chunk's answers into `results` and its verdicts (a failed pool answers undefined: the chunk is verified here instead). */
const settleChunk = (
  chunk: ReadonlyArray<Sendable>,
  items: ReadonlyArray<VerifyItem>,
  answers: Uint8Array | undefined,
  verifyOne: (publicKey: string, signature: string, message: Uint8Array) => boolean,
  results: Array<boolean>
): void => {
  for (let j = 0; j < chunk.length; j++) {
    const { index, verdict } = chunk[j]!
    const item = items[index]!
    const ok = answers === undefined ? verifyOne(item.publicKey, item.signature, item.message) : answers[j] === 1
    results[index] = ok
    settle(verdict, ok)
  }
}
