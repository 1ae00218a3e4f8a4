/**
 * ed25519 verification worker for the node Auth layer's pool. Plain JavaScript so it loads in any
 * runner (tsx, vitest, plain node) without a TypeScript loader.
 *
 * Request: an ArrayBuffer of packed items, each `[u32 LE message length][32-byte public key][64-byte signature][message]`.
 * Reply: a Uint8Array with one byte per item (1 = verified), its buffer transferred back.
 */
import { createPublicKey, verify } from "node:crypto"
import { parentPort } from "node:worker_threads"

const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex")
const CACHE_MAX = 10_000
/** Public KeyObjects by the base64 of their raw bytes (bounded FIFO, as on the main thread). */
const keys = new Map()

const keyOf = (raw) => {
  const id = raw.toString("base64")
  let key = keys.get(id)
  if (key === undefined) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki" })
    if (keys.size >= CACHE_MAX) keys.delete(keys.keys().next().value)
    keys.set(id, key)
  }
  return key
}

parentPort.on("message", (buffer) => {
  const bytes = Buffer.from(buffer)
  const view = new DataView(buffer)
  const results = []
  let at = 0
  while (at < bytes.length) {
    const length = view.getUint32(at, true)
    const raw = bytes.subarray(at + 4, at + 36)
    const sig = bytes.subarray(at + 36, at + 100)
    const message = bytes.subarray(at + 100, at + 100 + length)
    at += 100 + length
    let ok = false
    try {
      ok = verify(null, message, keyOf(raw), sig)
    } catch {
      // a key that is not a curve point: not verified, as on the main thread
      ok = false
    }
    results.push(ok ? 1 : 0)
  }
  const out = Uint8Array.from(results)
  parentPort.postMessage(out, [out.buffer])
})
