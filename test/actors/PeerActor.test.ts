import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as TestClock from "effect/TestClock"
import * as PeerActor from "../../src/actors/PeerActor.js"
import * as SyncSupervisor from "../../src/actors/SyncSupervisor.js"
import type { Address } from "../../src/schema/Protocol.js"
import type { PeerStatus } from "../../src/services/SyncEngine.js"

const TREE = "tree-1"
const ADDRESS: Address = { transport_type: "fake", address: "peer-b" }

interface Call {
  readonly at: number
  readonly op: "sync" | "push"
  readonly treeId: string
  readonly entries: ReadonlyArray<string>
}

/** A peer we control: up or down, a gate that holds calls, a one-shot defect. */
const fakePeer = () => {
  const state = {
    up: true,
    dieOnce: false,
    gate: undefined as Deferred.Deferred<void> | undefined,
    calls: [] as Array<Call>,
    delivered: new Set<string>(),
    interrupted: 0
  }
  const call = (op: Call["op"], treeId: string, entries: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const at = yield* Clock.currentTimeMillis
      state.calls.push({ at, op, treeId, entries: [...entries] })
      if (state.gate !== undefined) yield* Deferred.await(state.gate).pipe(Effect.onInterrupt(() => Effect.sync(() => state.interrupted++)))
      if (state.dieOnce) {
        state.dieOnce = false
        return yield* Effect.die(new Error("injected defect"))
      }
      if (!state.up) return yield* Effect.fail({ _tag: "TransportError", message: "connection refused" })
      for (const e of entries) state.delivered.add(e)
    })
  const client: PeerActor.PeerClient = {
    sync: (_address, treeId) => call("sync", treeId, []),
    push: (_address, treeId, entryIds) => call("push", treeId, entryIds)
  }
  return { state, client }
}

/** A pending-work store in a Map, to look at what would be saved; `failing` makes its calls not take. */
const memoryStore = () => {
  const saved = new Map<string, PeerActor.PendingWork>()
  const control = { failing: false, calls: 0 }
  const store: PeerActor.PendingStore = {
    save: (treeId, work) =>
      Effect.sync(() => {
        control.calls++
        if (!control.failing) saved.set(treeId, work)
        return !control.failing
      }),
    remove: (treeId) =>
      Effect.sync(() => {
        control.calls++
        if (!control.failing) saved.delete(treeId)
        return !control.failing
      })
  }
  return { saved, store, control }
}

/** Start one supervised peer actor in the test's scope. */
const startActor = (
  client: PeerActor.PeerClient,
  options: Partial<PeerActor.Options> = {}
) =>
  Effect.gen(function*() {
    const supervisor = yield* SyncSupervisor.make(
      (peer) => PeerActor.make({ peer, client, addresses: Effect.succeed([ADDRESS]), ...options }),
      { name: "peer" }
    )
    const actor = yield* supervisor.get("peer-b")
    return { supervisor, actor }
  })

/** Wait (without moving the clock) until the tree's status satisfies `pred`. */
const waitFor = (actor: PeerActor.PeerActor, pred: (s: PeerStatus) => boolean, treeId = TREE) =>
  actor.changes(treeId).pipe(Stream.filter(pred), Stream.runHead, Effect.map(Option.getOrThrow))

const noJitter = { jitter: 0 }

/** How `fiber` ends within `d` of test time: None if it is still waiting then. */
const endsWithin = <A, E>(fiber: Fiber.Fiber<A, E>, d: Duration.DurationInput = "1 second") =>
  Effect.gen(function*() {
    const waiting = yield* Effect.fork(Effect.timeoutOption(Fiber.await(fiber), d))
    yield* TestClock.adjust(d)
    return yield* Fiber.join(waiting)
  })

/** Wait (yielding, without moving the clock) until the peer saw `calls` calls and the attempt settled. */
const settled = (actor: PeerActor.PeerActor, peer: ReturnType<typeof fakePeer>, calls: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 10_000; i++) {
      if (peer.state.calls.length >= calls && (yield* actor.status(TREE)).state !== "syncing") return yield* actor.status(TREE)
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage(`not settled after ${calls} calls (saw ${peer.state.calls.length})`)
  })

