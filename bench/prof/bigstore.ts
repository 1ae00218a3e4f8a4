// A large store over SQLite: N commits each adding a key (untimed), then C cycles of one commit
// adding a key and one read of it, reporting cycles/s, the median and the slowest cycles (saves of
// the state and checkpoint copies show up there). N=20000 C=3000 by default; N=100000 takes ~90 s to fill.
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import * as Database from "../../src/database/Database.js"
import { layerCache } from "../../src/database/StoreState.js"
import { DocStore, DocStoreView } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { Auth } from "../../src/services/Auth.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"

const N = Number(process.env.N ?? 20_000)
const C = Number(process.env.C ?? 3_000)
const value = "x".repeat(200)
const dir = mkdtempSync(join(tmpdir(), "eidetica-bigstore-"))
const engine = Layer.mergeAll(
  StorageLayers.layerSqlite({ filename: join(dir, "big.db") }),
  AuthLayers.layerNode,
  layerCache,
  WriteEvents.layer
)

const commitKey = (db: Database.Database, signer: Database.Signer, key: string) =>
  Effect.gen(function*() {
    const t = Transaction.begin(db, signer)
    yield* new DocStore(t, "data").set(key, value)
    yield* Transaction.commit(t)
  })

Effect.runPromise(
  Effect.scoped(
    Effect.gen(function*() {
      const signer = yield* (yield* Auth).generateKey
      const db = yield* Database.create({ signer })
      const view = new DocStoreView(db, "data")
      let start = performance.now()
      for (let i = 0; i < N; i++) yield* commitKey(db, signer, `k${i}`)
      console.log(`filled ${N} keys in ${((performance.now() - start) / 1000).toFixed(1)} s`)
      start = performance.now()
      yield* view.get("k0")
      console.log(`first read (a full fold, then a save): ${(performance.now() - start).toFixed(0)} ms`)
      const cycles: Array<number> = []
      start = performance.now()
      for (let i = 0; i < C; i++) {
        const s = performance.now()
        yield* commitKey(db, signer, `n${i}`)
        if ((yield* view.get(`n${i}`)) !== value) throw new Error(`read after commit ${i} saw a stale value`)
        cycles.push(performance.now() - s)
      }
      const seconds = (performance.now() - start) / 1000
      cycles.sort((a, b) => a - b)
      console.log(
        `commit+read: ${(C / seconds).toFixed(0)}/s, median ${cycles[C >> 1]!.toFixed(2)} ms, slowest ${
          cycles.slice(-5).map((x) => x.toFixed(0)).join(", ")
        } ms`
      )
    }).pipe(Effect.provide(engine))
  )
).finally(() => rmSync(dir, { recursive: true, force: true }))
