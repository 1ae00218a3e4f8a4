/**
 * One BLAKE3 hasher from hash-wasm, initialised once at module load (top-level await), so the
 * pure functions of core/ can hash synchronously.
 */
import { createBLAKE3 } from "hash-wasm"

const hasher = await createBLAKE3(256)

/** BLAKE3-256 of the bytes. */
export const blake3 = (bytes: Uint8Array): Uint8Array => {
  hasher.init()
  hasher.update(bytes)
  return hasher.digest("binary")
}
