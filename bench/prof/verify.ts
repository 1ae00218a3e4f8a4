import * as Effect from "effect/Effect"
import { performance } from "node:perf_hooks"
import * as AuthLayers from "../../src/layers/Auth.js"
import { Auth } from "../../src/services/Auth.js"
Effect.runPromise(Effect.scoped(Effect.gen(function* () {
  const auth = yield* Auth
  const keys = [yield* auth.generateKey, yield* auth.generateKey]
  // distinct messages, and a fresh set per round: the node layer remembers verdicts of identical items
  const sets: Array<Array<{ publicKey: string; signature: string; message: Uint8Array }>> = []
  for (let r = 0; r < 3; r++) {
    const items = []
    for (let i = 0; i < 10000; i++) {
      const message = new Uint8Array(400).fill(i % 256)
      new DataView(message.buffer).setUint32(0, r * 10000 + i)
      const k = keys[i % 2]!
      items.push({ publicKey: k.publicKey, signature: yield* auth.sign(k.secretKey, message), message })
    }
    sets.push(items)
  }
  const items = sets[0]!
  for (const set of sets) {
    let s = performance.now()
    yield* auth.verifyBatch(set)
    console.log("pool verifyBatch 10k ms", (performance.now() - s).toFixed(0))
  }
  let s = performance.now()
  for (const it of items.slice(0, 3000)) yield* auth.verify(it.publicKey, it.signature, it.message)
  console.log("sequential verify /s", (3000 / ((performance.now() - s) / 1000)).toFixed(0))
}).pipe(Effect.provide(AuthLayers.layerNode))))
