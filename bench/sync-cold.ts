/**
 * One bootstrap in a process of its own, for `sync.bootstrap_entries_per_s` (bench/sync.ts): a
 * fresh node (this process: nothing compiled yet, no verification workers started, an empty
 * SQLite file) bootstraps the database a running sync server serves, and prints one JSON line, a
 * `BootstrapRun`. With a second address and database, it first bootstraps that one, unmeasured:
 * `sync.bootstrap_warm_entries_per_s`, a node that has run a while taking on a new database (in a
 * process of its own too, so the benchmark's process does not carry two databases' garbage into
 * the suites after it).
 *
 *   node .build/bench/sync-cold.js <address> <database id> <entry count> <server pid> [<address> <database id>]
 */
import * as Effect from "effect/Effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Sync } from "../src/services/Sync.js"
import { clientLayer, measureBootstrap } from "./sync.js"

const [address, dbId, count, pid, warmAddress, warmDbId] = process.argv.slice(2)
if (address === undefined || dbId === undefined || count === undefined || pid === undefined) {
  console.error("usage: sync-cold <address> <database id> <entry count> <server pid>")
  process.exit(2)
}
const dir = mkdtempSync(join(tmpdir(), "eidetica-bench-cold-"))
try {
  const run = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const sync = yield* Sync
        yield* sync.enableHttpTransport()
        if (warmAddress !== undefined && warmDbId !== undefined) yield* sync.syncWithPeer(warmAddress, warmDbId)
        return yield* measureBootstrap({ address, dbId, count: Number(count), pid: Number(pid) })
      }).pipe(Effect.provide(clientLayer(join(dir, "client.db"))))
    )
  )
  console.log(JSON.stringify(run))
} finally {
  rmSync(dir, { recursive: true, force: true })
}
