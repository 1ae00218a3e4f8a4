/**
 * Live sync figures: the background engine (sync on commit, relay) over loopback HTTP between
 * processes, memory storage everywhere. Peers in child processes are `bench/live-peer.ts`.
 *
 * - live.latency_p50_ms / live.latency_p99_ms: A (this process) commits one entry; the time until
 *   B (a child process, registered as A's peer) has stored it and said so on its stdout; 200 trials,
 *   one at a time, in steady state: after the first 200 (reported as live.latency_cold_p50_ms and
 *   live.latency_cold_p99_ms) and 3,000 more untimed ones. The code paths of one push run once per
 *   trial, so V8 optimises them only after a few thousand trials: p50 falls from about 7 ms in the
 *   first 200 to about 2.6 ms after 3,000 here, as in a node that has been serving for a while.
 * - live.line3_converge_ms: three child processes A–B–C in a line (A–B and B–C registered both
 *   ways, no A–C link); each commits 3,333 entries at once (one after another, all three at the
 *   same time); the time from sending the commit commands until all three hold all 9,999. Two
 *   rounds, each on a new database: the first (reported as live.line3_cold_converge_ms) runs every
 *   code path for the first time, and about half of its CPU goes to V8 warming them up (3,333
 *   commits in a fresh peer cost ~950 us of CPU each, ~450 us once optimised); the second is the
 *   figure, as for latency: a node that has been serving for a while.
 *
 * LINE3=0 skips the line-of-three run, LATENCY=0 the latency run (for profiling one alone).
 */
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import { performance } from "node:perf_hooks"
import { createInterface } from "node:readline"
import { Doc } from "../src/core/Doc.js"
import { SettingsStore } from "../src/database/SettingsStore.js"
import { DocStore } from "../src/database/Stores.js"
import * as Transaction from "../src/database/Transaction.js"
import * as Eidetica from "../src/layers/Eidetica.js"
import * as Permission from "../src/schema/Permission.js"
import { Instance } from "../src/services/Instance.js"
import { Sync } from "../src/services/Sync.js"
import { SyncEngine } from "../src/services/SyncEngine.js"
import { siblingScript } from "../test/fixtures/SyncServerProcess.js"
import { report } from "./report.js"

const TRIALS = 200
/** Untimed trials between the cold and the steady-state ones. */
const WARMUP = 3_000
const PER_PEER = 3_333
const ONLINE = { syncEnabled: true, syncOnCommit: true, properties: {} }

/** Run the live benchmarks. */
export async function run(): Promise<void> {
  if (process.env.LATENCY !== "0") await latency()
  if (process.env.LINE3 !== "0") await line3()
}

async function latency(): Promise<void> {
  const runtime = ManagedRuntime.make(Eidetica.layer({ storage: "memory" }))
  const b = await Peer.start()
  try {
    const a = await runtime.runPromise(
      Effect.gen(function*() {
        const sync = yield* Sync
        const instance = yield* Instance
        yield* sync.enableHttpTransport()
        const address = yield* sync.startServer("127.0.0.1:0")
        yield* instance.createUser("alice")
        const user = yield* instance.loginUser("alice")
        const key = yield* user.getDefaultKey
        const { db, signer } = yield* user.createDatabase(Doc.from({ name: "live" }), key)
        const txn = Transaction.begin(db, signer)
        yield* new SettingsStore(txn).setGlobalPermission(Permission.Write(10))
        yield* Transaction.commit(txn)
        yield* user.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: ONLINE })
        return { address, deviceId: instance.deviceId, treeId: db.rootId, signer }
      })
    )
    await b.ask({ cmd: "join", treeId: a.treeId, peer: a.deviceId, address: a.address }, "joined")
    await runtime.runPromise(
      Effect.flatMap(SyncEngine, (engine) =>
        engine.registerSyncPeer({
          peerPubkey: b.deviceId,
          treeId: a.treeId,
          addresses: [{ transport_type: "http", address: b.address }]
        }))
    )
    const commit = (i: number) =>
      runtime.runPromise(
        Effect.gen(function*() {
          const txn = Transaction.begin({ rootId: a.treeId }, a.signer)
          yield* new DocStore(txn, "data").set(`k${i}`, i)
          return yield* Transaction.commit(txn)
        })
      )
    const trials = async (from: number, count: number) => {
      const latencies: Array<number> = []
      for (let i = from; i < from + count; i++) {
        const t0 = performance.now()
        const id = await commit(i)
        latencies.push((await b.arrival(id)) - t0)
      }
      return latencies.sort((x, y) => x - y)
    }
    const pct = (latencies: ReadonlyArray<number>, p: number) =>
      latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)]!
    const cold = await trials(0, TRIALS)
    await trials(TRIALS, WARMUP)
    const steady = await trials(TRIALS + WARMUP, TRIALS)
    console.error(
      `live bench: commit→visible at B, ${TRIALS} trials each: first (cold) p50 ${pct(cold, 50).toFixed(2)} ms; ` +
        `after ${WARMUP} more, min ${steady[0]!.toFixed(2)} ms, max ${steady.at(-1)!.toFixed(2)} ms`
    )
    report("live.latency_cold_p50_ms", pct(cold, 50), "ms")
    report("live.latency_cold_p99_ms", pct(cold, 99), "ms")
    report("live.latency_p50_ms", pct(steady, 50), "ms")
    report("live.latency_p99_ms", pct(steady, 99), "ms")
  } finally {
    await b.stop()
    await runtime.dispose()
  }
}

