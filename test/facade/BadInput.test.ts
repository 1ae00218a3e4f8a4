/**
 * Wrong input to the public Promise API (and the testing kit), as an app developer passes it: each
 * gets a typed EideticaError saying what was wrong (InvalidArgument, UserExists, InvalidEntry…), and
 * nothing already stored is damaged. From an outside review; every case here failed before its fix.
 */
import * as Runtime from "effect/Runtime"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { type Database, Doc, EideticaError, Instance, InMemory, Permission, Sqlite, type User } from "../../src/promise.js"
import { Simulation } from "../../src/testing.js"
import * as Path from "node:path"
import { cleanup, rejection, tempDir } from "../facade/helpers.js"

const ONLINE = { syncEnabled: true, syncOnCommit: true, intervalSeconds: 60, properties: {} }

/** A rejection that is a typed EideticaError naming a real case (not the catch-all Defect). */
const typedRejection = async (p: Promise<unknown>, tags: ReadonlyArray<string>): Promise<EideticaError> => {
  let thrown: unknown
  try {
    await p
  } catch (e) {
    thrown = e
  }
  expect(thrown, `expected a rejection with one of ${tags.join(", ")}`).toBeDefined()
  expect(Runtime.isFiberFailure(thrown)).toBe(false)
  expect(thrown).toBeInstanceOf(EideticaError)
  expect(tags).toContain((thrown as EideticaError)._tag)
  return thrown as EideticaError
}

/** Call `f`; a synchronous throw is caught too (the API must reject, never throw, but we record either). */
const settled = (f: () => unknown): Promise<unknown> => {
  try {
    return Promise.resolve(f())
  } catch (e) {
    return Promise.reject(e)
  }
}

