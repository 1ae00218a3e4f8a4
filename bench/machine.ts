/**
 * Calibration figures printed before the suites: how fast this machine verifies ed25519 signatures
 * on one core (600-byte messages), the work that bounds the verified-ingestion figures:
 * `machine.ed25519_verify_per_s` on node:crypto (OpenSSL), as earlier reports measured it, and
 * `machine.ed25519_verify_libsodium_per_s` on the engine the native Auth layer uses where it loads.
 * The same kind of machine has measured anywhere from 5,600 to 13,100/s on OpenSSL, so read the other figures against them.
 */
import * as crypto from "node:crypto"
import { performance } from "node:perf_hooks"
import { loadSodium, opensslEngine } from "../src/layers/internal/Ed25519.js"
import { report } from "./report.js"

/** The best of three rounds of 2,000 verifications of one signature. */
const bestOfThree = (verify: () => boolean): number => {
  let best = 0
  for (let round = 0; round < 3; round++) {
    const n = 2_000
    const start = performance.now()
    for (let i = 0; i < n; i++) if (!verify()) throw new Error("calibration signature does not verify")
    best = Math.max(best, n / ((performance.now() - start) / 1000))
  }
  return best
}

/** Report the calibration figures. */
export async function run(): Promise<void> {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ed25519")
  const message = new Uint8Array(600).fill(7)
  const signature = crypto.sign(null, message, privateKey)
  report("machine.ed25519_verify_per_s", bestOfThree(() => crypto.verify(null, message, publicKey, signature)), "verifies/s")
  const sodium = loadSodium()
  if (sodium !== undefined) {
    const raw = opensslEngine.rawPublicKey(privateKey)
    report(
      "machine.ed25519_verify_libsodium_per_s",
      bestOfThree(() => sodium.crypto_sign_verify_detached(signature, message, raw)),
      "verifies/s"
    )
  }
}
