// The HTTP bootstrap several times in one process (ROUNDS, default 3), each into a fresh client
// database from the same child server: round 0 is cold (its code compiled on the way, its verification
// workers started), the later ones show what compiling costs. Prints the CPU split of each round;
// PROF=1 / HEAP=1 profile the last round (see inspect.ts).
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

const dir = mkdtempSync(join(tmpdir(), "eidetica-prof-rounds-"))
const server = await startServerProcess({ entries: 10_000, valueBytes: 200, timeoutMs: 600_000 })
try {
  const rounds = Number(process.env.ROUNDS ?? 3)
  for (let round = 0; round < rounds; round++) {
    await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const sync = yield* Sync
      yield* sync.enableHttpTransport()
      if (round === rounds - 1) yield* Effect.promise(() => Prof.start())
      const threads = Threads.snapshot()
      const serverBefore = Threads.processMs(server.child.pid!)
      const start = performance.now()
      const boot = yield* sync.syncWithPeer(server.info.address, server.info.dbId)
      const ms = performance.now() - start
      const cpu = Threads.since(threads)
      if (round === rounds - 1) yield* Effect.promise(() => Prof.stop("rounds"))
      console.log(
        `round ${round}: ${boot.received} entries in ${ms.toFixed(0)} ms (${Math.round(boot.received / (ms / 1000))}/s); CPU ms: client main ${cpu.main},`,
        `workers ${cpu.workers}, V8 threads ${cpu.rest}; server ${Threads.processMs(server.child.pid!) - serverBefore}`
      )
    }).pipe(Effect.provide(clientLayer(join(dir, `client${round}.db`))))))
  }
} finally {
  await server.kill()
  rmSync(dir, { recursive: true, force: true })
}
