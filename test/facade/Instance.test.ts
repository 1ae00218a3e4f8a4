/**
 * The Promise facade's local surface, called as a user would, on memory and on a SQLite file.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import {
  DatabaseNotFound,
  Doc,
  EideticaError,
  Instance,
  InstanceClosed,
  InvalidArgument,
  InvalidPassword,
  KeyNotFound,
  Permission,
  PermissionDenied,
  type Sync,
  SyncNotEnabled,
  TreeNotFound,
  UserExists,
  UserNotFound
} from "../../src/promise.js"
import { backends, cleanup, eventually, rejection, tempDir } from "./helpers.js"

interface Todo {
  readonly title: string
  readonly done: boolean
}

const ONLINE = { syncEnabled: true, syncOnCommit: true, intervalSeconds: 60, properties: {} }

for (const [label, backendOf] of backends) {
  describe(`Promise facade on ${label}`, () => {
    let dir: string
    let instance: Instance

    beforeEach(async () => {
      dir = tempDir()
      instance = await Instance.open(backendOf(dir))
    })
    afterEach(async () => {
      await instance.close()
      cleanup(dir)
    })

    it("runs the API.md walkthrough: users, keys, databases, stores, settings, tips", async () => {
      expect(instance.deviceId).toMatch(/^ed25519:[A-Za-z0-9+/]{43}=$/)
      await instance.enableSync()
      await instance.enableSync()
      await instance.createUser("alice")
      const user = await instance.loginUser("alice")
      expect(user.username).toBe("alice")
      const key = await user.getDefaultKey()
      expect(key).toMatch(/^ed25519:/)

      const db = await user.createDatabase(Doc.from({ name: "notes" }), key)
      expect(typeof db.rootId).toBe("string")
      expect(db.rootId).toMatch(/^bafyr4i/)
      const same = await user.openDatabase(db.rootId)
      expect(same.rootId).toBe(db.rootId)
      expect(await db.getName()).toBe("notes")

      const txn = await db.newTransaction()
      const notes = await txn.docStore("notes")
      await notes.set("title", "hello")
      await notes.setPath("a.b.c", 42)
      await notes.set("gone", "soon")
      await notes.delete("gone")
      // reads inside a transaction see its staged changes
      expect(await notes.get("title")).toBe("hello")
      expect(await notes.getPath("a.b.c")).toBe(42)
      const todos = await txn.table<Todo>("todos")
      const rowId = await todos.insert({ title: "write tests", done: false })
      expect(rowId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      const other = await todos.insert({ title: "ship", done: false })
      await todos.set(other, { title: "ship", done: true })
      const doomed = await todos.insert({ title: "drop me", done: false })
      await todos.delete(doomed)
      expect(await todos.get(other)).toEqual({ title: "ship", done: true })
      const entryId = await txn.commit()
      expect(entryId).toMatch(/^bafyr4i/)
      expect(await db.tips()).toEqual([entryId])

      const view = await db.docStore("notes")
      expect(await view.get("title")).toBe("hello")
      expect(await view.getPath("a.b.c")).toBe(42)
      expect(await view.get("gone")).toBeUndefined()
      expect(await view.getAll()).toEqual({ title: "hello", a: { b: { c: 42 } } })
      const rows = await db.table<Todo>("todos")
      expect(await rows.get(rowId)).toEqual({ title: "write tests", done: false })
      expect(await rows.get(doomed)).toBeUndefined()
      const all = await rows.all()
      expect(all).toHaveLength(2)
      expect(new Map(all)).toEqual(new Map([[rowId, { title: "write tests", done: false }], [other, { title: "ship", done: true }]]))
      expect(await rows.search((t) => t.done)).toEqual([[other, { title: "ship", done: true }]])
      expect(await rows.count()).toBe(2)

      const admin = await db.newTransaction()
      const settings = await admin.settings()
      await settings.setName("renamed")
      await settings.setGlobalPermission(Permission.Write(10))
      const laptop = await user.addKey("laptop")
      await settings.setAuthKey(laptop, { permission: Permission.Write(5), name: "laptop" })
      expect((await settings.getAuth()).keys[laptop]).toEqual({ name: "laptop", permissions: Permission.Write(5), status: "Active" })
      await admin.commit()
      expect(await db.getName()).toBe("renamed")

      const revoke = await db.newTransaction()
      await (await revoke.settings()).revokeAuthKey(laptop)
      await revoke.commit()
      const check = await (await (await db.newTransaction()).settings()).getAuth()
      expect(check.keys[laptop]?.status).toBe("Revoked")
      expect(check.global).toEqual({ permissions: Permission.Write(10), status: "Active" })
    })

    it("keys: getDefaultKey, addKey, listKeys; a database made with an added key", async () => {
      await instance.createUser("alice")
      const user = await instance.loginUser("alice")
      const root = await user.getDefaultKey()
      const second = await user.addKey("phone")
      const keys = await user.listKeys()
      expect(keys.map((k) => [k.keyId, k.displayName, k.isDefault])).toEqual([
        [root, "default", true],
        [second, "phone", false]
      ])
      const db = await user.createDatabase(Doc.from({ name: "phone-db" }), second)
      expect(db.keyId).toBe(second)
      const txn = await db.newTransaction()
      await (await txn.docStore("d")).set("k", "v")
      await txn.commit()
      // the key survives a new login
      const again = await instance.loginUser("alice")
      expect((await again.listKeys()).map((k) => k.keyId)).toEqual([root, second])
      expect((await again.openDatabase(db.rootId)).keyId).toBe(second)
    })

    it("tracks, finds and untracks databases", async () => {
      await instance.createUser("alice")
      const user = await instance.loginUser("alice")
      const key = await user.getDefaultKey()
      const a = await user.createDatabase(Doc.from({ name: "a" }), key)
      const b = await user.createDatabase(Doc.from({ name: "b" }), key)
      expect((await user.findDatabase("b")).rootId).toBe(b.rootId)
      await rejection(user.findDatabase("nope"), "DatabaseNotFound", DatabaseNotFound)
      await user.trackDatabase({ databaseId: a.rootId, keyId: key, syncSettings: ONLINE })
      const tracked = await user.trackedDatabases()
      expect(tracked.find((t) => t.databaseId === a.rootId)).toEqual({ databaseId: a.rootId, keyId: key, syncSettings: ONLINE })
      expect(tracked.find((t) => t.databaseId === b.rootId)?.syncSettings.syncEnabled).toBe(false)
      await user.untrackDatabase(b.rootId)
      expect((await user.trackedDatabases()).map((t) => t.databaseId)).toEqual([a.rootId])
      await rejection(user.findDatabase("b"), "DatabaseNotFound")
      // untracked is not deleted: it still opens by id
      expect((await user.openDatabase(b.rootId)).rootId).toBe(b.rootId)
    })

    it("usernames with '/' keep their own tracked databases, apart from each other", async () => {
      const names = ["a", "a/b", "a/", "/x"]
      const owned = new Map<string, string>()
      for (const name of names) {
        await instance.createUser(name)
        const user = await instance.loginUser(name)
        owned.set(name, (await user.createDatabase(Doc.from({ name }), await user.getDefaultKey())).rootId)
      }
      expect((await instance.listUsers()).sort()).toEqual([...names].sort())
      for (const name of names) {
        const user = await instance.loginUser(name)
        expect((await user.trackedDatabases()).map((t) => t.databaseId)).toEqual([owned.get(name)])
        expect((await user.findDatabase(name)).rootId).toBe(owned.get(name))
      }
      const ab = await instance.loginUser("a/b")
      await ab.trackDatabase({ databaseId: owned.get("a/b")!, keyId: await ab.getDefaultKey(), syncSettings: ONLINE })
      expect((await ab.trackedDatabases())[0]?.syncSettings).toEqual(ONLINE)
      expect((await (await instance.loginUser("a")).trackedDatabases()).map((t) => t.databaseId)).toEqual([owned.get("a")])
      await ab.untrackDatabase(owned.get("a/b")!)
      expect(await ab.trackedDatabases()).toEqual([])
      expect((await (await instance.loginUser("a/")).trackedDatabases()).map((t) => t.databaseId)).toEqual([owned.get("a/")])
    })

    it("openDatabase picks the user's active key with the most authority, whatever the key order", async () => {
      await instance.createUser("alice")
      await instance.createUser("bob")
      const alice = await instance.loginUser("alice")
      const bob = await instance.loginUser("bob")
      const first = await bob.getDefaultKey()
      const second = await bob.addKey("second")
      const revoked = await bob.addKey("revoked")
      // both orders, so the pick cannot be the first (or last) key by accident
      for (const [readKey, writeKey] of [[first, second], [second, first]] as const) {
        const db = await alice.createDatabase(Doc.from({ name: "shared" }), await alice.getDefaultKey())
        const grant = await db.newTransaction()
        const settings = await grant.settings()
        await settings.setAuthKey(readKey, { permission: Permission.Read })
        await settings.setAuthKey(writeKey, { permission: Permission.Write(10) })
        // a revoked key grants nothing, however much authority it once had
        await settings.setAuthKey(revoked, { permission: Permission.Admin(1) })
        await settings.revokeAuthKey(revoked)
        await grant.commit()
        const opened = await bob.openDatabase(db.rootId)
        expect(opened.keyId).toBe(writeKey)
        const txn = await opened.newTransaction()
        await (await txn.docStore("d")).set("k", "v")
        await txn.commit()
      }
      // a listed Read key gives way to a stronger global grant
      const open = await alice.createDatabase(Doc.from({ name: "open" }), await alice.getDefaultKey())
      const grant = await open.newTransaction()
      const settings = await grant.settings()
      await settings.setAuthKey(first, { permission: Permission.Read })
      await settings.setGlobalPermission(Permission.Write(10))
      await grant.commit()
      const mine = await bob.openDatabase(open.rootId)
      const txn = await mine.newTransaction()
      await (await txn.docStore("d")).set("k", "from bob")
      await txn.commit()
      expect(await (await open.docStore("d")).get("k")).toBe("from bob")
    })

    it("onWrite: one event per stored entry, until unsubscribed; a throwing listener does not stop it", async () => {
      await instance.createUser("alice")
      const user = await instance.loginUser("alice")
      const db = await user.createDatabase(Doc.from({ name: "w" }), await user.getDefaultKey())
      const other = await user.createDatabase(Doc.from({ name: "other" }), await user.getDefaultKey())
      const seen: Array<{ entryId: string; source: string }> = []
      let thrown = 0
      const off = db.onWrite((e) => seen.push({ entryId: e.entryId, source: e.source }))
      const offThrowing = db.onWrite(() => {
        thrown++
        throw new Error("listener bug")
      })
      const write = async (target: typeof db, v: string) => {
        const txn = await target.newTransaction()
        await (await txn.docStore("d")).set("k", v)
        return txn.commit()
      }
      const first = await write(db, "1")
      await write(other, "x")
      const second = await write(db, "2")
      await eventually(() => seen.length === 2 && thrown === 2)
      expect(seen).toEqual([
        { entryId: first, source: "local" },
        { entryId: second, source: "local" }
      ])
      off()
      off()
      offThrowing()
      await write(db, "3")
      await new Promise((r) => setTimeout(r, 30))
      expect(seen).toHaveLength(2)
      expect(thrown).toBe(2)
    })

    it("sync() before enableSync throws SyncNotEnabled", async () => {
      let caught: unknown
      try {
        instance.sync()
      } catch (e) {
        caught = e
      }
      expect(caught).toBeInstanceOf(SyncNotEnabled)
      expect(caught).toBeInstanceOf(EideticaError)
      expect((caught as SyncNotEnabled)._tag).toBe("SyncNotEnabled")
      expect((caught as Error).message).toBe("Sync is not enabled on this Instance. Call Instance::enable_sync() first")
      await instance.enableSync()
      expect(instance.sync()).toBe(instance.sync())
    })

    it("sync() after close() throws InstanceClosed, not SyncNotEnabled", async () => {
      await instance.enableSync()
      await instance.close()
      let caught: unknown
      try {
        instance.sync()
      } catch (e) {
        caught = e
      }
      expect(caught).toBeInstanceOf(InstanceClosed)
      expect((caught as InstanceClosed)._tag).toBe("InstanceClosed")
      await rejection(instance.enableSync(), "InstanceClosed", InstanceClosed)
    })
  })

  describe(`Promise facade bad input on ${label}`, () => {
    let dir: string
    let instance: Instance

    beforeEach(async () => {
      dir = tempDir()
      instance = await Instance.open(backendOf(dir))
    })
    afterEach(async () => {
      await instance.close()
      cleanup(dir)
    })

    it("unknown user, duplicate user", async () => {
      const e = await rejection(instance.loginUser("nobody"), "UserNotFound", UserNotFound)
      expect(e.username).toBe("nobody")
      expect(e.message).toContain("nobody")
      expect(e.cause).toMatchObject({ _tag: "UserNotFound", username: "nobody" })
      await instance.createUser("alice")
      const dup = await rejection(instance.createUser("alice"), "UserExists", UserExists)
      expect(dup.username).toBe("alice")
      await rejection(instance.createUser("alice", "pw"), "UserExists")
      expect(await instance.listUsers()).toEqual(["alice"])
    })

    it("passwords: wrong, missing, unexpected, and an empty password is not 'no password'", async () => {
      await instance.createUser("carol", "correct horse")
      await instance.createUser("dave")
      await instance.createUser("erin", "")
      const wrong = await rejection(instance.loginUser("carol", "battery staple"), "InvalidPassword", InvalidPassword)
      expect(wrong.username).toBe("carol")
      await rejection(instance.loginUser("carol"), "InvalidPassword", InvalidPassword)
      await rejection(instance.loginUser("carol", ""), "InvalidPassword", InvalidPassword)
      await rejection(instance.loginUser("carol", "Correct horse"), "InvalidPassword")
      await rejection(instance.loginUser("dave", "anything"), "InvalidPassword", InvalidPassword)
      await rejection(instance.loginUser("dave", ""), "InvalidPassword", InvalidPassword)
      await rejection(instance.loginUser("erin"), "InvalidPassword", InvalidPassword)
      expect((await instance.loginUser("carol", "correct horse")).username).toBe("carol")
      expect((await instance.loginUser("dave")).username).toBe("dave")
      expect((await instance.loginUser("erin", "")).username).toBe("erin")
    })

    it("arguments of the wrong type reject with InvalidArgument", async () => {
      await rejection(instance.createUser(""), "InvalidArgument", InvalidArgument)
      await rejection(instance.createUser(42 as unknown as string), "InvalidArgument")
      await rejection(instance.createUser("x", null as unknown as string), "InvalidArgument")
      await instance.createUser("alice")
      const user = await instance.loginUser("alice")
      const key = await user.getDefaultKey()
      await rejection(user.createDatabase({ name: "plain" } as unknown as Doc, key), "InvalidArgument")
      const db = await user.createDatabase(Doc.from({ name: "n" }), key)
      const txn = await db.newTransaction()
      await rejection(txn.docStore("_settings"), "InvalidArgument")
      const store = await txn.docStore("s")
      await rejection(store.set("f", (() => 1) as unknown as string), "InvalidArgument")
      expect(() => db.onWrite(undefined as unknown as () => void)).toThrow(InvalidArgument)
      // a malformed permission is refused at once, not committed as a grant that grants nothing
      const settings = await txn.settings()
      await rejection(settings.setAuthKey(key, { permission: Permission.Write(-3) }), "InvalidArgument")
      // priorities are u32, as in the reference: past 2^32-1 a Write would rank below Read
      await rejection(settings.setAuthKey(key, { permission: Permission.Write(2 ** 32) }), "InvalidArgument")
      await settings.setAuthKey(key, { permission: Permission.Admin(Permission.MAX_PRIORITY) })
      await rejection(settings.setAuthKey(key, { permission: undefined as unknown as Permission.Permission }), "InvalidArgument")
      await rejection(settings.setAuthKey(key, null as unknown as { permission: Permission.Permission }), "InvalidArgument")
      await rejection(settings.setAuthKey("", { permission: Permission.Read }), "InvalidArgument")
      await rejection(settings.setGlobalPermission({ type: "Write", priority: 1.5 } as Permission.Permission), "InvalidArgument")
      await rejection(settings.setGlobalPermission({ type: "Owner" } as unknown as Permission.Permission), "InvalidArgument")
    })

    it("a store-state cache bounded to a few keys still reads every store right; a bad bound is refused", async () => {
      await rejection(Instance.open(backendOf(dir), { stateCacheSlots: 0 }), "InvalidArgument", InvalidArgument)
      await rejection(Instance.open(backendOf(dir), { stateCacheSlots: 1.5 }), "InvalidArgument")
      const smallDir = tempDir()
      const small = await Instance.open(backendOf(smallDir), { stateCacheSlots: 5 })
      try {
        await small.createUser("alice")
        const user = await small.loginUser("alice")
        const db = await user.createDatabase(Doc.from({ name: "n" }), await user.getDefaultKey())
        for (let round = 0; round < 3; round++) {
          const txn = await db.newTransaction()
          for (const store of ["a", "b", "c"]) {
            const writer = await txn.docStore(store)
            for (let i = 0; i < 10; i++) await writer.set(`${store}${i}`, `${round}`)
          }
          await txn.commit()
          // each state (10 keys) is over the bound alone: every read drops the one read before
          for (const store of ["a", "b", "c", "a"]) {
            const all = await (await db.docStore(store)).getAll()
            expect(all).toEqual(Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`${store}${i}`, `${round}`])))
          }
        }
      } finally {
        await small.close()
        cleanup(smallDir)
      }
    })

    it("opening an unknown database rejects with TreeNotFound", async () => {
      await instance.createUser("alice")
      const user = await instance.loginUser("alice")
      const missing = "bafyr4ibnti7rjmimivgomd6lleq667z7tzlwzqgdxdy35xubct7p66r6fq"
      const e = await rejection(user.openDatabase(missing), "TreeNotFound", TreeNotFound)
      expect(e.treeId).toBe(missing)
      await rejection(user.openDatabase("not-an-id"), "TreeNotFound")
    })

    it("logout: the user's keys leave the instance, nothing signs with them until a new login", async () => {
      await instance.createUser("alice", "pw")
      await instance.createUser("mallory")
      await instance.enableSync()
      await instance.sync().enableHttpTransport()
      const alice = await instance.loginUser("alice", "pw")
      const key = await alice.getDefaultKey()
      const db = await alice.createDatabase(Doc.from({ name: "mine" }), key)
      const twice = await instance.loginUser("alice", "pw") // a second login of the same user
      await alice.logout()
      await alice.logout() // idempotent
      await rejection(alice.openDatabase(db.rootId), "PermissionDenied", PermissionDenied)
      await rejection(alice.createDatabase(Doc.from({ name: "x" }), key), "PermissionDenied", PermissionDenied)
      await rejection(alice.addKey("laptop"), "PermissionDenied", PermissionDenied)
      expect(await alice.listKeys()).toEqual([])
      // the other login still holds the keys: the instance still signs with them
      expect((await twice.openDatabase(db.rootId)).rootId).toBe(db.rootId)
      await twice.logout()
      // no login left: code of another user of the instance cannot sign with alice's key
      await instance.loginUser("mallory")
      const asked = instance.sync().syncWithPeerForBootstrap("127.0.0.1:1", db.rootId, key, Permission.Admin(0))
      expect((await rejection(asked, "KeyNotFound", KeyNotFound)).key).toBe(key)
      const again = await instance.loginUser("alice", "pw")
      expect((await again.openDatabase(db.rootId)).rootId).toBe(db.rootId)
    })

    it("users cannot use each other's keys", async () => {
      await instance.createUser("alice")
      await instance.createUser("bob")
      const alice = await instance.loginUser("alice")
      const bob = await instance.loginUser("bob")
      const aliceKey = await alice.getDefaultKey()
      const e = await rejection(bob.createDatabase(Doc.from({ name: "stolen" }), aliceKey), "KeyNotFound", KeyNotFound)
      expect(e.key).toBe(aliceKey)
      const db = await alice.createDatabase(Doc.from({ name: "mine" }), aliceKey)
      await rejection(bob.trackDatabase({ databaseId: db.rootId, keyId: aliceKey, syncSettings: ONLINE }), "KeyNotFound", KeyNotFound)
      // bob's keys are not in alice's database: he cannot open it
      await rejection(bob.openDatabase(db.rootId), "PermissionDenied", PermissionDenied)
      expect((await bob.listKeys()).map((k) => k.keyId)).not.toContain(aliceKey)
    })

    it("settings changes without Admin and privilege escalation are refused, nothing is written", async () => {
      await instance.createUser("alice")
      await instance.createUser("bob")
      await instance.createUser("carol")
      const alice = await instance.loginUser("alice")
      const bob = await instance.loginUser("bob")
      const carol = await instance.loginUser("carol")
      const aliceKey = await alice.getDefaultKey()
      const bobKey = await bob.getDefaultKey()
      const carolKey = await carol.getDefaultKey()
      const db = await alice.createDatabase(Doc.from({ name: "shared" }), aliceKey)
      const grant = await db.newTransaction()
      await (await grant.settings()).setAuthKey(bobKey, { permission: Permission.Write(10), name: "bob" })
      await (await grant.settings()).setAuthKey(carolKey, { permission: Permission.Admin(5), name: "carol" })
      await grant.commit()

      const bobDb = await bob.openDatabase(db.rootId)
      const carolDb = await carol.openDatabase(db.rootId)
      const tips = await db.tips()
      const attempt = async (target: typeof db, change: (s: Awaited<ReturnType<Awaited<ReturnType<typeof db.newTransaction>>["settings"]>>) => Promise<void>) => {
        const txn = await target.newTransaction()
        await change(await txn.settings())
        const e = await rejection(txn.commit(), "PermissionDenied", PermissionDenied)
        expect(typeof e.detail).toBe("string")
        expect(await db.tips()).toEqual(tips)
        return e
      }
      // a Write key may not touch settings at all
      await attempt(bobDb, (s) => s.setName("bob's now"))
      await attempt(bobDb, (s) => s.setAuthKey(bobKey, { permission: Permission.Admin(0) }))
      await attempt(bobDb, (s) => s.setGlobalPermission(Permission.Admin(0)))
      // an Admin(5) key may not grant or touch more authority than its own
      await attempt(carolDb, (s) => s.setAuthKey(carolKey, { permission: Permission.Admin(0) }))
      await attempt(carolDb, (s) => s.setAuthKey(bobKey, { permission: Permission.Admin(1) }))
      await attempt(carolDb, (s) => s.revokeAuthKey(aliceKey))
      await attempt(carolDb, (s) => s.setGlobalPermission(Permission.Admin(4)))
      // a Read-only grant cannot write data
      const demote = await db.newTransaction()
      await (await demote.settings()).setAuthKey(bobKey, { permission: Permission.Read })
      await demote.commit()
      const after = await db.tips()
      const readOnly = await (await bob.openDatabase(db.rootId)).newTransaction()
      await (await readOnly.docStore("data")).set("k", "v")
      await rejection(readOnly.commit(), "PermissionDenied", PermissionDenied)
      expect(await db.tips()).toEqual(after)
      // within its authority Admin(5) may act
      const ok = await carolDb.newTransaction()
      await (await ok.settings()).setAuthKey(bobKey, { permission: Permission.Write(7) })
      await ok.commit()
      expect(await db.tips()).not.toEqual(after)
    })

    it("a key outside the database's auth cannot open or write it", async () => {
      await instance.createUser("alice")
      await instance.createUser("mallory")
      const alice = await instance.loginUser("alice")
      const mallory = await instance.loginUser("mallory")
      const db = await alice.createDatabase(Doc.from({ name: "private" }), await alice.getDefaultKey())
      await rejection(mallory.openDatabase(db.rootId), "PermissionDenied", PermissionDenied)
      // with a global Write grant mallory may open and write data, but not settings
      const open = await db.newTransaction()
      await (await open.settings()).setGlobalPermission(Permission.Write(10))
      await open.commit()
      const mdb = await mallory.openDatabase(db.rootId)
      const w = await mdb.newTransaction()
      await (await w.docStore("data")).set("hi", "from mallory")
      await w.commit()
      expect(await (await db.docStore("data")).get("hi")).toBe("from mallory")
      const tips = await db.tips()
      const s = await mdb.newTransaction()
      await (await s.settings()).setAuthKey(await mallory.getDefaultKey(), { permission: Permission.Admin(0) })
      await rejection(s.commit(), "PermissionDenied")
      expect(await db.tips()).toEqual(tips)
    })

    it("approve/rejectBootstrapRequest with a bad sync, request id or key reject with InvalidArgument", async () => {
      await instance.enableSync()
      await instance.createUser("alice")
      const alice = await instance.loginUser("alice")
      const key = await alice.getDefaultKey()
      const sync = instance.sync()
      await rejection(alice.approveBootstrapRequest(sync, undefined as unknown as string, key), "InvalidArgument", InvalidArgument)
      await rejection(alice.rejectBootstrapRequest(sync, 42 as unknown as string, key), "InvalidArgument", InvalidArgument)
      await rejection(alice.approveBootstrapRequest(sync, "some-request", undefined as unknown as string), "InvalidArgument")
      await rejection(alice.rejectBootstrapRequest(sync, "some-request", null as unknown as string), "InvalidArgument")
      await rejection(alice.approveBootstrapRequest(undefined as unknown as Sync, "some-request", key), "InvalidArgument")
      await rejection(alice.rejectBootstrapRequest({} as unknown as Sync, "some-request", key), "InvalidArgument")
    })

    it("syncWithPeerForBootstrap refuses a malformed permission or argument before sending anything", async () => {
      await instance.enableSync()
      await instance.createUser("alice")
      const alice = await instance.loginUser("alice")
      const key = await alice.getDefaultKey()
      const db = await alice.createDatabase(Doc.from({ name: "n" }), key)
      const sync = instance.sync()
      await sync.enableHttpTransport()
      // nothing listens there: any request would fail with TransportError
      const nowhere = "127.0.0.1:1"
      const bootstrap = (permission: unknown) =>
        sync.syncWithPeerForBootstrap(nowhere, db.rootId, key, permission as Permission.Permission)
      const negative = await rejection(bootstrap(Permission.Write(-3)), "InvalidArgument", InvalidArgument)
      expect(negative.message).toContain("priority")
      await rejection(bootstrap(Permission.Admin(1.5)), "InvalidArgument")
      await rejection(bootstrap(Permission.Admin(2 ** 40)), "InvalidArgument")
      await rejection(bootstrap({ type: "Owner", priority: 0 }), "InvalidArgument")
      // no permission is not a plain sync
      await rejection(bootstrap(undefined), "InvalidArgument")
      await rejection(sync.syncWithPeerForBootstrap(undefined as unknown as string, db.rootId, key, Permission.Write(1)), "InvalidArgument")
      await rejection(sync.syncWithPeerForBootstrap(nowhere, undefined as unknown as string, key, Permission.Write(1)), "InvalidArgument")
      await rejection(sync.syncWithPeerForBootstrap(nowhere, db.rootId, undefined as unknown as string, Permission.Write(1)), "InvalidArgument")
    })

    it("syncWithPeer, startServer, unregisterSyncPeer and enableHttpTransport reject bad arguments with InvalidArgument, not Defect", async () => {
      await instance.enableSync()
      const sync = instance.sync()
      await rejection(sync.enableHttpTransport(null as unknown as {}), "InvalidArgument", InvalidArgument)
      await rejection(sync.enableHttpTransport({ timeoutMs: "soon" as unknown as number }), "InvalidArgument")
      await rejection(sync.enableHttpTransport({ timeoutMs: -1 }), "InvalidArgument")
      await sync.enableHttpTransport()
      await rejection(sync.startServer(undefined as unknown as string), "InvalidArgument", InvalidArgument)
      await rejection(sync.syncWithPeer(undefined as unknown as string, "some-database"), "InvalidArgument")
      await rejection(sync.syncWithPeer("127.0.0.1:1", 42 as unknown as string), "InvalidArgument")
      await rejection(sync.unregisterSyncPeer(undefined as unknown as string), "InvalidArgument")
      await rejection(sync.unregisterSyncPeer(instance.deviceId, 42 as unknown as string), "InvalidArgument")
    })

    it("revoking a key that is not there rejects with KeyNotFound", async () => {
      await instance.createUser("alice")
      const alice = await instance.loginUser("alice")
      const db = await alice.createDatabase(Doc.from({ name: "n" }), await alice.getDefaultKey())
      const txn = await db.newTransaction()
      await rejection((await txn.settings()).revokeAuthKey("ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), "KeyNotFound", KeyNotFound)
    })

    it("committing twice is misuse: InvalidArgument with its cause (Defect mapping: Errors.test.ts)", async () => {
      await instance.createUser("alice")
      const alice = await instance.loginUser("alice")
      const db = await alice.createDatabase(Doc.from({ name: "n" }), await alice.getDefaultKey())
      const txn = await db.newTransaction()
      await (await txn.docStore("d")).set("k", "v")
      await txn.commit()
      const e = await rejection(txn.commit(), "InvalidArgument")
      expect(e.message).toBe("this transaction is committed already; begin a new one")
      expect(e.cause).toBeInstanceOf(TypeError)
    })
  })
}

describe("Promise facade: the process", () => {
  it("a script that never calls close() ends on its own when it has nothing running", async () => {
    const dir = tempDir()
    try {
      const script = Path.join(dir, "no-close.mts")
      const promise = Path.resolve("src/promise.ts")
      Fs.writeFileSync(
        script,
        [
          `import { Doc, InMemory, Instance } from ${JSON.stringify(promise)}`,
          `const instance = await Instance.open(new InMemory())`,
          `await instance.enableSync()`,
          `await instance.createUser("alice")`,
          `const user = await instance.loginUser("alice")`,
          `const db = await user.createDatabase(Doc.from({ name: "n" }), await user.getDefaultKey())`,
          `const txn = await db.newTransaction()`,
          `await (await txn.docStore("s")).set("k", "v")`,
          `await txn.commit()`,
          `console.log("done")`
        ].join("\n")
      )
      const started = performance.now()
      const result = ChildProcess.spawnSync(process.execPath, ["--import", "tsx", script], { encoding: "utf8", timeout: 45_000 })
      expect(result.stdout.trim()).toBe("done")
      // it exits by itself, long before the engine's one-minute settings refresh would have fired
      expect(result.signal).toBeNull()
      expect(result.status).toBe(0)
      expect(performance.now() - started).toBeLessThan(45_000)
    } finally {
      cleanup(dir)
    }
  }, 60_000)
})