describe("bad input to the Promise API", () => {
  let instance: Instance
  let user: User
  let key: string
  let db: Database

  beforeEach(async () => {
    instance = await Instance.open(new InMemory())
    await instance.createUser("alice")
    user = await instance.loginUser("alice")
    key = await user.getDefaultKey()
    db = await user.createDatabase(Doc.from({ name: "notes" }), key)
    const t = await db.newTransaction()
    await (await t.docStore("notes")).set("important", "keep me")
    await (await t.table<{ a: number }>("rows")).insert({ a: 1 })
    await t.commit()
  })
  afterEach(async () => {
    await instance.close()
  })

  // before its fix: a non-string key is accepted, committed, and makes the whole store unreadable forever
  for (const [label, badKey] of [["7", 7], ["undefined", undefined], ["null", null], ["{}", {}]] as const) {
    it(`DocStore.set/delete and Table.set/delete with key ${label} reject and leave the stores readable`, async () => {
      const t = await db.newTransaction()
      const notes = await t.docStore("notes")
      const rows = await t.table<{ a: number }>("rows")
      const attempts = [
        () => notes.set(badKey as unknown as string, 1),
        () => notes.delete(badKey as unknown as string),
        () => rows.set(badKey as unknown as string, { a: 2 }),
        () => rows.delete(badKey as unknown as string)
      ]
      for (const attempt of attempts) await rejection(attempt(), "InvalidArgument")
      await t.commit().catch(() => undefined)
      expect(await (await db.docStore("notes")).get("important")).toBe("keep me")
      expect((await (await db.table<{ a: number }>("rows")).all()).length).toBe(1)
    })
  }

  it("a committed write with a non-string key does not make data stored before it unreadable", async () => {
    const t = await db.newTransaction()
    await (await t.docStore("notes")).set(7 as unknown as string, 1).catch(() => undefined)
    await t.commit().catch(() => undefined)
    expect(await (await db.docStore("notes")).get("important")).toBe("keep me")
    const later = await db.newTransaction()
    await (await later.docStore("notes")).set("later", 2)
    await later.commit()
    expect(await (await db.docStore("notes")).get("later")).toBe(2)
  })

  // before its fix: Table rows go through JSON.stringify, so non-data is silently rewritten (DocStore rejects the same values)
  for (const [label, value] of [
    ["a Map", new Map([["k", 1]])],
    ["a Set", new Set([1, 2])],
    ["a Date", new Date(0)],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["a Uint8Array", new Uint8Array([1, 2])],
    ["a class instance", new (class Point { x = 1 })()],
    ["a function", () => 1]
  ] as const) {
    it(`Table.insert of a row holding ${label} rejects with InvalidArgument instead of storing something else`, async () => {
      const t = await db.newTransaction()
      const rows = await t.table<{ v: unknown }>("rows")
      await rejection(rows.insert({ v: value }), "InvalidArgument")
    })
  }

  // before its fix: a committed transaction keeps accepting writes that are never stored
  it("writes to a committed transaction reject instead of being silently dropped", async () => {
    const t = await db.newTransaction()
    await (await t.docStore("notes")).set("a", 1)
    await t.commit()
    await typedRejection((async () => (await t.docStore("notes")).set("b", 2))(), ["InvalidArgument", "InvalidRequestState", "TransactionCommitted"])
    await typedRejection((async () => (await t.table("rows")).insert({ a: 3 }))(), ["InvalidArgument", "InvalidRequestState", "TransactionCommitted"])
  })

  // before its fix: committing twice is a Defect, not a typed error
  it("committing twice rejects with a typed error, not Defect", async () => {
    const t = await db.newTransaction()
    await (await t.docStore("notes")).set("a", 1)
    await t.commit()
    await typedRejection(t.commit(), ["InvalidArgument", "InvalidRequestState", "TransactionCommitted"])
  })

  // before its fix: two concurrent commit() calls of one transaction both succeed and store two entries
  it("concurrent commits of one transaction store one entry (on SQLite)", async () => {
    const dir = tempDir()
    const sqlite = await Instance.open(new Sqlite(Path.join(dir, "x.db")))
    let fulfilled = 0
    try {
    await sqlite.createUser("bob")
    const bob = await sqlite.loginUser("bob")
    const sdb = await bob.createDatabase(Doc.from({ name: "s" }), await bob.getDefaultKey())
    for (let i = 0; i < 5; i++) {
      const t = await sdb.newTransaction()
      await (await t.docStore("notes")).set("c", i)
      const results = await Promise.allSettled([t.commit(), t.commit()])
      fulfilled += results.filter((r) => r.status === "fulfilled").length
    }
    } finally {
      await sqlite.close()
      cleanup(dir)
    }
    expect(fulfilled).toBe(5)
  })

  // before its fix: createUser's existence check and its write are not atomic: the second user silently replaces the first
  it("concurrent createUser of one name: one UserExists, and the winner's password still works", async () => {
    const results = await Promise.allSettled([instance.createUser("dup", "pw1"), instance.createUser("dup", "pw2")])
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"])
    const winner = results[0]!.status === "fulfilled" ? "pw1" : "pw2"
    expect((await instance.loginUser("dup", winner)).username).toBe("dup")
  })

  // before its fix: setName(5) is accepted and committed: the name is lost, findDatabase no longer finds it
  it("settings.setName with a non-string rejects and keeps the name", async () => {
    const t = await db.newTransaction()
    const settings = await t.settings()
    await rejection(settings.setName(5 as unknown as string), "InvalidArgument")
    await rejection(settings.setName(undefined as unknown as string), "InvalidArgument")
    await t.commit().catch(() => undefined)
    expect(await db.getName()).toBe("notes")
    expect((await user.findDatabase("notes")).rootId).toBe(db.rootId)
  })

  // before its fix: a malformed public key is granted and committed into _settings.auth
  it("settings.setAuthKey with a malformed public key rejects", async () => {
    const t = await db.newTransaction()
    await rejection((await t.settings()).setAuthKey("garbage", { permission: Permission.Write(1) }), "InvalidArgument")
  })

  // before its fix: wrong argument types reach the engine and come back as Defect with a JS engine message
  it("wrong argument types reject with InvalidArgument, not Defect", async () => {
    const t = await db.newTransaction()
    await rejection((await t.settings()).revokeAuthKey(5 as unknown as string), "InvalidArgument")
    await rejection((await db.table("rows")).search(5 as unknown as () => boolean), "InvalidArgument")
    await rejection((await db.docStore("notes")).getPath(123 as unknown as string), "InvalidArgument")
    const e = await rejection((await t.docStore("notes")).setPath(123 as unknown as string, 1), "InvalidArgument")
    expect(e.message).not.toContain("is not a function")
  })

  // before its fix: a value larger than a sync message commits locally, then the database can never sync again
  it("a value too large to ever sync is refused at commit, and the database stays syncable", async () => {
    await instance.enableSync()
    await instance.sync().enableHttpTransport()
    const admin = await db.newTransaction()
    await (await admin.settings()).setGlobalPermission(Permission.Write(10))
    await admin.commit()
    await user.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: ONLINE })
    const address = await instance.sync().startServer("127.0.0.1:0")
    const t = await db.newTransaction()
    await (await t.docStore("big")).set("v", "x".repeat(9_000_000))
    await typedRejection(t.commit(), ["PayloadTooLarge", "InvalidEntry", "InvalidArgument"])
    const peer = await Instance.open(new InMemory())
    try {
      await peer.enableSync()
      await peer.sync().enableHttpTransport()
      const result = await peer.sync().syncWithPeer(address, db.rootId)
      expect(result.received).toBeGreaterThan(0)
    } finally {
      await peer.close()
    }
  }, 60_000)

  // before its fix: a malformed peer is registered and persisted; it can never sync (a malformed
  // http address only ever showed as the peer's lastError)
  const badHttp = (address: string) => ({ addresses: [{ transportType: "http", address }] })
  for (const [label, patch] of [
    ["peerPubkey 'garbage'", { peerPubkey: "garbage" }],
    ["an http address with no port", badHttp("127.0.0.1")],
    ["an http address given as a URL", badHttp("http://127.0.0.1:3000")],
    ["an http address with port 0", badHttp("127.0.0.1:0")],
    ["an http address with port 65536", badHttp("127.0.0.1:65536")],
    ["an http address with an unbracketed IPv6 host", badHttp("::1:3000")]
  ] as const) {
    it(`registerSyncPeer with ${label} rejects with InvalidArgument`, async () => {
      await instance.enableSync()
      await instance.sync().enableHttpTransport()
      const good = {
        peerPubkey: "ed25519:" + "A".repeat(43) + "=",
        treeId: db.rootId,
        addresses: [{ transportType: "http", address: "127.0.0.1:1" }]
      }
      const error = await rejection(instance.sync().registerSyncPeer({ ...good, ...patch }), "InvalidArgument")
      if ("addresses" in patch) expect(String(error)).toMatch(/is not an http address: expected host:port/)
    })
  }

  it("registerSyncPeer takes http addresses of every form the client reads, and addAddress checks as it does", async () => {
    await instance.enableSync()
    await instance.sync().enableHttpTransport()
    const handle = await instance.sync().registerSyncPeer({
      peerPubkey: "ed25519:" + "B".repeat(43) + "=",
      treeId: db.rootId,
      addresses: ["127.0.0.1:1", "[::1]:1", "localhost:1", "peer.example:65535"].map((address) => ({ transportType: "http", address }))
    })
    await rejection(handle.addAddress({ transportType: "http", address: "localhost" }), "InvalidArgument")
    // an iroh address must have a ticket's form; another transport's address is that transport's to read
    await rejection(handle.addAddress({ transportType: "iroh", address: "127.0.0.1:3000" }), "InvalidArgument")
    await handle.addAddress({ transportType: "iroh", address: "endpoint" + "a".repeat(55) })
    await handle.addAddress({ transportType: "carrier-pigeon", address: "not checked here" })
    await instance.sync().unregisterSyncPeer("ed25519:" + "B".repeat(43) + "=")
  })

  // before its fix: syncSettings.properties is not checked: "str" is stored as {0:"s",1:"t",2:"r"}
  it("trackDatabase with non-object properties rejects", async () => {
    await rejection(
      user.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: { ...ONLINE, properties: "str" as unknown as Record<string, string> } }),
      "InvalidArgument"
    )
  })
})

