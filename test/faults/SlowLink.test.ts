/**
 * A slow but working link: a new node bootstraps a database whose first page takes several times
 * the client's timeout to arrive. The HTTP client's timeout counts inactivity, not the whole
 * exchange, so a page that keeps arriving is read in full (when it counted the whole exchange,
 * every attempt timed out partway through the same first page and the node never bootstrapped).
 * Real instances on loopback, the server behind a throttling proxy.
 */
import { afterEach, expect, it } from "vitest"
import { Doc, InMemory, Instance, Permission } from "../../src/promise.js"
import { type FaultProxy, portOf, startProxy } from "./FaultProxy.js"

const instances: Array<Instance> = []
let proxy: FaultProxy | undefined
afterEach(async () => {
  await proxy?.close()
  proxy = undefined
  for (const i of instances.splice(0)) await i.close().catch(() => undefined)
})

/** `promise`, or a rejection naming `what` after `ms`. */
const within = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  return Promise.race([
    promise,
    new Promise<A>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms)
    })
  ]).finally(() => clearTimeout(timer))
}

it("a new node bootstraps a ~280 KB page over a ~100 KB/s link with a 500 ms client timeout", async () => {
  const online = { syncEnabled: true, syncOnCommit: true, intervalSeconds: 1, properties: {} }
  const a = await Instance.open(new InMemory())
  const b = await Instance.open(new InMemory())
  instances.push(a, b)
  for (const i of [a, b]) {
    await i.enableSync()
    await i.sync().enableHttpTransport({ timeoutMs: 500 })
  }
  await a.createUser("alice")
  const alice = await a.loginUser("alice")
  const key = await alice.getDefaultKey()
  const db = await alice.createDatabase(Doc.from({ name: "big" }), key)
  const admin = await db.newTransaction()
  await (await admin.settings()).setGlobalPermission(Permission.Write(10))
  await admin.commit()
  // 100 entries of ~2.8 KB on the wire: one page, about 2.8 s of transfer at 100 KB/s
  for (let i = 0; i < 100; i++) {
    const txn = await db.newTransaction()
    await (await txn.docStore("notes")).set(`k${i}`, `${i}:`.padEnd(2_000, "x"))
    await txn.commit()
  }
  await alice.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: online })
  proxy = await startProxy(portOf(await a.sync().startServer("127.0.0.1:0")))
  await proxy.set({ _tag: "throttle", bytesPerSec: 100_000 })
  await b.createUser("bob")
  const bob = await b.loginUser("bob")
  await bob.trackDatabase({ databaseId: db.rootId, keyId: await bob.getDefaultKey(), syncSettings: online })
  const handle = await b.sync().registerSyncPeer({
    peerPubkey: a.deviceId,
    treeId: db.rootId,
    addresses: [{ transportType: "http", address: proxy.address }]
  })
  let error: unknown
  await within(handle.waitForInitialSync(), 10_000, "bootstrap over a slow link").catch((e) => (error = e))
  expect(error, JSON.stringify(await handle.status())).toBeUndefined()
  const copy = await bob.openDatabase(db.rootId)
  expect(Object.keys(await (await copy.docStore("notes")).getAll())).toHaveLength(100)
}, 30_000)

it("totalTimeoutMs bounds an exchange whose answer trickles in: a TransportError, not a sync held for minutes", async () => {
  const a = await Instance.open(new InMemory())
  const b = await Instance.open(new InMemory())
  instances.push(a, b)
  await a.enableSync()
  await a.sync().enableHttpTransport()
  await b.enableSync()
  await b.sync().enableHttpTransport({ timeoutMs: 5_000, totalTimeoutMs: 800 })
  await a.createUser("alice")
  const alice = await a.loginUser("alice")
  const key = await alice.getDefaultKey()
  const db = await alice.createDatabase(Doc.from({ name: "slow" }), key)
  const admin = await db.newTransaction()
  await (await admin.settings()).setGlobalPermission(Permission.Write(10))
  await (await admin.docStore("notes")).set("big", "x".repeat(20_000))
  await admin.commit()
  await alice.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: { syncEnabled: true, syncOnCommit: false, properties: {} } })
  proxy = await startProxy(portOf(await a.sync().startServer("127.0.0.1:0")))
  // ~25 KB at 5 KB/s: five seconds of steady progress, never 5 s without any
  await proxy.set({ _tag: "throttle", bytesPerSec: 5_000 })
  const started = Date.now()
  const error = await within(b.sync().syncWithPeer(proxy.address, db.rootId).then(() => undefined, (e: unknown) => e), 4_000, "the sync")
  expect(error).toMatchObject({ _tag: "TransportError" })
  expect(String((error as Error).message)).toContain("total timeout")
  expect(Date.now() - started).toBeLessThan(3_000)
  await proxy.set({ _tag: "pass" })
  await b.sync().syncWithPeer(proxy.address, db.rootId) // the link is fine again: the same options complete
}, 20_000)
