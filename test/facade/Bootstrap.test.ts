/**
 * Bootstrap requests through the Promise facade (reference scenarios 22-29): asking for access with
 * a key and a permission, automatic approval when the key already holds it, manual approval or
 * rejection by an admin, and nothing granted or leaked otherwise.
 */
import { afterEach, describe, expect, it } from "vitest"
import { Doc, Instance, InMemory, Permission } from "../../src/promise.js"
import { rejection } from "./helpers.js"

const open: Array<Instance> = []
afterEach(async () => {
  for (const i of open.splice(0)) await i.close()
})

/** Node A: alice's private database (no global grant unless asked), served on loopback. */
const server = async (global?: Permission.Permission) => {
  const instance = await Instance.open(new InMemory())
  open.push(instance)
  await instance.enableSync()
  await instance.createUser("alice")
  const alice = await instance.loginUser("alice")
  const key = await alice.getDefaultKey()
  const db = await alice.createDatabase(Doc.from({ name: "room" }), key)
  const txn = await db.newTransaction()
  await (await txn.docStore("data")).set("secret", "s3cret")
  if (global !== undefined) await (await txn.settings()).setGlobalPermission(global)
  await txn.commit()
  await alice.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: { syncEnabled: true, syncOnCommit: false, properties: {} } })
  const sync = instance.sync()
  await sync.enableHttpTransport()
  const address = await sync.startServer("127.0.0.1:0")
  return { instance, alice, key, db, sync, address }
}

/** Node B: bob, with a key to ask with. */
const client = async (name = "bob") => {
  const instance = await Instance.open(new InMemory())
  open.push(instance)
  await instance.enableSync()
  await instance.createUser(name)
  const user = await instance.loginUser(name)
  const key = await user.getDefaultKey()
  const sync = instance.sync()
  await sync.enableHttpTransport()
  return { instance, user, key, sync }
}

const authKeys = async (a: Awaited<ReturnType<typeof server>>) => {
  const txn = await a.db.newTransaction()
  return (await (await txn.settings()).getAll()).auth as { keys: Record<string, { status: string; permissions: unknown }> }
}

describe("bootstrap requests", () => {
  it("22: insufficient permission goes pending; nothing received, no key added", async () => {
    const a = await server()
    const b = await client()
    const err = await rejection(b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, b.key, Permission.Write(10)), "BootstrapPending")
    expect((err as unknown as { requestId: string }).requestId).toMatch(/^[0-9a-f-]{36}$/)
    await rejection(b.user.openDatabase(a.db.rootId), "TreeNotFound")
    expect((await authKeys(a)).keys[b.key]).toBeUndefined()
    const pending = await a.sync.pendingBootstrapRequests()
    expect(pending.map((r) => [r.requestingKey, r.requestedPermission])).toEqual([[b.key, Permission.Write(10)]])
  })

  it("28: an admin approves; the client retries and receives the database; rejecting leaves it denied", async () => {
    const a = await server()
    const b = await client()
    const c = await client("carol")
    const ask = (x: typeof b) => x.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, x.key, Permission.Write(10))
    await rejection(ask(b), "BootstrapPending")
    await rejection(ask(c), "BootstrapPending")
    const [forB, forC] = await a.sync.pendingBootstrapRequests()
    await a.alice.approveBootstrapRequest(a.sync, forB!.requestId, a.key)
    await a.alice.rejectBootstrapRequest(a.sync, forC!.requestId, a.key)
    expect((await authKeys(a)).keys[b.key]).toMatchObject({ status: "Active", permissions: { type: "Write", priority: 10 } })
    expect((await authKeys(a)).keys[c.key]).toBeUndefined()
    const result = await ask(b)
    expect(result.received).toBeGreaterThan(0)
    const db = await b.user.openDatabase(a.db.rootId)
    expect(await (await db.docStore("data")).get("secret")).toBe("s3cret")
    await rejection(ask(c), "BootstrapPending")
    await rejection(c.user.openDatabase(a.db.rootId), "TreeNotFound")
  })

  it("27: concurrent requests get distinct ids; each approval adds exactly that key; approving twice fails", async () => {
    const a = await server()
    const clients = await Promise.all([client("c1"), client("c2"), client("c3")])
    const perms = [Permission.Write(10), Permission.Read, Permission.Write(3)]
    await Promise.all(clients.map((c, i) => rejection(c.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, c.key, perms[i]!), "BootstrapPending")))
    const pending = await a.sync.pendingBootstrapRequests()
    expect(new Set(pending.map((r) => r.requestId)).size).toBe(3)
    for (const r of pending) await a.alice.approveBootstrapRequest(a.sync, r.requestId, a.key)
    const keys = (await authKeys(a)).keys
    clients.forEach((c, i) => expect(keys[c.key]).toMatchObject({ status: "Active", permissions: perms[i] }))
    expect((await a.sync.bootstrapRequests()).every((r) => r.status === "Approved")).toBe(true)
    await rejection(a.alice.approveBootstrapRequest(a.sync, pending[0]!.requestId, a.key), "InvalidRequestState")
    await rejection(a.alice.approveBootstrapRequest(a.sync, "no-such-request", a.key), "RequestNotFound")
  })

  it("approving an older, lower request of a key that already holds more changes nothing: no demotion", async () => {
    const a = await server()
    const b = await client()
    const ask = (p: Permission.Permission) =>
      rejection(b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, b.key, p), "BootstrapPending") as Promise<unknown> as Promise<{
        requestId: string
      }>
    const read = await ask(Permission.Read)
    const admin = await ask(Permission.Admin(3))
    await a.alice.approveBootstrapRequest(a.sync, admin.requestId, a.key)
    const entries = (await a.db.tips()).join()
    await a.alice.approveBootstrapRequest(a.sync, read.requestId, a.key)
    expect((await authKeys(a)).keys[b.key]).toMatchObject({ status: "Active", permissions: Permission.Admin(3) })
    expect((await a.db.tips()).join()).toBe(entries) // nothing written
    expect((await a.sync.bootstrapRequests()).map((r) => r.status)).toEqual(["Approved", "Approved"])
  })

  it("a user without an Admin key of the database cannot approve", async () => {
    const a = await server()
    const b = await client()
    await rejection(b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, b.key, Permission.Write(10)), "BootstrapPending")
    await a.instance.createUser("mallory")
    const mallory = await a.instance.loginUser("mallory")
    const [request] = await a.sync.pendingBootstrapRequests()
    await rejection(mallory.approveBootstrapRequest(a.sync, request!.requestId, await mallory.getDefaultKey()), "PermissionDenied")
    await rejection(mallory.approveBootstrapRequest(a.sync, request!.requestId, a.key), "KeyNotFound")
    expect((await authKeys(a)).keys[b.key]).toBeUndefined()
  })

  it("23: a revoked key is refused and stays revoked", async () => {
    const a = await server()
    const b = await client()
    const g = await a.db.newTransaction()
    await (await g.settings()).setAuthKey(b.key, { permission: Permission.Write(10), name: "bob" })
    await g.commit()
    const r = await a.db.newTransaction()
    await (await r.settings()).revokeAuthKey(b.key)
    await r.commit()
    await rejection(b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, b.key, Permission.Write(10)), "PermissionDenied")
    expect((await authKeys(a)).keys[b.key]?.status).toBe("Revoked")
    expect(await a.sync.pendingBootstrapRequests()).toEqual([])
  })

  it("24: over-asking Admin(0) goes pending and grants nothing", async () => {
    const a = await server()
    const b = await client()
    await rejection(b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, b.key, Permission.Admin(0)), "BootstrapPending")
    expect((await authKeys(a)).keys[b.key]).toBeUndefined()
  })

  it("29: under a global Write(10) grant, Write(15) and Read are approved at once without adding a key; Write(5) and Admin wait", async () => {
    const a = await server(Permission.Write(10))
    const b = await client()
    const got = await b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, b.key, Permission.Write(15))
    expect(got.received).toBeGreaterThan(0)
    const c = await client("carol")
    await c.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, c.key, Permission.Read)
    expect((await authKeys(a)).keys[b.key]).toBeUndefined()
    await rejection(b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, b.key, Permission.Write(5)), "BootstrapPending")
    await rejection(b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, b.key, Permission.Admin(1)), "BootstrapPending")
    expect((await a.sync.pendingBootstrapRequests()).length).toBe(2)
  })

  it("25: a malformed ed25519 key id is a clear error", async () => {
    const a = await server()
    const b = await client()
    await rejection(b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, "ed25519:not-a-key", Permission.Read), "KeyNotFound")
  })
})

