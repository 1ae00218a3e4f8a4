// The local batch figure alone: 10,000 entries signed in memory, then decoded, verified and stored into SQLite (`ingestEncoded`).
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { rmSync } from "node:fs"
import { performance } from "node:perf_hooks"
import * as Database from "../../src/database/Database.js"
import { ingestEncoded } from "../../src/database/Ingest.js"
import { layerCache } from "../../src/database/StoreState.js"
import { DocStore } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { Auth } from "../../src/services/Auth.js"
import { Storage } from "../../src/services/Storage.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"
import * as Prof from "./inspect.js"
for (const f of ["/tmp/b.db", "/tmp/b.db-wal", "/tmp/b.db-shm"]) rmSync(f, { force: true })
const engine = (file?: string) => Layer.mergeAll(file === undefined ? StorageLayers.layerMemory : StorageLayers.layerSqlite({ filename: file }), AuthLayers.layerNode, layerCache, WriteEvents.layer)
const value = "x".repeat(200)
Effect.runPromise(Effect.scoped(Effect.gen(function* () {
  const auth = yield* Auth
  const key = yield* auth.generateKey
  const bytes = yield* Effect.provide(Effect.gen(function* () {
    const db = yield* Database.create({ signer: key })
    for (let i = 0; i < 10_000; i++) {
      const t = Transaction.begin(db, key)
      yield* new DocStore(t, "data").set(`k${i}`, value)
      yield* Transaction.commit(t)
    }
    const storage = yield* Storage
    const ids = yield* storage.ancestors(db.rootId, yield* storage.tips(db.rootId))
    return (yield* storage.getMany(ids)).map((e) => e.bytes)
  }), engine())
  yield* Effect.promise(() => Prof.start())
  const s = performance.now()
  const stored = yield* ingestEncoded(bytes, "remote")
  const t = performance.now() - s
  yield* Effect.promise(() => Prof.stop("batch"))
  console.log("decode and ingest ms", t.toFixed(0), "entries/s", Math.round(stored.length / (t / 1000)))
}).pipe(Effect.provide(engine(process.env.MEM ? undefined : "/tmp/b.db")))))
