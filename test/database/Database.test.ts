import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { Doc } from "../../src/core/Doc.js"
import * as Entry from "../../src/core/Entry.js"
import * as Settings from "../../src/core/Settings.js"
import * as Database from "../../src/database/Database.js"
import { ingest, ingestPartial } from "../../src/database/Ingest.js"
import { lookupWith, pinnedAuthOf, settingsAt } from "../../src/database/PinnedSettings.js"
import { SettingsStore } from "../../src/database/SettingsStore.js"
import { layerCache, stateOf } from "../../src/database/StoreState.js"
import { DocStore, DocStoreView, Table, TableView } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import { directKey } from "../../src/schema/Auth.js"
import * as Permission from "../../src/schema/Permission.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"
import { Auth } from "../../src/services/Auth.js"
import { Storage } from "../../src/services/Storage.js"
import { compareIds } from "../../src/schema/Ids.js"

const env = () => Layer.mergeAll(StorageLayers.layerMemory, AuthLayers.layerNode, layerCache, WriteEvents.layer)

const setup = Effect.gen(function* () {
  const auth = yield* Auth
  const admin = yield* auth.generateKey
  const db = yield* Database.create({ signer: admin, settings: Doc.from({ name: "notes" }) })
  return { admin, db, auth }
})

const write = (db: Database.Database, signer: Database.Signer, store: string, key: string, value: string) =>
  Effect.gen(function* () {
    const txn = Transaction.begin(db, signer)
    yield* new DocStore(txn, store).set(key, value)
    return yield* Transaction.commit(txn)
  })

