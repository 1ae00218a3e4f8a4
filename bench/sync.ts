/**
 * Sync figures over loopback HTTP between TWO PROCESSES, SQLite on both sides (temp dirs): the
 * server is `test/fixtures/sync-server.ts` in a child process, the client runs here.
 *
 * - sync.bootstrap_entries_per_s: a fresh node bootstraps a 10,000-entry database (~200-byte values):
 *   the median of three, each in a process of its own (`sync-cold.ts`: nothing compiled, an empty
 *   SQLite file; its verification workers started when it enabled HTTP, before the timer, as in any
 *   node that enabled sync before its first bootstrap), since one cold run varies by ±15% with the
 *   host; every run is printed. Before them this process bootstraps it (printed, not reported):
 *   the history the figures below build on, and the server's first serving, so the three find it
 *   as a node that serves others is, its serving code compiled.
 * - sync.bootstrap_warm_entries_per_s: the same node, after all the HTTP figures below, bootstraps
 *   a second 10,000-entry database from a second server (which has served one fresh process
 *   before, as the first had): a node that has run a while and takes on a new database. Beside the
 *   cold figure, it tells how much of that is a fresh process compiling its code.
 * - sync.incremental_ms: the child commits one entry (through its stdin control, untimed), then one
 *   syncWithPeer from the client pulls it (timed); median of 50 in steady state, after 50 first ones
 *   (their median is sync.incremental_cold_ms) and 1,500 untimed ones: one sync runs each path
 *   once, so V8 optimises them only after a few thousand, as in a node that has served a while.
 * - sync.incremental_push_ms: the client commits one entry (untimed), then one syncWithPeer pushes it
 *   (timed: a SyncTree round trip answering nothing, plus a SendEntries round trip); median of 50,
 *   measured as the pull (sync.incremental_push_cold_ms for the first 50).
 * - sync.transfer_overhead_ratio: both sides share the history, each then adds 100 entries; the
 *   JSON body bytes of one syncWithPeer in both directions (requests and responses, HTTP headers
 *   not counted) over the DAG-CBOR bytes of the 200 entries exchanged.
 * - sync.iroh_bootstrap_entries_per_s, sync.iroh_incremental_ms (and _cold_ms): the bootstrap and
 *   the incremental pull again with the server serving over iroh (QUIC on loopback, no relays).
 *   IROH=0 leaves them out.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import type { Signer } from "../src/database/Database.js"
import { layerCache } from "../src/database/StoreState.js"
import { DocStore } from "../src/database/Stores.js"
import * as Transaction from "../src/database/Transaction.js"
import * as AuthLayers from "../src/layers/Auth.js"
import * as CipherLayers from "../src/layers/Cipher.js"
import * as InstanceLayers from "../src/layers/Instance.js"
import * as StorageLayers from "../src/layers/Storage.js"
import * as SyncLayers from "../src/layers/Sync.js"
import { encodeRequest, encodeResponse } from "../src/schema/Protocol.js"
import { Instance } from "../src/services/Instance.js"
import { Storage } from "../src/services/Storage.js"
import { Sync } from "../src/services/Sync.js"
import type { TransportShape } from "../src/services/Transport.js"
import * as WriteEvents from "../src/services/WriteEvents.js"
import { type ServerProcess, siblingScript, startServerProcess } from "../test/fixtures/SyncServerProcess.js"
import * as Threads from "./prof/threads.js"
import { median, report } from "./report.js"

const ENTRIES = 10_000
const VALUE_BYTES = 200

/** Counts JSON body bytes through the transport while `on`. */
const meter = { on: false, requestBytes: 0, responseBytes: 0, sendMs: 0 }
const counting = (transport: TransportShape): TransportShape => ({
  ...transport,
  send: (address, request) =>
    Effect.tap(Effect.timed(transport.send(address, request)).pipe(Effect.tap(([d]) => Effect.sync(() => { meter.sendMs += Duration.toMillis(d) })), Effect.map(([, r]) => r)), (response) =>
      Effect.sync(() => {
        if (!meter.on) return
        meter.requestBytes += Buffer.byteLength(JSON.stringify(encodeRequest(request)))
        meter.responseBytes += Buffer.byteLength(JSON.stringify(encodeResponse(response)))
      })
    )
})

/** The benchmark's client: a SQLite engine with Instance and Sync, its transports metered. */
export const clientLayer = (filename: string) => {
  const base = Layer.mergeAll(
    StorageLayers.layerSqlite({ filename }),
    AuthLayers.layerNode,
    CipherLayers.layerNode,
    layerCache,
    WriteEvents.layer
  )
  return Layer.orDie(
    Layer.provideMerge(SyncLayers.layerWith({ wrapTransport: counting }), Layer.provideMerge(InstanceLayers.layer, base))
  )
}

const commitOne = (treeId: string, signer: Signer, i: number) =>
  Effect.gen(function*() {
    const txn = Transaction.begin({ rootId: treeId }, signer)
    yield* new DocStore(txn, "client").set(`c${i % 1000}`, `${i}:`.padEnd(VALUE_BYTES, "y"))
    return yield* Transaction.commit(txn)
  })

