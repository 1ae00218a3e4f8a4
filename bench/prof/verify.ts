import * as Effect from "effect/Effect"
import { performance } from "node:perf_hooks"
import * as AuthLayers from "../../src/layers/Auth.js"
import { Auth } from "../../src/services/Auth.js"
Effect.runPromise(Effect.scoped(Effect.gen(function* () {
  const auth = yield* Auth
  const keys = [yield* auth.generateKey, yield* auth.generateKey]
  const items = []
  for (let i = 0; i < 10000; i++) {
    const message = new Uint8Array(400).fill(i % 256)
    const k = keys[i % 2]!
    items.push({ publicKey: k.publicKey, signature: yield* auth.sign(k.secretKey, message), message })
  }
  for (let r = 0; r < 3; r++) {
    let s = performance.now()
    yield* auth.verifyBatch(items)
    console.log("pool verifyBatch 10k ms", (performance.now() - s).toFixed(0))
  }
  let s = performance.now()
  for (const it of items.slice(0, 3000)) yield* auth.verify(it.publicKey, it.signature, it.message)
  console.log("sequential verify /s", (3000 / ((performance.now() - s) / 1000)).toFixed(0))
}).pipe(Effect.provide(AuthLayers.layerNode))))
