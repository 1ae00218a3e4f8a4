import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import * as SimNetwork from "../../src/layers/TransportSim.js"
import { echoHandler, handshakeRequest, transportContract, wireEntry } from "./TransportContract.js"

/** One network shared by the contract's transports (each `make` is a new peer on it). */
const shared = Effect.runSync(SimNetwork.make({ seed: 1 }))

transportContract("sim", {
  make: Effect.sync(() => shared.transport()),
  bind: "0",
  unreachable: Effect.succeed({ transport_type: "sim", address: "sim-nowhere" }),
  clock: "test"
})

/** A fresh seeded network with peers a and b, b serving the echo handler. */
const pair = (options: SimNetwork.SimNetworkOptions = { seed: 7 }) =>
  Effect.gen(function* () {
    const network = yield* SimNetwork.make(options)
    const a = network.transport("a")
    const b = network.transport("b")
    const address = yield* b.serve("", echoHandler())
    return { network, a, b, address }
  })

const push = (n: number) => ({ SendEntries: Array.from({ length: n }, (_, i) => wireEntry(i)) })

describe("SimNetwork controls", () => {
  it.scoped("addresses are sim:<name>; serving at a foreign name is refused", () =>
    Effect.gen(function* () {
      const { network, address } = yield* pair()
      expect(address).toEqual({ transport_type: "sim", address: "b" })
      expect(network.address("b")).toEqual(address)
      const error = yield* network.transport("c").serve("elsewhere", echoHandler()).pipe(Effect.flip)
      expect(error._tag).toBe("TransportError")
      expect(yield* network.serving()).toEqual(["b"])
    }))

  it.scoped("a directed partition cuts one direction of traffic, and heal restores it", () =>
    Effect.gen(function* () {
      const { network, a, b, address } = yield* pair()
      let servedAtA = 0
      yield* a.serve("", (request, context) => Effect.zipRight(Effect.sync(() => servedAtA++), echoHandler()(request, context)))
      yield* network.partition("a", "b")
      const error = yield* a.send(address, push(0)).pipe(Effect.flip)
      expect(error._tag).toBe("TransportError")
      expect(error.message).toContain("partition")
      // a can no longer reach b, but b still reaches a and gets its answer
      expect(yield* b.send(network.address("a"), push(0))).toBe("Ack")
      expect(servedAtA).toBe(1)
      expect(yield* network.isPartitioned("a", "b")).toBe(true)
      expect(yield* network.isPartitioned("b", "a")).toBe(false)
      yield* network.heal("a", "b")
      expect(yield* a.send(address, push(0))).toBe("Ack")
      yield* network.partition("a", "b")
      yield* network.partition("b", "a")
      yield* network.healAll()
      expect(yield* a.send(address, push(0))).toBe("Ack")
      const types = (yield* network.trace()).map((e) => e.type)
      expect(types).toContain("partition")
      expect(types).toContain("heal")
      expect(types).toContain("healAll")
    }))

  it.scoped("a link cut while the server answers loses the answer (the server has acted)", () =>
    Effect.gen(function* () {
      const network = yield* SimNetwork.make({ seed: 7 })
      const a = network.transport("a")
      let served = 0
      const address = yield* network.transport("b").serve("", (request, context) =>
        Effect.gen(function* () {
          served++
          yield* network.partition("a", "b")
          return yield* echoHandler()(request, context)
        })
      )
      const error = yield* a.send(address, push(2)).pipe(Effect.flip)
      expect(error.message).toContain("no response")
      expect(served).toBe(1)
      const trace = yield* network.trace()
      expect(trace.some((e) => e.type === "deliver")).toBe(true)
      expect(trace.at(-1)).toMatchObject({ type: "fail", reason: "no-response" })
    }))

  it.scoped("a link cut while a request is in flight loses it on arrival; the sender fails as if refused", () =>
    Effect.gen(function* () {
      const network = yield* SimNetwork.make({ seed: 7, policy: { minDelayMs: 100, maxDelayMs: 100 } })
      const a = network.transport("a")
      let served = 0
      const address = yield* network.transport("b").serve("", () => Effect.sync(() => (served++, "Ack" as const)))
      const fiber = yield* Effect.fork(Effect.either(a.send(address, push(1))))
      yield* TestClock.adjust(50)
      yield* network.partition("a", "b")
      yield* TestClock.adjust(100)
      const result = yield* Fiber.join(fiber)
      expect(served).toBe(0)
      expect(result._tag === "Left" && result.left.message).toContain("partition")
      const trace = yield* network.trace()
      const sent = trace.find((e) => e.type === "send")!
      expect(trace.filter((e) => e.type !== "send" && "id" in e && e.id === sent.id)).toMatchObject([
        { type: "drop", reason: "partitioned", t: sent.t + 100 },
        { type: "fail", reason: "partitioned" }
      ])
    }))

  it.scoped("a duplicate copy leaving after its link was cut is lost, not delivered", () =>
    Effect.gen(function* () {
      const network = yield* SimNetwork.make({ seed: 7, policy: { minDelayMs: 100, maxDelayMs: 100, duplicateRate: 1 } })
      const a = network.transport("a")
      let served = 0
      const address = yield* network.transport("b").serve("", () => Effect.sync(() => (served++, "Ack" as const)))
      const fiber = yield* Effect.fork(a.send(address, push(1)))
      yield* TestClock.adjust(100)
      expect(yield* Fiber.join(fiber)).toBe("Ack")
      expect(served).toBe(1)
      yield* network.partition("a", "b")
      yield* TestClock.adjust(100)
      expect(served).toBe(1)
      const trace = yield* network.trace()
      const copy = trace.flatMap((e) => (e.type === "duplicate" ? [e.copy] : []))
      expect(copy.length).toBe(1)
      expect(trace.at(-1)).toMatchObject({ type: "drop", id: copy[0], reason: "partitioned" })
    }))

  it.scoped("a held push delivered across a link cut since is dropped", () =>
    Effect.gen(function* () {
      const network = yield* SimNetwork.make({ seed: 7 })
      const a = network.transport("a")
      let served = 0
      const address = yield* network.transport("b").serve("", () => Effect.sync(() => (served++, "Ack" as const)))
      yield* network.setManualDelivery(true)
      yield* a.send(address, push(1))
      const [held] = yield* network.pending()
      yield* network.partition("a", "b")
      expect(yield* network.deliver(held!.id)).toBeUndefined()
      expect(served).toBe(0)
      expect((yield* network.trace()).at(-1)).toMatchObject({ type: "drop", id: held!.id, reason: "partitioned" })
    }))

  it.scoped("delays come from the virtual clock and reorder concurrent messages", () =>
    Effect.gen(function* () {
      const { network, a, address } = yield* pair()
      yield* network.setLinkPolicy({ minDelayMs: 10, maxDelayMs: 500 })
      const fibers = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i + 2), (n) => Effect.fork(a.send(address, push(n))))
      yield* TestClock.adjust(499)
      yield* TestClock.adjust(1)
      const answers = yield* Effect.forEach(fibers, Fiber.join)
      expect(answers).toEqual(Array.from({ length: 20 }, (_, i) => ({ Count: i + 2 })))
      const trace = yield* network.trace()
      const sends = trace.filter((e) => e.type === "send").map((e) => e.id)
      const delivered = trace.flatMap((e) => (e.type === "deliver" ? [e.id] : []))
      expect(delivered.length).toBe(20)
      expect(delivered).not.toEqual(sends)
      for (const e of trace) if (e.type === "deliver") expect(e.t).toBeGreaterThanOrEqual(10)
    }))

  it.scoped("drop and duplicate rates: lost sends fail with TransportError, copies reach the server twice", () =>
    Effect.gen(function* () {
      const network = yield* SimNetwork.make({ seed: 3 })
      const a = network.transport("a")
      let served = 0
      const address = yield* network.transport("b").serve("", (request) => {
        served++
        return echoHandler()(request, {})
      })
      yield* network.setLinkPolicy({ dropRate: 0.3 })
      const results = yield* Effect.forEach(Array.from({ length: 100 }), () => Effect.either(a.send(address, push(0))))
      const lost = results.filter((r) => r._tag === "Left").length
      expect(lost).toBeGreaterThan(10)
      expect(lost).toBeLessThan(60)
      expect(served).toBe(100 - lost)
      yield* network.setLinkPolicy({ dropRate: 0, duplicateRate: 0.5 })
      served = 0
      for (let i = 0; i < 100; i++) expect(yield* a.send(address, push(0))).toBe("Ack")
      yield* Effect.yieldNow()
      const copies = (yield* network.trace()).filter((e) => e.type === "duplicate").length
      expect(copies).toBeGreaterThan(20)
      expect(served).toBe(100 + copies)
    }))

  it.scoped("per-link policy overrides the network's", () =>
    Effect.gen(function* () {
      const { network, a, address } = yield* pair()
      const c = network.transport("c")
      yield* network.setLinkPolicy({ dropRate: 1 }, { from: "a", to: "b" })
      expect((yield* a.send(address, push(0)).pipe(Effect.flip))._tag).toBe("TransportError")
      expect(yield* c.send(address, push(0))).toBe("Ack")
    }))

  it.scoped("manual mode holds pushes with an optimistic Ack; handshakes run inline", () =>
    Effect.gen(function* () {
      const network = yield* SimNetwork.make({ seed: 1 })
      const a = network.transport("a")
      const seen: Array<number> = []
      const address = yield* network.transport("b").serve("", (request, context) => {
        if ("SendEntries" in request) seen.push(request.SendEntries.length)
        return echoHandler()(request, context)
      })
      yield* network.setManualDelivery(true)
      const hs = yield* a.send(address, handshakeRequest())
      expect(typeof hs === "object" && "Handshake" in hs).toBe(true)
      for (const n of [1, 2, 3]) expect(yield* a.send(address, push(n))).toBe("Ack")
      expect(seen).toEqual([])
      const pending = yield* network.pending()
      expect(pending.map((p) => p.entryIds.length)).toEqual([1, 2, 3])
      expect(pending.every((p) => p.from === "a" && p.to === "b" && p.kind === "SendEntries")).toBe(true)
      // deliver out of order, duplicate one (the copy goes to the back), drop one
      expect(yield* network.deliver(pending[2]!.id)).toEqual({ Count: 3 })
      const copy = yield* network.duplicate(pending[0]!.id)
      expect(copy.id).not.toBe(pending[0]!.id)
      expect((yield* network.pending()).map((p) => p.id)).toEqual([pending[0]!.id, pending[1]!.id, copy.id])
      yield* network.drop(pending[1]!.id)
      expect(yield* network.deliverAll()).toBe(2)
      expect(seen).toEqual([3, 1, 1])
      expect(yield* network.pending()).toEqual([])
      // a partition takes precedence over capture
      yield* network.partition("a", "b")
      expect((yield* a.send(address, push(1)).pipe(Effect.flip))._tag).toBe("TransportError")
      expect(yield* network.pending()).toEqual([])
    }))

  it.scoped("deliverOne, dropAll, and a held push to a stopped server is dropped on delivery", () =>
    Effect.gen(function* () {
      const network = yield* SimNetwork.make({ seed: 1 })
      const a = network.transport("a")
      yield* network.setManualDelivery(true)
      const address = network.address("b")
      yield* a.send(address, push(1))
      yield* a.send(address, push(2))
      yield* a.send(address, push(3))
      expect(yield* network.deliverOne()).toMatchObject({ entryIds: [expect.any(String)] })
      const trace = yield* network.trace()
      expect(trace.at(-1)).toMatchObject({ type: "drop", reason: "unreachable" })
      expect(yield* network.dropAll()).toBe(2)
      expect(yield* network.deliverOne()).toBeUndefined()
    }))

  it.effect("the same seed gives the same trace", () =>
    Effect.gen(function* () {
      const run = Effect.scoped(
        Effect.gen(function* () {
          const { network, a, address } = yield* pair({ seed: 99, policy: { minDelayMs: 1, maxDelayMs: 50, dropRate: 0.2, duplicateRate: 0.2 } })
          const fibers = yield* Effect.forEach(Array.from({ length: 30 }, (_, i) => i), (n) => Effect.fork(Effect.either(a.send(address, push(n)))))
          yield* TestClock.adjust(200)
          yield* Effect.forEach(fibers, Fiber.join)
          return yield* network.trace()
        })
      )
      const first = yield* run
      const second = yield* run
      expect(JSON.parse(JSON.stringify(first))).toEqual(first)
      expect(second.map(({ t, ...rest }) => ({ ...rest, t: t - second[0]!.t }))).toEqual(
        first.map(({ t, ...rest }) => ({ ...rest, t: t - first[0]!.t }))
      )
    }))
})