/** Timed steps (in ms) measured first cold, then in steady state: 50 timed, 1,500 untimed, 50 timed. */
const coldAndSteady = <E, R>(name: string, step: (i: number) => Effect.Effect<number, E, R>) =>
  Effect.gen(function*() {
    const timed = 50
    const warmup = 1_500
    const cold: Array<number> = []
    for (let i = 0; i < timed; i++) cold.push(yield* step(i))
    for (let i = timed; i < timed + warmup; i++) yield* step(i)
    const steady: Array<number> = []
    for (let i = timed + warmup; i < 2 * timed + warmup; i++) steady.push(yield* step(i))
    report(`${name}_cold_ms`, median(cold), "ms")
    report(`${name}_ms`, median(steady), "ms")
  })

/** The server a bootstrap pulls from: where it serves, its database, and its process (for its CPU time). */
export interface BootstrapSource {
  readonly address: string
  readonly dbId: string
  readonly count: number
  readonly pid: number
}

/** One bootstrap: entries per second, round trips, and the CPU ms of each side (see `Threads.since`). */
export interface BootstrapRun {
  readonly rate: number
  readonly seconds: number
  readonly roundTrips: number
  readonly cpu: { readonly main: number; readonly workers: number; readonly rest: number; readonly server: number }
}

export const sourceOf = (server: ServerProcess): BootstrapSource => ({ ...server.info, pid: server.child.pid! })

/**
 * This node bootstraps the server's database, which it holds nothing of, once the server has
 * finished building it (`Threads.idle`).
 */
export const measureBootstrap = (source: BootstrapSource) =>
  Effect.zipRight(Effect.promise(() => Threads.idle(source.pid)), timeBootstrap(source))

/** This node bootstraps the server's database, timed from now (no wait for the server). */
export const timeBootstrap = (source: BootstrapSource) =>
  Effect.gen(function*() {
    const sync = yield* Sync
    const threads = Threads.snapshot()
    const serverBefore = Threads.processMs(source.pid)
    const start = performance.now()
    const boot = yield* sync.syncWithPeer(source.address, source.dbId)
    const seconds = (performance.now() - start) / 1000
    const cpu = { ...Threads.since(threads), server: Threads.processMs(source.pid) - serverBefore }
    if (boot.received !== source.count) {
      throw new Error(`the bootstrap received ${boot.received} of ${source.count} entries`)
    }
    return { rate: boot.received / seconds, seconds, roundTrips: boot.roundTrips, cpu } satisfies BootstrapRun
  })

const describe = (what: string, run: BootstrapRun) =>
  console.error(
    `sync bench: ${what}: ${Math.round(run.rate)} entries/s (${run.seconds.toFixed(2)} s, ${run.roundTrips} round trips);`,
    `CPU ms: client main ${run.cpu.main}, verification workers ${run.cpu.workers}, V8's threads ${run.cpu.rest}, server ${run.cpu.server}`
  )

/** `<name>`: this node bootstraps the server's database (see `measureBootstrap`). */
const timedBootstrap = (name: string, server: ServerProcess) =>
  Effect.map(measureBootstrap(sourceOf(server)), (run) => {
    describe(name, run)
    report(name, run.rate, "entries/s")
  })

/** The bootstrap of `sync-cold.ts` in a process of its own, each time a fresh one. */
const coldBootstrap = (source: BootstrapSource): Promise<BootstrapRun> =>
  new Promise((resolve, reject) => {
    const args = [source.address, source.dbId, String(source.count), String(source.pid)]
    execFile(process.execPath, [...siblingScript(import.meta.url, "sync-cold"), ...args], { timeout: 120_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`the cold bootstrap process failed: ${error.message}; stderr: ${stderr}`))
      else resolve(JSON.parse(stdout.trim().split("\n").at(-1)!) as BootstrapRun)
    })
  })

/** `sync.bootstrap_entries_per_s`: the median of `runs` fresh-process bootstraps. */
const coldBootstraps = async (server: ServerProcess, runs: number): Promise<void> => {
  const rates: Array<number> = []
  for (let i = 0; i < runs; i++) {
    const run = await coldBootstrap(sourceOf(server))
    describe(`cold bootstrap ${i + 1} of ${runs}, a fresh process`, run)
    rates.push(run.rate)
  }
  report("sync.bootstrap_entries_per_s", median(rates), "entries/s")
}

/**
 * `<prefix>incremental_ms` (and `_cold_ms`), once this node holds the child's database: the child
 * commits one entry, one sync pulls it.
 */
const incrementalPulls = (prefix: string, server: ServerProcess) =>
  Effect.gen(function*() {
    const sync = yield* Sync
    const { address, dbId } = server.info
    yield* coldAndSteady(`${prefix}incremental`, (i) =>
      Effect.gen(function*() {
        yield* Effect.promise(() => server.commit(1))
        const t0 = performance.now()
        const r = yield* sync.syncWithPeer(address, dbId)
        const dt = performance.now() - t0
        if (r.received !== 1) throw new Error(`${prefix} incremental pull ${i} received ${r.received}`)
        return dt
      }))
  })

