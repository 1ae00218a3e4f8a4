// The local batch figure alone: 10,000 entries signed in memory, then decoded, verified and stored into SQLite (`ingestEncoded`);
// prints the wall time and the CPU time of all threads (the figure is CPU-bound on two cores).
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { rmSync } from "node:fs"
import { performance } from "node:perf_hooks"
import { ingestEncoded } from "../../src/database/Ingest.js"
import { layerCache } from "../../src/database/StoreState.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { Auth } from "../../src/services/Auth.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"
import { signedHistory } from "../local.js"
import * as Prof from "./inspect.js"
for (const f of ["/tmp/b.db", "/tmp/b.db-wal", "/tmp/b.db-shm"]) rmSync(f, { force: true })
const engine = (file?: string) => Layer.mergeAll(file === undefined ? StorageLayers.layerMemory : StorageLayers.layerSqlite({ filename: file }), AuthLayers.layerNode, layerCache, WriteEvents.layer)
Effect.runPromise(Effect.scoped(Effect.gen(function* () {
  const auth = yield* Auth
  const key = yield* auth.generateKey
  const { bytes } = yield* signedHistory(key, 10_000)
  yield* Effect.promise(() => Prof.start())
  const cpu = process.cpuUsage()
  const s = performance.now()
  const stored = yield* ingestEncoded(bytes, "remote")
  const t = performance.now() - s
  const used = process.cpuUsage(cpu)
  yield* Effect.promise(() => Prof.stop("batch"))
  console.log("decode and ingest ms", t.toFixed(0), "entries/s", Math.round(stored.length / (t / 1000)), "cpu ms (all threads)", ((used.user + used.system) / 1000).toFixed(0))
}).pipe(Effect.provide(engine(process.env.MEM ? undefined : "/tmp/b.db")))))
