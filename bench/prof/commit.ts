import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { performance } from "node:perf_hooks"
import * as Database from "../../src/database/Database.js"
import { layerCache } from "../../src/database/StoreState.js"
import { DocStore } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { Auth } from "../../src/services/Auth.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"
import { rmSync } from "node:fs"
rmSync("/tmp/c.db", { force: true }); rmSync("/tmp/c.db-wal", { force: true })
const engine = () => Layer.mergeAll(process.env.MEM ? StorageLayers.layerMemory : StorageLayers.layerSqlite({ filename: "/tmp/c.db" }), AuthLayers.layerNode, layerCache, WriteEvents.layer)
const N = Number(process.env.N ?? 4000)
const value = "x".repeat(200)
Effect.runPromise(Effect.scoped(Effect.gen(function* () {
  const auth = yield* Auth
  const key = yield* auth.generateKey
  const db = yield* Database.create({ signer: key })
  const s = performance.now(); const c0 = process.cpuUsage()
  for (let i = 0; i < N; i++) {
    const t = Transaction.begin(db, key)
    yield* new DocStore(t, "data").set(`k${i % 100}`, value)
    yield* Transaction.commit(t)
  }
  const c = process.cpuUsage(c0)
  console.log("commit/s", Math.round(N / ((performance.now() - s) / 1000)), "cpu us/commit", Math.round((c.user + c.system) / N))
}).pipe(Effect.provide(engine()))))