describe("Database", () => {
  it.effect("creates a database, commits to two stores in one entry and reads them back", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const storage = yield* Storage
      const txn = Transaction.begin(db, admin)
      yield* new DocStore(txn, "notes").set("title", "hello")
      yield* new DocStore(txn, "notes").setPath("meta.author", "alice")
      const todos = new Table<{ title: string; done: boolean }>(txn, "todos")
      const rowId = yield* todos.insert({ title: "write tests", done: false })
      // reads inside the transaction see staged changes
      expect(yield* new DocStore(txn, "notes").get("title")).toBe("hello")
      const id = yield* Transaction.commit(txn)
      expect(yield* Database.tips(db)).toEqual([id])
      const entry = Option.getOrThrow(yield* storage.get(id))
      expect(entry.entry.subtrees.map((s) => s.name)).toEqual(["_index", "notes", "todos"])
      expect(yield* new DocStoreView(db, "notes").getAll()).toEqual({ title: "hello", meta: { author: "alice" } })
      expect(yield* new TableView<{ title: string }>(db, "todos").get(rowId)).toEqual({ title: "write tests", done: false })
      expect(yield* Database.name(db)).toBe("notes")
      const index = yield* stateOf(db.rootId, Entry.INDEX)
      expect(index.toJSON()).toEqual({ notes: { type_id: "docstore:v0", config: {} }, todos: { type_id: "table:v0", config: {} } })
    }).pipe(Effect.provide(env())))

  it.effect("the genesis entry names the creator Admin(0), pins no settings and carries entropy", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const storage = yield* Storage
      const root = Option.getOrThrow(yield* storage.get(db.rootId))
      expect(Entry.isRoot(root.entry)).toBe(true)
      expect(Entry.metadata(root.entry)?.settings_tips).toEqual([])
      expect(typeof Entry.metadata(root.entry)?.entropy).toBe("number")
      const auth = yield* Database.authSettings(db)
      expect(auth).toEqual({ _tag: "Present", auth: { keys: { [admin.publicKey]: { permissions: Permission.Admin(0), status: "Active" } } } })
      // two databases with the same settings differ by their entropy
      const other = yield* Database.create({ signer: admin, settings: Doc.from({ name: "notes" }) })
      expect(other.rootId).not.toBe(db.rootId)
    }).pipe(Effect.provide(env())))

  it.effect("entries pin the current settings tips and heights increase", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const storage = yield* Storage
      const a = yield* write(db, admin, "data", "k", "1")
      const b = yield* write(db, admin, "data", "k", "2")
      const eb = Option.getOrThrow(yield* storage.get(b))
      expect(eb.height).toBe(2)
      expect(eb.entry.tree.parents).toEqual([a])
      expect(Entry.metadata(eb.entry)?.settings_tips).toEqual([db.rootId])
      expect(yield* new DocStoreView(db, "data").get("k")).toBe("2")
    }).pipe(Effect.provide(env())))

  it.effect("a key not in auth cannot commit; a global grant lets any key write but not administer", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const stranger = yield* auth.generateKey
      const denied = yield* Effect.flip(write(db, stranger, "data", "k", "x"))
      expect(denied._tag).toBe("PermissionDenied")
      const txn = Transaction.begin(db, admin)
      yield* new SettingsStore(txn).setGlobalPermission(Permission.Write(10))
      yield* Transaction.commit(txn)
      yield* write(db, { ...stranger, global: true }, "data", "k", "x")
      expect(yield* new DocStoreView(db, "data").get("k")).toBe("x")
      const escalate = Transaction.begin(db, { ...stranger, global: true })
      yield* new SettingsStore(escalate).setAuthKey(stranger.publicKey, { permission: Permission.Admin(0) })
      const refused = yield* Effect.flip(Transaction.commit(escalate))
      expect(refused._tag).toBe("PermissionDenied")
    }).pipe(Effect.provide(env())))

  it("a stored key whose priority is past 2^32-1 (the reference's u32) grants nothing; the bound itself is valid", () => {
    const settings = (priority: number) =>
      Doc.from({ auth: { keys: { "ed25519:k": { permissions: { type: "Admin", priority }, status: "Active" } } } })
    const read = (priority: number) => {
      const state = Settings.authOf(settings(priority))
      return state._tag === "Present" ? state.auth.keys["ed25519:k"]?.permissions : undefined
    }
    expect(read(Permission.MAX_PRIORITY)).toEqual(Permission.Admin(Permission.MAX_PRIORITY))
    expect(read(2 ** 32)).toBeUndefined()
    expect(read(2 ** 40)).toBeUndefined()
    // within the bound the ranking holds: the weakest Write still ranks above Read, the weakest Admin above every Write
    expect(Permission.compare(Permission.Write(Permission.MAX_PRIORITY), Permission.Read)).toBeGreaterThan(0)
    expect(Permission.compare(Permission.Admin(Permission.MAX_PRIORITY), Permission.Write(0))).toBeGreaterThan(0)
  })

  it.effect("admin hierarchy: Admin(5) cannot create or modify Admin(1); Admin(1) can modify Admin(5); Write cannot touch _settings", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const [a1, a5, w] = [yield* auth.generateKey, yield* auth.generateKey, yield* auth.generateKey]
      const grant = Transaction.begin(db, admin)
      const s = new SettingsStore(grant)
      yield* s.setAuthKey(a1.publicKey, { permission: Permission.Admin(1), name: "a1" })
      yield* s.setAuthKey(a5.publicKey, { permission: Permission.Admin(5), name: "a5" })
      yield* s.setAuthKey(w.publicKey, { permission: Permission.Write(10) })
      yield* Transaction.commit(grant)
      const tipsBefore = yield* Database.tips(db)
      const t1 = Transaction.begin(db, a5)
      yield* new SettingsStore(t1).setAuthKey(a1.publicKey, { permission: Permission.Admin(6) })
      expect((yield* Effect.flip(Transaction.commit(t1)))._tag).toBe("PermissionDenied")
      const other = yield* auth.generateKey
      const t2 = Transaction.begin(db, a5)
      yield* new SettingsStore(t2).setAuthKey(other.publicKey, { permission: Permission.Admin(1) })
      expect((yield* Effect.flip(Transaction.commit(t2)))._tag).toBe("PermissionDenied")
      const t3 = Transaction.begin(db, w)
      yield* new SettingsStore(t3).setName("mine")
      expect((yield* Effect.flip(Transaction.commit(t3)))._tag).toBe("PermissionDenied")
      expect(yield* Database.tips(db)).toEqual(tipsBefore)
      const t4 = Transaction.begin(db, a1)
      yield* new SettingsStore(t4).setAuthKey(a5.publicKey, { permission: Permission.Write(3) })
      yield* Transaction.commit(t4)
      const now = yield* Database.authSettings(db)
      expect(now._tag === "Present" && now.auth.keys[a5.publicKey]?.permissions).toEqual(Permission.Write(3))
    }).pipe(Effect.provide(env())))

  it.effect("a revoked key can no longer write", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const w = yield* auth.generateKey
      const t = Transaction.begin(db, admin)
      yield* new SettingsStore(t).setAuthKey(w.publicKey, { permission: Permission.Write(10) })
      yield* Transaction.commit(t)
      yield* write(db, w, "data", "k", "1")
      const r = Transaction.begin(db, admin)
      yield* new SettingsStore(r).revokeAuthKey(w.publicKey)
      yield* Transaction.commit(r)
      expect((yield* Effect.flip(write(db, w, "data", "k", "2")))._tag).toBe("PermissionDenied")
      expect(yield* new DocStoreView(db, "data").get("k")).toBe("1")
    }).pipe(Effect.provide(env())))

  it.effect("commits that delete or corrupt auth fail with CorruptedAuthConfiguration", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const del = Transaction.begin(db, admin)
      Transaction.stage(del, Entry.SETTINGS, "settings").remove("auth")
      expect((yield* Effect.flip(Transaction.commit(del)))._tag).toBe("CorruptedAuthConfiguration")
      const str = Transaction.begin(db, admin)
      Transaction.stage(str, Entry.SETTINGS, "settings").set("auth", "everyone")
      expect((yield* Effect.flip(Transaction.commit(str)))._tag).toBe("CorruptedAuthConfiguration")
      expect(yield* Database.tips(db)).toEqual([db.rootId])
    }).pipe(Effect.provide(env())))

  it.effect("reading after an append merges only the new delta (the cached state object is reused)", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      for (let i = 0; i < 20; i++) yield* write(db, admin, "data", `k${i}`, `${i}`)
      const first = yield* stateOf(db.rootId, "data")
      yield* write(db, admin, "data", "k20", "20")
      const second = yield* stateOf(db.rootId, "data")
      expect(second).toBe(first) // merged in place, not refolded
      expect(second.get("k20")).toBe("20")
      expect(second.size).toBe(21)
    }).pipe(Effect.provide(env())))
})