async function line3(): Promise<void> {
  const [a, b, c] = await Promise.all([Peer.start(), Peer.start(), Peer.start()])
  try {
    const cold = await line3Round(a, b, c)
    const steady = await line3Round(a, b, c)
    console.error(
      `live bench: line of 3, ${3 * PER_PEER} entries: first (cold) round: commits done in ${cold.committed.toFixed(0)} ms, ` +
        `converged in ${cold.converged.toFixed(0)} ms; second round (new database): commits done in ` +
        `${steady.committed.toFixed(0)} ms, converged in ${steady.converged.toFixed(0)} ms`
    )
    report("live.line3_cold_converge_ms", cold.converged, "ms")
    report("live.line3_converge_ms", steady.converged, "ms")
  } finally {
    await Promise.all([a.stop(), b.stop(), c.stop()])
  }
}

/** One line-of-three round on a new database: the time until all commits are done, and until all converged. */
async function line3Round(a: Peer, b: Peer, c: Peer): Promise<{ committed: number; converged: number }> {
  const { treeId } = (await a.ask({ cmd: "create" }, "treeId")) as { treeId: string }
  await b.ask({ cmd: "join", treeId, peer: a.deviceId, address: a.address }, "joined")
  await a.ask({ cmd: "register", treeId, peer: b.deviceId, address: b.address }, "registered")
  await c.ask({ cmd: "join", treeId, peer: b.deviceId, address: b.address }, "joined")
  await b.ask({ cmd: "register", treeId, peer: c.deviceId, address: c.address }, "registered")
  // root + the global grant, then 3 × 3,333
  const total = 2 + 3 * PER_PEER
  const t0 = performance.now()
  const reached = [a, b, c].map((p) => p.ask({ cmd: "await", treeId, count: total }, "reached"))
  await Promise.all([a, b, c].map((p) => p.ask({ cmd: "commit", treeId, n: PER_PEER }, "committed")))
  const committed = performance.now() - t0
  await Promise.all(reached)
  return { committed, converged: performance.now() - t0 }
}

/** A peer in a child process, driven through its stdin/stdout. */
class Peer {
  private readonly waiting: Array<{ key: string; resolve: (value: Record<string, unknown>) => void }> = []
  private readonly arrived = new Map<string, number>()
  private readonly arrivalWaiters = new Map<string, (t: number) => void>()

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    readonly address: string,
    readonly deviceId: string
  ) {}

  /** Spawn a peer and wait until it serves. */
  static start(): Promise<Peer> {
    const child = spawn(process.execPath, siblingScript(import.meta.url, "live-peer"), { stdio: ["pipe", "pipe", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const lines = createInterface({ input: child.stdout })
    return new Promise((resolve, reject) => {
      let peer: Peer | undefined
      child.on("exit", (code) => {
        if (peer === undefined) reject(new Error(`live peer exited with ${code}: ${stderr}`))
      })
      lines.on("line", (line) => {
        const now = performance.now()
        const msg = JSON.parse(line) as Record<string, unknown>
        if (peer === undefined) {
          peer = new Peer(child, msg["ready"] as string, msg["deviceId"] as string)
          resolve(peer)
          return
        }
        peer.onLine(msg, now)
      })
    })
  }

  private onLine(msg: Record<string, unknown>, now: number): void {
    if (Array.isArray(msg["arrived"])) {
      for (const id of msg["arrived"] as Array<string>) {
        const waiter = this.arrivalWaiters.get(id)
        if (waiter !== undefined) {
          this.arrivalWaiters.delete(id)
          waiter(now)
        } else this.arrived.set(id, now)
      }
      return
    }
    if ("error" in msg) throw new Error(`live peer failed: ${String(msg["error"])}`)
    const i = this.waiting.findIndex((w) => w.key in msg)
    if (i >= 0) this.waiting.splice(i, 1)[0]!.resolve(msg)
  }

  /** Send a command and wait for the answer carrying `key`. */
  ask(command: Record<string, unknown>, key: string): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      this.waiting.push({ key, resolve })
      this.child.stdin.write(`${JSON.stringify(command)}\n`)
    })
  }

  /** When (performance.now) the peer reported storing an entry. */
  arrival(id: string): Promise<number> {
    const t = this.arrived.get(id)
    if (t !== undefined) {
      this.arrived.delete(id)
      return Promise.resolve(t)
    }
    return new Promise((resolve) => this.arrivalWaiters.set(id, resolve))
  }

  /** Close its stdin (it exits) and wait. */
  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null) return resolve()
      this.child.on("exit", () => resolve())
      this.child.stdin.end()
      setTimeout(() => this.child.kill("SIGKILL"), 5_000).unref()
    })
  }
}
