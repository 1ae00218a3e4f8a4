/**
 * The simulated network: named peers on one in-memory network under virtual time, each with its
 * own Transport (`network.transport(name)`), addresses `{ transport_type: "sim", address: name }`.
 * Deliveries take a seeded random delay (so concurrent messages reorder), may be dropped or
 * duplicated by rate, and cross directed links that can be cut and healed. A link is a direction
 * of connection, as a firewall sees it: cutting `a → b` stops `a` reaching `b` (its sends fail like
 * a refused connection, a TransportError, so callers take their real retry path), while `b` still
 * reaches `a` and gets its answers. The cut is checked when a message leaves, again when it
 * arrives (one in flight when the link is cut is lost) and when the answer is ready (lost too). In
 * manual mode `SendEntries` pushes are held (the sender gets an optimistic Ack) until the test
 * delivers, duplicates or drops them one by one. Every send, delivery, drop and control is
 * recorded in a trace of plain JSON events with virtual timestamps. Time comes from Effect's
 * Clock (`Effect.sleep`), randomness from a seeded Effect `Random`: the same seed and the same
 * program give the same trace. Messages are handed over by reference, not serialized (protocol
 * values are immutable plain JSON; the HTTP transport's contract covers the wire format).
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Scope from "effect/Scope"
import * as Entry from "../core/Entry.js"
import { ServerAlreadyRunning, TransportError } from "../schema/Errors.js"
import type { Address } from "../schema/Address.js"
import { requestKind, responseKind, type SyncRequest, type SyncResponse } from "../schema/Protocol.js"
import { formatAddress, type Handler, Transport, type TransportShape } from "../services/Transport.js"

/** The `transport_type` of simulated addresses. */
export const TRANSPORT_TYPE = "sim"

/** How one directed link (or the whole network) treats messages. */
export interface LinkPolicy {
  /** Probability that a request is lost (the sender sees a TransportError). */
  readonly dropRate: number
  /** Probability that a request reaches the server twice. */
  readonly duplicateRate: number
  /** Shortest delivery delay, virtual milliseconds. */
  readonly minDelayMs: number
  /** Longest delivery delay, virtual milliseconds (uniform between the two). */
  readonly maxDelayMs: number
}

/** The default policy: instant, lossless delivery (so tests under TestClock need not move time). */
export const perfectLink: LinkPolicy = { dropRate: 0, duplicateRate: 0, minDelayMs: 0, maxDelayMs: 0 }

/** The kind of a request on the wire. */
export type MessageKind = "Handshake" | "SyncTree" | "SendEntries"

/** One event of the trace; `t` is the virtual time in epoch milliseconds. Every event is plain JSON. */
export type TraceEvent =
  | { readonly t: number; readonly type: "send"; readonly id: number; readonly from: string; readonly to: string; readonly kind: MessageKind; readonly entries: number }
  | { readonly t: number; readonly type: "deliver"; readonly id: number; readonly from: string; readonly to: string; readonly kind: MessageKind; readonly response: string }
  | { readonly t: number; readonly type: "fail"; readonly id: number; readonly from: string; readonly to: string; readonly reason: FailReason }
  | { readonly t: number; readonly type: "hold"; readonly id: number; readonly from: string; readonly to: string; readonly entries: number }
  | { readonly t: number; readonly type: "drop"; readonly id: number; readonly from: string; readonly to: string; readonly reason: DropReason }
  | { readonly t: number; readonly type: "duplicate"; readonly id: number; readonly copy: number; readonly from: string; readonly to: string }
  | { readonly t: number; readonly type: "partition" | "heal"; readonly from: string; readonly to: string }
  | { readonly t: number; readonly type: "healAll" }
  | { readonly t: number; readonly type: "policy"; readonly from: string | null; readonly to: string | null; readonly policy: LinkPolicy }
  | { readonly t: number; readonly type: "manual"; readonly on: boolean }
  | { readonly t: number; readonly type: "serve" | "unserve"; readonly peer: string }
  | { readonly t: number; readonly type: "crash" | "restart"; readonly peer: string }
  | { readonly t: number; readonly type: "write"; readonly peer: string; readonly key: string; readonly entry: string }
  | { readonly t: number; readonly type: "forge"; readonly peer: string; readonly kind: string; readonly entry: string; readonly response: string }
  | { readonly t: number; readonly type: "note"; readonly text: string }

