/**
 * close() releases the SQLite file; reopening it finds the device, users, keys and databases.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import Database from "better-sqlite3"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Doc, InMemory, Instance, InstanceClosed, Permission, Sqlite, TransportError } from "../../src/promise.js"
import { cleanup, rejection, tempDir } from "./helpers.js"

describe("Promise facade: close and reopen", () => {
  let dir: string
  beforeEach(() => {
    dir = tempDir()
  })
  afterEach(() => cleanup(dir))

  it("stores whose names differ only by a leading U+FEFF keep their own data after a reopen", async () => {
    const file = Path.join(dir, "mark.db")
    const first = await Instance.open(new Sqlite(file))
    await first.createUser("alice")
    const alice = await first.loginUser("alice")
    const db = await alice.createDatabase(Doc.from({ name: "marks" }), await alice.getDefaultKey())
    const txn = await db.newTransaction()
    await (await txn.docStore("\uFEFFnotes")).set("title", "marked")
    await (await txn.docStore("notes")).set("title", "plain")
    await txn.commit()
    await first.close()
    const second = await Instance.open(new Sqlite(file))
    try {
      const again = await (await second.loginUser("alice")).openDatabase(db.rootId)
      expect(await (await again.docStore("\uFEFFnotes")).get("title")).toBe("marked")
      expect(await (await again.docStore("notes")).get("title")).toBe("plain")
    } finally {
      await second.close()
    }
  })

  it("a Sqlite file is created if absent and reopened with everything in it", async () => {
    const file = Path.join(dir, "data.db")
    expect(Fs.existsSync(file)).toBe(false)
    const first = await Instance.open(new Sqlite(file))
    expect(Fs.existsSync(file)).toBe(true)
    const deviceId = first.deviceId
    await first.createUser("alice")
    await first.createUser("bob", "s3cret")
    const alice = await first.loginUser("alice")
    const aliceKey = await alice.getDefaultKey()
    const phone = await alice.addKey("phone")
    const db = await alice.createDatabase(Doc.from({ name: "notes" }), aliceKey)
    const txn = await db.newTransaction()
    await (await txn.docStore("notes")).set("title", "persisted")
    const rowId = await (await txn.table<{ t: string }>("rows")).insert({ t: "row" })
    await txn.commit()
    const admin = await db.newTransaction()
    await (await admin.settings()).setAuthKey(phone, { permission: Permission.Write(3), name: "phone" })
    await admin.commit()
    await alice.trackDatabase({ databaseId: db.rootId, keyId: aliceKey, syncSettings: { syncEnabled: true, syncOnCommit: false, properties: { a: "b" } } })
    const tips = await db.tips()
    await first.close()
    await first.close()
    // everything of a closed instance rejects, never hangs
    await rejection(first.loginUser("alice"), "InstanceClosed", InstanceClosed)
    await rejection(db.tips(), "InstanceClosed", InstanceClosed)
    await rejection(db.newTransaction(), "InstanceClosed", InstanceClosed)

    const second = await Instance.open(new Sqlite(file))
    try {
      expect(second.deviceId).toBe(deviceId)
      expect(await second.listUsers()).toEqual(["alice", "bob"])
      await rejection(second.loginUser("bob"), "InvalidPassword")
      expect((await second.loginUser("bob", "s3cret")).username).toBe("bob")
      const again = await second.loginUser("alice")
      expect(await again.getDefaultKey()).toBe(aliceKey)
      expect((await again.listKeys()).map((k) => k.keyId)).toEqual([aliceKey, phone])
      const found = await again.findDatabase("notes")
      expect(found.rootId).toBe(db.rootId)
      expect(await found.tips()).toEqual(tips)
      expect(await (await found.docStore("notes")).get("title")).toBe("persisted")
      expect(await (await found.table<{ t: string }>("rows")).get(rowId)).toEqual({ t: "row" })
      expect((await again.trackedDatabases()).find((t) => t.databaseId === db.rootId)?.syncSettings).toEqual({
        syncEnabled: true,
        syncOnCommit: false,
        properties: { a: "b" }
      })
      // and it keeps going
      const more = await found.newTransaction()
      await (await more.docStore("notes")).set("title", "continued")
      const next = await more.commit()
      expect(await found.tips()).toEqual([next])
    } finally {
      await second.close()
    }
    const third = await Instance.open(new Sqlite(file))
    try {
      const db3 = await (await third.loginUser("alice")).openDatabase(db.rootId)
      expect(await (await db3.docStore("notes")).get("title")).toBe("continued")
    } finally {
      await third.close()
    }
  })

  it("a damaged sync record is skipped with a warning; the instance opens and syncs as before", async () => {
    const file = Path.join(dir, "data.db")
    const first = await Instance.open(new Sqlite(file))
    await first.enableSync()
    await first.sync().enableHttpTransport()
    await first.createUser("alice")
    const alice = await first.loginUser("alice")
    const key = await alice.getDefaultKey()
    const db = await alice.createDatabase(Doc.from({ name: "n" }), key)
    await first.sync().registerSyncPeer({
      peerPubkey: "ed25519:" + Buffer.alloc(32, 7).toString("base64"),
      treeId: db.rootId,
      addresses: [{ transportType: "http", address: "127.0.0.1:9" }]
    })
    await first.close()
    const raw = new Database(file)
    const put = raw.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)")
    put.run("sync/peers/damaged", "{not json")
    put.run("sync/peers/wrong-shape", JSON.stringify({ peerPubkey: 5 }))
    put.run("sync/pending/damaged/tree", "[1, 2")
    raw.close()
    const again = await Instance.open(new Sqlite(file))
    await again.enableSync()
    const handle = await again.sync().registerSyncPeer({
      peerPubkey: "ed25519:" + Buffer.alloc(32, 7).toString("base64"),
      treeId: db.rootId,
      addresses: []
    })
    expect((await handle.status()).state).toBeDefined()
    await again.close()
  })

  it("pending work of a database no longer registered with its peer (a crash inside unregistering) is cleared, not synced", async () => {
    const file = Path.join(dir, "data.db")
    const peerKey = "ed25519:" + Buffer.alloc(32, 9).toString("base64")
    const first = await Instance.open(new Sqlite(file))
    await first.enableSync()
    await first.sync().enableHttpTransport()
    await first.createUser("alice")
    const alice = await first.loginUser("alice")
    const key = await alice.getDefaultKey()
    const [kept, dropped] = [await alice.createDatabase(Doc.from({ name: "kept" }), key), await alice.createDatabase(Doc.from({ name: "dropped" }), key)]
    for (const db of [kept, dropped]) {
      await first.sync().registerSyncPeer({ peerPubkey: peerKey, treeId: db.rootId, addresses: [{ transportType: "http", address: "127.0.0.1:9" }] })
    }
    await first.close()
    // the state a crash between unregisterSyncPeer's two writes leaves: the record without the
    // database, its pending work still saved
    const raw = new Database(file)
    const rows = raw.prepare("SELECT key, value FROM meta WHERE key LIKE 'sync/%'").all() as Array<{ key: string; value: string }>
    const recordRow = rows.find((r) => r.key.startsWith("sync/peers/"))!
    const record = JSON.parse(recordRow.value) as { trees: Record<string, unknown> }
    delete record.trees[dropped.rootId]
    raw.prepare("UPDATE meta SET value = ? WHERE key = ?").run(JSON.stringify(record), recordRow.key)
    const pendingKey = rows.find((r) => r.key.startsWith("sync/pending/") && r.key.endsWith(dropped.rootId))?.key
    expect(pendingKey).toBeDefined()
    raw.close()
    const again = await Instance.open(new Sqlite(file))
    await again.close()
    const after = new Database(file)
    const left = (after.prepare("SELECT key FROM meta WHERE key LIKE 'sync/pending/%'").all() as Array<{ key: string }>).map((r) => r.key)
    after.close()
    expect(left).not.toContain(pendingKey)
    expect(left.some((k) => k.endsWith(kept.rootId))).toBe(true)
  })

  it("two InMemory instances share nothing", async () => {
    const a = await Instance.open(new InMemory())
    const b = await Instance.open(new InMemory())
    try {
      expect(a.deviceId).not.toBe(b.deviceId)
      await a.createUser("alice")
      expect(await b.listUsers()).toEqual([])
    } finally {
      await a.close()
      await b.close()
    }
  })

  it("a Sqlite file that cannot be opened rejects with StorageError saying why", async () => {
    await rejection(Instance.open(new Sqlite(Path.join(dir, "missing-dir", "x.db"))), "StorageError")
    const notADb = Path.join(dir, "garbage.db")
    Fs.writeFileSync(notADb, "this is not a sqlite database, just some text padding it out".repeat(100))
    // twice: the failed open let go of the file
    for (let i = 0; i < 2; i++) {
      const error = await rejection(Instance.open(new Sqlite(notADb)), "StorageError")
      expect(error.message).toContain(`${notADb} is not an eidetica (SQLite) database file`)
    }
    const directory = await rejection(Instance.open(new Sqlite(dir)), "StorageError")
    expect(directory.message).toContain(`cannot open, lock or write ${dir}`)
  })

  it("the same Sqlite file opened twice in one process is refused until the first instance closes", async () => {
    const file = Path.join(dir, "data.db")
    const first = await Instance.open(new Sqlite(file))
    try {
      await first.createUser("alice")
      const error = await rejection(Instance.open(new Sqlite(file)), "StorageError")
      expect(error.message).toContain(`${file} is already open in this process: close the other instance first`)
      expect(await first.listUsers()).toEqual(["alice"])
    } finally {
      await first.close()
    }
    const second = await Instance.open(new Sqlite(file))
    try {
      expect(await second.listUsers()).toEqual(["alice"])
    } finally {
      await second.close()
    }
  })

  // root ignores file permissions: there the read-only file opens (the codes are checked in Storage.test.ts)
  it.skipIf(process.getuid?.() === 0)("a read-only Sqlite file rejects with StorageError naming it", async () => {
    const file = Path.join(dir, "data.db")
    await (await Instance.open(new Sqlite(file))).close()
    const readOnly = Path.join(dir, "read-only.db")
    Fs.copyFileSync(file, readOnly)
    Fs.chmodSync(readOnly, 0o444)
    const error = await rejection(Instance.open(new Sqlite(readOnly)), "StorageError")
    expect(error.message).toContain(`cannot open, lock or write ${readOnly} (a read-only file or directory`)
  })
})

describe("Promise facade: close with work still attached", () => {
  it("close() stops listeners and the server; unsubscribing afterwards is harmless", async () => {
    const server = await Instance.open(new InMemory())
    const client = await Instance.open(new InMemory())
    try {
      await server.createUser("alice")
      const alice = await server.loginUser("alice")
      const key = await alice.getDefaultKey()
      const db = await alice.createDatabase(Doc.from({ name: "n" }), key)
      await alice.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: { syncEnabled: true, syncOnCommit: false, properties: {} } })
      const off = db.onWrite(() => undefined)
      await server.enableSync()
      await server.sync().enableHttpTransport()
      const address = await server.sync().startServer("127.0.0.1:0")
      await client.enableSync()
      await client.sync().enableHttpTransport()
      await server.close()
      off()
      expect(() => server.sync()).toThrow(InstanceClosed)
      expect(() => db.onWrite(() => undefined)).toThrow(InstanceClosed)
      await rejection(client.sync().syncWithPeer(address, db.rootId), "TransportError", TransportError)
    } finally {
      await server.close()
      await client.close()
    }
  })
})