/** Build a signed entry by hand (for hostile-input tests). */
const forge = (
  signer: { publicKey: string; secretKey: string },
  input: Omit<Entry.EntryInput, "key">,
  mutate: (e: ReturnType<typeof Entry.make>) => ReturnType<typeof Entry.make> = (e) => e
) =>
  Effect.gen(function* () {
    const auth = yield* Auth
    const unsigned = Entry.make({ ...input, key: directKey(signer.publicKey) })
    const sig = yield* auth.sign(signer.secretKey, Entry.signingBytes(unsigned))
    return Entry.stored(mutate(Entry.withSignature(unsigned, sig)))
  })

describe("Ingest rejects bad entries and stores nothing", () => {
  const base = (db: Database.Database, parent: string, data = Doc.from({ k: "v" })) => ({
    root: db.rootId,
    parents: [parent],
    height: 1,
    metadata: Entry.encodeMetadata({ settings_tips: [db.rootId], entropy: null }),
    subtrees: [{ name: "data", parents: [], data: data.encode() }]
  })

  const expectRejected = (entry: Entry.StoredEntry, reason: RegExp) =>
    Effect.gen(function* () {
      const storage = yield* Storage
      const before = yield* storage.count(entry.treeId)
      const err = yield* Effect.flip(ingest([entry], "remote"))
      expect(err._tag).toBe("InvalidEntry")
      expect(err.message).toMatch(reason)
      expect(yield* storage.count(entry.treeId)).toBe(before)
      expect(Option.isNone(yield* storage.get(entry.id))).toBe(true)
    })

  it.effect("a well-formed forged entry from the admin is accepted (control)", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const e = yield* forge(admin, base(db, db.rootId))
      expect(yield* ingest([e], "remote")).toEqual([e.id])
    }).pipe(Effect.provide(env())))

  it.effect("unknown parent", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const ghost = Entry.stored(Entry.make({ root: db.rootId, parents: [db.rootId], height: 1, subtrees: [], key: directKey(admin.publicKey) })).id
      yield* expectRejected(yield* forge(admin, base(db, ghost)), /unknown parent/)
    }).pipe(Effect.provide(env())))

  it.effect("unsorted parents", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const a = yield* write(db, admin, "x", "a", "1")
      const e = yield* forge(admin, { ...base(db, a), height: 2 }, (en) => ({ ...en, tree: { ...en.tree, parents: [a, db.rootId].sort(compareIds).reverse() } }))
      yield* expectRejected(e, /sorted/)
    }).pipe(Effect.provide(env())))

  it.effect("missing signature", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const e = yield* forge(admin, base(db, db.rootId), (en) => ({ ...en, sig: { key: en.sig.key } }))
      yield* expectRejected(e, /not signed/)
    }).pipe(Effect.provide(env())))

  it.effect("bad signature (data tampered after signing)", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const e = yield* forge(admin, base(db, db.rootId), (en) => ({
        ...en,
        subtrees: [{ ...en.subtrees[0]!, data: Doc.from({ k: "evil" }).encode() }]
      }))
      yield* expectRejected(e, /signature/)
    }).pipe(Effect.provide(env())))

  it.effect("sig.key tampered after signing", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const other = yield* auth.generateKey
      const t = Transaction.begin(db, admin)
      yield* new SettingsStore(t).setAuthKey(other.publicKey, { permission: Permission.Write(1) })
      const s = yield* Transaction.commit(t)
      const e = yield* forge(admin, { ...base(db, s), height: 2, metadata: Entry.encodeMetadata({ settings_tips: [s], entropy: null }) }, (en) => ({
        ...en,
        sig: { ...en.sig, key: directKey(other.publicKey) }
      }))
      yield* expectRejected(e, /signature/)
    }).pipe(Effect.provide(env())))

  it.effect("key not allowed", () =>
    Effect.gen(function* () {
      const { db, auth } = yield* setup
      const stranger = yield* auth.generateKey
      yield* expectRejected(yield* forge(stranger, base(db, db.rootId)), /not an active key/)
    }).pipe(Effect.provide(env())))

  it.effect("corrupted auth from a remote entry", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const e = yield* forge(admin, {
        ...base(db, db.rootId),
        subtrees: [{ name: "_settings", parents: [db.rootId], data: Doc.from({ auth: "gone" }).encode() }]
      })
      yield* expectRejected(e, /auth is not a map/)
    }).pipe(Effect.provide(env())))

  it.effect("wrong height", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      yield* expectRejected(yield* forge(admin, { ...base(db, db.rootId), height: 7 }), /height/)
    }).pipe(Effect.provide(env())))

  it.effect("pinning no settings", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      yield* expectRejected(yield* forge(admin, { ...base(db, db.rootId), metadata: undefined }), /pins no settings/)
    }).pipe(Effect.provide(env())))

  it.effect("malformed store data", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const e = yield* forge(admin, { ...base(db, db.rootId), subtrees: [{ name: "data", parents: [], data: new TextEncoder().encode("{nope") }] })
      yield* expectRejected(e, /Invalid entry/)
    }).pipe(Effect.provide(env())))

  it.effect("pinned settings tips out of order, repeated, too many, or not IDs", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const pin = (tips: unknown) => new TextEncoder().encode(JSON.stringify({ settings_tips: tips, entropy: null }))
      const forged = (tips: unknown) => forge(admin, { ...base(db, db.rootId), metadata: pin(tips) })
      // one tip named 50,000 times (3 MB): refused before any settings state is folded (or cached) for it
      yield* expectRejected(yield* forged(Array.from({ length: 50_000 }, () => db.rootId)), /pinned settings tips must be sorted and without duplicates/)
      const second = yield* write(db, admin, "_settings", "motto", "hi")
      const both = [db.rootId, second].sort(compareIds)
      yield* expectRejected(yield* forged([both[1], both[0]]), /pinned settings tips must be sorted and without duplicates/)
      yield* expectRejected(yield* forged([db.rootId, 7]), /malformed metadata/)
      const many = Array.from({ length: 1_025 }, (_, i) => `bafyr4i${String(i).padStart(52, "a")}`).sort(compareIds)
      yield* expectRejected(yield* forged(many), /an entry pins at most 1024 settings tips, this one 1025/)
    }).pipe(Effect.provide(env())))

  it.effect("a store parent with a height of its own does not block the next commit; heights cannot jump to the end", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const storage = yield* Storage
      yield* write(db, admin, "data", "k", "first")
      const high = (h: number, value: string) =>
        Effect.gen(function* () {
          const tips = yield* storage.tips(db.rootId)
          const heights = yield* storage.heights(tips)
          return yield* forge(admin, {
            root: db.rootId,
            parents: tips,
            height: Math.max(...heights.values()) + 1,
            metadata: Entry.encodeMetadata({ settings_tips: yield* storage.storeTips(db.rootId, Entry.SETTINGS), entropy: null }),
            subtrees: [{ name: "data", parents: yield* storage.storeTips(db.rootId, "data"), data: Doc.from({ k: value }).encode(), h }]
          })
        })
      // past 2^44 a store height may not jump (it would leave the store no heights to grow into)
      yield* expectRejected(yield* high(Number.MAX_SAFE_INTEGER, "end"), /store data height 9007199254740991 jumps/)
      yield* expectRejected(yield* high(2 ** 44 + 1, "past"), /jumps/)
      // up to it, a peer's entry may carry a store height of its own (as the reference's timestamp heights)
      const jumped = yield* high(2 ** 44, "peer")
      expect(yield* ingest([jumped], "remote")).toEqual([jumped.id])
      // the next commit to the store goes one above it, so it follows in the store's order
      const next = yield* write(db, admin, "data", "k", "mine")
      const entry = Option.getOrThrow(yield* storage.get(next)).entry
      expect(Entry.storeHeight(entry, "data")).toBe(2 ** 44 + 1)
      expect(entry.subtrees.find((t) => t.name === "data")?.h).toBe(2 ** 44 + 1)
      expect(yield* new DocStoreView(db, "data").get("k")).toBe("mine")
      // and from there one more at a time
      const after = yield* high(2 ** 44 + 2, "peer again")
      expect(yield* ingest([after], "remote")).toEqual([after.id])
    }).pipe(Effect.provide(env())))

  it.effect("a store parent or pinned settings tip not below the entry is refused: it would arrive after the entry in every sync", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const storage = yield* Storage
      for (let i = 0; i < 3; i++) yield* write(db, admin, "data", `k${i}`, "v")
      const grantTxn = Transaction.begin(db, admin)
      yield* new SettingsStore(grantTxn).setName("renamed")
      yield* Transaction.commit(grantTxn)
      const settingsTips = yield* storage.storeTips(db.rootId, Entry.SETTINGS)
      const [dataTip] = yield* storage.getMany(yield* storage.storeTips(db.rootId, "data"))
      const pin = (tips: ReadonlyArray<string>) => Entry.encodeMetadata({ settings_tips: [...tips], entropy: null })
      // parents [root] put the entry at height 1, in the first page a peer sends
      yield* expectRejected(
        yield* forge(admin, { ...base(db, db.rootId), metadata: pin(settingsTips) }),
        /pinned settings tip .* is at tree height 4, not below the entry's 1/
      )
      yield* expectRejected(
        yield* forge(admin, {
          ...base(db, db.rootId),
          subtrees: [{ name: "data", parents: [dataTip!.id], data: Doc.from({ k: "v" }).encode(), h: Entry.storeHeight(dataTip!.entry, "data") + 1 }]
        }),
        /store parent .* of store data is at tree height 3, not below the entry's 1/
      )
      // the same, placed above what they name, are accepted
      const tips = yield* storage.tips(db.rootId)
      const above = yield* forge(admin, {
        root: db.rootId,
        parents: tips,
        height: 5,
        metadata: pin(settingsTips),
        subtrees: [{ name: "data", parents: [dataTip!.id], data: Doc.from({ k: "v" }).encode(), h: Entry.storeHeight(dataTip!.entry, "data") + 1 }]
      })
      expect(yield* ingest([above], "remote")).toEqual([above.id])
    }).pipe(Effect.provide(env())))

  it.effect("a key record or global grant written in part is refused, locally and from a peer; whole records and tombstones pass", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const storage = yield* Storage
      const a5 = yield* auth.generateKey
      const k = (yield* auth.generateKey).publicKey
      for (const [key, permission] of [[a5.publicKey, Permission.Admin(5)], [k, Permission.Write(10)]] as const) {
        const txn = Transaction.begin(db, admin)
        yield* new SettingsStore(txn).setAuthKey(key, { permission })
        yield* Transaction.commit(txn)
      }
      // Write(10) -> Write(0) by its priority alone: within Admin(5)'s authority, but on another fork
      // "type: Admin" alone would be too, and the two would merge field by field into Admin(0)
      const priorityOnly = Doc.empty().setPath(`auth.keys.${k}.permissions.priority`, 0)
      const globalTypeOnly = Doc.empty().setPath("auth.global.permissions.type", "Admin")
      const unreadable = Doc.empty()
      const record = Settings.authKeyDoc({ permissions: Permission.Write(10), status: "Active" })
      record.remove("status")
      unreadable.setPath(`auth.keys.${k}`, record)
      const cases = [[priorityOnly, `auth.keys.${k}`], [globalTypeOnly, "auth.global"], [unreadable, `auth.keys.${k}`]] as const
      for (const [delta, path] of cases) {
        const txn = Transaction.begin(db, a5)
        Transaction.stage(txn, Entry.SETTINGS, "settings").mergeInPlace(delta)
        const local = yield* Effect.flip(Transaction.commit(txn))
        expect(local._tag).toBe("PermissionDenied")
        expect(local.message).toContain(`${path} must be written whole`)
        const tips = yield* storage.tips(db.rootId)
        const heights = yield* storage.heights(tips)
        const remote = yield* forge(a5, {
          root: db.rootId,
          parents: tips,
          height: Math.max(...heights.values()) + 1,
          metadata: Entry.encodeMetadata({ settings_tips: yield* storage.storeTips(db.rootId, Entry.SETTINGS), entropy: null }),
          subtrees: [{ name: Entry.SETTINGS, parents: yield* storage.storeTips(db.rootId, Entry.SETTINGS), data: delta.encode() }]
        })
        yield* expectRejected(remote, new RegExp(`${path.replace(/[.+/]/g, "\\$&")} must be written whole`))
      }
      // a whole record within its authority, and a tombstone, pass
      const whole = Transaction.begin(db, a5)
      yield* new SettingsStore(whole).setAuthKey(k, { permission: Permission.Write(0) })
      yield* Transaction.commit(whole)
      const tomb = Transaction.begin(db, a5)
      Transaction.stage(tomb, Entry.SETTINGS, "settings").removePath(`auth.keys.${k}`)
      yield* Transaction.commit(tomb)
      const now = yield* Database.authSettings(db)
      expect(now._tag === "Present" && now.auth.keys[k]).toBeUndefined()
    }).pipe(Effect.provide(env())))

  it.effect("store data nested deeper than replicas read (127 arrays and objects)", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const k = 42
      const deep = new TextEncoder().encode(`{"children":{"a":{"Doc":`.repeat(k) + `{"children":{}}` + `}}}`.repeat(k))
      const e = yield* forge(admin, { ...base(db, db.rootId), subtrees: [{ name: "data", parents: [], data: deep }] })
      yield* expectRejected(e, /nested deeper than 127 arrays and objects/)
    }).pipe(Effect.provide(env())))

  it.effect("a commit of data nested too deep fails with InvalidEntry naming the store and where; nothing is stored", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const storage = yield* Storage
      const before = yield* storage.count(db.rootId)
      let plain: { [k: string]: unknown } = { leaf: 1 }
      for (let i = 0; i < 42; i++) plain = { a: plain }
      const txn = Transaction.begin(db, admin)
      yield* new DocStore(txn, "data").set("x", plain as never)
      const err = yield* Effect.flip(Transaction.commit(txn))
      expect(err._tag).toBe("InvalidEntry")
      // named as the app wrote it: x.a.a…, not the encoding's children.x.Doc.children.a…
      expect(err.message).toMatch(/^Invalid entry: store data: x(\.a)+: nested deeper than 127 arrays and objects$/)
      expect(err.message.length).toBeLessThan(200)
      // inside a list, the index
      const listed = Transaction.begin(db, admin)
      yield* new DocStore(listed, "data").set("y", [0, plain] as never)
      expect((yield* Effect.flip(Transaction.commit(listed))).message).toMatch(/^Invalid entry: store data: y\[1\](\.a)+: nested deeper/)
      expect(yield* storage.count(db.rootId)).toBe(before)
      const created = yield* Effect.flip(Database.create({ signer: admin, settings: Doc.from(plain as never) }))
      expect(created.message).toMatch(/^Invalid entry: store _settings: .*nested deeper/)
    }).pipe(Effect.provide(env())))

  it.effect("ingestPartial keeps the good entries and reports the bad ones with their descendants", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const stranger = yield* auth.generateKey
      const good = yield* forge(admin, base(db, db.rootId, Doc.from({ good: "yes" })))
      const bad = yield* forge(stranger, base(db, db.rootId, Doc.from({ bad: "yes" })))
      const child = yield* forge(admin, { ...base(db, bad.id), height: 2 })
      const report = yield* ingestPartial([child, bad, good], "remote")
      expect(report.stored).toEqual([good.id])
      expect(report.rejected.map((r) => r.entryId).sort()).toEqual([bad.id, child.id].sort())
    }).pipe(Effect.provide(env())))

  /** A `_settings` delta that makes `pubkey` an active key with `permission`. */
  const granting = (pubkey: string, permission: Permission.Permission) => {
    const delta = Doc.empty()
    delta.setPath(`auth.keys.${pubkey}`, Settings.authKeyDoc({ permissions: permission, status: "Active" }))
    return delta
  }

  it.effect("an entry pinning settings that were refused is refused, even after their fold was cached", () =>
    Effect.gen(function* () {
      const { db, auth } = yield* setup
      const attacker = yield* auth.generateKey
      // X: settings making the attacker Admin(0), signed by the attacker (not a key here): refused
      const x = yield* forge(attacker, {
        ...base(db, db.rootId),
        subtrees: [{ name: "_settings", parents: [db.rootId], data: granting(attacker.publicKey, Permission.Admin(0)).encode() }]
      })
      const pinningX = (subtrees: Entry.EntryInput["subtrees"]) =>
        forge(attacker, { ...base(db, db.rootId), metadata: Entry.encodeMetadata({ settings_tips: [x.id], entropy: null }), subtrees })
      // in one batch with X, an entry pinning X is refused with it (and X's settings get folded on the way)
      const first = yield* ingestPartial([x, yield* pinningX([{ name: "data", parents: [], data: Doc.from({ a: 1 }).encode() }])], "remote")
      expect(first.stored).toEqual([])
      // later, alone, entries pinning the never-stored X are refused: X is not a known entry
      const data = yield* pinningX([{ name: "data", parents: [], data: Doc.from({ b: 1 }).encode() }])
      const takeover = yield* pinningX([
        { name: "_settings", parents: [db.rootId], data: granting(attacker.publicKey, Permission.Admin(0)).encode() }
      ])
      const later = yield* ingestPartial([data, takeover], "remote")
      expect(later.stored).toEqual([])
      expect(later.rejected.map((r) => r.reason)).toEqual([
        `pinned settings tip ${x.id} is not a known entry of this database`,
        `pinned settings tip ${x.id} is not a known entry of this database`
      ])
      const now = yield* Database.authSettings(db)
      expect(now._tag === "Present" && now.auth.keys[attacker.publicKey]).toBe(undefined)
    }).pipe(Effect.provide(env())))

  it.effect("an entry pinning as settings an entry that does not touch _settings is refused; the rest of its batch goes on", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      // D: an ordinary data entry of this database (height 1)
      const d = yield* write(db, admin, "data", "k", "v")
      const pinning = (parent: string, height: number, tips: ReadonlyArray<string>, value: number) =>
        forge(admin, {
          ...base(db, parent, Doc.from({ value })),
          height,
          metadata: Entry.encodeMetadata({ settings_tips: [...tips], entropy: null })
        })
      // its settings are not cached for [D]: folding them finds D has no _settings
      const bad = yield* pinning(d, 2, [d], 1)
      const good = yield* pinning(d, 2, [db.rootId], 2)
      const after = yield* pinning(good.id, 3, [db.rootId], 3)
      const report = yield* ingestPartial([after, bad, good], "remote")
      expect(report.rejected.map((r) => [r.entryId, r.reason])).toEqual([
        [bad.id, `pinned settings tip ${d} does not touch _settings`]
      ])
      expect([...report.stored].sort()).toEqual([good.id, after.id].sort())
    }).pipe(Effect.provide(env())))

  it.effect("an entry that depends on another entry of its batch is refused when that one's signature fails", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const attacker = yield* auth.generateKey
      const e1 = yield* forge(admin, base(db, db.rootId))
      expect(yield* ingest([e1], "remote")).toEqual([e1.id])
      // X (height 2) claims the admin as signer and grants the attacker Admin(0); the attacker signed it
      const unsigned = Entry.make({
        ...base(db, e1.id),
        height: 2,
        subtrees: [{ name: "_settings", parents: [db.rootId], data: granting(attacker.publicKey, Permission.Admin(0)).encode() }],
        key: directKey(admin.publicKey)
      })
      const x = Entry.stored(Entry.withSignature(unsigned, yield* auth.sign(attacker.secretKey, Entry.signingBytes(unsigned))))
      // Y (sent before X) pins X, under which the attacker is Admin(0)
      const y = yield* forge(attacker, {
        ...base(db, x.id),
        height: 3,
        metadata: Entry.encodeMetadata({ settings_tips: [x.id], entropy: null }),
        subtrees: [{ name: "_settings", parents: [x.id], data: granting(attacker.publicKey, Permission.Admin(0)).encode() }]
      })
      const report = yield* ingestPartial([y, x], "remote")
      expect(report.stored).toEqual([])
      expect(report.rejected.map((r) => [r.entryId, r.reason])).toEqual([
        [x.id, "the signature does not verify"],
        [y.id, `it depends on invalid entry ${x.id}`]
      ])
      const now = yield* Database.authSettings(db)
      expect(now._tag === "Present" && now.auth.keys[attacker.publicKey]).toBe(undefined)
    }).pipe(Effect.provide(env())))

  it.effect("an admin cannot restate a stronger key's old value under older pinned settings (re-activating it)", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const [k1, a5] = [yield* auth.generateKey, yield* auth.generateKey]
      const grant = Transaction.begin(db, admin)
      yield* new SettingsStore(grant).setAuthKey(k1.publicKey, { permission: Permission.Admin(1) })
      yield* new SettingsStore(grant).setAuthKey(a5.publicKey, { permission: Permission.Admin(5) })
      const s1 = yield* Transaction.commit(grant)
      const revoke = Transaction.begin(db, admin)
      yield* new SettingsStore(revoke).revokeAuthKey(k1.publicKey)
      const s2 = yield* Transaction.commit(revoke)
      // under s1 (pinned) k1 is Active Admin(1) already, but the entry folds after s2's revocation
      const restate = yield* forge(a5, {
        ...base(db, s2),
        height: 3,
        metadata: Entry.encodeMetadata({ settings_tips: [s1], entropy: null }),
        subtrees: [{ name: "_settings", parents: [s2], data: granting(k1.publicKey, Permission.Admin(1)).encode() }]
      })
      yield* expectRejected(restate, /cannot modify key .*Admin\(1\)/)
      const now = yield* Database.authSettings(db)
      expect(now._tag === "Present" && now.auth.keys[k1.publicKey]?.status).toBe("Revoked")
      // replacing auth.keys as a whole touches every key, the creator's Admin(0) among them
      const wholesale = Doc.empty()
      const keys = Doc.empty()
      keys.atomic = true
      keys.set(a5.publicKey, Settings.authKeyDoc({ permissions: Permission.Admin(5), status: "Active" }))
      wholesale.setPath("auth.keys", keys)
      const replace = yield* forge(a5, {
        ...base(db, s2),
        height: 3,
        metadata: Entry.encodeMetadata({ settings_tips: [s2], entropy: null }),
        subtrees: [{ name: "_settings", parents: [s2], data: wholesale.encode() }]
      })
      yield* expectRejected(replace, /cannot modify key/)
    }).pipe(Effect.provide(env())))

  it.effect("decoding bad bytes fails with a reason", () =>
    Effect.sync(() => {
      expect(Entry.decode(new Uint8Array([1, 2, 3]))._tag).toBe("Left")
    }))
})

