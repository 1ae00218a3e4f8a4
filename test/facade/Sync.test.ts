/**
 * The facade's sync API over real HTTP on loopback: server lifecycle, a bootstrap, a push back,
 * and remote write events.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Doc, InMemory, Instance, NoTransportEnabled, Permission, ServerNotRunning, TreeNotFound } from "../../src/promise.js"
import { eventually, rejection } from "./helpers.js"

const ONLINE = { syncEnabled: true, syncOnCommit: true, properties: {} }

describe("Promise facade: sync over HTTP", () => {
  let server: Instance
  let client: Instance
  beforeEach(async () => {
    server = await Instance.open(new InMemory())
    client = await Instance.open(new InMemory())
  })
  afterEach(async () => {
    await server.close()
    await client.close()
  })

  it("server lifecycle errors", async () => {
    await server.enableSync()
    const sync = server.sync()
    await rejection(sync.startServer("127.0.0.1:0"), "NoTransportEnabled", NoTransportEnabled)
    await rejection(sync.getServerAddress(), "ServerNotRunning", ServerNotRunning)
    await sync.enableHttpTransport()
    await sync.enableHttpTransport()
    const address = await sync.startServer("127.0.0.1:0")
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(await sync.getServerAddress()).toBe(address)
    await rejection(sync.startServer("127.0.0.1:0"), "ServerAlreadyRunning")
    await sync.stopServer()
    await rejection(sync.stopServer(), "ServerNotRunning")
  })

  it("bootstraps a public database, pushes back, and reports remote writes", async () => {
    await server.createUser("alice")
    const alice = await server.loginUser("alice")
    const key = await alice.getDefaultKey()
    const db = await alice.createDatabase(Doc.from({ name: "shared" }), key)
    const setup = await db.newTransaction()
    await (await setup.settings()).setGlobalPermission(Permission.Write(10))
    await (await setup.docStore("data")).set("greeting", "hello from the server")
    await setup.commit()
    await alice.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: ONLINE })
    await server.enableSync()
    await server.sync().enableHttpTransport()
    const address = await server.sync().startServer("127.0.0.1:0")

    await client.enableSync()
    await client.sync().enableHttpTransport()
    await client.sync().syncWithPeer(address, db.rootId)
    await client.createUser("bob")
    const bob = await client.loginUser("bob")
    const copy = await bob.openDatabase(db.rootId)
    expect(await copy.tips()).toEqual(await db.tips())
    expect(await (await copy.docStore("data")).get("greeting")).toBe("hello from the server")

    const remote: Array<{ entryId: string; source: string }> = []
    const off = db.onWrite((e) => remote.push({ entryId: e.entryId, source: e.source }))
    const w = await copy.newTransaction()
    await (await w.docStore("data")).set("reply", "hello from the client")
    const id = await w.commit()
    await client.sync().syncWithPeer(address, db.rootId)
    await eventually(() => remote.length > 0)
    off()
    expect(remote).toEqual([{ entryId: id, source: "remote" }])
    expect(await (await db.docStore("data")).get("reply")).toBe("hello from the client")
  })

  it("an unserved database is not found on the peer", async () => {
    await server.createUser("alice")
    const alice = await server.loginUser("alice")
    const db = await alice.createDatabase(Doc.from({ name: "local only" }), await alice.getDefaultKey())
    await server.enableSync()
    await server.sync().enableHttpTransport()
    const address = await server.sync().startServer("127.0.0.1:0")
    await client.enableSync()
    await client.sync().enableHttpTransport()
    // the reference answers "Tree not found" alike for absent and unserved databases
    const e = await rejection(client.sync().syncWithPeer(address, db.rootId), "TreeNotFound", TreeNotFound)
    expect(e.message).toContain(db.rootId)
  })
})
