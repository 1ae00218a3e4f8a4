import * as Effect from "effect/Effect"
import { performance } from "node:perf_hooks"
import { Permission } from "../../src/index.js"
import { makeNode, setupDb, write } from "../../test/layers/SyncFixtures.js"
const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
Effect.runPromise(Effect.scoped(Effect.gen(function* () {
  const a = yield* makeNode()
  const b = yield* makeNode()
  const { treeId, signer } = yield* setupDb(a, { global: Permission.Write(10), syncEnabled: true, data: { seed: "x" } })
  yield* a.sync.enableHttpTransport()
  const address = yield* a.sync.startServer("127.0.0.1:0")
  yield* b.sync.enableHttpTransport()
  yield* b.sync.syncWithPeer(address, treeId)
  const inc: number[] = [], idle: number[] = [], handler: number[] = [], httpOnly: number[] = []
  for (let i = 0; i < 100; i++) {
    yield* write(a, treeId, signer, "k", `v${i}`)
    let s = performance.now()
    yield* b.sync.syncWithPeer(address, treeId)
    inc.push(performance.now() - s)
    s = performance.now()
    yield* b.sync.syncWithPeer(address, treeId)
    idle.push(performance.now() - s)
    const tips = yield* b.storage.tips(treeId)
    s = performance.now()
    yield* a.sync.handle({ SyncTree: { tree_id: treeId, our_tips: tips } }, {})
    handler.push(performance.now() - s)
    s = performance.now()
    yield* Effect.promise(() => fetch(`http://${address}/health`).then((r) => r.text()))
    httpOnly.push(performance.now() - s)
  }
  console.log("incremental (1 new) ms", median(inc).toFixed(2), "idle sync ms", median(idle).toFixed(2), "server handler ms", median(handler).toFixed(2), "fetch /health ms", median(httpOnly).toFixed(2))
})))