describe("syncWithPeer signs with a logged-in user's key that the database knows", () => {
  it("a user granted Read on a private database syncs it with a plain syncWithPeer once it holds it", async () => {
    const a = await server()
    const b = await client()
    // first access through a request that an admin approves
    await rejection(b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, b.key, Permission.Read), "BootstrapPending")
    const [request] = await a.sync.pendingBootstrapRequests()
    await a.alice.approveBootstrapRequest(a.sync, request!.requestId, a.key)
    await b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, b.key, Permission.Read)
    // later writes on A reach B with a plain sync: B's key (not its device key) proves Read
    const txn = await a.db.newTransaction()
    await (await txn.docStore("data")).set("later", "yes")
    await txn.commit()
    const result = await b.sync.syncWithPeer(a.address, a.db.rootId)
    expect(result.received).toBe(1)
    const db = await b.user.openDatabase(a.db.rootId)
    expect(await (await db.docStore("data")).get("later")).toBe("yes")
  })

  it("a plain syncWithPeer of a database not held yet proves access with a logged-in user.s key", async () => {
    const a = await server()
    const b = await client()
    // approved by request, then fetched with a plain sync (no retry of the request)
    await rejection(b.sync.syncWithPeerForBootstrap(a.address, a.db.rootId, b.key, Permission.Read), "BootstrapPending")
    const [request] = await a.sync.pendingBootstrapRequests()
    await a.alice.approveBootstrapRequest(a.sync, request!.requestId, a.key)
    const result = await b.sync.syncWithPeer(a.address, a.db.rootId)
    expect(result.received).toBeGreaterThan(0)
    const db = await b.user.openDatabase(a.db.rootId)
    expect(await (await db.docStore("data")).get("secret")).toBe("s3cret")
    // granted directly by an admin (no request at all): carol, on a node of her own
    const c = await client("carol")
    const grant = await a.db.newTransaction()
    await (await grant.settings()).setAuthKey(c.key, { permission: Permission.Read })
    await grant.commit()
    expect((await c.sync.syncWithPeer(a.address, a.db.rootId)).received).toBeGreaterThan(0)
  })

  it("when every key is refused, the answer is the refusal of the first key tried, and nothing is stored", async () => {
    const a = await server()
    const b = await client()
    const err = await rejection(b.sync.syncWithPeer(a.address, a.db.rootId), "PermissionDenied")
    expect(err.message).toContain(`key ${b.key} may not read database`)
    await rejection(b.user.openDatabase(a.db.rootId), "TreeNotFound")
  })
})
