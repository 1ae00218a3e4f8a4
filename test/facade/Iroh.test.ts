/**
 * Sync over iroh through the Promise facade (API.md: `enableIrohTransport`, then `startServer` and
 * `getServerAddress` give an iroh address): real QUIC endpoints on loopback with iroh's minimal
 * preset and relays disabled. Both directions of syncWithPeer, tickets naming the iroh address,
 * the background engine over iroh, the server's identity kept across a restart, iroh beside HTTP,
 * a private database's refusal, and bad options.
 */
import type * as Iroh from "@number0/iroh/index.js"
import { afterEach, describe, expect, it } from "vitest"
import * as Path from "node:path"
import { Doc, InMemory, Instance, Permission, Sqlite } from "../../src/promise.js"
import { cleanup, rejection, tempDir } from "./helpers.js"

const LOOPBACK = { clientBind: "127.0.0.1:0", timeoutMs: 5_000 }
const ONLINE = { syncEnabled: true, syncOnCommit: true, properties: {} }

const open: Array<Instance> = []
const dirs: Array<string> = []
afterEach(async () => {
  for (const i of open.splice(0)) await i.close()
  for (const d of dirs.splice(0)) cleanup(d)
})

/** A node with one user, sync on and iroh enabled (on `backend`, in memory by default). */
const node = async (name: string, backend: InMemory | Sqlite = new InMemory()) => {
  const instance = await Instance.open(backend)
  open.push(instance)
  await instance.enableSync()
  if (!(await instance.listUsers()).includes(name)) await instance.createUser(name)
  const user = await instance.loginUser(name)
  const key = await user.getDefaultKey()
  const sync = instance.sync()
  await sync.enableIrohTransport(LOOPBACK)
  return { instance, user, key, sync }
}

/** A database of `owner`'s with one value and the `*` grant (anyone may write), tracked for sync. */
const sharedDb = async (owner: Awaited<ReturnType<typeof node>>, global: Permission.Permission | null = Permission.Write(10)) => {
  const db = await owner.user.createDatabase(Doc.from({ name: "notes" }), owner.key)
  const txn = await db.newTransaction()
  await (await txn.docStore("notes")).set("title", "from A")
  if (global !== null) await (await txn.settings()).setGlobalPermission(global)
  await txn.commit()
  await owner.user.trackDatabase({ databaseId: db.rootId, keyId: owner.key, syncSettings: ONLINE })
  return db
}

/** The endpoint id an `iroh:<ticket>` address names (a ticket also names the port, which changes). */
const endpointId = async (address: string) => {
  const ticket = /^iroh:(endpoint[a-z2-7]+)$/.exec(address)?.[1]
  if (ticket === undefined) return undefined
  const iroh = (await import("@number0/iroh/index.js") as unknown as { readonly default: typeof Iroh }).default
  return iroh.EndpointTicket.fromString(ticket).endpointAddr().id().toString()
}