/** Run the sync benchmarks. */
export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "eidetica-bench-sync-"))
  const setupStart = performance.now()
  const server = await startServerProcess({ entries: ENTRIES, valueBytes: VALUE_BYTES, timeoutMs: 600_000 })
  console.error(`sync bench: server with ${server.info.count} entries ready in ${((performance.now() - setupStart) / 1000).toFixed(1)} s`)
  try {
    const { address, dbId } = server.info
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function*() {
          const sync = yield* Sync
          const storage = yield* Storage
          const instance = yield* Instance
          yield* sync.enableHttpTransport()

          // this node's own bootstrap is the history the figures below build on (printed only);
          // then the figure's cold runs, each against a server that has served once before, as a
          // node that serves others has (its serving code compiled; on another machine in real use)
          describe("a bootstrap in this process (not the figure)", yield* measureBootstrap(sourceOf(server)))
          yield* Effect.promise(() => coldBootstraps(server, 3))
          yield* incrementalPulls("sync.", server)
          console.error(`sync bench: time in send ${meter.sendMs.toFixed(0)} ms`)

          // incremental push: we commit one entry, then sync pushes it
          yield* instance.createUser("bench")
          const user = yield* instance.loginUser("bench")
          const { signer } = yield* user.openDatabase(dbId)
          yield* coldAndSteady("sync.incremental_push", (i) =>
            Effect.gen(function*() {
              yield* commitOne(dbId, signer, i)
              const t0 = performance.now()
              const r = yield* sync.syncWithPeer(address, dbId)
              const dt = performance.now() - t0
              if (r.sent !== 1) throw new Error(`incremental push ${i} sent ${r.sent}`)
              return dt
            }))

          // transfer overhead: each side adds 100 entries, one sync exchanges the 200
          yield* Effect.promise(() => server.commit(100))
          const ours: Array<string> = []
          for (let i = 0; i < 100; i++) ours.push(yield* commitOne(dbId, signer, 1_000 + i))
          const before = new Set(yield* storage.ancestors(dbId, yield* storage.tips(dbId)))
          meter.on = true
          const exchange = yield* sync.syncWithPeer(address, dbId)
          meter.on = false
          if (exchange.received !== 100 || exchange.sent !== 100) {
            throw new Error(`the exchange moved ${exchange.received} in and ${exchange.sent} out`)
          }
          const after = yield* storage.ancestors(dbId, yield* storage.tips(dbId))
          const theirs = after.filter((id) => !before.has(id))
          const moved = yield* storage.getMany([...theirs, ...ours])
          const cborBytes = moved.reduce((n, e) => n + e.bytes.length, 0)
          const wireBytes = meter.requestBytes + meter.responseBytes
          console.error(
            `sync bench: exchange of ${moved.length} entries: ${wireBytes} wire bytes (${meter.requestBytes} out, ${meter.responseBytes} in) for ${cborBytes} DAG-CBOR bytes in ${exchange.roundTrips} round trips`
          )
          report("sync.transfer_overhead_ratio", wireBytes / cborBytes, "ratio")
          const remote = yield* Effect.promise(() => server.state())
          const local = yield* storage.tips(dbId)
          if (JSON.stringify(remote.tips) !== JSON.stringify(local)) throw new Error("the two sides did not converge")

          // the same node, warm, takes on a second database (its server started only now, so it
          // did not share the cores with anything measured before; it serves a fresh process
          // first, as the first server did before the cold runs)
          const second = yield* Effect.acquireRelease(
            Effect.promise(() => startServerProcess({ entries: ENTRIES, valueBytes: VALUE_BYTES, timeoutMs: 600_000 })),
            (s) => Effect.promise(() => s.kill())
          )
          describe("the second server's first bootstrap, a fresh process (not the figure)", yield* Effect.promise(() => coldBootstrap(sourceOf(second))))
          yield* timedBootstrap("sync.bootstrap_warm_entries_per_s", second)
        }).pipe(Effect.provide(clientLayer(join(dir, "client.db"))))
      )
    )
  } finally {
    await server.kill()
    rmSync(dir, { recursive: true, force: true })
  }
  if (process.env.IROH !== "0") await runIroh()
}

/** The bootstrap and the incremental pull with the server serving over iroh. */
async function runIroh(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "eidetica-bench-iroh-"))
  const server = await startServerProcess({ entries: ENTRIES, valueBytes: VALUE_BYTES, timeoutMs: 600_000, transport: "iroh" })
  try {
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function*() {
          yield* (yield* Sync).enableIrohTransport({ clientBind: "127.0.0.1:0" })
          yield* timedBootstrap("sync.iroh_bootstrap_entries_per_s", server)
          yield* incrementalPulls("sync.iroh_", server)
        }).pipe(Effect.provide(clientLayer(join(dir, "client.db"))))
      )
    )
  } finally {
    await server.kill()
    rmSync(dir, { recursive: true, force: true })
  }
}

// `tsx bench/sync.ts` runs it directly
if (import.meta.url === `file://${process.argv[1]}`) await run()
