/**
 * Tickets through the Promise facade over real HTTP on loopback (the reference's ticket tests):
 * `user.share` gives a ticket another device syncs with; several address hints are tried at once
 * and the first to succeed wins; all failing gives a node's own answer before an unreachable hint's
 * failure; a ticket with no address, or
 * none at all, is InvalidTicket; `bootstrapWithTicket` asks for access as
 * `syncWithPeerForBootstrap` does.
 */
import { createServer, type Socket } from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import { Doc, InMemory, Instance, Permission } from "../../src/promise.js"
import { rejection } from "./helpers.js"

const open: Array<Instance> = []
afterEach(async () => {
  for (const i of open.splice(0)) await i.close()
})

/** A node with a user and sync on; `serve` starts its server. */
const node = async (name: string, serve = true, http: { readonly timeoutMs?: number } = {}) => {
  const instance = await Instance.open(new InMemory())
  open.push(instance)
  await instance.enableSync()
  await instance.createUser(name)
  const user = await instance.loginUser(name)
  const key = await user.getDefaultKey()
  const sync = instance.sync()
  await sync.enableHttpTransport(http)
  const address = serve ? await sync.startServer("127.0.0.1:0") : undefined
  return { instance, user, key, sync, address }
}

/** A database of `a`'s with one value, private unless `global` is given. */
const room = async (a: Awaited<ReturnType<typeof node>>, global?: Permission.Permission) => {
  const db = await a.user.createDatabase(Doc.from({ name: "room" }), a.key)
  const txn = await db.newTransaction()
  await (await txn.docStore("chat")).set("hello", "from A")
  if (global !== undefined) await (await txn.settings()).setGlobalPermission(global)
  await txn.commit()
  return db
}

/** Run `body` with the port of a server that accepts connections and never answers; whether any came. */
const withBlackHole = async (body: (port: number) => Promise<void>): Promise<boolean> => {
  const sockets: Array<Socket> = []
  const hole = createServer((socket) => void sockets.push(socket))
  await new Promise<void>((resolve) => hole.listen(0, "127.0.0.1", resolve))
  try {
    await body((hole.address() as { port: number }).port)
    return sockets.length > 0
  } finally {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => hole.close(() => resolve()))
  }
}

/** A port with nothing listening (bound, then released). */
const closedPort = async () => {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

describe("tickets", () => {
  it("share gives a ticket naming the server; another device syncs with it alone, both ways", async () => {
    const a = await node("alice")
    const db = await room(a, Permission.Write(10))
    const ticket = await a.user.share(db.rootId)
    expect(ticket).toBe(`eidetica:?db=${db.rootId}&pr=http:${a.address}`)
    // share enabled the sync: the server serves it
    expect((await a.user.trackedDatabases()).find((t) => t.databaseId === db.rootId)?.syncSettings.syncEnabled).toBe(true)
    expect(await a.sync.createTicket(db.rootId)).toBe(ticket)

    const b = await node("bob", false)
    expect((await b.sync.syncWithTicket(ticket)).received).toBeGreaterThan(0)
    const copy = await b.user.openDatabase(db.rootId)
    expect(await (await copy.docStore("chat")).get("hello")).toBe("from A")
    const txn = await copy.newTransaction()
    await (await txn.docStore("chat")).set("reply", "from B")
    await txn.commit()
    expect((await b.sync.syncWithTicket(ticket)).sent).toBe(1)
    expect(await (await db.docStore("chat")).get("reply")).toBe("from B")
  })

  it("tries every address at once: dead hints beside a live one still sync; all dead rejects with the last failure", async () => {
    const a = await node("alice")
    const db = await room(a, Permission.Write(10))
    await a.user.share(db.rootId)
    const dead = await closedPort()
    const b = await node("bob", false)
    const mixed = `eidetica:?db=${db.rootId}&pr=http:127.0.0.1:${dead}&pr=sim:nowhere&pr=http:${a.address}`
    expect((await b.sync.syncWithTicket(mixed)).received).toBeGreaterThan(0)
    expect(await (await (await b.user.openDatabase(db.rootId)).docStore("chat")).get("hello")).toBe("from A")
    await rejection(b.sync.syncWithTicket(`eidetica:?db=${db.rootId}&pr=http:127.0.0.1:${dead}`), "TransportError")
  })

  it("a hint that never answers does not hold up the live one listed after it (they are tried at once)", async () => {
    const a = await node("alice")
    const db = await room(a, Permission.Write(10))
    await a.user.share(db.rootId)
    // tried in turn, the hint that never answers would hold the sync for 30 s
    const b = await node("bob", false)
    const reached = await withBlackHole(async (port) => {
      expect((await b.sync.syncWithTicket(`eidetica:?db=${db.rootId}&pr=http:127.0.0.1:${port}&pr=http:${a.address}`)).received).toBeGreaterThan(0)
    })
    expect(reached).toBe(true)
  }, 15_000)

  it("all hints failing: a node's own answer (BootstrapPending) wins over a hint that never answered", async () => {
    const a = await node("alice")
    const db = await room(a)
    await a.user.share(db.rootId)
    const b = await node("bob", false, { timeoutMs: 1_500 })
    await withBlackHole(async (port) => {
      const ticket = `eidetica:?db=${db.rootId}&pr=http:${a.address}&pr=http:127.0.0.1:${port}`
      await rejection(b.sync.bootstrapWithTicket(ticket, b.key, Permission.Write(10)), "BootstrapPending")
    })
    expect(await a.sync.pendingBootstrapRequests()).toHaveLength(1)
  }, 20_000)

  it("a ticket with no address (no server was running), or that is no ticket, is InvalidTicket", async () => {
    const a = await node("alice", false)
    const db = await room(a)
    const bare = await a.sync.createTicket(db.rootId)
    expect(bare).toBe(`eidetica:?db=${db.rootId}`)
    const b = await node("bob", false)
    const none = await rejection(b.sync.syncWithTicket(bare), "InvalidTicket")
    expect(none.message).toBe("Invalid ticket: Ticket has no address hints (the node that made it was running no server)")
    await rejection(b.sync.syncWithTicket("http://127.0.0.1:3000"), "InvalidTicket")
    await rejection(b.sync.syncWithTicket(`eidetica:?db=${db.rootId}&pr=nocolon`), "InvalidTicket")
    // a ticket for a database this node does not hold is refused where it is made
    await rejection(b.sync.createTicket(db.rootId), "TreeNotFound")
    await rejection(a.user.share("bafyr4inotadatabaseatallreally"), "TreeNotFound")
  })

  it("bootstrapWithTicket asks for access; once approved, the retry receives the database", async () => {
    const a = await node("alice")
    const db = await room(a)
    const ticket = await a.user.share(db.rootId)
    const b = await node("bob", false)
    // without access the ticket alone is not enough
    await rejection(b.sync.syncWithTicket(ticket), "PermissionDenied")
    await rejection(b.sync.bootstrapWithTicket(ticket, b.key, Permission.Write(10)), "BootstrapPending")
    const [request] = await a.sync.pendingBootstrapRequests()
    expect(request?.requestingKey).toBe(b.key)
    await a.user.approveBootstrapRequest(a.sync, request!.requestId, a.key)
    expect((await b.sync.bootstrapWithTicket(ticket, b.key, Permission.Write(10))).received).toBeGreaterThan(0)
    expect(await (await (await b.user.openDatabase(db.rootId)).docStore("chat")).get("hello")).toBe("from A")
    await rejection(b.sync.bootstrapWithTicket(ticket, "ed25519:notbobskey", Permission.Read), "KeyNotFound")
  })
})
