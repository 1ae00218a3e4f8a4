import * as Effect from "effect/Effect"
import { performance } from "node:perf_hooks"
import { Permission } from "../../src/index.js"
import { makeNode, setupDb } from "../../test/layers/SyncFixtures.js"
Effect.runPromise(Effect.scoped(Effect.gen(function* () {
  const a = yield* makeNode()
  const b = yield* makeNode()
  const { treeId } = yield* setupDb(a, { global: Permission.Write(10), syncEnabled: true, data: { seed: "x" } })
  yield* a.sync.enableHttpTransport()
  const address = yield* a.sync.startServer("127.0.0.1:0")
  yield* b.sync.enableHttpTransport()
  yield* b.sync.syncWithPeer(address, treeId)
  const s = performance.now()
  for (let i = 0; i < 1000; i++) yield* b.sync.syncWithPeer(address, treeId)
  console.log("idle sync ms", ((performance.now() - s) / 1000).toFixed(2))
})))