describe("pinned settings", () => {
  it.effect("a settings entry's state is its parents' plus its delta: one lookup, the same state as a full fold", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const storage = yield* Storage
      for (let i = 0; i < 40; i++) {
        const txn = Transaction.begin(db, admin)
        yield* new SettingsStore(txn).setAuthKey((yield* auth.generateKey).publicKey, { permission: Permission.Write(10), name: `k${i}` })
        yield* Transaction.commit(txn)
      }
      const [tip] = yield* storage.storeTips(db.rootId, Entry.SETTINGS)
      const parents = Entry.subtree(Option.getOrThrow(yield* storage.get(tip!)).entry, Entry.SETTINGS)!.parents
      const looked: Array<string> = []
      const lookup = yield* lookupWith(new Map())
      const counting = (id: string) => Effect.tap(lookup(id), () => Effect.sync(() => looked.push(id)))
      // a fresh cache: the parents' state folded in full (the whole settings history), then the tip's on top
      const stacked = yield* Effect.gen(function* () {
        yield* settingsAt(db.rootId, parents, counting)
        const before = looked.length
        const state = yield* settingsAt(db.rootId, [tip!], counting)
        expect(looked.length - before).toBe(1)
        return state
      }).pipe(Effect.provide(layerCache))
      expect(looked.length).toBe(42)
      const full = yield* settingsAt(db.rootId, [tip!], lookup).pipe(Effect.provide(layerCache))
      expect(stacked.equals(full)).toBe(true)
      expect(Object.keys((stacked.toJSON().auth as { keys: object }).keys)).toHaveLength(41)
    }).pipe(Effect.provide(env())))
})

