/**
 * Real instances (Promise facade, loopback HTTP) behind fault proxies, for the network-fault tests.
 * Each node's server is fronted by its own proxy; peers reach it only through that proxy, so a fault
 * on node X's proxy affects every request *to* X (pushes to X and syncs asked of X).
 */
import { expect, vi } from "vitest"
import {
  type Backend,
  type Database,
  Doc,
  InMemory,
  Instance,
  Permission,
  type PeerStatus,
  type SyncHandle,
  type User
} from "../../src/promise.js"
import { type FaultProxy, portOf, sleep, startProxy } from "./FaultProxy.js"

export interface Node {
  readonly name: string
  readonly instance: Instance
  readonly user: User
  readonly key: string
  readonly server: string
  readonly proxy: FaultProxy
  db: Database
  /** handles registered on this node, by peer name */
  readonly handles: Map<string, SyncHandle>
}

export interface ClusterOptions {
  readonly names: ReadonlyArray<string>
  /** pairs [from, to]: `from` registers `to` (both directions are separate pairs) */
  readonly links: ReadonlyArray<readonly [string, string]>
  readonly timeoutMs?: number
  readonly intervalSeconds?: number
  readonly backend?: (name: string) => Backend
}

export interface Cluster {
  readonly nodes: ReadonlyArray<Node>
  readonly node: (name: string) => Node
  readonly dbId: string
  readonly close: () => Promise<void>
}

export const startCluster = async (options: ClusterOptions): Promise<Cluster> => {
  const nodes: Array<Node> = []
  const settings = (interval: number | undefined) => ({
    syncEnabled: true,
    syncOnCommit: true,
    ...(interval !== undefined ? { intervalSeconds: interval } : {}),
    properties: {}
  })
  let dbId = ""
  for (const [i, name] of options.names.entries()) {
    const instance = await Instance.open(options.backend?.(name) ?? new InMemory())
    await instance.enableSync()
    await instance.sync().enableHttpTransport({ timeoutMs: options.timeoutMs ?? 1_000 })
    const server = await instance.sync().startServer("127.0.0.1:0")
    const proxy = await startProxy(portOf(server))
    await instance.createUser(name)
    const user = await instance.loginUser(name)
    const key = await user.getDefaultKey()
    let db: Database | undefined
    if (i === 0) {
      db = await user.createDatabase(Doc.from({ name: "faults" }), key)
      const admin = await db.newTransaction()
      await (await admin.settings()).setGlobalPermission(Permission.Write(10))
      await admin.commit()
      dbId = db.rootId
    }
    await user.trackDatabase({ databaseId: dbId, keyId: key, syncSettings: settings(options.intervalSeconds) })
    nodes.push({ name, instance, user, key, server, proxy, db: db as Database, handles: new Map() })
  }
  const node = (name: string) => nodes.find((n) => n.name === name)!
  for (const [from, to] of options.links) {
    const f = node(from)
    const t = node(to)
    const handle = await f.instance.sync().registerSyncPeer({
      peerPubkey: t.instance.deviceId,
      treeId: dbId,
      addresses: [{ transportType: "http", address: t.proxy.address }],
      displayName: to
    })
    f.handles.set(to, handle)
  }
  for (const n of nodes.slice(1)) {
    if (n.handles.size === 0) continue
    await within([...n.handles.values()][0]!.waitForInitialSync(), 15_000, `${n.name} initial sync`)
    n.db = await n.user.openDatabase(dbId)
  }
  return {
    nodes,
    node,
    dbId,
    close: async () => {
      for (const n of nodes) {
        await n.proxy.close()
        await n.instance.close().catch(() => undefined)
      }
    }
  }
}

/** Reject if `promise` is not settled in `ms`. */
export const within = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> =>
  Promise.race([
    promise,
    new Promise<A>((_, reject) => setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms))
  ])

export const write = async (n: Node, key: string, value: string): Promise<string> => {
  const txn = await n.db.newTransaction()
  await (await txn.docStore("notes")).set(key, value)
  return txn.commit()
}

