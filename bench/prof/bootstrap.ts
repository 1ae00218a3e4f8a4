// The HTTP bootstrap figure alone: a child server with 10,000 entries, one fresh client bootstrapping
// it over loopback; prints the time and where the CPU went (client main thread, its verification
// workers, V8's other threads; the server process).
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { layerCache } from "../../src/database/StoreState.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as CipherLayers from "../../src/layers/Cipher.js"
import * as InstanceLayers from "../../src/layers/Instance.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import * as SyncLayers from "../../src/layers/Sync.js"
import { Sync } from "../../src/services/Sync.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"
import { startServerProcess } from "../../test/fixtures/SyncServerProcess.js"
import * as Prof from "./inspect.js"
import * as Threads from "./threads.js"

const dir = mkdtempSync(join(tmpdir(), "eidetica-prof-boot-"))
const base = Layer.mergeAll(
  StorageLayers.layerSqlite({ filename: join(dir, "client.db") }),
  AuthLayers.layerNode,
  CipherLayers.layerNode,
  layerCache,
  WriteEvents.layer
)
const client = Layer.orDie(Layer.provideMerge(SyncLayers.layer, Layer.provideMerge(InstanceLayers.layer, base)))
const server = await startServerProcess({ entries: 10_000, valueBytes: 200, timeoutMs: 600_000 })
try {
  await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const sync = yield* Sync
    yield* sync.enableHttpTransport()
    yield* Effect.promise(() => Prof.start())
    const threads = Threads.snapshot()
    const serverBefore = Threads.processMs(server.child.pid!)
    const start = performance.now()
    const boot = yield* sync.syncWithPeer(server.info.address, server.info.dbId)
    const ms = performance.now() - start
    const cpu = Threads.since(threads)
    yield* Effect.promise(() => Prof.stop("bootstrap"))
    console.log(
      `bootstrap ${boot.received} entries in ${ms.toFixed(0)} ms (${Math.round(boot.received / (ms / 1000))}/s); CPU ms: client main ${cpu.main},`,
      `workers ${cpu.workers}, V8 threads ${cpu.rest}; server ${Threads.processMs(server.child.pid!) - serverBefore}`
    )
  }).pipe(Effect.provide(client))))
} finally {
  await server.kill()
  rmSync(dir, { recursive: true, force: true })
}
