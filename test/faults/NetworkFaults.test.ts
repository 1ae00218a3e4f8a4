/**
 * Real instances over loopback HTTP behind a TCP fault proxy, with the background engine
 * (registerSyncPeer + trackDatabase, sync on commit, 1 s interval). Each fault runs while both
 * sides write; after healing every node must hold every entry, agree on state, and every status
 * must be idle with nothing pending and no error; no error/defect may be logged.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { InMemory, Instance, Sqlite } from "../../src/promise.js"
import { type Mode, sleep } from "./FaultProxy.js"
import {
  captureLogs,
  type Cluster,
  expectConverged,
  expectIdle,
  type Node,
  startCluster,
  statuses,
  within,
  writeLoop
} from "./Cluster.js"

const AB = { names: ["A", "B"], links: [["A", "B"], ["B", "A"]] as const, timeoutMs: 1_000, intervalSeconds: 1 }

let cluster: Cluster | undefined
let logs: ReturnType<typeof captureLogs> | undefined
afterEach(async () => {
  await cluster?.close()
  cluster = undefined
  logs?.restore()
  logs = undefined
})

/** Run `mode` on both proxies for `ms` while both sides write; heal; check convergence and status. */
const scenario = async (mode: Mode, ms: number, expectDegraded = true) => {
  logs = captureLogs()
  cluster = await startCluster(AB)
  const { nodes } = cluster
  const writes = writeLoop(nodes, 60, mode._tag)
  await sleep(300)
  for (const n of nodes) await n.proxy.set(mode)
  await sleep(ms)
  const during = await statuses(nodes)
  for (const n of nodes) await n.proxy.set({ _tag: "pass" })
  await sleep(200)
  const keys = await writes.stop()
  expect(writes.errors).toEqual([])
  if (expectDegraded) {
    // the status told the truth during the fault: not idle-and-clean while writes could not go out
    for (const [pair, s] of Object.entries(during)) {
      expect.soft(s.lastError ?? s.state, `${pair} during ${mode._tag}: ${JSON.stringify(s)}`).not.toBe("idle")
    }
  }
  await expectConverged(nodes, keys, 20_000)
  await expectIdle(nodes, 10_000)
  if (!["delay", "refuse", "delayResponse"].includes(mode._tag)) expect(nodes.every((n) => n.proxy.stats.faults > 0)).toBe(true)
  expect(logs.bad()).toEqual([])
  expect(logs.unhandled).toEqual([])
}

