// The HTTP bootstrap figure alone: a child server with 10,000 entries, a fresh client database
// bootstrapping it over loopback, ROUNDS times in this one process (default 1); each round's node
// starts its verification workers when it enables HTTP, before the bootstrap. Round 0 is cold (its
// code compiled on the way); later rounds are warm, so the difference is what compiling costs.
// Prints each round's time and where the CPU went (client main thread, its verification workers,
// V8's other threads; the server process); PROF=1 / HEAP=1 profile the last round (see inspect.ts).
import * as Effect from "effect/Effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Sync } from "../../src/services/Sync.js"
import { startServerProcess } from "../../test/fixtures/SyncServerProcess.js"
import { clientLayer, sourceOf, timeBootstrap } from "../sync.js"
import * as Prof from "./inspect.js"
import * as Threads from "./threads.js"

const dir = mkdtempSync(join(tmpdir(), "eidetica-prof-boot-"))
const server = await startServerProcess({ entries: 10_000, valueBytes: 200, timeoutMs: 600_000 })
try {
  const rounds = Number(process.env.ROUNDS ?? 1)
  for (let round = 0; round < rounds; round++) {
    const last = round === rounds - 1
    // the sync benchmark's own client, so the figures are the figure's
    await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      yield* (yield* Sync).enableHttpTransport()
      const source = sourceOf(server)
      yield* Effect.promise(() => Threads.idle(source.pid))
      if (last) yield* Effect.promise(() => Prof.start())
      const run = yield* timeBootstrap(source)
      if (last) yield* Effect.promise(() => Prof.stop("bootstrap"))
      console.log(
        `${rounds > 1 ? `round ${round}: ` : ""}bootstrap ${source.count} entries in ${(run.seconds * 1000).toFixed(0)} ms (${Math.round(run.rate)}/s);`,
        `CPU ms: client main ${run.cpu.main}, workers ${run.cpu.workers}, V8 threads ${run.cpu.rest}; server ${run.cpu.server}`
      )
    }).pipe(Effect.provide(clientLayer(join(dir, `client${round}.db`))))))
  }
} finally {
  await server.kill()
  rmSync(dir, { recursive: true, force: true })
}