describe("sync over iroh (Promise facade)", () => {
  it("startServer gives an iroh address; syncWithPeer bootstraps from it and pushes back; a ticket names it", async () => {
    const a = await node("alice")
    const db = await sharedDb(a)
    const address = await a.sync.startServer("127.0.0.1:0")
    expect(await endpointId(address)).toBeDefined()
    expect(await a.sync.getServerAddress()).toBe(address)

    const b = await node("bob")
    const result = await b.sync.syncWithPeer(address, db.rootId)
    expect(result.received).toBeGreaterThan(0)
    const copy = await b.user.openDatabase(db.rootId)
    expect(await (await copy.docStore("notes")).get("title")).toBe("from A")

    const txn = await copy.newTransaction()
    await (await txn.docStore("notes")).set("reply", "from B")
    await txn.commit()
    await b.sync.syncWithPeer(address, db.rootId)
    expect(await (await db.docStore("notes")).get("reply")).toBe("from B")

    const ticket = await a.sync.createTicket(db.rootId)
    expect(ticket).toBe(`eidetica:?db=${db.rootId}&pr=${address}`)
    const c = await node("carol")
    expect((await c.sync.syncWithTicket(ticket)).received).toBeGreaterThan(0)
    expect(await (await (await c.user.openDatabase(db.rootId)).docStore("notes")).getAll()).toEqual({ title: "from A", reply: "from B" })
  })

  it("the background engine syncs over iroh: a commit reaches the registered peer with no sync call", async () => {
    const a = await node("alice")
    const db = await sharedDb(a)
    const address = await a.sync.startServer("127.0.0.1:0")
    const b = await node("bob")
    await b.user.trackDatabase({ databaseId: db.rootId, keyId: b.key, syncSettings: ONLINE })
    const addressB = await b.sync.startServer("127.0.0.1:0")
    const onB = await b.sync.registerSyncPeer({
      peerPubkey: a.instance.deviceId,
      treeId: db.rootId,
      addresses: [{ transportType: "iroh", address }],
      displayName: "A"
    })
    await a.sync.registerSyncPeer({
      peerPubkey: b.instance.deviceId,
      treeId: db.rootId,
      addresses: [{ transportType: "iroh", address: addressB.slice("iroh:".length) }],
      displayName: "B"
    })
    await onB.waitForInitialSync()
    expect((await onB.status()).hasLocalData).toBe(true)
    const txn = await db.newTransaction()
    await (await txn.docStore("notes")).set("title", "live")
    await txn.commit()
    const copy = await b.user.openDatabase(db.rootId)
    const started = Date.now()
    let title: unknown
    while (title !== "live" && Date.now() - started < 10_000) {
      title = await (await copy.docStore("notes")).get("title")
      if (title !== "live") await new Promise((r) => setTimeout(r, 10))
    }
    expect(title).toBe("live")
  })

  it("a node's iroh identity is kept in its SQLite file: the endpoint id is the same after a restart", async () => {
    const dir = tempDir()
    dirs.push(dir)
    const file = Path.join(dir, "a.db")
    const first = await node("alice", new Sqlite(file))
    const before = await endpointId(await first.sync.startServer("127.0.0.1:0"))
    await first.instance.close()
    open.splice(open.indexOf(first.instance), 1)
    const again = await node("alice", new Sqlite(file))
    const after = await endpointId(await again.sync.startServer("127.0.0.1:0"))
    expect(after).toBeDefined()
    expect(after).toBe(before)
    // another node has another identity
    const other = await node("bob")
    expect(await endpointId(await other.sync.startServer("127.0.0.1:0"))).not.toBe(before)
  })

  it("beside HTTP: startServer serves the first enabled transport or the one its bind names, side by side; tickets name both", async () => {
    const a = await node("alice")
    await a.sync.enableHttpTransport()
    await a.sync.enableIrohTransport({ ...LOOPBACK, timeoutMs: 1 }) // a second call keeps the first
    const db = await sharedDb(a)
    // iroh was enabled first: a plain bind serves it; HTTP is named
    const iroh = await a.sync.startServer("127.0.0.1:0")
    expect(await endpointId(iroh)).toBeDefined()
    const http = await a.sync.startServer("http:127.0.0.1:0")
    expect(http).toMatch(/^127\.0\.0\.1:\d+$/)
    await rejection(a.sync.startServer("127.0.0.1:0"), "ServerAlreadyRunning")
    await rejection(a.sync.startServer("http:127.0.0.1:0"), "ServerAlreadyRunning")
    expect(await a.sync.getServerAddress()).toBe(iroh)
    const ticket = await a.sync.createTicket(db.rootId)
    expect(ticket).toBe(`eidetica:?db=${db.rootId}&pr=${iroh}&pr=http:${http}`)
    // a device with only HTTP syncs through the ticket's HTTP address; one with only iroh through the other
    const viaHttp = await Instance.open(new InMemory())
    open.push(viaHttp)
    await viaHttp.enableSync()
    await viaHttp.sync().enableHttpTransport()
    expect((await viaHttp.sync().syncWithTicket(ticket)).received).toBeGreaterThan(0)
    const viaIroh = await node("carol")
    expect((await viaIroh.sync.syncWithTicket(ticket)).received).toBeGreaterThan(0)
    await a.sync.stopServer()
    await rejection(a.sync.getServerAddress(), "ServerNotRunning")
    await rejection(a.sync.stopServer(), "ServerNotRunning")
    expect(await a.sync.startServer("http:127.0.0.1:0")).toMatch(/^127\.0\.0\.1:\d+$/)

    const lone = await Instance.open(new InMemory())
    open.push(lone)
    await lone.enableSync()
    await lone.sync().enableHttpTransport()
    const error = await rejection(lone.sync().startServer("iroh:127.0.0.1:0"), "TransportError")
    expect(error.message).toContain("no iroh transport is enabled")
  })

  it("a private database is refused over iroh as over HTTP, and nothing of it is stored", async () => {
    const a = await node("alice")
    const db = await sharedDb(a, null)
    const address = await a.sync.startServer("127.0.0.1:0")
    const b = await node("bob")
    await rejection(b.sync.syncWithPeer(address, db.rootId), "PermissionDenied")
    await rejection(b.user.openDatabase(db.rootId), "TreeNotFound")
  })

  it("bad options and addresses are typed errors", async () => {
    const instance = await Instance.open(new InMemory())
    open.push(instance)
    await instance.enableSync()
    const sync = instance.sync()
    await rejection(sync.enableIrohTransport({ relays: "everywhere" } as never), "InvalidArgument")
    await rejection(sync.enableIrohTransport({ timeoutMs: -1 }), "InvalidArgument")
    await rejection(sync.enableIrohTransport(null as never), "InvalidArgument")
    await sync.enableIrohTransport(LOOPBACK)
    const error = await rejection(sync.syncWithPeer("iroh:not-a-ticket", "bafyr4i" + "a".repeat(52)), "TransportError")
    expect(error.message).toContain("invalid iroh address")
  })
})
