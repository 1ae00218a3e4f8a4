/**
 * A calibration figure printed before the suites: how fast this machine verifies ed25519 signatures
 * on one core (node:crypto, 600-byte messages), the work that bounds the verified-ingestion figures.
 * The same kind of machine has measured anywhere from 5,600 to 13,100/s, so read the other figures against it.
 */
import * as crypto from "node:crypto"
import { performance } from "node:perf_hooks"
import { report } from "./report.js"

/** Report `machine.ed25519_verify_per_s`: the best of three rounds of 2,000 verifications. */
export async function run(): Promise<void> {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ed25519")
  const message = new Uint8Array(600).fill(7)
  const signature = crypto.sign(null, message, privateKey)
  let best = 0
  for (let round = 0; round < 3; round++) {
    const n = 2_000
    const start = performance.now()
    for (let i = 0; i < n; i++) if (!crypto.verify(null, message, publicKey, signature)) throw new Error("calibration signature does not verify")
    best = Math.max(best, n / ((performance.now() - start) / 1000))
  }
  report("machine.ed25519_verify_per_s", best, "verifies/s")
}