/** A trace event before the network stamps it with the time. */
export type TraceInput = TraceEvent extends infer E ? (E extends TraceEvent ? Omit<E, "t"> : never) : never

/** Why a message was lost, as the trace says. */
export type DropReason = "policy" | "manual" | "unreachable" | "partitioned"

/** Why a send failed, as the trace says. */
export type FailReason = "partitioned" | "unreachable" | "dropped" | "handler-defect" | "no-response"

/** A push held in manual mode. */
export interface PendingMessage {
  /** The handle to deliver, duplicate or drop it by (unique for the network's life). */
  readonly id: number
  readonly from: string
  readonly to: string
  readonly kind: MessageKind
  /** The IDs of the pushed entries, in the order sent. */
  readonly entryIds: ReadonlyArray<string>
}

/** Options of a network. */
export interface SimNetworkOptions {
  /** Seed of the network's own random stream (delays, drops, duplicates); the ambient Random when absent. */
  readonly seed?: number | undefined
  /** The initial policy of every link (default `perfectLink`). */
  readonly policy?: Partial<LinkPolicy> | undefined
}

/** A simulated network and its controls. */
export interface SimNetwork {
  /** A transport on the network for the peer `name` (`sim-peer-N` by default, N counting up). */
  readonly transport: (name?: string) => TransportShape
  /** The address a peer serves at. */
  readonly address: (name: string) => Address
  /**
   * Cut the directed link `from → to`: `from` can no longer reach `to`. Its sends fail at once; one
   * in flight when the link is cut is lost on arrival (dropped, the sender fails as if refused),
   * and one the server is answering when the link is cut loses its answer (the server has acted,
   * the sender fails with "no response"). Requests from `to` to `from` and their answers are untouched.
   */
  readonly partition: (from: string, to: string) => Effect.Effect<void>
  /** Restore the directed link `from → to`. */
  readonly heal: (from: string, to: string) => Effect.Effect<void>
  /** Restore every link. */
  readonly healAll: () => Effect.Effect<void>
  /** Whether the directed link `from → to` is cut. */
  readonly isPartitioned: (from: string, to: string) => Effect.Effect<boolean>
  /** Set the policy of every link, or of one directed link; fields left out keep their value. */
  readonly setLinkPolicy: (policy: Partial<LinkPolicy>, link?: { readonly from: string; readonly to: string }) => Effect.Effect<void>
  /** Hold every `SendEntries` push for manual delivery (Handshake and SyncTree still run inline). */
  readonly setManualDelivery: (on: boolean) => Effect.Effect<void>
  /** The held pushes, in send order. */
  readonly pending: () => Effect.Effect<ReadonlyArray<PendingMessage>>
  /** Deliver one held push now; returns the server's answer (undefined when nobody serves there or the link is cut). Unknown ids are a defect. */
  readonly deliver: (id: number) => Effect.Effect<SyncResponse | undefined>
  /** Deliver the first held push, if any; returns its handle. */
  readonly deliverOne: () => Effect.Effect<PendingMessage | undefined>
  /** Deliver every held push in send order (and any held while doing so); returns how many. */
  readonly deliverAll: () => Effect.Effect<number>
  /** Copy a held push to the back of the queue under a new handle; returns the copy. */
  readonly duplicate: (id: number) => Effect.Effect<PendingMessage>
  /** Lose a held push. */
  readonly drop: (id: number) => Effect.Effect<void>
  /** Lose every held push. */
  readonly dropAll: () => Effect.Effect<number>
  /** Every event so far, oldest first (a copy). */
  readonly trace: () => Effect.Effect<ReadonlyArray<TraceEvent>>
  /** Add an event of the caller's (a write, a crash) to the trace. */
  readonly record: (event: TraceInput) => Effect.Effect<void>
  /** The names of the peers serving now, sorted. */
  readonly serving: () => Effect.Effect<ReadonlyArray<string>>
}

