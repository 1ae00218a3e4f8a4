/**
 * The facade's background sync (API.md): registerSyncPeer handles with status/subscribe/addAddress/
 * waitForInitialSync, sync on commit with no explicit sync call, and flush after a peer returns.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Doc, InMemory, Instance, Permission, type PeerStatus } from "../../src/promise.js"
import { eventually, rejection } from "./helpers.js"

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
    off()
    expect(seen[0]!.state).toBeDefined()

    expect(await a.sync().flush()).toEqual({ delivered: 1, failed: 0 })
    await onA.addAddress({ transportType: "http", address: addressB })
    const after = await onA.status()
    expect(after).toMatchObject({ state: "idle", hasLocalData: true, pendingEntries: 0 })
    expect(after.lastError).toBeUndefined()
    expect(after.retryAt).toBeUndefined()
  })

  it("registerSyncPeer checks its arguments", async () => {
    await a.enableSync()
    await rejection(
      a.sync().registerSyncPeer({ peerPubkey: "", treeId: "x", addresses: [] }),
      "InvalidArgument"
    )
  })
})
