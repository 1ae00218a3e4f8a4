import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { API_PATH } from "../../src/layers/TransportHttp.js"
import { startServerProcess } from "../fixtures/SyncServerProcess.js"
import { makeNode, readData, write } from "./SyncFixtures.js"

describe("Sync with a server in a child process (SQLite, loopback HTTP or iroh)", () => {
  it.live("bootstraps from the child, pulls its new entries and pushes ours", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const server = yield* Effect.acquireRelease(
          Effect.promise(() => startServerProcess({ entries: 40, valueBytes: 100 })),
          (s) => Effect.promise(() => s.kill())
        )
        const { address, dbId } = server.info
        expect(address).toMatch(/^127\.0\.0\.1:\d+$/)
        const b = yield* makeNode()
        yield* b.sync.enableHttpTransport()
        // bootstrap: everything the child holds, the same tips
        const first = yield* b.sync.syncWithPeer(address, dbId)
        expect(first.received).toBe(server.info.count)
        const remote = yield* Effect.promise(() => server.state())
        expect(yield* b.storage.tips(dbId)).toEqual(remote.tips)
        const data = yield* readData(b, dbId)
        expect(Object.keys(data)).toHaveLength(40)
        expect(data["k39"]).toMatch(/^39:x+$/)
        // the child commits more; an incremental sync pulls exactly those
        yield* Effect.promise(() => server.commit(5))
        const second = yield* b.sync.syncWithPeer(address, dbId)
        expect(second).toMatchObject({ received: 5, sent: 0, roundTrips: 1 })
        // we write under the global grant and push
        yield* b.instance.createUser("bob")
        const bob = yield* b.instance.loginUser("bob")
        const opened = yield* b.run(bob.openDatabase(dbId))
        yield* write(b, dbId, opened.signer, "fromChildTest", "hi")
        const third = yield* b.sync.syncWithPeer(address, dbId)
        expect(third).toMatchObject({ received: 0, sent: 1 })
        const after = yield* Effect.promise(() => server.state())
        expect(after.tips).toEqual(yield* b.storage.tips(dbId))
        expect(after.count).toBe(yield* b.storage.count(dbId))
        // killing the child makes the next sync a transport error
        yield* Effect.promise(() => server.kill())
        const error = yield* Effect.flip(b.sync.syncWithPeer(address, dbId))
        expect(error._tag).toBe("TransportError")
      })
    ), 120_000)

  it.live("over iroh: bootstraps a history of several pages from the child, pulls and pushes; a killed child is a TransportError", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const server = yield* Effect.acquireRelease(
          Effect.promise(() => startServerProcess({ entries: 1_500, valueBytes: 600, transport: "iroh" })),
          (s) => Effect.promise(() => s.kill())
        )
        const { address, dbId } = server.info
        expect(address).toMatch(/^iroh:endpoint[a-z2-7]+$/)
        const b = yield* makeNode()
        yield* b.sync.enableIrohTransport({ clientBind: "127.0.0.1:0", timeout: "3 seconds" })
        const first = yield* b.sync.syncWithPeer(address, dbId)
        expect(first.received).toBe(server.info.count)
        expect(first.roundTrips).toBeGreaterThan(1)
        expect(yield* b.storage.tips(dbId)).toEqual((yield* Effect.promise(() => server.state())).tips)
        yield* Effect.promise(() => server.commit(3))
        expect(yield* b.sync.syncWithPeer(address, dbId)).toMatchObject({ received: 3, sent: 0 })
        yield* b.instance.createUser("bob")
        const bob = yield* b.instance.loginUser("bob")
        const opened = yield* b.run(bob.openDatabase(dbId))
        yield* write(b, dbId, opened.signer, "overIroh", "hi")
        expect(yield* b.sync.syncWithPeer(address, dbId)).toMatchObject({ received: 0, sent: 1 })
        expect((yield* Effect.promise(() => server.state())).tips).toEqual(yield* b.storage.tips(dbId))
        yield* Effect.promise(() => server.kill())
        const error = yield* Effect.flip(b.sync.syncWithPeer(address, dbId))
        expect(error._tag).toBe("TransportError")
      })
    ), 120_000)

  it.live("a 20 KB body nested 10,000 deep gets a 400 and the process keeps serving", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const server = yield* Effect.acquireRelease(
          Effect.promise(() => startServerProcess({ entries: 1 })),
          (s) => Effect.promise(() => s.kill())
        )
        const { address, dbId } = server.info
        // the decoder's error message used to quote the value and overflow the stack, outside any
        // fiber: an uncaught exception that ended the process
        const deep = "[".repeat(10_000) + "]".repeat(10_000)
        const answer = yield* Effect.promise(() =>
          fetch(`http://${address}${API_PATH}`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: `{"SyncTree":{"tree_id":${deep},"our_tips":[]}}`
          }).then(async (res) => ({ status: res.status, body: await res.text() }), (e: unknown) => ({ status: 0, body: String(e) }))
        )
        expect(answer.status).toBe(400)
        expect(answer.body).toContain("more than 64 deep")
        const b = yield* makeNode()
        yield* b.sync.enableHttpTransport()
        expect((yield* b.sync.syncWithPeer(address, dbId)).received).toBe(server.info.count)
        expect(server.child.exitCode).toBeNull()
      })
    ), 60_000)
})
