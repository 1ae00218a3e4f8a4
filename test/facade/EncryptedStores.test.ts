/**
 * Password-encrypted stores through the Promise facade: written in a transaction, read with the
 * password, refused with a wrong one, synced to a peer as ciphertext only, and never opened as
 * another kind of store.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { DecryptionFailed, Doc, InMemory, Instance, InvalidArgument, InvalidEntry, Permission, Sqlite } from "../../src/promise.js"
import { cleanup, rejection, tempDir } from "./helpers.js"

const ONLINE = { syncEnabled: true, syncOnCommit: true, properties: {} }
const SECRET = "DE89-3704-0044-0532-0130-00"
// clear values with characters no base32 ID or base64 key has, so the file scan below cannot find
// them by chance ("visa" is four base32 digits, "4321" four base64 ones: one such made a CI run fail)
const PIN = "pin 4321!"
const CARD = "Visa card #1"

describe("Promise facade: password-encrypted stores", () => {
  let dir: string
  beforeEach(() => {
    dir = tempDir()
  })
  afterEach(() => cleanup(dir))

  it("a document store and a table are readable with their password only, after a reopen too", async () => {
    const file = Path.join(dir, "app.db")
    let instance = await Instance.open(new Sqlite(file))
    await instance.createUser("alice")
    let alice = await instance.loginUser("alice")
    const key = await alice.getDefaultKey()
    let db = await alice.createDatabase(Doc.from({ name: "vault" }), key)
    const txn = await db.newTransaction()
    const secrets = await txn.encryptedDocStore("secrets", "correct horse")
    await secrets.set("iban", SECRET)
    await secrets.setPath("card.pin", PIN)
    expect(await secrets.get("iban")).toBe(SECRET) // reads see staged changes
    const cards = await txn.encryptedTable<{ name: string }>("cards", "battery staple")
    const rowId = await cards.insert({ name: CARD })
    await txn.commit()

    const second = await db.newTransaction()
    await (await second.encryptedDocStore("secrets", "correct horse")).delete("card")
    await second.commit()

    const view = await db.encryptedDocStore("secrets", "correct horse")
    expect(await view.getAll()).toEqual({ iban: SECRET })
    expect(await (await db.encryptedTable<{ name: string }>("cards", "battery staple")).get(rowId)).toEqual({ name: CARD })

    await rejection(db.encryptedDocStore("secrets", "wrong horse"), "DecryptionFailed", DecryptionFailed)
    await rejection((await db.newTransaction()).encryptedDocStore("secrets", "wrong horse"), "DecryptionFailed", DecryptionFailed)
    // each store has its own password; the wrapped kind is part of what the password opens
    await rejection(db.encryptedTable("secrets", "correct horse"), "InvalidEntry", InvalidEntry)
    await rejection(db.encryptedDocStore("nothing here", "correct horse"), "InvalidEntry", InvalidEntry)
    await rejection(db.encryptedDocStore("secrets", ""), "InvalidArgument", InvalidArgument)

    await instance.close()
    // the file holds no plaintext: the values, and the wrapped store types, are sealed
    const bytes = Fs.readFileSync(file)
    for (const clear of [SECRET, PIN, CARD, "docstore:v0"]) expect(bytes.includes(Buffer.from(clear))).toBe(false)

    instance = await Instance.open(new Sqlite(file))
    alice = await instance.loginUser("alice")
    db = await alice.openDatabase(db.rootId)
    expect(await (await db.encryptedDocStore("secrets", "correct horse")).get("iban")).toBe(SECRET)
    await rejection(db.encryptedDocStore("secrets", "battery staple"), "DecryptionFailed", DecryptionFailed)
    await instance.close()
  })

  it("a store is opened only as the kind it is: no ciphertext read as data, no table as a document", async () => {
    const instance = await Instance.open(new InMemory())
    try {
      await instance.createUser("alice")
      const alice = await instance.loginUser("alice")
      const db = await alice.createDatabase(Doc.from({ name: "mixed" }), await alice.getDefaultKey())
      const txn = await db.newTransaction()
      await (await txn.encryptedDocStore("secrets", "pw")).set("pin", "4321")
      await (await txn.table<{ title: string }>("todos")).insert({ title: "one" })
      await (await txn.docStore("notes")).set("title", "hello")
      await txn.commit()

      const asDoc = await rejection(db.docStore("secrets"), "InvalidArgument", InvalidArgument)
      expect(asDoc.message).toContain("store secrets is a encrypted:password:v0 store, not a docstore:v0 store")
      expect(asDoc.message).toContain("encryptedDocStore(name, password)")
      await rejection(db.table("secrets"), "InvalidArgument", InvalidArgument)
      const tableAsDoc = await rejection(db.docStore("todos"), "InvalidArgument", InvalidArgument)
      expect(tableAsDoc.message).toContain("open it with table(name)")
      await rejection(db.table("notes"), "InvalidArgument", InvalidArgument)
      const write = await db.newTransaction()
      await rejection(write.docStore("secrets"), "InvalidArgument", InvalidArgument)
      await rejection(write.table("notes"), "InvalidArgument", InvalidArgument)
      await rejection(write.encryptedDocStore("notes", "pw"), "InvalidEntry", InvalidEntry)
      // the kinds they are open as before
      expect(await (await db.docStore("notes")).get("title")).toBe("hello")
      expect(await (await db.table("todos")).count()).toBe(1)
      expect(await (await db.docStore("_index")).get("secrets")).toBeDefined() // reserved stores stay readable
    } finally {
      await instance.close()
    }
  })

  it("a peer that syncs the database holds ciphertext it cannot read without the password", async () => {
    const server = await Instance.open(new InMemory())
    const client = await Instance.open(new InMemory())
    try {
      await server.createUser("alice")
      const alice = await server.loginUser("alice")
      const key = await alice.getDefaultKey()
      const db = await alice.createDatabase(Doc.from({ name: "shared vault" }), key)
      const setup = await db.newTransaction()
      await (await setup.settings()).setGlobalPermission(Permission.Write(10))
      await (await setup.encryptedDocStore("secrets", "pw")).set("pin", "4321")
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
      await rejection(copy.docStore("secrets"), "InvalidArgument", InvalidArgument)
      await rejection(copy.encryptedDocStore("secrets", "guess"), "DecryptionFailed", DecryptionFailed)
      expect(await (await copy.encryptedDocStore("secrets", "pw")).get("pin")).toBe("4321")

      // the peer with the password writes back; the first reads it
      const w = await copy.newTransaction()
      await (await w.encryptedDocStore("secrets", "pw")).set("pin", "9999")
      await w.commit()
      await client.sync().syncWithPeer(address, db.rootId)
      expect(await (await db.encryptedDocStore("secrets", "pw")).get("pin")).toBe("9999")
    } finally {
      await client.close()
      await server.close()
    }
  })
})