describe("PeerActor", () => {
  it.scoped("backoff: fails at t=0, retried after 2, 4, 8, 16, 32, 64, 64 s exactly (jitter off)", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { actor } = yield* startActor(peer.client, { backoff: noJitter })
      yield* actor.push(TREE, ["e1"])
      let s = yield* waitFor(actor, (s) => s.state === "backoff")
      expect(s).toEqual({
        state: "backoff",
        hasLocalData: false,
        pendingEntries: 1,
        lastError: "connection refused",
        retryAt: 2_000
      })
      const expected = [2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 64_000]
      let now = 0
      for (const delay of expected) {
        const before = peer.state.calls.length
        yield* TestClock.adjust(delay - 1)
        expect(peer.state.calls.length).toBe(before) // not a millisecond early
        yield* TestClock.adjust(1)
        now += delay
        s = yield* waitFor(actor, (s) => s.state === "backoff" && s.retryAt !== now)
        expect(peer.state.calls.length).toBe(before + 1)
        expect(peer.state.calls.at(-1)!.at).toBe(now)
      }
      expect(peer.state.calls.map((c) => c.at)).toEqual([0, 2_000, 6_000, 14_000, 30_000, 62_000, 126_000, 190_000])
      expect(s.retryAt).toBe(190_000 + 64_000)
    }))

  it.scoped("backoff jitter comes from Effect's Random and stays within ±10%, capped at 64 s", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { actor } = yield* startActor(peer.client, { backoff: { jitter: 0.1, maxAttempts: 100 } })
      yield* actor.push(TREE, ["e1"])
      let s = yield* waitFor(actor, (s) => s.state === "backoff")
      const delays: Array<number> = []
      let at = 0
      for (let i = 0; i < 9; i++) {
        const retryAt = s.retryAt!
        delays.push(retryAt - at)
        yield* TestClock.setTime(retryAt)
        at = retryAt
        s = yield* waitFor(actor, (x) => x.state === "backoff" && x.retryAt !== retryAt)
      }
      const bases = [2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 64_000, 64_000, 64_000]
      delays.forEach((d, i) => {
        expect(d).toBeGreaterThanOrEqual(bases[i]! * 0.9)
        expect(d).toBeLessThanOrEqual(Math.min(bases[i]! * 1.1, 64_000))
      })
      expect(new Set(delays.slice(0, 5).map((d, i) => d / bases[i]!)).size).toBeGreaterThan(1) // really jittered
    }).pipe(Effect.withRandom(Random.make(42))))

  it.scoped("the same seed gives the same retry times", () =>
    Effect.gen(function*() {
      const run = Effect.suspend(() => Effect.gen(function*() {
        const peer = fakePeer()
        peer.state.up = false
        const scope = yield* Scope.make()
        const { actor } = yield* Scope.extend(startActor(peer.client), scope)
        yield* actor.push(TREE, ["e1"])
        const s = yield* waitFor(actor, (s) => s.state === "backoff")
        yield* Scope.close(scope, Exit.void)
        return s.retryAt
      }).pipe(Effect.withRandom(Random.make("seed-7"))))
      expect(yield* run).toBe(yield* run)
    }))

  it.scoped("new work during backoff is tried at once but is no retry: 20 failed pushes keep retryAt 2 s, whose retry delivers everything", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { actor } = yield* startActor(peer.client, { backoff: noJitter })
      yield* actor.push(TREE, ["e0"])
      expect(yield* settled(actor, peer, 1)).toMatchObject({ state: "backoff", retryAt: 2_000 })
      // a burst of commits during a one-second outage: each is tried at once and fails
      for (let i = 1; i <= 20; i++) {
        yield* TestClock.adjust(50)
        yield* actor.push(TREE, [`e${i}`])
        const s = yield* settled(actor, peer, i + 1)
        expect(s).toEqual({
          state: "backoff",
          hasLocalData: false,
          pendingEntries: i + 1,
          lastError: "connection refused",
          retryAt: 2_000
        })
      }
      expect(peer.state.calls.map((c) => c.at)).toEqual(Array.from({ length: 21 }, (_, i) => i * 50))
      yield* TestClock.adjust(2_000 - 1_000 - 1)
      expect(peer.state.calls).toHaveLength(21) // the retry keeps its time: not a millisecond early
      peer.state.up = true
      yield* TestClock.adjust(1)
      const s = yield* waitFor(actor, (s) => s.state === "idle" && s.pendingEntries === 0)
      expect(s).toEqual({ state: "idle", hasLocalData: false, pendingEntries: 0, lastSync: 2_000 })
      expect(peer.state.calls).toHaveLength(22)
      expect(peer.state.calls.at(-1)!.at).toBe(2_000)
      expect(peer.state.delivered.size).toBe(21)
    }))

  it.scoped("new work during backoff leaves the schedule alone: retries still at 2, 4, 8 s after the first failure, failed only after maxAttempts of them", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { actor } = yield* startActor(peer.client, { backoff: { ...noJitter, maxAttempts: 4 } })
      let n = 0
      const pushAt = (at: number) =>
        Effect.gen(function*() {
          yield* TestClock.setTime(at)
          yield* actor.push(TREE, [`e${n++}`])
          return yield* settled(actor, peer, peer.state.calls.length + 1)
        })
      expect(yield* pushAt(0)).toMatchObject({ state: "backoff", retryAt: 2_000 })
      for (const at of [100, 1_000, 1_999]) expect(yield* pushAt(at)).toMatchObject({ state: "backoff", retryAt: 2_000 })
      yield* TestClock.setTime(2_000) // the first retry: counts
      let s = yield* waitFor(actor, (s) => s.state === "backoff" && s.retryAt === 6_000)
      for (const at of [2_001, 3_000, 5_999]) expect(yield* pushAt(at)).toMatchObject({ state: "backoff", retryAt: 6_000 })
      yield* TestClock.setTime(6_000)
      s = yield* waitFor(actor, (s) => s.state === "backoff" && s.retryAt === 14_000)
      for (const at of [7_000, 13_000]) expect(yield* pushAt(at)).toMatchObject({ state: "backoff", retryAt: 14_000 })
      yield* TestClock.setTime(14_000) // the third retry fails: four consecutive failures of the schedule
      s = yield* waitFor(actor, (s) => s.state === "failed")
      expect(s).toEqual({ state: "failed", hasLocalData: false, pendingEntries: 9, lastError: "connection refused" })
      const timed = peer.state.calls.filter((c) => [0, 2_000, 6_000, 14_000].includes(c.at))
      expect(timed.map((c) => c.at)).toEqual([0, 2_000, 6_000, 14_000])
      expect(peer.state.calls).toHaveLength(12) // 9 pushes, 3 timed retries
      // failed: new work is still tried at once, and its failure keeps it failed
      expect(yield* pushAt(20_000)).toMatchObject({ state: "failed", pendingEntries: 10 })
      yield* TestClock.adjust("1 hour")
      expect(peer.state.calls).toHaveLength(13)
    }))

  it.scoped("status goes idle → syncing → idle with real lastSync, and reports lastError then clears it", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      const gate = yield* Deferred.make<void>()
      peer.state.gate = gate
      const { actor } = yield* startActor(peer.client, { backoff: noJitter })
      yield* TestClock.setTime(5_000)
      yield* actor.push(TREE, ["e1", "e2"])
      const syncing = yield* waitFor(actor, (s) => s.state === "syncing")
      expect(syncing).toEqual({ state: "syncing", hasLocalData: false, pendingEntries: 2 })
      yield* Deferred.succeed(gate, undefined)
      const idle = yield* waitFor(actor, (s) => s.state === "idle" && s.lastSync !== undefined)
      expect(idle).toEqual({ state: "idle", hasLocalData: false, pendingEntries: 0, lastSync: 5_000 })
      expect([...peer.state.delivered]).toEqual(["e1", "e2"])

      // a failure is reported with its message; the next success clears it and moves lastSync
      peer.state.gate = undefined
      peer.state.up = false
      yield* actor.push(TREE, ["e3"])
      const failed = yield* waitFor(actor, (s) => s.state === "backoff")
      expect(failed).toMatchObject({ lastError: "connection refused", pendingEntries: 1, lastSync: 5_000, retryAt: 7_000 })
      peer.state.up = true
      yield* TestClock.adjust(2_000)
      const back = yield* waitFor(actor, (s) => s.state === "idle" && s.pendingEntries === 0)
      expect(back).toEqual({ state: "idle", hasLocalData: false, pendingEntries: 0, lastSync: 7_000 })
    }))

  it.scoped("duplicate work is coalesced: entry IDs as a set, several syncs as one", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      const gate = yield* Deferred.make<void>()
      peer.state.gate = gate
      const { actor } = yield* startActor(peer.client)
      yield* actor.push(TREE, ["a"])
      yield* waitFor(actor, (s) => s.state === "syncing")
      // while the first push is in flight
      yield* actor.push(TREE, ["b"])
      yield* actor.push(TREE, ["b", "c"])
      yield* actor.push(TREE, ["c"])
      expect((yield* actor.status(TREE)).pendingEntries).toBe(3) // a (in flight), b, c
      yield* Deferred.succeed(gate, undefined)
      yield* waitFor(actor, (s) => s.state === "idle" && s.pendingEntries === 0)
      expect(peer.state.calls.map((c) => [c.op, c.entries])).toEqual([["push", ["a"]], ["push", ["b", "c"]]])

      const gate2 = yield* Deferred.make<void>()
      peer.state.gate = gate2
      yield* actor.push("tree-2", ["x"])
      yield* waitFor(actor, (s) => s.state === "syncing", "tree-2")
      yield* actor.sync(TREE)
      yield* actor.sync(TREE)
      yield* actor.sync(TREE)
      yield* Deferred.succeed(gate2, undefined)
      yield* waitFor(actor, (s) => s.lastSync !== undefined && s.state === "idle", "tree-2")
      yield* actor.waitForInitialSync(TREE)
      expect(peer.state.calls.filter((c) => c.op === "sync")).toHaveLength(1)
    }))

  it.scoped("a full mailbox fails with the typed MailboxFull; work for a queued database is still accepted", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      const gate = yield* Deferred.make<void>()
      peer.state.gate = gate
      const { actor } = yield* startActor(peer.client, { capacity: 2 })
      yield* actor.push("t1", ["a"])
      yield* actor.push("t2", ["b"])
      const error = yield* Effect.flip(actor.push("t3", ["c"]))
      expect(error._tag).toBe("MailboxFull")
      expect(error.capacity).toBe(2)
      expect(error.message).toContain("capacity 2")
      expect((yield* Effect.flip(actor.sync("t3")))._tag).toBe("MailboxFull")
      yield* actor.push("t1", ["a2"]) // coalesces into t1's slot
      yield* actor.sync("t2")
      yield* Deferred.succeed(gate, undefined)
      yield* waitFor(actor, (s) => s.pendingEntries === 0 && s.lastSync !== undefined, "t1")
      yield* waitFor(actor, (s) => s.pendingEntries === 0 && s.lastSync !== undefined, "t2")
      yield* actor.push("t3", ["c"]) // room again
      yield* waitFor(actor, (s) => s.pendingEntries === 0 && s.lastSync !== undefined, "t3")
      expect([...peer.state.delivered].sort()).toEqual(["a", "a2", "c"])
    }))

  it.scoped("registered databases past the capacity still get their work in (an interval of each syncs each)", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      const gate = yield* Deferred.make<void>()
      peer.state.gate = gate
      const { actor } = yield* startActor(peer.client, { capacity: 2 })
      const registered = ["r1", "r2", "r3", "r4", "r5"]
      for (const id of registered) yield* actor.addTree(id)
      // the interval: every registered database asks for a sync at once, past the capacity
      for (const id of registered) yield* actor.sync(id)
      // work for a database the actor does not know is still bounded
      expect((yield* Effect.flip(actor.push("stranger", ["x"])))._tag).toBe("MailboxFull")
      yield* Deferred.succeed(gate, undefined)
      for (const id of registered) yield* waitFor(actor, (s) => s.lastSync !== undefined && s.state === "idle", id)
      expect(peer.state.calls.map((c) => c.treeId).sort()).toEqual(registered)
    }))

  it.scoped("a commit pushed during a round of interval syncs goes before the rest of the round", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      const gate = yield* Deferred.make<void>()
      peer.state.gate = gate
      const { actor } = yield* startActor(peer.client)
      for (let i = 0; i < 50; i++) yield* actor.sync(`db-${i}`)
      while (peer.state.calls.length === 0) yield* Effect.yieldNow()
      // a commit in another database while the round's first sync runs
      yield* actor.push("hot", ["e1"])
      yield* Deferred.succeed(gate, undefined)
      yield* waitFor(actor, (s) => s.pendingEntries === 0 && s.lastSync !== undefined, "hot")
      expect(peer.state.calls.findIndex((c) => c.treeId === "hot")).toBe(1)
      yield* waitFor(actor, (s) => s.lastSync !== undefined, "db-49")
      expect(peer.state.calls.filter((c) => c.op === "sync")).toHaveLength(50)
    }))

  it.scoped("a flush counts a database a commit's push ran early in its round (a failure is reported)", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      const client: PeerActor.PeerClient = {
        sync: peer.client.sync,
        // T's pushes fail; the rest as the fake peer does
        push: (address, treeId, entries) =>
          treeId === "T" ? Effect.zipRight(peer.client.push(address, "T-refused", []), Effect.fail({ _tag: "TransportError", message: "refused" })) : peer.client.push(address, treeId, entries)
      }
      const gate1 = yield* Deferred.make<void>()
      const gate2 = yield* Deferred.make<void>()
      peer.state.gate = gate1
      const { actor } = yield* startActor(client)
      yield* actor.addTree("A")
      yield* actor.sync("A")
      while (peer.state.calls.length < 1) yield* Effect.yieldNow()
      // a flush is asked for while A's sync runs; then a commit in T
      const flush = yield* Effect.fork(actor.flush)
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
      yield* actor.push("T", ["t1"])
      peer.state.gate = gate2
      yield* Deferred.succeed(gate1, undefined)
      // the flush's round runs A first; another commit in T while it runs
      while (peer.state.calls.length < 2) yield* Effect.yieldNow()
      yield* actor.push("T", ["t2"])
      peer.state.gate = undefined
      yield* Deferred.succeed(gate2, undefined)
      expect(yield* Fiber.join(flush)).toEqual({ delivered: 1, failed: 1 })
    }))

  it.scoped("a defect restarts the actor after 100 ms and it finishes the work", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.dieOnce = true
      const { actor, supervisor } = yield* startActor(peer.client)
      yield* actor.push(TREE, ["e1"])
      yield* Effect.repeat(supervisor.restarts, { until: (n) => n === 1 })
      expect(peer.state.delivered.size).toBe(0)
      yield* TestClock.adjust(99)
      expect(peer.state.calls).toHaveLength(1)
      yield* TestClock.adjust(1)
      const s = yield* waitFor(actor, (s) => s.state === "idle" && s.pendingEntries === 0 && s.lastSync !== undefined)
      expect(s.lastSync).toBe(100)
      expect([...peer.state.delivered]).toEqual(["e1"])
      // the same actor (same mailbox) keeps working: no dead mailbox
      expect(Option.getOrThrow(yield* supervisor.find("peer-b"))).toBe(actor)
      yield* actor.push(TREE, ["e2"])
      yield* waitFor(actor, (s) => s.pendingEntries === 0)
      expect(peer.state.delivered.has("e2")).toBe(true)
    }))

  it.scoped("a failed database whose attempt dies with a defect shows failed again after the restart, not backoff", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { actor, supervisor } = yield* startActor(peer.client, { backoff: { ...noJitter, maxAttempts: 1 } })
      yield* actor.push(TREE, ["e1"])
      yield* waitFor(actor, (s) => s.state === "failed")
      // new work tries again at once; that attempt dies
      peer.state.dieOnce = true
      yield* actor.push(TREE, ["e2"])
      yield* Effect.repeat(supervisor.restarts, { until: (n) => n === 1 })
      yield* TestClock.adjust(100)
      const after = yield* waitFor(actor, (s) => s.state !== "syncing")
      expect(after).toMatchObject({ state: "failed", pendingEntries: 2, lastError: "connection refused" })
      expect(after.retryAt).toBeUndefined()
    }))

  it.scoped("an early attempt in backoff that dies with a defect: after the restart the database shows backoff with its retry time, retried then", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { actor, supervisor } = yield* startActor(peer.client, { backoff: noJitter })
      yield* actor.push(TREE, ["e1"])
      yield* waitFor(actor, (s) => s.state === "backoff" && s.retryAt === 2_000)
      yield* TestClock.adjust(500)
      peer.state.dieOnce = true
      yield* actor.push(TREE, ["e2"])
      yield* Effect.repeat(supervisor.restarts, { until: (n) => n === 1 })
      yield* TestClock.adjust(100)
      const after = yield* waitFor(actor, (s) => s.state !== "syncing")
      expect(after).toEqual({ state: "backoff", hasLocalData: false, pendingEntries: 2, lastError: "connection refused", retryAt: 2_000 })
      expect(peer.state.calls.map((c) => c.at)).toEqual([0, 500])
      peer.state.up = true
      yield* TestClock.setTime(2_000)
      yield* waitFor(actor, (s) => s.state === "idle" && s.pendingEntries === 0)
      expect(peer.state.calls.map((c) => c.at)).toEqual([0, 500, 2_000])
    }))

  it.scoped("supervisor: the restart delay doubles on consecutive defects, and is back to 100 ms after a healthy run", () =>
    Effect.gen(function*() {
      const starts: Array<number> = []
      const supervisor = yield* SyncSupervisor.make(() =>
        Effect.succeed({
          value: undefined,
          run: Effect.gen(function*() {
            starts.push(yield* Clock.currentTimeMillis)
            if (starts.length === 4) yield* Effect.sleep("1 hour") // runs fine for an hour, then one defect
            if (starts.length >= 6) return yield* Effect.never
            return yield* Effect.die("boom")
          })
        }), { name: "test" })
      yield* supervisor.get("k")
      yield* TestClock.adjust("1 second")
      expect(starts).toEqual([0, 100, 300, 700]) // 100, 200, 400 ms
      yield* TestClock.adjust("1 hour")
      yield* TestClock.adjust("1 second")
      // died at 700 + 1 h: 100 ms again (not 800), then doubling from there
      expect(starts.slice(4)).toEqual([3_600_800, 3_601_000])
      expect(yield* supervisor.restarts).toBe(5)
    }))

  it.scoped("a flush waiting on an actor that stops completes: its work counts as failed and is saved; first-sync waiters are interrupted", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.gate = yield* Deferred.make<void>() // never opened
      const { saved, store } = memoryStore()
      const { actor, supervisor } = yield* startActor(peer.client, { store })
      yield* actor.push(TREE, ["e1"])
      const flush = yield* Effect.fork(actor.flush)
      const initial = yield* Effect.fork(actor.waitForInitialSync(TREE))
      yield* waitFor(actor, (s) => s.state === "syncing")
      yield* supervisor.stop("peer-b") // what unregisterSyncPeer(peer) and closing the instance do
      expect(yield* endsWithin(flush)).toEqual(Option.some(Exit.succeed({ delivered: 0, failed: 1 })))
      const waited = yield* endsWithin(initial)
      expect(Option.isSome(waited) && Exit.isInterrupted(waited.value)).toBe(true)
      expect(saved.get(TREE)).toEqual({ entries: ["e1"], sync: true }) // kept for the next start
      // a stale reference does not wait on the stopped actor either
      expect(yield* endsWithin(yield* Effect.fork(actor.flush))).toEqual(Option.some(Exit.succeed({ delivered: 0, failed: 1 })))
    }))

  it.scoped("pending work past SAVED_ENTRIES_MAX is saved once as a full sync, not rewritten at every commit of an outage", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { saved, store, control } = memoryStore()
      const { actor } = yield* startActor(peer.client, { backoff: noJitter, store })
      const total = PeerActor.SAVED_ENTRIES_MAX + 200
      let callsAtCollapse = 0
      for (let i = 0; i < total; i++) {
        yield* actor.push(TREE, [`e${i}`])
        yield* settled(actor, peer, i + 1)
        if (i === PeerActor.SAVED_ENTRIES_MAX) callsAtCollapse = control.calls
        if (i < PeerActor.SAVED_ENTRIES_MAX) expect(saved.get(TREE)?.entries).toHaveLength(i + 1)
      }
      // every commit tried at once and failed; the list stopped being rewritten once it was long
      expect(peer.state.calls).toHaveLength(total)
      expect(saved.get(TREE)).toEqual({ entries: [], sync: true })
      expect(control.calls).toBe(callsAtCollapse)
      expect((yield* actor.status(TREE)).pendingEntries).toBe(total)
      // back up: the next retry delivers the whole list, and the saved work is cleared
      peer.state.up = true
      yield* TestClock.adjust("2 seconds")
      yield* waitFor(actor, (s) => s.state === "idle" && s.pendingEntries === 0)
      expect(peer.state.delivered.size).toBe(total)
      expect(saved.has(TREE)).toBe(false)
    }))

  it.scoped("removeTree interrupts the database's first-sync waiters; reading an unknown database's status does not bring it back", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { saved, store } = memoryStore()
      const { actor } = yield* startActor(peer.client, { backoff: noJitter, store })
      yield* actor.addTree("t1")
      yield* actor.sync(TREE)
      yield* waitFor(actor, (s) => s.state === "backoff")
      const initial = yield* Effect.fork(actor.waitForInitialSync(TREE))
      yield* actor.removeTree(TREE)
      const waited = yield* endsWithin(initial)
      expect(Option.isSome(waited) && Exit.isInterrupted(waited.value)).toBe(true)
      // a kept handle reads a detached idle status, and the database stays forgotten
      expect(yield* actor.status(TREE)).toEqual(PeerActor.idleStatus)
      expect(yield* SubscriptionRef.get(yield* actor.statusRef(TREE))).toEqual(PeerActor.idleStatus)
      expect([...(yield* Stream.runCollect(actor.changes(TREE)))]).toEqual([PeerActor.idleStatus])
      expect(Exit.isInterrupted(yield* Effect.exit(actor.waitForInitialSync(TREE)))).toBe(true)
      expect(yield* actor.trees).toEqual(["t1"])
      peer.state.calls.length = 0
      expect(yield* actor.flush).toEqual({ delivered: 0, failed: 1 })
      expect(peer.state.calls.map((c) => c.treeId)).toEqual(["t1"])
      expect([...saved.keys()]).toEqual(["t1"])
    }))

  it.scoped("a subscription ends with the idle status when its database is removed or the actor stops, and does not watch a stale status", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { actor, supervisor } = yield* startActor(peer.client, { backoff: noJitter })
      yield* actor.push(TREE, ["e1"])
      yield* actor.push("t2", ["e2"])
      yield* waitFor(actor, (s) => s.state === "backoff")
      yield* waitFor(actor, (s) => s.state === "backoff", "t2")
      const removed = yield* Effect.fork(Stream.runCollect(actor.changes(TREE)))
      const stopped = yield* Effect.fork(Stream.runCollect(actor.changes("t2")))
      yield* TestClock.adjust("10 millis")
      yield* actor.removeTree(TREE)
      const first = yield* endsWithin(removed)
      expect(Option.isSome(first) && Exit.isSuccess(first.value)).toBe(true)
      const seen = Option.isSome(first) && Exit.isSuccess(first.value) ? [...first.value.value] : []
      expect(seen[0]).toMatchObject({ state: "backoff", pendingEntries: 1 })
      expect(seen.at(-1)).toEqual(PeerActor.idleStatus)
      // registered again: a new subscription follows the new registration from its idle start
      yield* actor.addTree(TREE)
      expect(yield* actor.status(TREE)).toEqual(PeerActor.idleStatus)
      yield* supervisor.stop("peer-b")
      const second = yield* endsWithin(stopped)
      expect(Option.isSome(second) && Exit.isSuccess(second.value)).toBe(true)
      expect(Option.isSome(second) && Exit.isSuccess(second.value) ? [...second.value.value].at(-1) : undefined).toEqual(PeerActor.idleStatus)
    }))

  it.scoped("a database removed and added again while a round runs: the round does not run its old work", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { actor } = yield* startActor(peer.client, { backoff: noJitter })
      yield* actor.push("t1", ["e1"])
      yield* actor.push(TREE, ["e2"])
      yield* waitFor(actor, (s) => s.state === "backoff", "t1")
      yield* waitFor(actor, (s) => s.state === "backoff")
      // both are retried in the round at 2 s; the first holds it while TREE is re-registered
      peer.state.up = true
      const gate = yield* Deferred.make<void>()
      peer.state.gate = gate
      peer.state.calls.length = 0
      yield* TestClock.adjust("2 seconds")
      yield* waitFor(actor, (s) => s.state === "syncing", "t1")
      yield* actor.removeTree(TREE)
      yield* actor.addTree(TREE)
      peer.state.gate = undefined
      yield* Deferred.succeed(gate, undefined)
      yield* waitFor(actor, (s) => s.state === "idle", "t1")
      yield* TestClock.adjust("10 millis")
      expect(peer.state.calls.map((c) => [c.treeId, c.entries])).toEqual([["t1", ["e1"]]])
      expect(peer.state.delivered.has("e2")).toBe(false)
      expect(yield* actor.status(TREE)).toEqual(PeerActor.idleStatus)
    }))

  it.effect("closing the supervisor's scope stops every actor fiber", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.gate = yield* Deferred.make<void>() // never opened: calls hang until interrupted
      let running = 0
      const scope = yield* Scope.make()
      const supervisor = yield* SyncSupervisor.make(
        (key) =>
          Effect.map(PeerActor.make({ peer: key, client: peer.client, addresses: Effect.succeed([ADDRESS]) }), (a) => ({
            value: a.value,
            run: Effect.suspend(() => {
              running++
              return a.run
            }).pipe(Effect.ensuring(Effect.sync(() => running--)))
          })),
        { name: "peer" }
      ).pipe(Scope.extend(scope))
      const actors = yield* Effect.forEach(["p1", "p2", "p3", "p4"], (k) => Scope.extend(supervisor.get(k), scope))
      yield* Effect.forEach(actors, (a) => a.push(TREE, ["e"]))
      yield* Effect.forEach(actors, (a) => waitFor(a, (s) => s.state === "syncing"))
      expect(running).toBe(4)
      yield* Scope.close(scope, Exit.void)
      expect(running).toBe(0)
      expect(peer.state.interrupted).toBe(4)
      expect(yield* supervisor.all).toEqual([])
    }))

  it.scoped("a save of pending work that did not take is made again at the next round; so is a removal", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { saved, store, control } = memoryStore()
      const { actor } = yield* startActor(peer.client, { backoff: noJitter, store })
      control.failing = true
      yield* actor.push(TREE, ["e1"])
      yield* waitFor(actor, (s) => s.state === "backoff")
      expect(saved.has(TREE)).toBe(false) // the save after the failed attempt did not take
      control.failing = false
      yield* TestClock.adjust(2_000) // the retry fails too: the work is saved now
      yield* waitFor(actor, (s) => s.state === "backoff" && s.retryAt === 6_000)
      expect(saved.get(TREE)).toEqual({ entries: ["e1"], sync: false })
      // delivered while the store fails: the record stays until a removal takes
      peer.state.up = true
      control.failing = true
      yield* TestClock.adjust(4_000)
      yield* waitFor(actor, (s) => s.state === "idle")
      expect(saved.has(TREE)).toBe(true)
      control.failing = false
      yield* actor.push(TREE, ["e2"]) // the next round saves (and then removes) this database again
      yield* waitFor(actor, (s) => s.state === "idle" && s.pendingEntries === 0 && peer.state.delivered.has("e2"))
      yield* actor.flush
      expect(saved.has(TREE)).toBe(false)
    }))

  it.scoped("nothing is dropped: after 10 failures the work stays pending (failed), and is delivered once the peer is back", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { saved, store } = memoryStore()
      const { actor } = yield* startActor(peer.client, { backoff: noJitter, store })
      yield* actor.push(TREE, ["e1", "e2"])
      yield* TestClock.adjust("1 hour")
      const failed = yield* waitFor(actor, (s) => s.state === "failed")
      expect(peer.state.calls).toHaveLength(10)
      expect(failed).toEqual({ state: "failed", hasLocalData: false, pendingEntries: 2, lastError: "connection refused" })
      expect(saved.get(TREE)).toEqual({ entries: ["e1", "e2"], sync: false })
      yield* TestClock.adjust("10 hours")
      expect(peer.state.calls).toHaveLength(10) // no timed retries once failed…
      // …but a new commit (or the interval's sync, a flush, an address) tries again at once
      yield* actor.push(TREE, ["e3"])
      yield* waitFor(actor, (s) => s.state === "failed" && s.pendingEntries === 3)
      expect(peer.state.calls).toHaveLength(11)
      peer.state.up = true
      const outcome = yield* actor.flush
      expect(outcome).toEqual({ delivered: 1, failed: 0 })
      const s = yield* actor.status(TREE)
      expect(s.state).toBe("idle")
      expect(s.pendingEntries).toBe(0)
      expect(s.lastError).toBeUndefined()
      // flush ran a sync of the database, which pushes everything the peer lacks
      expect(peer.state.calls.at(-1)!.op).toBe("sync")
      expect(saved.has(TREE)).toBe(false)
    }))

  it.scoped("flush ignores backoff and awaits the round; work saved at the last run resumes", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      peer.state.up = false
      const { saved, store } = memoryStore()
      const initial = new Map([[TREE, { entries: ["old"], sync: false }]])
      const { actor } = yield* startActor(peer.client, { backoff: noJitter, store, initial })
      yield* waitFor(actor, (s) => s.state === "backoff")
      expect(yield* actor.flush).toEqual({ delivered: 0, failed: 1 })
      expect(saved.get(TREE)).toEqual({ entries: ["old"], sync: true }) // flush also asked for a sync
      peer.state.up = true
      expect(yield* actor.flush).toEqual({ delivered: 1, failed: 0 })
      expect(yield* Clock.currentTimeMillis).toBe(0) // no waiting for the backoff
      expect(peer.state.calls.at(-1)!.op).toBe("sync")
      expect(saved.size).toBe(0)
    }))

  it.scoped("poke (an address added) retries failed work; the first working address is used", () =>
    Effect.gen(function*() {
      const peer = fakePeer()
      let addresses: ReadonlyArray<Address> = []
      const { actor } = yield* startActor(peer.client, {
        backoff: { jitter: 0, maxAttempts: 1 },
        addresses: Effect.sync(() => addresses)
      })
      yield* actor.sync(TREE)
      const s = yield* waitFor(actor, (s) => s.state === "failed")
      expect(s.lastError).toContain("no address")
      addresses = [ADDRESS]
      yield* actor.poke
      yield* actor.waitForInitialSync(TREE)
      expect((yield* actor.status(TREE)).state).toBe("idle")
    }))

  it("backoffDelay is 2^(n-1) × 2 s capped at 64 s, jitter bounded", () => {
    const b = PeerActor.defaultBackoff
    expect([1, 2, 3, 4, 5, 6, 7, 20].map((n) => PeerActor.backoffDelay(n, { ...b, jitter: 0 }, 0.3))).toEqual([
      2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 64_000, 64_000
    ])
    expect(PeerActor.backoffDelay(1, b, 0)).toBe(1_800)
    expect(PeerActor.backoffDelay(1, b, 0.999999)).toBe(2_200)
    expect(PeerActor.backoffDelay(7, b, 0.999999)).toBe(64_000)
  })
})
