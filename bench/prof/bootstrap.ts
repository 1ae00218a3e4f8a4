// The HTTP bootstrap figure alone: a child server with 10,000 entries, one fresh client bootstrapping
// it over loopback; prints the time and where the CPU went (client main thread, its verification
// workers, V8's other threads; the server process).
import * as Effect from "effect/Effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { Sync } from "../../src/services/Sync.js"
import { startServerProcess } from "../../test/fixtures/SyncServerProcess.js"
import { clientLayer } from "../sync.js"
import * as Prof from "./inspect.js"
import * as Threads from "./threads.js"

const dir = mkdtempSync(join(tmpdir(), "eidetica-prof-boot-"))
// the sync benchmark's own client, so the figures are the figure's
const client = clientLayer(join(dir, "client.db"))
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
