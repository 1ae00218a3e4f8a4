/**
 * The Promise facade exactly as ../shared/API.md shows it, imported by package name as a user would:
 * two instances, local work, settings, views, write events, HTTP sync, background sync and status.
 */
import { afterEach, expect, it } from "vitest"
import { Doc, EideticaError, InMemory, Instance, Permission, Sqlite } from "eidetica-ts/promise"
import { cleanup, tempDir } from "./helpers.js"

const closeLater: Array<Instance> = []
const dirs: Array<string> = []
afterEach(async () => {
  for (const i of closeLater.splice(0)) await i.close()
  for (const d of dirs.splice(0)) cleanup(d)
})

it("the API.md walkthrough", async () => {
  const dir = tempDir()
  dirs.push(dir)
  const instance = await Instance.open(new Sqlite(`${dir}/data.db`))
  closeLater.push(instance)
  await instance.enableSync()
  await instance.enableSync() // idempotent
  await instance.createUser("alice")
  const user = await instance.loginUser("alice")
  const key: string = await user.getDefaultKey()
  expect(key).toMatch(/^ed25519:/)
  const db = await user.createDatabase(Doc.from({ name: "notes" }), key)
  const same = await user.openDatabase(db.rootId)
  expect(same.rootId).toBe(db.rootId)

  const events: Array<{ entryId: string; source: string }> = []
  const off = db.onWrite((event) => events.push(event))

  const txn = await db.newTransaction()
  const notes = await txn.docStore("notes")
  await notes.set("title", "hello")
  await notes.setPath("a.b.c", 1)
  const todos = await txn.table<{ title: string; done: boolean }>("todos")
  const rowId: string = await todos.insert({ title: "write tests", done: false })
  const entryId: string = await txn.commit()

  const other = await Instance.open(new InMemory())
  closeLater.push(other)
  await other.enableSync()
  await other.createUser("bob")
  const bob = await other.loginUser("bob")
  const otherPubkey = await bob.getDefaultKey()

  const admin = await db.newTransaction()
  const settings = await admin.settings()
  await settings.setName("notes")
  await settings.setGlobalPermission(Permission.Write(10))
  await settings.setAuthKey(otherPubkey, { permission: Permission.Write(5), name: "laptop" })
  await settings.revokeAuthKey(otherPubkey)
  await admin.commit()

  const view = await db.docStore("notes")
  expect(await view.get("title")).toBe("hello")
  expect(await view.getPath("a.b.c")).toBe(1)
  expect(await view.getAll()).toEqual({ title: "hello", a: { b: { c: 1 } } })
  const rows = await db.table<{ title: string; done: boolean }>("todos")
  expect(await rows.get(rowId)).toEqual({ title: "write tests", done: false })
  expect(await rows.all()).toEqual([[rowId, { title: "write tests", done: false }]])
  expect(await rows.search((r) => !r.done)).toHaveLength(1)
  const tips = await db.tips()
  expect(tips).toHaveLength(1)
  await new Promise((r) => setTimeout(r, 50))
  expect(events.map((e) => e.entryId)).toContain(entryId)
  expect(events.every((e) => e.source === "local")).toBe(true)
  off()

  // sync before enabling a transport is the reference's error
  const sync = instance.sync()
  const noTransport = await sync.startServer("127.0.0.1:0").catch((e: unknown) => e)
  expect(noTransport).toBeInstanceOf(EideticaError)
  expect((noTransport as EideticaError)._tag).toBe("NoTransportEnabled")
  await sync.enableHttpTransport()
  await sync.startServer("127.0.0.1:0")
  const address: string = await sync.getServerAddress()
  expect(address).toMatch(/^127\.0\.0\.1:\d+$/)
  await user.trackDatabase({
    databaseId: db.rootId,
    keyId: key,
    syncSettings: { syncEnabled: true, syncOnCommit: true, intervalSeconds: 60, properties: {} }
  })

  // the other instance pulls it (public: the global grant) and registers the first as its peer
  const otherSync = other.sync()
  await otherSync.enableHttpTransport()
  await otherSync.syncWithPeer(address, db.rootId)
  const copy = await bob.openDatabase(db.rootId)
  expect(await (await copy.docStore("notes")).get("title")).toBe("hello")
  await bob.trackDatabase({
    databaseId: db.rootId,
    keyId: otherPubkey,
    syncSettings: { syncEnabled: true, syncOnCommit: true, intervalSeconds: 60, properties: {} }
  })
  const handle = await otherSync.registerSyncPeer({
    peerPubkey: instance.deviceId,
    treeId: db.rootId,
    addresses: [{ transportType: "http", address }],
    auth: undefined,
    displayName: "Laptop"
  })
  const seen: Array<string> = []
  const unsubscribe = handle.subscribe((status) => seen.push(status.state))
  await handle.waitForInitialSync()
  const status = await handle.status()
  expect(status.hasLocalData).toBe(true)
  expect(status.lastSync).toBeInstanceOf(Date)
  expect(status.pendingEntries).toBe(0)

  // a commit on bob's side reaches alice with no explicit sync call
  const t = await copy.newTransaction()
  await (await t.docStore("notes")).set("reply", "hi from bob")
  await t.commit()
  await otherSync.flush()
  const deadline = Date.now() + 5_000
  let reply: unknown
  while (Date.now() < deadline && (reply = await view.get("reply")) === undefined) await new Promise((r) => setTimeout(r, 20))
  expect(reply).toBe("hi from bob")
  unsubscribe()
  expect(seen.length).toBeGreaterThan(0)

  // reopen the same file: same device, same data
  const deviceId = instance.deviceId
  await instance.close()
  closeLater.splice(closeLater.indexOf(instance), 1)
  const again = await Instance.open(new Sqlite(`${dir}/data.db`))
  closeLater.push(again)
  expect(again.deviceId).toBe(deviceId)
  const alice = await again.loginUser("alice")
  expect(await (await (await alice.openDatabase(db.rootId)).docStore("notes")).get("reply")).toBe("hi from bob")
}, 60_000)