describe("bad input outside an instance", () => {
  // before its fix: Instance.open(backend, null) throws a raw TypeError synchronously instead of rejecting
  it("Instance.open with null options returns a rejected promise with InvalidArgument", async () => {
    let result: unknown
    expect(() => {
      result = Instance.open(new InMemory(), null as unknown as undefined)
    }).not.toThrow()
    await rejection(result as Promise<unknown>, "InvalidArgument")
  })

  // before its fix: Simulation.run validates nothing: nonsense runs "converge", others throw raw
  for (const [label, options] of [
    ["undefined", undefined],
    ["{}", {}],
    ["peers 0", { peers: 0, seed: 1, steps: 5 }],
    ["peers 1", { peers: 1, seed: 1, steps: 5 }],
    ["peers 2.5", { peers: 2.5, seed: 1, steps: 5 }],
    ["steps -1", { peers: 2, seed: 1, steps: -1 }],
    ["seed NaN", { peers: 2, seed: Number.NaN, steps: 5 }],
    ["dropRate 2", { peers: 2, seed: 1, steps: 5, faults: { dropRate: 2 } }],
    ["minDelayMs > maxDelayMs", { peers: 2, seed: 1, steps: 5, minDelayMs: 500, maxDelayMs: 1 }]
  ] as const) {
    it(`Simulation.run(${label}) rejects with a clear error instead of running or throwing raw`, async () => {
      let thrown: unknown
      try {
        await settled(() => Simulation.run(options as unknown as Simulation.Options))
      } catch (e) {
        thrown = e
      }
      expect(thrown, "expected a rejection").toBeDefined()
      expect(Runtime.isFiberFailure(thrown)).toBe(false)
      expect(thrown).not.toBeInstanceOf(TypeError)
      expect(String((thrown as Error).message)).toMatch(/peers|steps|seed|rate|delay|options/i)
    }, 30_000)
  }
})