describe("pinned settings share and derive", () => {
  it.effect("each state shares the keys its delta leaves alone, and its auth is derived from the one below as a full read gives it", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const storage = yield* Storage
      const lookup = yield* lookupWith(new Map())
      const pinnedAtTip = Effect.flatMap(storage.storeTips(db.rootId, Entry.SETTINGS), (tips) => settingsAt(db.rootId, tips, lookup))
      const [k0, k1, k2] = [(yield* auth.generateKey).publicKey, (yield* auth.generateKey).publicKey, (yield* auth.generateKey).publicKey]
      type Step = (s: SettingsStore) => Effect.Effect<void, unknown, Database.DatabaseEnv>
      const steps: ReadonlyArray<Step> = [
        (s) => s.setAuthKey(k0, { permission: Permission.Write(10), name: "k0" }),
        (s) => s.setAuthKey(k1, { permission: Permission.Write(10), name: "k1" }),
        (s) => s.setAuthKey(k2, { permission: Permission.Write(10) }),
        (s) => s.setAuthKey(k1, { permission: Permission.Admin(3) }),
        (s) => s.revokeAuthKey(k2),
        (s) => s.setGlobalPermission(Permission.Read),
        (s) => s.setName("renamed"),
        (s) => s.revokeGlobalPermission()
      ]
      let below = yield* pinnedAtTip
      pinnedAuthOf(below) // read once: every later state's auth is derived from its parent's
      for (const step of steps) {
        const txn = Transaction.begin(db, admin)
        yield* step(new SettingsStore(txn))
        yield* Transaction.commit(txn)
        const state = yield* pinnedAtTip
        expect(pinnedAuthOf(state)).toEqual(Settings.authOf(state))
        // the admin's key, which no step writes, is the state below's own object, not a copy
        expect((state.getPath("auth.keys") as Doc).get(admin.publicKey)).toBe((below.getPath("auth.keys") as Doc).get(admin.publicKey))
        below = state
      }
      expect(pinnedAuthOf(below)).toMatchObject({ _tag: "Present", auth: { keys: { [k2]: { status: "Revoked" } }, global: { status: "Revoked" } } })
    }).pipe(Effect.provide(env())))
})

