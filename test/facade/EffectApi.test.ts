/**
 * The Effect entry point (`eidetica-ts`): the namespaces API.md names, and `Eidetica.layer`
 * wiring a complete engine on memory and on a SQLite file.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Path from "node:path"
import { Auth, Cipher, Database, Doc, Eidetica, Errors, Instance, Permission, Protocol, Storage, StoreState, Stores, Sync, SyncSettings, Transaction, Transport, WriteEvents } from "eidetica-ts"
import { cleanup, tempDir } from "./helpers.js"

const scenario = Effect.gen(function* () {
  const instance = yield* Instance.Instance
  yield* instance.createUser("alice")
  const user = yield* instance.loginUser("alice")
  const { db, signer } = yield* user.createDatabase(Doc.from({ name: "notes" }), yield* user.getDefaultKey)
  const txn = Transaction.begin(db, signer)
  yield* new Stores.DocStore(txn, "notes").set("title", "hello")
  const id = yield* Transaction.commit(txn)
  return { deviceId: instance.deviceId, rootId: db.rootId, id }
})

describe("Effect API", () => {
  it("exposes the services as namespaces with their Tags and layers", () => {
    expect(Storage.Storage.key).toBe("eidetica-ts/Storage")
    expect(Layer.isLayer(Storage.layerMemory)).toBe(true)
    expect(typeof Storage.layerSqlite).toBe("function")
    expect(Layer.isLayer(Auth.layerNode)).toBe(true)
    expect(Layer.isLayer(Auth.layerNoble)).toBe(true)
    expect(Layer.isLayer(Transport.layerHttp)).toBe(true)
    expect(Layer.isLayer(Transport.layerHttpWith({ timeout: "5 seconds" }))).toBe(true)
    expect(Layer.isLayer(Transport.layerIroh)).toBe(true)
    expect(Transport.Transport.key).toBe("eidetica-ts/Transport")
    expect(Layer.isLayer(Instance.layer)).toBe(true)
    expect(Layer.isLayer(Sync.layer)).toBe(true)
    expect(Layer.isLayer(Sync.layerWith({}))).toBe(true)
    expect(typeof Eidetica.layer).toBe("function")
    expect(Permission.Admin(0)).toEqual({ type: "Admin", priority: 0 })
    expect(new Errors.UserNotFound({ username: "x" })._tag).toBe("UserNotFound")
    expect(SyncSettings.disabled.syncEnabled).toBe(false)
    expect(Protocol.PROTOCOL_VERSION).toBe(0)
    expect(typeof Database.create).toBe("function")
    expect(Layer.isLayer(StoreState.layerCache)).toBe(true)
  })

  it.effect("Eidetica.layer on memory runs a whole engine", () =>
    Effect.gen(function* () {
      const { rootId, id } = yield* scenario
      const tips = yield* Database.tips({ rootId })
      expect(tips).toEqual([id])
      const sync = yield* Sync.Sync
      yield* sync.enableHttpTransport()
    }).pipe(Effect.provide(Eidetica.layer({ storage: "memory" }))))

  it.effect("the layers compose as API.md writes them: Storage, Auth, Instance, Sync and Transport.layerHttp", () =>
    Effect.gen(function* () {
      const { rootId, id } = yield* scenario
      expect(yield* Database.tips({ rootId })).toEqual([id])
      // the Transport layer serves on its own; the Sync layer runs a server on loopback
      const transport = yield* Transport.Transport
      expect(transport.transportType).toBe(Transport.HTTP_TRANSPORT_TYPE)
      const sync = yield* Sync.Sync
      yield* sync.enableHttpTransport()
      expect(yield* sync.startServer("127.0.0.1:0")).toMatch(/^127\.0\.0\.1:\d+$/)
    }).pipe(
      Effect.provide(
        Layer.mergeAll(Sync.layer, Transport.layerHttp).pipe(
          Layer.provideMerge(Instance.layer),
          Layer.provideMerge(Layer.mergeAll(Storage.layerMemory, Auth.layerNode, Cipher.layerNode, StoreState.layerCache, WriteEvents.layer))
        )
      )
    ))

  it.scopedLive("Transport.layerIroh is the iroh transport: it serves over QUIC, and layerIrohWith's client reaches it on loopback", () =>
    Effect.gen(function* () {
      const server = Context.get(yield* Layer.build(Transport.layerIroh), Transport.Transport)
      expect(server.transportType).toBe(Transport.IROH_TRANSPORT_TYPE)
      const address = yield* server.serve("127.0.0.1:0", () => Effect.succeed("Ack" as const))
      expect(address.transport_type).toBe("iroh")
      expect(address.address).toMatch(/^endpoint[a-z2-7]+$/)
      const client = Context.get(
        yield* Layer.build(Transport.layerIrohWith({ clientBind: "127.0.0.1:0", timeout: "5 seconds" })),
        Transport.Transport
      )
      expect(yield* client.send(address, { SendEntries: [] })).toBe("Ack")
    }))

  it.effect("Eidetica.layer bounds the store-state cache: 1,000,000 slots unless stateCacheSlots says otherwise", () =>
    Effect.gen(function* () {
      const bound = (options: Eidetica.Options) =>
        Effect.provide(Effect.map(StoreState.StateCache, (cache) => cache.maxSlots), Eidetica.layer(options))
      expect(yield* bound({ storage: "memory" })).toBe(StoreState.DEFAULT_MAX_SLOTS)
      expect(StoreState.DEFAULT_MAX_SLOTS).toBe(1_000_000)
      expect(yield* bound({ storage: "memory", stateCacheSlots: 5_000 })).toBe(5_000)
    }))

  it.effect("Eidetica.layer on a SQLite file keeps the data for the next build", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.acquireRelease(Effect.sync(tempDir), (d) => Effect.sync(() => cleanup(d)))
      const layer = Eidetica.layer({ filename: Path.join(dir, "engine.db") })
      const first = yield* Effect.provide(scenario, layer)
      const again = yield* Effect.provide(
        Effect.gen(function* () {
          const instance = yield* Instance.Instance
          const user = yield* instance.loginUser("alice")
          const { db } = yield* user.findDatabase("notes")
          return {
            deviceId: instance.deviceId,
            title: yield* new Stores.DocStoreView(db, "notes").get("title"),
            tips: yield* Database.tips(db)
          }
        }),
        layer
      )
      expect(again).toEqual({ deviceId: first.deviceId, title: "hello", tips: [first.id] })
    }).pipe(Effect.scoped))
})