describe.sequential("network faults over loopback HTTP (fault proxy)", () => {
  it("connection refused, then back", async () => {
    await scenario({ _tag: "refuse" }, 3_000)
  }, 60_000)

  it("connections reset as the request is sent", async () => {
    await scenario({ _tag: "resetRequest" }, 3_000)
  }, 60_000)

  it("connections reset mid-request (part of the body reached the server)", async () => {
    await scenario({ _tag: "resetMidRequest", bytes: 300 }, 3_000)
  }, 60_000)

  it("connections reset mid-response", async () => {
    await scenario({ _tag: "resetMidResponse", bytes: 150 }, 3_000)
  }, 60_000)

  it("responses truncated (clean FIN after part of the answer)", async () => {
    await scenario({ _tag: "truncate", bytes: 150 }, 3_000)
  }, 60_000)

  it("responses delayed past the client timeout, then normal", async () => {
    await scenario({ _tag: "delay", ms: 2_500 }, 4_000)
  }, 60_000)

  it("responses delayed past the client timeout after the server acted, then normal", async () => {
    await scenario({ _tag: "delayResponse", ms: 2_500 }, 4_000)
  }, 60_000)

  it("responses swallowed after the server acted (connection kept open), then normal", async () => {
    await scenario({ _tag: "swallowResponse" }, 4_000)
  }, 60_000)

  it("black hole (accepts, never answers), then normal", async () => {
    await scenario({ _tag: "blackhole" }, 4_000)
  }, 60_000)

  it("flapping every 250 ms between pass and reset/refuse", async () => {
    logs = captureLogs()
    cluster = await startCluster(AB)
    const { nodes } = cluster
    const writes = writeLoop(nodes, 40, "flap")
    const faults: Array<Mode> = [
      { _tag: "resetMidResponse", bytes: 100 },
      { _tag: "refuse" },
      { _tag: "truncate", bytes: 200 },
      { _tag: "resetMidRequest", bytes: 200 }
    ]
    for (let i = 0; i < 16; i++) {
      for (const n of nodes) await n.proxy.set(i % 2 === 0 ? faults[(i / 2) % faults.length]! : { _tag: "pass" })
      await sleep(250)
    }
    for (const n of nodes) await n.proxy.set({ _tag: "pass" })
    const keys = await writes.stop()
    await expectConverged(nodes, keys, 20_000)
    await expectIdle(nodes, 10_000)
    expect(logs.bad()).toEqual([])
    expect(logs.unhandled).toEqual([])
  }, 60_000)

  it("flush() during a fault settles with failed; waitForInitialSync resolves after heal", async () => {
    logs = captureLogs()
    cluster = await startCluster({ ...AB, names: ["A", "B", "C"], links: [["A", "B"], ["B", "A"]] })
    const [a, b, c] = cluster.nodes as [Node, Node, Node]
    // refused: flush is quick and says failed
    await a.proxy.set({ _tag: "refuse" })
    await b.proxy.set({ _tag: "refuse" })
    const refused = await within(b.instance.sync().flush(), 3_000, "flush while refused")
    expect(refused).toEqual({ delivered: 0, failed: 1 })
    // black hole: flush waits at most about the client timeout per attempt, then says failed
    await a.proxy.set({ _tag: "blackhole" })
    const holed = await within(b.instance.sync().flush(), 8_000, "flush while black-holed")
    expect(holed).toEqual({ delivered: 0, failed: 1 })
    // a new peer registered through the black hole: its first sync waits, and completes after the heal
    const handle = await c.instance.sync().registerSyncPeer({
      peerPubkey: a.instance.deviceId,
      treeId: cluster.dbId,
      addresses: [{ transportType: "http", address: a.proxy.address }]
    })
    c.handles.set("A", handle)
    let initial = false
    const waiting = handle.waitForInitialSync().then(() => (initial = true))
    await sleep(2_500)
    expect(initial).toBe(false)
    const st = await handle.status()
    expect(st.state === "syncing" || st.state === "backoff").toBe(true)
    for (const n of cluster.nodes) await n.proxy.set({ _tag: "pass" })
    await within(waiting, 15_000, "waitForInitialSync after heal")
    expect(await within(b.instance.sync().flush(), 5_000, "flush after heal")).toEqual({ delivered: 1, failed: 0 })
    c.db = await c.user.openDatabase(cluster.dbId)
    await expectConverged(cluster.nodes, [], 15_000)
    await expectIdle(cluster.nodes, 10_000)
    expect(logs.bad()).toEqual([])
    expect(logs.unhandled).toEqual([])
  }, 60_000)

  it("three nodes in a line (A - B - C): relay through B converges after B's link faults", async () => {
    logs = captureLogs()
    cluster = await startCluster({
      ...AB,
      names: ["A", "B", "C"],
      links: [["A", "B"], ["B", "A"], ["C", "B"], ["B", "C"]]
    })
    const nodes = cluster.nodes
    const writes = writeLoop(nodes, 60, "line")
    const faults: Array<Mode> = [{ _tag: "resetMidResponse", bytes: 150 }, { _tag: "blackhole" }, { _tag: "refuse" }]
    for (const f of faults) {
      for (const n of nodes) await n.proxy.set(f)
      await sleep(1_500)
      for (const n of nodes) await n.proxy.set({ _tag: "pass" })
      await sleep(500)
    }
    const keys = await writes.stop()
    await expectConverged(nodes, keys, 25_000)
    await expectIdle(nodes, 10_000)
    expect(logs.bad()).toEqual([])
    expect(logs.unhandled).toEqual([])
  }, 60_000)
})

describe.sequential("close and reopen during a fault (SQLite)", () => {
  it("close() during a black hole is prompt; the reopened instance delivers what was pending", async () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eidetica-faults-"))
    logs = captureLogs()
    try {
      cluster = await startCluster({
        names: ["A", "B"],
        links: [["A", "B"], ["B", "A"]],
        timeoutMs: 30_000,
        intervalSeconds: 1,
        backend: (name) => (name === "A" ? new Sqlite(Path.join(dir, "a.db")) : new InMemory())
      })
      const [a, b] = cluster.nodes as [Node, Node]
      await b.proxy.set({ _tag: "blackhole" })
      await a.proxy.set({ _tag: "refuse" }) // B cannot pull: only A's pending pushes can deliver
      const keys: Array<string> = []
      for (let i = 0; i < 5; i++) {
        keys.push(`pending-${i}`)
        const txn = await a.db.newTransaction()
        await (await txn.docStore("notes")).set(`pending-${i}`, "x")
        await txn.commit()
      }
      await sleep(300)
      // not held up by the push in flight (30 s client timeout)
      await within(a.instance.close(), 3_000, "close during black hole")
      await b.proxy.set({ _tag: "pass" })
      const reopened = await Instance.open(new Sqlite(Path.join(dir, "a.db")))
      await reopened.enableSync()
      await reopened.sync().enableHttpTransport({ timeoutMs: 1_000 })
      const user = await reopened.loginUser("A")
      const db = await user.openDatabase(cluster.dbId)
      const start = Date.now()
      let notes: Record<string, unknown> = {}
      while (Date.now() - start < 15_000) {
        notes = await (await b.db.docStore("notes")).getAll()
        if (keys.every((k) => k in notes)) break
        await sleep(100)
      }
      expect(Object.keys(notes)).toEqual(expect.arrayContaining(keys))
      expect((await db.tips()).sort()).toEqual((await b.db.tips()).sort())
      await reopened.close()
      expect(logs.bad()).toEqual([])
    } finally {
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