/** Writes on every given node every `everyMs` until `stop()`; returns the keys written. */
export const writeLoop = (nodes: ReadonlyArray<Node>, everyMs: number, tag: string) => {
  const written: Array<string> = []
  const errors: Array<unknown> = []
  let running = true
  const loops = nodes.map(async (n) => {
    let i = 0
    while (running) {
      const key = `${tag}-${n.name}-${i++}`
      try {
        await write(n, key, `${n.name}:${i}`)
        written.push(key)
      } catch (e) {
        errors.push(e)
      }
      await sleep(everyMs)
    }
  })
  return {
    written,
    errors,
    stop: async () => {
      running = false
      await Promise.all(loops)
      return written
    }
  }
}

export interface Snapshot {
  readonly tips: ReadonlyArray<string>
  readonly notes: Record<string, unknown>
}

export const snapshot = async (n: Node): Promise<Snapshot> => ({
  tips: [...(await n.db.tips())].sort(),
  notes: await (await n.db.docStore("notes")).getAll()
})

/** Poll until every node has every key and all nodes agree on tips and state; or fail with a diff. */
export const expectConverged = async (nodes: ReadonlyArray<Node>, keys: ReadonlyArray<string>, ms: number) => {
  const started = Date.now()
  let last: Array<Snapshot> = []
  while (Date.now() - started < ms) {
    last = await Promise.all(nodes.map(snapshot))
    const same = last.every((s) => JSON.stringify(s) === JSON.stringify(last[0]))
    const complete = last.every((s) => keys.every((k) => k in s.notes))
    if (same && complete) return Date.now() - started
    await sleep(100)
  }
  const report = last.map((s, i) => ({
    node: nodes[i]!.name,
    tips: s.tips.length,
    keys: Object.keys(s.notes).length,
    missing: keys.filter((k) => !(k in s.notes)).slice(0, 5)
  }))
  expect.fail(`not converged within ${ms} ms: ${JSON.stringify(report)}`)
}

/** Every handle's status becomes idle, nothing pending, no error, no retry; or fail with the statuses. */
export const expectIdle = async (nodes: ReadonlyArray<Node>, ms: number) => {
  const started = Date.now()
  let last: Array<[string, PeerStatus]> = []
  while (Date.now() - started < ms) {
    last = []
    for (const n of nodes) for (const [peer, h] of n.handles) last.push([`${n.name}->${peer}`, await h.status()])
    const ok = last.every(([, s]) =>
      s.state === "idle" && s.pendingEntries === 0 && s.lastError === undefined && s.retryAt === undefined && s.hasLocalData
    )
    if (ok) return
    await sleep(100)
  }
  expect.fail(`statuses not idle within ${ms} ms: ${JSON.stringify(last)}`)
}

export const statuses = async (nodes: ReadonlyArray<Node>) => {
  const out: Record<string, PeerStatus> = {}
  for (const n of nodes) for (const [peer, h] of n.handles) out[`${n.name}->${peer}`] = await h.status()
  return out
}

/** Capture Effect log lines (the default logger writes through console.log / console.error). */
export const captureLogs = () => {
  const lines: Array<string> = []
  const spies = (["log", "error", "warn", "info"] as const).map((m) =>
    vi.spyOn(console, m).mockImplementation((...args: Array<unknown>) => {
      lines.push(args.map((a) => (typeof a === "string" ? a : a instanceof Error ? a.stack ?? a.message : JSON.stringify(a))).join(" "))
    })
  )
  const unhandled: Array<unknown> = []
  const onUnhandled = (e: unknown) => unhandled.push(e)
  process.on("unhandledRejection", onUnhandled)
  process.on("uncaughtException", onUnhandled)
  return {
    lines,
    unhandled,
    /** Lines at level ERROR or FATAL, or mentioning a defect or a crash. */
    bad: () => lines.filter((l) => /level=(ERROR|FATAL)|crashed|Defect|RuntimeException|FiberFailure/.test(l)),
    restore: () => {
      for (const s of spies) s.mockRestore()
      process.off("unhandledRejection", onUnhandled)
      process.off("uncaughtException", onUnhandled)
    }
  }
}
