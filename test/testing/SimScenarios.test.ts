/**
 * The simulation scenarios of the reference (2, 3, 4, 8, 9, 11) with nothing to help them along:
 * where Simulation.test.ts ends with a flushAll, here the invariants are checked when the last
 * message is delivered, or after the engine's own interval sync or next commit, so a lost entry
 * cannot hide behind a final flush. (Scenarios 5 and 6 are checked that way in Simulation.test.ts.)
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as EngineActors from "../../src/actors/SyncEngine.js"
import { Auth } from "../../src/services/Auth.js"
import { Cluster, Invariants, Simulation } from "../../src/testing.js"
import { type Env, sim } from "./helpers.js"

const invariants = (cluster: Cluster.Cluster, written: Iterable<string>) =>
  Effect.gen(function*() {
    const peers = cluster.peers.map((p) => ({ name: p.name, storage: p.storage }))
    const auth = Context.get(cluster.peers[0]!.services(), Auth)
    const converged = yield* Invariants.converged(peers, cluster.room())
    const noLost = yield* Invariants.noLostEntries(peers, cluster.room(), written)
    const signed = yield* Invariants.allSigned(peers, [cluster.room()], auth)
    return [...converged.violations, ...noLost.violations, ...signed.violations]
  })

const exactEngine: Cluster.EngineLayer = Layer.orDie(EngineActors.layer({ backoff: { jitter: 0 } }))

describe("scenarios by manual exchange", () => {
  it.live("2: exchange only 0<->1 (no partition): the pair converges, the cluster does not; then converge all", () =>
    sim(2, ({ network }) =>
      Effect.gen(function*() {
        const cluster = yield* Cluster.make({ peers: 3, network })
        yield* cluster.write(0, "a", 1)
        yield* cluster.write(1, "b", 2)
        yield* cluster.write(2, "c", 3)
        const ex = yield* cluster.exchange(0, 1)
        expect(ex._tag).toBe("Right")
        expect(yield* cluster.tips(0)).toEqual(yield* cluster.tips(1))
        expect(yield* cluster.tips(0)).not.toEqual(yield* cluster.tips(2))
        expect(yield* cluster.read(0)).toMatchObject({ a: 1, b: 2 })
        expect((yield* cluster.read(0))["c"]).toBeUndefined()
        expect((yield* cluster.read(2))["a"]).toBeUndefined()
        const rounds = yield* cluster.converge()
        expect(rounds).toBeLessThanOrEqual(3)
        for (const i of [0, 1, 2]) expect(yield* cluster.read(i)).toMatchObject({ a: 1, b: 2, c: 3 })
      })))
})

describe("scenarios on the background engine, with no final flush", () => {
  /** Scenario 4 up to the reversed delivery. */
  const reversed = (check: (cluster: Cluster.Cluster, written: Array<string>, clock: Env["clock"]) => Effect.Effect<void>) =>
    sim(4, ({ clock, network }) =>
      Effect.gen(function*() {
        const cluster = yield* clock.drive(Cluster.make({ peers: 3, network, engine: Simulation.engineLayer }))
        yield* clock.advance(1_000)
        yield* network.setManualDelivery(true)
        const first = yield* cluster.write(0, "first", 1)
        yield* clock.settle
        const second = yield* cluster.write(0, "second", 2)
        yield* clock.drive(cluster.flush(0))
        const pending = yield* network.pending()
        // exactly the expected pushes: peer 0 to each of 1 and 2, carrying first and second
        expect(pending.every((p) => p.from === "sim-peer-0" && p.kind === "SendEntries")).toBe(true)
        expect(new Set(pending.map((p) => p.to))).toEqual(new Set(["sim-peer-1", "sim-peer-2"]))
        for (const to of ["sim-peer-1", "sim-peer-2"]) {
          const ids = pending.filter((p) => p.to === to).flatMap((p) => p.entryIds)
          expect(new Set(ids)).toEqual(new Set([first, second]))
        }
        for (const p of [...pending].reverse()) yield* network.deliver(p.id)
        yield* network.setManualDelivery(false)
        yield* check(cluster, [first, second], clock)
      }))

  it.live("4a: reversed delivery alone (no flush): the cluster converges, nothing lost", () =>
    reversed((cluster, written, clock) =>
      Effect.gen(function*() {
        yield* clock.settle
        expect(yield* invariants(cluster, written)).toEqual([])
        for (const i of [0, 1, 2]) expect(yield* cluster.read(i)).toMatchObject({ first: 1, second: 2 })
      })))

  it.live("4b: reversed delivery then the engine's own interval sync (no flush): converges", () =>
    reversed((cluster, written, clock) =>
      Effect.gen(function*() {
        yield* clock.advance(2 * 60_000 + 1_000)
        expect(yield* invariants(cluster, written)).toEqual([])
        for (const i of [0, 1, 2]) expect(yield* cluster.read(i)).toMatchObject({ first: 1, second: 2 })
      })))

  it.live("8: a send across a cut fails exactly once (attempts=1) as a connection error; flush after heal redelivers before the backoff expires", () =>
    sim(8, ({ clock, network }) =>
      Effect.gen(function*() {
        const cluster = yield* clock.drive(Cluster.make({ peers: 2, network, engine: exactEngine, intervalSeconds: 3_600 }))
        yield* clock.drive(cluster.flushAll)
        yield* network.partition("sim-peer-0", "sim-peer-1")
        const entry = yield* cluster.write(0, "late", true)
        yield* clock.advance(100)
        const fails = (yield* network.trace()).filter((e) => e.type === "fail" && e.from === "sim-peer-0" && e.to === "sim-peer-1")
        expect(fails.length).toBe(1)
        const handle = (yield* cluster.peers[0]!.engine().handle(cluster.peers[1]!.deviceId, cluster.room()))!
        const status = yield* handle.status
        expect(status.state).toBe("backoff")
        expect(status.retryAt! - (yield* clock.currentTimeMillis)).toBeGreaterThan(1_000)
        yield* network.heal("sim-peer-0", "sim-peer-1")
        const t0 = yield* clock.currentTimeMillis
        yield* clock.drive(cluster.flush(0))
        expect(yield* cluster.peers[1]!.storage.has([entry])).toEqual(new Set([entry]))
        expect((yield* clock.currentTimeMillis) - t0).toBeLessThan(1_000)
        expect((yield* handle.status).pendingEntries).toBe(0)
        expect((yield* handle.status).state).not.toBe("backoff")
      })))

  it.live("9a (our difference): after give-up the work is retried by the next interval sync once healed, no flush", () =>
    sim(9, ({ clock, network }) =>
      Effect.gen(function*() {
        const cluster = yield* clock.drive(Cluster.make({ peers: 2, network, engine: exactEngine, intervalSeconds: 600 }))
        yield* clock.drive(cluster.flushAll)
        yield* network.partition("sim-peer-0", "sim-peer-1")
        const entry = yield* cluster.write(0, "kept", true)
        yield* clock.advance(1_000_000)
        const handle = (yield* cluster.peers[0]!.engine().handle(cluster.peers[1]!.deviceId, cluster.room()))!
        expect((yield* handle.status).state).toBe("failed")
        // a flush while still cut fails again and keeps the work
        expect((yield* clock.drive(cluster.flush(0))).failed).toBe(1)
        yield* network.heal("sim-peer-0", "sim-peer-1")
        yield* clock.advance(601_000)
        expect(yield* cluster.peers[1]!.storage.has([entry])).toEqual(new Set([entry]))
        expect((yield* handle.status).pendingEntries).toBe(0)
      })))

  it.live("9b (our difference): after give-up a new commit retries the old work at once", () =>
    sim(19, ({ clock, network }) =>
      Effect.gen(function*() {
        const cluster = yield* clock.drive(Cluster.make({ peers: 2, network, engine: exactEngine, intervalSeconds: 3_600 }))
        yield* clock.drive(cluster.flushAll)
        yield* network.partition("sim-peer-0", "sim-peer-1")
        const old = yield* cluster.write(0, "old", true)
        yield* clock.advance(1_000_000)
        const handle = (yield* cluster.peers[0]!.engine().handle(cluster.peers[1]!.deviceId, cluster.room()))!
        expect((yield* handle.status).state).toBe("failed")
        yield* network.heal("sim-peer-0", "sim-peer-1")
        const fresh = yield* cluster.write(0, "fresh", true)
        yield* clock.advance(100)
        expect(yield* cluster.peers[1]!.storage.has([old, fresh])).toEqual(new Set([old, fresh]))
        expect((yield* handle.status).pendingEntries).toBe(0)
      })))

  it.live("11b: relay chain without flush: a write on 0 reaches 2 through 1 by sync-on-commit alone", () =>
    sim(11, ({ clock, network }) =>
      Effect.gen(function*() {
        const cluster = yield* clock.drive(Cluster.make({ peers: 3, network, engine: Simulation.engineLayer, topology: "none", intervalSeconds: 3_600 }))
        yield* clock.drive(cluster.autoSync(0, 1))
        yield* clock.drive(cluster.autoSync(1, 2))
        yield* clock.advance(1_000)
        yield* network.partition("sim-peer-0", "sim-peer-2")
        yield* network.partition("sim-peer-2", "sim-peer-0")
        const entry = yield* cluster.write(0, "relayed", "yes")
        yield* clock.advance(1_000)
        expect(yield* cluster.peers[2]!.storage.has([entry])).toEqual(new Set([entry]))
      })))
})

describe("scenario 3: the greater store height wins", () => {
  it.live("3b: a write at a greater store height wins whatever the IDs; all peers agree", () =>
    Effect.gen(function*() {
      for (let seed = 0; seed < 6; seed++) {
        const values = yield* sim(300 + seed, ({ network }) =>
          Effect.gen(function*() {
            const cluster = yield* Cluster.make({ peers: 3, network })
            yield* cluster.write(0, "x", "alpha-old")
            yield* cluster.write(0, "y", "other")
            yield* cluster.write(0, "x", "alpha")
            yield* cluster.write(1, "x", "beta")
            yield* cluster.converge()
            return yield* Effect.forEach([0, 1, 2], (i) => Effect.map(cluster.read(i), (d) => d["x"]))
          }))
        expect(values).toEqual(["alpha", "alpha", "alpha"])
      }
    }), 60_000)
})
