/**
 * A peer in a child process on a SQLite file, SIGKILLed and restarted on the same file, behind the
 * fault proxy: what it committed before the kill (while its peer was unreachable) reaches the peer
 * after the restart, what the peer wrote meanwhile reaches it, and both statuses settle idle.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { afterEach, expect, it } from "vitest"
import { type FaultProxy, portOf, sleep, startProxy } from "./FaultProxy.js"
import { captureLogs, type Cluster, expectIdle, snapshot, startCluster, write, writeLoop } from "./Cluster.js"

/** What the child answers (each command fills the fields it concerns). */
interface Answer {
  readonly tips: ReadonlyArray<string>
  readonly notes: Record<string, unknown>
  readonly keys: Array<string>
  readonly status: Record<string, { readonly state: string; readonly pendingEntries: number; readonly lastError?: string }>
}

interface Child {
  readonly info: { address: string; deviceId: string }
  readonly ask: (command: string) => Promise<Answer>
  readonly kill9: () => Promise<void>
  readonly child: ChildProcessWithoutNullStreams
}

const script = fileURLToPath(new URL("./fault-node.ts", import.meta.url))

const spawnNode = async (db: string, tree: string): Promise<Child> => {
  const child = spawn(process.execPath, ["--import", "tsx", script, "--db", db, "--tree", tree], { stdio: ["pipe", "pipe", "pipe"] })
  let stderr = ""
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()))
  const lines = createInterface({ input: child.stdout })
  const waiting: Array<(l: string) => void> = []
  lines.on("line", (l) => waiting.shift()?.(l))
  const next = () =>
    new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`child did not answer; stderr: ${stderr}`)), 30_000)
      waiting.push((l) => {
        clearTimeout(t)
        resolve(l)
      })
    })
  const info = JSON.parse(await next())
  return {
    info,
    child,
    ask: async (command) => {
      const answer = next()
      child.stdin.write(command + "\n")
      const parsed = JSON.parse(await answer)
      if (parsed.error !== undefined) throw new Error(parsed.error)
      return parsed
    },
    kill9: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once("exit", () => resolve())
        child.kill("SIGKILL")
      })
  }
}

let cluster: Cluster | undefined
let proxyC: FaultProxy | undefined
let c: Child | undefined
let dir: string | undefined
let logs: ReturnType<typeof captureLogs> | undefined
afterEach(async () => {
  await c?.kill9()
  await proxyC?.close()
  await cluster?.close()
  if (dir !== undefined) Fs.rmSync(dir, { recursive: true, force: true })
  logs?.restore()
})

it("SIGKILL and restart of a peer on the same SQLite file: nothing lost, both converge, statuses idle", async () => {
  logs = captureLogs()
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eidetica-faults-"))
  const file = Path.join(dir, "c.db")
  cluster = await startCluster({ names: ["A"], links: [], timeoutMs: 1_000, intervalSeconds: 1 })
  const a = cluster.node("A")
  c = await spawnNode(file, cluster.dbId)
  proxyC = await startProxy(portOf(c.info.address))
  const cDevice = c.info.deviceId
  // C reaches A through A's proxy; A reaches C through C's proxy
  await c.ask(`register ${a.instance.deviceId} ${a.proxy.address}`)
  a.handles.set("C", await a.instance.sync().registerSyncPeer({
    peerPubkey: cDevice,
    treeId: cluster.dbId,
    addresses: [{ transportType: "http", address: proxyC.address }]
  }))
  const start = Date.now()
  while ((await c.ask("state")).tips.length === 0 && Date.now() - start < 15_000) await sleep(100)

  // both write; C's link to A is refused; C commits 10, then is killed at once
  const loop = writeLoop([a], 50, "A")
  await a.proxy.set({ _tag: "refuse" })
  const committed: Array<string> = (await c.ask("commit 10 beforeKill")).keys
  await c.kill9()
  await proxyC.set({ _tag: "refuse" })
  await sleep(1_500)
  const aStatus = await a.handles.get("C")!.status()
  expect(aStatus.state).not.toBe("idle") // truthful while C is down
  expect(aStatus.lastError).toBeDefined()
  // restart on the same file, new port behind the same proxy address
  c = await spawnNode(file, cluster.dbId)
  expect(c.info.deviceId).toBe(cDevice)
  proxyC.target = portOf(c.info.address)
  await proxyC.set({ _tag: "pass" })
  await c.ask(`handle ${a.instance.deviceId} ${a.proxy.address}`)
  // the restarted C has what it committed before the kill
  const afterRestart = await c.ask("state")
  for (const k of committed) expect(afterRestart.notes).toHaveProperty(k)
  await sleep(1_000)
  await a.proxy.set({ _tag: "pass" })
  const aKeys = await loop.stop()
  // converge: A has C's pre-kill commits, C has everything A wrote while C was down
  const deadline = Date.now() + 20_000
  let sa = await snapshot(a)
  let sc = await c.ask("state")
  while (Date.now() < deadline) {
    sa = await snapshot(a)
    sc = await c.ask("state")
    const all = [...aKeys, ...committed]
    if (JSON.stringify(sa.tips) === JSON.stringify(sc.tips) && all.every((k) => k in sa.notes && k in sc.notes)) break
    await sleep(200)
  }
  expect(sc.tips).toEqual(sa.tips)
  expect(sc.notes).toEqual(sa.notes)
  for (const k of committed) expect(sa.notes).toHaveProperty(k)
  await expectIdle([a], 10_000)
  let cs = (await c.ask("state")).status[a.instance.deviceId]
  const until = Date.now() + 10_000
  while ((cs.state !== "idle" || cs.pendingEntries !== 0 || cs.lastError !== undefined) && Date.now() < until) {
    await sleep(200)
    cs = (await c.ask("state")).status[a.instance.deviceId]
  }
  expect(cs).toMatchObject({ state: "idle", pendingEntries: 0, hasLocalData: true })
  expect(cs.lastError).toBeUndefined()
  // a second round: writes both sides after the restart still flow
  await write(a, "after", "1")
  const more: Array<string> = (await c.ask("commit 3 afterRestart")).keys
  const d2 = Date.now() + 10_000
  while (Date.now() < d2) {
    sa = await snapshot(a)
    sc = await c.ask("state")
    if ("after" in sc.notes && more.every((k) => k in sa.notes)) break
    await sleep(100)
  }
  expect(sc.notes).toHaveProperty("after")
  for (const k of more) expect(sa.notes).toHaveProperty(k)
  expect(logs.bad()).toEqual([])
  expect(logs.unhandled).toEqual([])
}, 60_000)
