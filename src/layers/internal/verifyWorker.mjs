/**
 * ed25519 verification worker for the native Auth layers' pool. Plain JavaScript so it loads in any
 * runner (tsx, vitest, plain node) without a TypeScript loader. It verifies on the engine its
 * `workerData.engine` names: libsodium (sodium-native), or node:crypto's OpenSSL, also where
 * sodium-native does not load. The pool sends only keys and signatures that passed the acceptance
 * rule all engines share (Ed25519.ts), so either gives the same answers.
 *
 * Request: an ArrayBuffer of packed items, each `[u32 LE message length][32-byte public key][64-byte signature][message]`.
 * Reply: a Uint8Array with one byte per item (1 = verified), its buffer transferred back.
 */
import { createPublicKey, verify } from "node:crypto"
import { readlinkSync } from "node:fs"
import { createRequire } from "node:module"
import { setPriority } from "node:os"
import { parentPort, workerData } from "node:worker_threads"

/**
 * Verification is background work: this thread runs at a lower priority (nice 10), so that when the
 * cores are busy the main thread (the app, the sync handlers, the decoding that feeds this pool)
 * gets them first. Linux names a thread by its id in /proc/thread-self; elsewhere, or if the system
 * refuses, the thread keeps the default priority and only the scheduling differs.
 */
export const WORKER_NICE = 10
try {
  const tid = Number(readlinkSync("/proc/thread-self").split("/").pop())
  if (Number.isSafeInteger(tid) && tid > 0) setPriority(tid, WORKER_NICE)
} catch {
  // not Linux, or not allowed: default priority
}

/** sodium-native when asked for and loadable, else undefined (OpenSSL verifies). */
const sodium = (() => {
  if (workerData?.engine !== "libsodium") return undefined
  try {
    return createRequire(import.meta.url)("sodium-native")
  } catch {
    return undefined
  }
})()

const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex")
const CACHE_MAX = 10_000
/** Public KeyObjects by the base64 of their raw bytes (bounded FIFO, as on the main thread). */
const keys = new Map()

const keyOf = (raw) => {
  const id = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("base64")
  let key = keys.get(id)
  if (key === undefined) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki" })
    if (keys.size >= CACHE_MAX) keys.delete(keys.keys().next().value)
    keys.set(id, key)
  }
  return key
}

// plain views over the request's buffer: a Buffer's subarray costs more to make (and to compile)
parentPort.on("message", (buffer) => {
  const view = new DataView(buffer)
  const total = buffer.byteLength
  const results = []
  let at = 0
  while (at < total) {
    const length = view.getUint32(at, true)
    const raw = new Uint8Array(buffer, at + 4, 32)
    const sig = new Uint8Array(buffer, at + 36, 64)
    const message = new Uint8Array(buffer, at + 100, length)
    at += 100 + length
    let ok = false
    try {
      ok = sodium !== undefined
        ? sodium.crypto_sign_verify_detached(sig, message, raw)
        : verify(null, message, keyOf(raw), sig)
    } catch {
      // a key that is not a curve point: not verified, as on the main thread
      ok = false
    }
    results.push(ok ? 1 : 0)
  }
  const out = Uint8Array.from(results)
  parentPort.postMessage(out, [out.buffer])
})
