/**
 * The cluster harness: a crash is a crash, not a clean shutdown. The dying incarnation is fenced
 * off its storage and the network before its scope closes, so what lived only in its memory is
 * lost and a restart takes the real recovery path.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Storage } from "../../src/services/Storage.js"
import { Sync } from "../../src/services/Sync.js"
import { Cluster, Simulation } from "../../src/testing.js"
import { sim } from "./helpers.js"


describe("Cluster crash", () => {
  it.live("a crash mid-push keeps nothing of memory, fences the old incarnation, and restart recovers by sync", () =>
    sim(3, ({ clock, network }) =>
      Effect.gen(function* () {
        const cluster = yield* clock.drive(Cluster.make({ peers: 2, network, engine: Simulation.engineLayer }))
        yield* clock.drive(cluster.flushAll)
        yield* clock.advance(1_000)
        const [p0, p1] = cluster.peers
        yield* network.setLinkPolicy({ minDelayMs: 500, maxDelayMs: 500 })
        const entry = yield* cluster.write(0, "k", "v")
        yield* clock.advance(100) // the commit's push is in flight, its work only in the actor's memory
        const pendingBefore = yield* p0!.storage.listMeta("sync/pending/")
        const old = p0!.services()
        yield* cluster.crash(0)
        // a clean shutdown would have saved the in-memory queue as pending work
        expect(yield* p0!.storage.listMeta("sync/pending/")).toEqual(pendingBefore)
        // the dead incarnation writes nothing and reaches nobody
        yield* Effect.orDie(Context.get(old, Storage).setMeta("ghost", "1"))
        expect(yield* p0!.storage.getMeta("ghost")).toEqual(Option.none())
        const ghostSync = yield* Effect.either(Context.get(old, Sync).syncWithPeer(p1!.address, cluster.room()))
        expect(ghostSync._tag).toBe("Left")
        yield* clock.advance(1_000)
        expect(yield* p1!.storage.has([entry])).toEqual(new Set())
        // the real recovery path: restart syncs every registered pair
        yield* network.setLinkPolicy({ minDelayMs: 1, maxDelayMs: 1 })
        yield* clock.drive(cluster.restart(0))
        yield* clock.drive(cluster.flushAll)
        expect(yield* p1!.storage.has([entry])).toEqual(new Set([entry]))
      })
    ), 60_000)
})
