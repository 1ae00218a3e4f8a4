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
import { Storage } from "../../src/services/Storage.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"
import { rmSync } from "node:fs"
rmSync("/tmp/o.db", { force: true }); rmSync("/tmp/o.db-wal", { force: true })
const engine = () => Layer.mergeAll(process.env.MEM ? StorageLayers.layerMemory : StorageLayers.layerSqlite({ filename: "/tmp/o.db" }), AuthLayers.layerNode, layerCache, WriteEvents.layer)
const time = function* <A, E, R>(label: string, n: number, f: () => Effect.Effect<A, E, R>) {
  const s = performance.now()
  for (let i = 0; i < n; i++) yield* f()
  console.log(label.padEnd(20), (((performance.now() - s) * 1000) / n).toFixed(1), "us")
}
Effect.runPromise(Effect.scoped(Effect.gen(function* () {
  const auth = yield* Auth
  const key = yield* auth.generateKey
  const db = yield* Database.create({ signer: key })
  for (let i = 0; i < 500; i++) {
    const t = Transaction.begin(db, key)
    yield* new DocStore(t, "data").set(`k${i % 100}`, "x")
    yield* Transaction.commit(t)
  }
  const s = yield* Storage
  const tips = yield* s.tips(db.rootId)
  yield* time("tips", 2000, () => s.tips(db.rootId))
  yield* time("storeTips", 2000, () => s.storeTips(db.rootId, "data"))
  yield* time("heights", 2000, () => s.heights(tips))
  yield* time("has", 2000, () => s.has(tips))
  yield* time("getMany", 2000, () => s.getMany(tips))
  yield* time("storeEntriesSince", 2000, () => s.storeEntriesSince(db.rootId, "data", 1e9))
  yield* time("getMeta", 2000, () => s.getMeta("x"))
  yield* time("commit", 1000, () => Effect.gen(function* () {
    const t = Transaction.begin(db, key)
    yield* new DocStore(t, "data").set(`k`, "x")
    yield* Transaction.commit(t)
  }))
}).pipe(Effect.provide(engine()))))
