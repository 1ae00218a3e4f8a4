/**
 * Another node at a peer's address, and a request the transport resent: what a client believes
 * about who it talks to must follow who answers, and a resent signed request is not a refusal.
 */
import { afterEach, describe, expect, it } from "vitest"
import { Doc, InMemory, Instance, type PeerStatus, Permission, type User } from "../../src/promise.js"
import { portOf, sleep, startProxy } from "./FaultProxy.js"

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => undefined)
})

interface Node {
  readonly instance: Instance
  readonly user: User
  readonly key: string
  readonly server: string
}
const node = async (name: string): Promise<Node> => {
  const instance = await Instance.open(new InMemory())
  cleanups.push(() => instance.close())
  await instance.enableSync()
  await instance.sync().enableHttpTransport({ timeoutMs: 1_000 })
  await instance.createUser(name)
  const user = await instance.loginUser(name)
  return { instance, user, key: await user.getDefaultKey(), server: await instance.sync().startServer("127.0.0.1:0") }
}
const settings = { syncEnabled: true, syncOnCommit: true, intervalSeconds: 1, properties: {} }

/** A database on `a` anyone may write, tracked by every node given. */
const openDatabase = async (a: Node, ...others: Array<Node>) => {
  const db = await a.user.createDatabase(Doc.from({ name: "x" }), a.key)
  const t = await db.newTransaction()
  await (await t.settings()).setGlobalPermission(Permission.Write(10))
  await t.commit()
  for (const n of [a, ...others]) await n.user.trackDatabase({ databaseId: db.rootId, keyId: n.key, syncSettings: settings })
  return db
}

const commit = async (db: Awaited<ReturnType<typeof openDatabase>>, key: string) => {
  const w = await db.newTransaction()
  await (await w.docStore("n")).set(key, "v")
  return w.commit()
}

const until = async (predicate: () => Promise<boolean>, ms: number) => {
  const start = Date.now()
  while (!(await predicate())) {
    if (Date.now() - start > ms) return false
    await sleep(50)
  }
  return true
}

describe.sequential("another node at a registered peer's address", () => {
  it("a wrong node once seen at the address does not keep the right one out once it answers there", async () => {
    const [a, b, c] = [await node("A"), await node("B"), await node("C")]
    const db = await openDatabase(a, b)
    await b.instance.sync().syncWithPeer(a.server, db.rootId)
    const proxy = await startProxy(portOf(c.server)) // B's address, answered by C for now
    cleanups.push(() => proxy.close())
    const handle = await a.instance.sync().registerSyncPeer({
      peerPubkey: b.instance.deviceId,
      treeId: db.rootId,
      addresses: [{ transportType: "http", address: proxy.address }]
    })
    expect(await until(async () => (await handle.status()).lastError?.includes("not the registered peer") === true, 5_000)).toBe(true)
    proxy.target = portOf(b.server)
    proxy.cutAll()
    const id = await commit(db, "k")
    const copy = await b.user.openDatabase(db.rootId)
    expect(await until(async () => (await copy.tips()).includes(id), 10_000)).toBe(true)
  }, 30_000)

  it("a node serving the same open database at the address is not taken for the peer: the status says so", async () => {
    const [a, b, c] = [await node("A"), await node("B"), await node("C")]
    const db = await openDatabase(a, b, c)
    const proxy = await startProxy(portOf(b.server))
    cleanups.push(() => proxy.close())
    await b.instance.sync().syncWithPeer(a.server, db.rootId)
    await c.instance.sync().syncWithPeer(a.server, db.rootId)
    const handle = await a.instance.sync().registerSyncPeer({
      peerPubkey: b.instance.deviceId,
      treeId: db.rootId,
      addresses: [{ transportType: "http", address: proxy.address }]
    })
    await handle.waitForInitialSync()
    const seen: Array<PeerStatus> = []
    handle.subscribe((s) => seen.push(s))
    proxy.target = portOf(c.server) // B's address now leads to C
    proxy.cutAll()
    const ids: Array<string> = []
    for (let k = 0; k < 3; k++) {
      ids.push(await commit(db, `k${k}`))
      await sleep(200)
    }
    const told = await until(async () => (await handle.status()).lastError?.includes("not the registered peer") === true, 5_000)
    expect(told, JSON.stringify(seen.at(-1))).toBe(true)
    proxy.target = portOf(b.server)
    proxy.cutAll()
    const copy = await b.user.openDatabase(db.rootId)
    expect(await until(async () => (await copy.tips()).includes(ids[2]!), 10_000)).toBe(true)
  }, 30_000)
})

describe.sequential("a signed request the transport resent", () => {
  it("an answer lost on a reused connection after the server acted: the sync completes (signed anew), no PermissionDenied", async () => {
    const [a, b] = [await node("A"), await node("B")]
    const db = await a.user.createDatabase(Doc.from({ name: "private" }), a.key)
    const t = await db.newTransaction()
    await (await t.settings()).setAuthKey(b.key, { permission: Permission.Write(10), name: "b" })
    await t.commit()
    await a.user.trackDatabase({ databaseId: db.rootId, keyId: a.key, syncSettings: { ...settings, syncOnCommit: false, intervalSeconds: 3_600 } })
    const proxy = await startProxy(portOf(a.server))
    cleanups.push(() => proxy.close())
    await b.instance.sync().syncWithPeer(proxy.address, db.rootId)
    for (let round = 0; round < 3; round++) {
      await commit(db, `k${round}`)
      await b.instance.sync().syncWithPeer(proxy.address, db.rootId) // the connection is kept alive
      const id = await commit(db, `j${round}`)
      const faults = proxy.stats.faults
      proxy.mode = { _tag: "resetMidResponse", bytes: 0, once: true }
      await b.instance.sync().syncWithPeer(proxy.address, db.rootId)
      expect(proxy.stats.faults).toBe(faults + 1)
      expect(await (await b.user.openDatabase(db.rootId)).tips()).toContain(id)
    }
  }, 30_000)
})
