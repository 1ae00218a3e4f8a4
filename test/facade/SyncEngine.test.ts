/**
 * The facade's background sync (API.md): registerSyncPeer handles with status/subscribe/addAddress/
 * waitForInitialSync, sync on commit with no explicit sync call, and flush after a peer returns;
 * calls still waiting when the instance closes reject with InstanceClosed.
 */
import * as Net from "node:net"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Doc, InMemory, Instance, Permission, type PeerStatus } from "../../src/promise.js"
import { eventually, rejection } from "./helpers.js"

/** `promise`, or a resolution after `ms` if it is still pending then (so a hang fails `rejection`). */
const within = (promise: Promise<unknown>, ms: number): Promise<unknown> =>
  Promise.race([promise, new Promise((resolve) => setTimeout(resolve, ms))])

const ONLINE = { syncEnabled: true, syncOnCommit: true, properties: {} }

describe("Promise facade: background sync", () => {
  let a: Instance
  let b: Instance
  beforeEach(async () => {
    a = await Instance.open(new InMemory())
    b = await Instance.open(new InMemory())
  })
  afterEach(async () => {
    await a.close()
    await b.close()
  })

  it("registerSyncPeer: commits on A reach B on their own; status, subscribe, flush", async () => {
    await a.createUser("alice")
    const alice = await a.loginUser("alice")
    const key = await alice.getDefaultKey()
    const db = await alice.createDatabase(Doc.from({ name: "notes" }), key)
    const admin = await db.newTransaction()
    await (await admin.settings()).setGlobalPermission(Permission.Write(10))
    await admin.commit()
    await alice.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: ONLINE })
    for (const i of [a, b]) {
      await i.enableSync()
      await i.sync().enableHttpTransport()
    }
    const addressA = await a.sync().startServer("127.0.0.1:0")
    const addressB = await b.sync().startServer("127.0.0.1:0")
    await b.createUser("bob")
    const bob = await b.loginUser("bob")
    const bobKey = await bob.getDefaultKey()
    await bob.trackDatabase({ databaseId: db.rootId, keyId: bobKey, syncSettings: ONLINE })

    const onB = await b.sync().registerSyncPeer({
      peerPubkey: a.deviceId,
      treeId: db.rootId,
      addresses: [{ transportType: "http", address: addressA }],
      auth: undefined,
      displayName: "A"
    })
    const onA = await a.sync().registerSyncPeer({
      peerPubkey: b.deviceId,
      treeId: db.rootId,
      addresses: [{ transportType: "http", address: addressB }],
      displayName: "B"
    })
    expect(onA.peerPubkey).toBe(b.deviceId)
    await onB.waitForInitialSync()
    const first = await onB.status()
    expect(first.hasLocalData).toBe(true)
    expect(first.lastSync).toBeInstanceOf(Date)
    expect(first.pendingEntries).toBe(0)

    const seen: Array<PeerStatus> = []
    const off = onA.subscribe((s) => seen.push(s))
    // a listener that throws keeps being called (the current status, then each change)
    let thrown = 0
    const offThrowing = onA.subscribe(() => {
      thrown++
      throw new Error("a bug in the app's listener")
    })
    const txn = await db.newTransaction()
    await (await txn.docStore("notes")).set("title", "hello")
    await txn.commit()
    const copy = await bob.openDatabase(db.rootId)
    let title: unknown
    const started = Date.now()
    while (title !== "hello" && Date.now() - started < 5_000) {
      title = await (await copy.docStore("notes")).get("title")
      if (title !== "hello") await new Promise((r) => setTimeout(r, 10))
    }
    expect(title).toBe("hello")
    await eventually(() => seen.some((s) => s.state === "syncing"))
    await eventually(() => thrown >= 2)
    off()
    offThrowing()
    expect(seen[0]!.state).toBeDefined()

    expect(await a.sync().flush()).toEqual({ delivered: 1, failed: 0 })
    await onA.addAddress({ transportType: "http", address: addressB })
    const after = await onA.status()
    expect(after).toMatchObject({ state: "idle", hasLocalData: true, pendingEntries: 0 })
    expect(after.lastError).toBeUndefined()
    expect(after.retryAt).toBeUndefined()
  })

  it("a private database syncs in the background with no key named (auth: undefined, as in API.md)", async () => {
    for (const i of [a, b]) {
      await i.enableSync()
      await i.sync().enableHttpTransport()
    }
    await a.createUser("alice")
    const alice = await a.loginUser("alice")
    const key = await alice.getDefaultKey()
    const db = await alice.createDatabase(Doc.from({ name: "private" }), key)
    await alice.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: ONLINE })
    const address = await a.sync().startServer("127.0.0.1:0")
    // bob asks for Write, alice approves: bob's key is in the database's auth, B's device key is not
    await b.createUser("bob")
    const bob = await b.loginUser("bob")
    const bobKey = await bob.getDefaultKey()
    await rejection(b.sync().syncWithPeerForBootstrap(address, db.rootId, bobKey, Permission.Write(10)), "BootstrapPending")
    const [request] = await a.sync().pendingBootstrapRequests()
    await alice.approveBootstrapRequest(a.sync(), request!.requestId, key)
    await b.sync().syncWithPeerForBootstrap(address, db.rootId, bobKey, Permission.Write(10))
    await bob.trackDatabase({ databaseId: db.rootId, keyId: bobKey, syncSettings: ONLINE })
    const handle = await b.sync().registerSyncPeer({
      peerPubkey: a.deviceId,
      treeId: db.rootId,
      addresses: [{ transportType: "http", address }],
      auth: undefined,
      displayName: "A"
    })
    await within(handle.waitForInitialSync(), 5_000)
    const status = await handle.status()
    expect(status.lastError).toBeUndefined()
    expect(status.state).toBe("idle")
    // a write on A arrives at B by the engine alone (a periodic or pushed sync signed with bob's key)
    const txn = await db.newTransaction()
    await (await txn.docStore("notes")).set("secret", "for bob")
    await txn.commit()
    await b.sync().flush()
    const mine = await bob.openDatabase(db.rootId)
    expect(await (await mine.docStore("notes")).get("secret")).toBe("for bob")
  })

  it("a database made private while a member still holds it as open: the member's commits still arrive, proven", async () => {
    for (const i of [a, b]) {
      await i.enableSync()
      await i.sync().enableHttpTransport()
    }
    await a.createUser("alice")
    const alice = await a.loginUser("alice")
    const key = await alice.getDefaultKey()
    const db = await alice.createDatabase(Doc.from({ name: "notes" }), key)
    await b.createUser("bob")
    const bob = await b.loginUser("bob")
    const bobKey = await bob.getDefaultKey()
    const open = await db.newTransaction()
    await (await open.settings()).setGlobalPermission(Permission.Write(10))
    await (await open.settings()).setAuthKey(bobKey, { permission: Permission.Write(10) })
    await open.commit()
    await alice.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: ONLINE })
    const address = await a.sync().startServer("127.0.0.1:0")
    await b.sync().syncWithPeer(address, db.rootId)
    await bob.trackDatabase({ databaseId: db.rootId, keyId: bobKey, syncSettings: { ...ONLINE, intervalSeconds: 3_600 } })
    const handle = await b.sync().registerSyncPeer({ peerPubkey: a.deviceId, treeId: db.rootId, addresses: [{ transportType: "http", address }] })
    await within(handle.waitForInitialSync(), 5_000)
    // A closes the database to the public; B is not told, so it pushes unproven and is refused
    const close = await db.newTransaction()
    await (await close.settings()).revokeGlobalPermission()
    await close.commit()
    const mine = await bob.openDatabase(db.rootId)
    const t = await mine.newTransaction()
    await (await t.docStore("notes")).set("from-bob", "x")
    await t.commit()
    // the refusal makes the engine sync (pulling the new settings) and push again, proven: no interval needed
    let arrived: unknown
    for (let i = 0; i < 50 && arrived === undefined; i++) {
      arrived = await (await db.docStore("notes")).get("from-bob")
      if (arrived === undefined) await new Promise((r) => setTimeout(r, 100))
    }
    expect(arrived).toBe("x")
    expect((await handle.status()).lastError).toBeUndefined()
  })

  it("waitForInitialSync of an unreachable peer rejects with InstanceClosed when the instance closes", async () => {
    await a.enableSync()
    await a.sync().enableHttpTransport()
    const handle = await a.sync().registerSyncPeer({
      peerPubkey: b.deviceId,
      treeId: "tree",
      addresses: [{ transportType: "http", address: "127.0.0.1:1" }] // refused
    })
    const waiting = handle.waitForInitialSync()
    while ((await handle.status()).state !== "backoff") await new Promise((r) => setTimeout(r, 5))
    const settled = rejection(within(waiting, 2_000), "InstanceClosed") // handled from now on
    await a.close()
    await settled
  })

  it("sync().flush() in flight rejects with InstanceClosed when the instance closes", async () => {
    const sockets: Array<Net.Socket> = []
    const silent = Net.createServer((s) => void sockets.push(s)) // accepts, never answers
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()))
    try {
      const port = (silent.address() as Net.AddressInfo).port
      await a.enableSync()
      await a.createUser("alice")
      const alice = await a.loginUser("alice")
      const db = await alice.createDatabase(Doc.from({ name: "notes" }), await alice.getDefaultKey())
      await a.sync().enableHttpTransport({ timeoutMs: 20_000 })
      await a.sync().registerSyncPeer({
        peerPubkey: b.deviceId,
        treeId: db.rootId,
        addresses: [{ transportType: "http", address: `127.0.0.1:${port}` }]
      })
      const flushing = a.sync().flush()
      await eventually(() => sockets.length > 0)
      const settled = rejection(within(flushing, 2_000), "InstanceClosed") // handled from now on
      await a.close()
      await settled
    } finally {
      for (const s of sockets) s.destroy()
      silent.close()
    }
  })

  it("registerSyncPeer checks its arguments", async () => {
    await a.enableSync()
    await rejection(
      a.sync().registerSyncPeer({ peerPubkey: "", treeId: "x", addresses: [] }),
      "InvalidArgument"
    )
  })
})
