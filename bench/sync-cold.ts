/**
 * One cold bootstrap in a process of its own, for `sync.bootstrap_entries_per_s` (bench/sync.ts):
 * a fresh node (this process: nothing compiled yet, an empty SQLite file; enabling HTTP started its
 * verification workers, as it does in any node) bootstraps the database a running sync server
 * serves, and prints one JSON line, a `BootstrapRun`.
 *
 *   node .build/bench/sync-cold.js <address> <database id> <entry count> <server pid>
 */
import * as Effect from "effect/Effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Sync } from "../src/services/Sync.js"
import { clientLayer, measureBootstrap } from "./sync.js"

const [address, dbId, count, pid] = process.argv.slice(2)
if (address === undefined || dbId === undefined || count === undefined || pid === undefined) {
  console.error("usage: sync-cold <address> <database id> <entry count> <server pid>")
  process.exit(2)
}
const dir = mkdtempSync(join(tmpdir(), "eidetica-bench-cold-"))
try {
  const run = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        yield* (yield* Sync).enableHttpTransport()
        return yield* measureBootstrap({ address, dbId, count: Number(count), pid: Number(pid) })
      }).pipe(Effect.provide(clientLayer(join(dir, "client.db"))))
    )
  )
  console.log(JSON.stringify(run))
} finally {
  rmSync(dir, { recursive: true, force: true })
}