describe("ingestion and write events", () => {
  it.live("entries stored are announced even when the ingesting fiber is interrupted right after the put", () =>
    Effect.gen(function* () {
      const auth = yield* Effect.provide(Auth, AuthLayers.layerNode)
      const admin = yield* auth.generateKey
      const memory = yield* StorageLayers.makeMemory
      const stored = yield* Deferred.make<void>()
      let watched: string | undefined
      // a put of the watched entry lets the caller interrupt between the put and the announcement
      const slow = { ...memory, put: (batch: ReadonlyArray<Entry.StoredEntry>) =>
        Effect.tap(memory.put(batch), () =>
          batch.some((x) => x.id === watched) ? Effect.zipRight(Deferred.succeed(stored, undefined), Effect.sleep("10 millis")) : Effect.void) }
      const layer = Layer.mergeAll(Layer.succeed(Storage, slow), AuthLayers.layerNode, layerCache, WriteEvents.layer)
      yield* Effect.gen(function* () {
        const db = yield* Database.create({ signer: admin })
        const events = yield* WriteEvents.WriteEvents
        const stream = yield* events.subscribe
        const e = yield* forge(admin, {
          root: db.rootId,
          parents: [db.rootId],
          height: 1,
          metadata: Entry.encodeMetadata({ settings_tips: [db.rootId], entropy: null }),
          subtrees: [{ name: "data", parents: [], data: Doc.from({ k: "v" }).encode() }]
        })
        watched = e.id
        const fiber = yield* Effect.fork(ingest([e], "remote", "peer"))
        yield* Deferred.await(stored)
        yield* Fiber.interrupt(fiber)
        expect(yield* Effect.map(memory.has([e.id]), (h) => h.has(e.id))).toBe(true)
        const [announced] = yield* Stream.runCollect(Stream.take(stream, 1)).pipe(Effect.timeout("2 seconds"))
        expect(announced).toEqual({ treeId: db.rootId, entryIds: [e.id], source: "remote", peer: "peer" })
      }).pipe(Effect.scoped, Effect.provide(layer))
    }))
})

describe("signers", () => {
  it.effect("a signer whose secret key does not match its public key cannot commit", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const other = yield* auth.generateKey
      const err = yield* Effect.flip(write(db, { publicKey: admin.publicKey, secretKey: other.secretKey }, "data", "k", "v"))
      expect(err._tag).toBe("CryptoError")
      expect(yield* Database.tips(db)).toEqual([db.rootId])
    }).pipe(Effect.provide(env())))
})