/** The SimNetwork service, for programs that take the network from their context. */
export class SimNetworkService extends Context.Tag("eidetica-ts/SimNetwork")<SimNetworkService, SimNetwork>() {}

/** Build a network; its random stream is `Random.make(seed)` or the ambient `Random`. */
export const make = (options: SimNetworkOptions = {}): Effect.Effect<SimNetwork> =>
  Effect.map(options.seed === undefined ? Effect.random : Effect.succeed(Random.make(options.seed)), (random) =>
    makeWith(random, { ...perfectLink, ...options.policy })
  )

/** A layer with one network (seeded when `seed` is given). */
export const layer = (options: SimNetworkOptions = {}): Layer.Layer<SimNetworkService> =>
  Layer.effect(SimNetworkService, make(options))

/** A layer of one peer's Transport on the network from the context. */
export const layerTransport = (name?: string): Layer.Layer<Transport, never, SimNetworkService> =>
  Layer.effect(Transport, Effect.map(SimNetworkService, (network) => network.transport(name)))

// ---------------------------------------------------------------------------------------------
// implementation

interface Server {
  readonly handler: Handler
  readonly scope: Scope.Scope
}

interface Held extends PendingMessage {
  readonly request: SyncRequest
}

const makeWith = (random: Random.Random, initial: LinkPolicy): SimNetwork => {
  const events: Array<TraceEvent> = []
  const servers = new Map<string, Server>()
  const cut = new Set<string>()
  const policies = new Map<string, LinkPolicy>()
  let policy: LinkPolicy = initial
  let manual = false
  let held: Array<Held> = []
  let nextId = 1
  let nextPeer = 0

  const linkKey = (from: string, to: string) => `${from}\u0000${to}`
  const policyOf = (from: string, to: string) => policies.get(linkKey(from, to)) ?? policy

  const record = (event: TraceInput): Effect.Effect<void> =>
    Effect.map(Clock.currentTimeMillis, (t) => {
      events.push({ t, ...event } as TraceEvent)
    })

  const fail = (id: number, from: string, to: string, reason: FailReason, cause?: unknown) =>
    Effect.zipRight(
      record({ type: "fail", id, from, to, reason }),
      Effect.fail(new TransportError({ address: formatAddress(address(to)), reason: failText[reason], cause }))
    )

  /** Draw a delay for the link and sleep it (no draw and no sleep on a zero-delay link). */
  const delay = (link: LinkPolicy) =>
    link.maxDelayMs <= 0
      ? Effect.void
      : Effect.flatMap(
          link.maxDelayMs > link.minDelayMs ? random.nextIntBetween(link.minDelayMs, link.maxDelayMs + 1) : Effect.succeed(link.minDelayMs),
          (ms) => (ms > 0 ? Effect.sleep(ms) : Effect.void)
        )

  const chance = (rate: number) => (rate <= 0 ? Effect.succeed(false) : Effect.map(random.next, (x) => x < rate))

  /** Run the handler of the peer serving at `to` in its server's scope (a crash interrupts it); the answer is copied. */
  const invoke = (from: string, to: string, request: SyncRequest) =>
    Effect.gen(function* () {
      const server = servers.get(to)
      if (server === undefined) return { _tag: "unreachable" as const }
      const fiber = yield* Effect.forkIn(server.handler(request, { remoteAddress: from }), server.scope)
      const exit = yield* Fiber.await(fiber)
      if (Exit.isSuccess(exit)) return { _tag: "answered" as const, response: exit.value }
      // a server stopped (or its peer crashed) while answering: as if it was never reached
      if (Cause.isInterruptedOnly(exit.cause)) return { _tag: "unreachable" as const }
      return { _tag: "defect" as const, cause: exit.cause }
    })

  const address = (name: string): Address => ({ transport_type: TRANSPORT_TYPE, address: name })

  const send = (from: string, target: Address, request: SyncRequest): Effect.Effect<SyncResponse, TransportError> =>
    Effect.gen(function* () {
      const to = target.address
      const id = nextId++
      const kind = requestKind(request)
      const entries = "SendEntries" in request ? request.SendEntries.length : 0
      yield* record({ type: "send", id, from, to, kind, entries })
      if (target.transport_type !== TRANSPORT_TYPE) return yield* fail(id, from, to, "unreachable")
      if (cut.has(linkKey(from, to))) return yield* fail(id, from, to, "partitioned")
      if (manual && "SendEntries" in request) {
        held.push({ id, from, to, kind, entryIds: request.SendEntries.map(wireId), request })
        yield* record({ type: "hold", id, from, to, entries })
        return "Ack" as const
      }
      const link = policyOf(from, to)
      if (yield* chance(link.dropRate)) {
        yield* delay(link)
        yield* record({ type: "drop", id, from, to, reason: "policy" })
        return yield* fail(id, from, to, "dropped")
      }
      const twice = yield* chance(link.duplicateRate)
      yield* delay(link)
      // the link may have been cut while the message travelled (a copy would leave after the cut: none is sent)
      if (cut.has(linkKey(from, to))) {
        yield* record({ type: "drop", id, from, to, reason: "partitioned" })
        return yield* fail(id, from, to, "partitioned")
      }
      if (twice) {
        // the copy travels on its own and its answer is lost, as a retransmitted packet's would be
        const copyId = nextId++
        yield* record({ type: "duplicate", id, copy: copyId, from, to })
        yield* Effect.forkDaemon(
          Effect.gen(function* () {
            yield* delay(link)
            if (cut.has(linkKey(from, to))) return yield* record({ type: "drop", id: copyId, from, to, reason: "partitioned" })
            const result = yield* invoke(from, to, request)
            if (result._tag === "answered") {
              yield* record({ type: "deliver", id: copyId, from, to, kind, response: responseKind(result.response) })
            } else yield* record({ type: "drop", id: copyId, from, to, reason: "unreachable" })
          })
        )
      }
      const result = yield* invoke(from, to, request)
      if (result._tag === "unreachable") return yield* fail(id, from, to, "unreachable")
      if (result._tag === "defect") return yield* fail(id, from, to, "handler-defect", result.cause)
      yield* record({ type: "deliver", id, from, to, kind, response: responseKind(result.response) })
      // the answer travels back on the sender's connection: lost if the link was cut meanwhile
      if (cut.has(linkKey(from, to))) return yield* fail(id, from, to, "no-response")
      return result.response
    })

  const serve = (name: string, bind: string, handler: Handler) =>
    Effect.gen(function* () {
      if (bind !== "" && bind !== "0" && bind !== "*" && bind !== name) {
        return yield* new TransportError({
          address: `${TRANSPORT_TYPE}:${bind}`,
          operation: "listen",
          reason: `a simulated peer serves at its own name (${name}); bind "", "0" or "${name}"`
        })
      }
      if (servers.has(name)) return yield* new ServerAlreadyRunning({ address: name })
      const scope = yield* Effect.scope
      servers.set(name, { handler, scope })
      yield* record({ type: "serve", peer: name })
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          if (servers.get(name)?.handler !== handler) return Effect.void
          servers.delete(name)
          return record({ type: "unserve", peer: name })
        })
      )
      return address(name)
    })

  const transport = (name?: string): TransportShape => {
    const self = name ?? `sim-peer-${nextPeer++}`
    return {
      transportType: TRANSPORT_TYPE,
      canHandle: (a) => a.transport_type === TRANSPORT_TYPE,
      send: (target, request) => send(self, target, request),
      serve: (bind, handler) => serve(self, bind, handler)
    }
  }

  const find = (id: number) =>
    Effect.suspend(() => {
      const message = held.find((m) => m.id === id)
      return message === undefined ? Effect.dieMessage(`no held message ${id}`) : Effect.succeed(message)
    })

  const public_ = (m: Held): PendingMessage => ({ id: m.id, from: m.from, to: m.to, kind: m.kind, entryIds: m.entryIds })

  const deliver = (id: number) =>
    Effect.gen(function* () {
      const message = yield* find(id)
      held = held.filter((m) => m.id !== id)
      if (cut.has(linkKey(message.from, message.to))) {
        yield* record({ type: "drop", id, from: message.from, to: message.to, reason: "partitioned" })
        return undefined
      }
      const result = yield* invoke(message.from, message.to, message.request)
      if (result._tag === "answered") {
        yield* record({ type: "deliver", id, from: message.from, to: message.to, kind: message.kind, response: responseKind(result.response) })
        return result.response
      }
      yield* record({ type: "drop", id, from: message.from, to: message.to, reason: "unreachable" })
      return undefined
    })

  const deliverOne = () =>
    Effect.suspend(() => {
      const first = held[0]
      return first === undefined ? Effect.succeed(undefined) : Effect.as(deliver(first.id), public_(first))
    })

  const deliverAll = () =>
    Effect.gen(function* () {
      let n = 0
      while (held.length > 0) {
        yield* deliver(held[0]!.id)
        n++
      }
      return n
    })

  return {
    transport,
    address,
    partition: (from, to) =>
      Effect.suspend(() => {
        cut.add(linkKey(from, to))
        return record({ type: "partition", from, to })
      }),
    heal: (from, to) =>
      Effect.suspend(() => {
        cut.delete(linkKey(from, to))
        return record({ type: "heal", from, to })
      }),
    healAll: () =>
      Effect.suspend(() => {
        cut.clear()
        return record({ type: "healAll" })
      }),
    isPartitioned: (from, to) => Effect.sync(() => cut.has(linkKey(from, to))),
    setLinkPolicy: (patch, link) =>
      Effect.suspend(() => {
        if (link === undefined) {
          policy = { ...policy, ...patch }
          for (const [key, p] of policies) policies.set(key, { ...p, ...patch })
          return record({ type: "policy", from: null, to: null, policy })
        }
        const next = { ...policyOf(link.from, link.to), ...patch }
        policies.set(linkKey(link.from, link.to), next)
        return record({ type: "policy", from: link.from, to: link.to, policy: next })
      }),
    setManualDelivery: (on) =>
      Effect.suspend(() => {
        manual = on
        return record({ type: "manual", on })
      }),
    pending: () => Effect.sync(() => held.map(public_)),
    deliver,
    deliverOne,
    deliverAll,
    duplicate: (id) =>
      Effect.gen(function* () {
        const message = yield* find(id)
        const copyId = nextId++
        const clone: Held = { ...message, id: copyId }
        held.push(clone)
        yield* record({ type: "duplicate", id, copy: copyId, from: message.from, to: message.to })
        return public_(clone)
      }),
    drop: (id) =>
      Effect.gen(function* () {
        const message = yield* find(id)
        held = held.filter((m) => m.id !== id)
        yield* record({ type: "drop", id, from: message.from, to: message.to, reason: "manual" })
      }),
    dropAll: () =>
      Effect.gen(function* () {
        const all = held
        held = []
        for (const m of all) yield* record({ type: "drop", id: m.id, from: m.from, to: m.to, reason: "manual" })
        return all.length
      }),
    trace: () => Effect.sync(() => events.slice()),
    record,
    serving: () => Effect.sync(() => [...servers.keys()].sort())
  }
}

const failText: Record<FailReason, string> = {
  partitioned: "connection refused (simulated partition)",
  unreachable: "connection refused (nothing serves there)",
  dropped: "connection reset (simulated loss)",
  "handler-defect": "the peer failed while answering",
  "no-response": "no response (simulated partition while the peer answered)"
}

/** The ID of a pushed entry, or a marker when it is not base64 of any entry. */
const wireId = (wire: string): string => Entry.idOfBytes(new Uint8Array(Buffer.from(wire, "base64")))
