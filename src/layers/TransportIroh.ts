/**
 * The iroh transport (QUIC, ALPN `eidetica/v0`), as the reference's: one bidirectional stream per
 * request, the JSON request written and finished (after a line announcing our device key, as HTTP's
 * peer header), the JSON response read to its end. An address is an iroh `EndpointTicket` string
 * (the endpoint's id and the direct addresses it is bound to).
 *
 * By default iroh's minimal preset with relays disabled: peers dial the direct addresses a ticket
 * names and nothing reaches n0's servers. `relays: "n0"` opts into n0's public relays and address
 * lookup, for peers behind NATs. The native binding is loaded on first use: an app that never
 * enables iroh never loads it, and a platform without it gets a TransportError, not a failed import.
 * The binding takes and gives bytes as plain number arrays, converted here with loops.
 *
 * The client keeps one connection per remote endpoint and opens a stream per request; a cached
 * connection the peer has closed meanwhile is replaced once, one dialled at addresses the peer's
 * ticket no longer names is closed and replaced, and one a send timed out on is closed. The server
 * answers each stream in its own fiber (internal/IrohStream.ts), at most `maxConcurrentStreams` at
 * once (`maxStreamsPerPeer` of one peer, `maxStreamsPerAddress` of one IP address), over at most
 * `maxConnections` connections (`maxConnectionsPerAddress` from one IP address), the request and
 * the response each never idle for `bodyTimeout` and whole within `requestTimeout`; malformed or oversized requests are
 * answered `{"Error": …}`, stalled ones reset, a peer that stops taking its response loses its
 * connection, none crash the server, and a handler defect resets that stream only.
 */
import type * as Iroh from "@number0/iroh/index.js"
import { randomBytes } from "node:crypto"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { type Address, IROH_TRANSPORT_TYPE } from "../schema/Address.js"
import { MalformedMessage, PayloadTooLarge, TransportError } from "../schema/Errors.js"
import { decodeResponseEither, MAX_MESSAGE_BYTES } from "../schema/Protocol.js"
import { isPubKey } from "../schema/Ids.js"
import type { Handler, TransportShape } from "../services/Transport.js"
import { Transport } from "../services/Transport.js"
import {
  bindEndpoint,
  closeEndpoint,
  describeIrohError,
  dialable,
  type IrohModule,
  isTooLong,
  loadIroh,
  serverEndpoint,
  ticketAddress
} from "./internal/IrohBinding.js"
import { serveStream, textNumbers, type Timeouts, toBytes, toNumbers, withPeerLine } from "./internal/IrohStream.js"
import { makeServeOnce } from "./internal/ServeOnce.js"
import { parseJson } from "./internal/SyncWire.js"

export { describeIrohError } from "./internal/IrohBinding.js"

/** The `transport_type` of iroh addresses (defined with the address forms in schema/Address.ts). */
export { IROH_TRANSPORT_TYPE }

/** The ALPN of the sync protocol. */
export const IROH_ALPN = "eidetica/v0"

/** Options of the iroh transport. */
export interface IrohTransportOptions {
  /**
   * `"disabled"` (default): no relay and no address lookup; peers are dialled at the direct
   * addresses their tickets name. `"n0"`: n0's public relays and address lookup (reaches peers
   * behind NATs; contacts n0's servers).
   */
  readonly relays?: "disabled" | "n0" | undefined
  /** The server's 32-byte secret key: its endpoint id, so its tickets, stay the same across restarts. A fresh one if absent. */
  readonly secretKey?: Uint8Array | undefined
  /**
   * Where the client's endpoint binds. Default: `127.0.0.1:0` to dial peers whose tickets name only
   * loopback addresses (relays disabled), `0.0.0.0:0` for any other.
   */
  readonly clientBind?: string | undefined
  /** How long one send may take in all, connecting included (default 30 seconds). */
  readonly timeout?: Duration.DurationInput | undefined
  /** Server: how long a request may go without a byte arriving (its stream is reset), or a response without a byte taken (its connection is closed); default 30 seconds. */
  readonly bodyTimeout?: Duration.DurationInput | undefined
  /** Server: how long a request may take to arrive whole, and its response to be taken whole, however steadily either trickles (default 5 minutes). */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /** The largest request or response in bytes (default 8 MiB, as HTTP's). */
  readonly maxMessageBytes?: number | undefined
  /** Server: requests read or answered at once, over all connections (default 64). */
  readonly maxConcurrentStreams?: number | undefined
  /** Server: requests read or answered at once for one peer (endpoint id), over all its connections (default 16). */
  readonly maxStreamsPerPeer?: number | undefined
  /**
   * Server: requests read or answered at once from one IP address, over all its peers (default 32,
   * half of `maxConcurrentStreams`): endpoint ids are free to make, so one host cannot take every slot.
   */
  readonly maxStreamsPerAddress?: number | undefined
  /** Server: connections open at once (default 1024); a further one is refused. */
  readonly maxConnections?: number | undefined
  /** Server: connections open at once from one IP address (default 64); a further one is refused. */
  readonly maxConnectionsPerAddress?: number | undefined
  /**
   * Our device key, announced to servers in a line before each request (`eidetica-peer: <key>`, as
   * HTTP's `x-eidetica-peer` header; an unauthenticated hint a server uses not to relay our pushes
   * back to us). The client's endpoint id cannot say it: the client dials from a fresh key.
   */
  readonly announce?: string | undefined
}

/** The default of `IrohTransportOptions.timeout`. */
export const IROH_DEFAULT_TIMEOUT: Duration.Duration = Duration.seconds(30)

/** A 32-byte secret key for `IrohTransportOptions.secretKey`. */
export const generateIrohSecretKey = (): Uint8Array => new Uint8Array(randomBytes(32))

/** Build an iroh transport; its endpoints (client, and server while one runs) close with the scope. */
export const makeIroh = (options: IrohTransportOptions = {}): Effect.Effect<TransportShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const timeout = Duration.decode(options.timeout ?? IROH_DEFAULT_TIMEOUT)
    const timeouts: Timeouts = {
      idle: Duration.decode(options.bodyTimeout ?? IROH_DEFAULT_TIMEOUT),
      whole: Duration.decode(options.requestTimeout ?? Duration.minutes(5))
    }
    const limit = options.maxMessageBytes ?? MAX_MESSAGE_BYTES
    const announce = options.announce !== undefined && isPubKey(options.announce) ? options.announce : undefined
    const streams = yield* Effect.makeSemaphore(options.maxConcurrentStreams ?? 64)
    const perPeerStreams = options.maxStreamsPerPeer ?? 16
    const perAddressStreams = options.maxStreamsPerAddress ?? 32
    const maxConnections = options.maxConnections ?? 1024
    const perAddressConnections = options.maxConnectionsPerAddress ?? 64
    const serveOnce = yield* makeServeOnce
    /** Client endpoints by where they bind: see `clientBindFor`. */
    const clients = new Map<string, Promise<Iroh.Endpoint>>()
    const connections = new Map<string, Cached>()
    yield* Effect.addFinalizer(() => Effect.forEach(clients.values(), closeEndpoint, { discard: true, concurrency: "unbounded" }))

    const canHandle = (address: Address): boolean => address.transport_type === IROH_TRANSPORT_TYPE

    /**
     * Where to dial a target from: `clientBind` when given; else a peer reached only at loopback
     * addresses (with no relay) is dialled from an endpoint bound to 127.0.0.1, and any other from
     * one bound to all interfaces. So a node talking to local peers listens on loopback only.
     */
    const clientBindFor = (direct: ReadonlyArray<string>): string => {
      if (options.clientBind !== undefined) return options.clientBind
      const local = options.relays !== "n0" && direct.length > 0 && direct.every((a) => a.startsWith("127.") || a.startsWith("[::1]:"))
      return local ? "127.0.0.1:0" : "0.0.0.0:0"
    }

    const clientEndpoint = (iroh: IrohModule, bind: string): Promise<Iroh.Endpoint> => {
      let client = clients.get(bind)
      if (client === undefined) {
        const pending = bindEndpoint(iroh, options.relays, bind, iroh.SecretKey.generate().toBytes(), [])
        pending.catch(() => clients.delete(bind))
        clients.set(bind, pending)
        client = pending
      }
      return client
    }

    /**
     * The connection to a peer, cached. A cached one dialled at addresses of which `target` names
     * none is retired (closed once no send uses it) and replaced: a peer restarted elsewhere with the same key (killed, so its
     * connections were never closed) would otherwise be sought on its old path until that times
     * out. Tickets that share an address (one server's, naming more or fewer of its addresses)
     * share the connection.
     */
    const connectionTo = (
      endpoint: Iroh.Endpoint,
      target: Iroh.EndpointAddr,
      dialled: ReadonlyArray<string>,
      key: string
    ): { readonly cached: Cached; readonly fresh: boolean } => {
      const cached = connections.get(key)
      const moved = cached !== undefined && dialled.length > 0 && cached.dialled.length > 0 &&
        !dialled.some((a) => cached.dialled.includes(a))
      if (cached !== undefined && !moved) return { cached, fresh: false }
      if (cached !== undefined) abandon(key, cached, MOVED)
      const fresh: Cached = { connection: endpoint.connect(target, ALPN_BYTES), dialled, users: 0 }
      connections.set(key, fresh)
      return { cached: fresh, fresh: true }
    }

    /** Forget a cached connection (if it is still the cached one) and close it once no send uses it. */
    const abandon = (key: string, cached: Cached, reason: Array<number>) => {
      if (connections.get(key) === cached) connections.delete(key)
      cached.retired ??= reason
      closeIfDone(cached)
    }

    /** A send stops using its connection (once): the last user of a retired one closes it. */
    const release = (used: Used) => {
      const cached = used.current
      if (cached === undefined || used.released) return
      used.released = true
      cached.users--
      closeIfDone(cached)
    }

    /**
     * Write the request on a fresh stream and read the response; a stale cached connection is
     * replaced once. `used` is told the connection in use, for the caller's timeout to retire.
     */
    const roundTrip = async (
      iroh: IrohModule,
      target: Iroh.EndpointAddr,
      dialled: ReadonlyArray<string>,
      bind: string,
      key: string,
      body: Array<number>,
      used: Used
    ): Promise<Array<number>> => {
      const endpoint = await clientEndpoint(iroh, bind)
      for (let attempt = 0;; attempt++) {
        if (used.timedOut) throw new Error("timed out")
        const { cached, fresh } = connectionTo(endpoint, target, dialled, key)
        used.current = cached
        used.released = false
        cached.users++
        let sent = false
        try {
          const connection = await cached.connection
          if (connection.closeReason() !== null) throw new Error(`connection closed: ${connection.closeReason()}`)
          const stream = await connection.openBi()
          await stream.send.writeAll(body)
          await stream.send.finish()
          sent = true
          return await stream.recv.readToEnd(limit)
        } catch (cause) {
          // a stream's error (the peer reset it: a handler failure) leaves a live connection to reuse
          const closed = await cached.connection.then((c) => c.closeReason() !== null, () => true)
          if (closed) abandon(key, cached, SILENT)
          if (closed && !fresh && !sent && attempt === 0) continue
          throw cause
        } finally {
          release(used)
        }
      }
    }

    const send: TransportShape["send"] = (address, request) =>
      Effect.gen(function*() {
        const fail = (reason: string, cause?: unknown) =>
          new TransportError({ address: address.address, operation: "connect", reason, cause })
        if (!canHandle(address)) {
          return yield* fail(`not an iroh address (transport_type ${JSON.stringify(address.transport_type)})`)
        }
        const iroh = yield* loadIroh(address.address)
        const target = ticketAddress(iroh, address.address)
        if (target === undefined) return yield* fail("invalid iroh address; expected an endpoint ticket")
        // our own request: its shape is the protocol's by construction, so it is not validated again
        const bytes = withPeerLine(announce, Buffer.from(JSON.stringify(request), "utf8"))
        if (bytes.length > limit) return yield* new PayloadTooLarge({ limit })
        const dialled = target.directAddresses()
        const bind = clientBindFor(dialled)
        const key = `${bind} ${target.id().toString()}`
        const used: Used = { released: false, timedOut: false }
        const reply = yield* Effect.tryPromise({
          try: () => roundTrip(iroh, target, dialled, bind, key, toNumbers(bytes), used),
          catch: (cause) =>
            isTooLong(cause) ? new PayloadTooLarge({ limit }) : fail(describeIrohError(cause), cause)
        }).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => {
              // a peer gone silent: close the connection (keep-alives would hold it open for good)
              // and let the next send dial again
              used.timedOut = true
              const current = used.current
              release(used)
              if (current !== undefined) abandon(key, current, SILENT)
              return fail(`no response within ${Duration.format(timeout)}`)
            }
          })
        )
        const json = parseJson(toBytes(reply))
        if (Either.isLeft(json)) return yield* new MalformedMessage({ detail: `the response is not JSON (${json.left})` })
        return yield* decodeResponseEither(json.right)
      })

    /** Bind the server's endpoint and answer its connections until the scope closes. */
    const start = (bind: string, handler: Handler) =>
      Effect.gen(function*() {
        const listenError = (reason: string, cause?: unknown) =>
          new TransportError({ address: bind, operation: "listen", reason, cause })
        const iroh = yield* Effect.mapError(loadIroh(bind), (e) => listenError(e.reason, e.cause))
        const secret = options.secretKey === undefined ? iroh.SecretKey.generate().toBytes() : toNumbers(options.secretKey)
        const endpoint = yield* serverEndpoint(iroh, options.relays, bind, secret, [ALPN_BYTES]).pipe(
          Effect.mapError((cause) => listenError(describeIrohError(cause), cause))
        )
        // made after the endpoint, so closed before it: every connection's and stream's fiber stops
        // before the endpoint closes under them. Run interruptible: `serve` itself is not, and a
        // fiber forked there would inherit that and never stop.
        const set = yield* FiberSet.make()
        // a stream is served only with a slot of its peer's own and of its address's own (over all
        // their connections): one peer cannot fill every slot of the server, nor one host of many ids
        const peerSlots = keyedPermits(perPeerStreams)
        const addressSlots = keyedPermits(perAddressStreams)
        const fork = (effect: Effect.Effect<void>) => FiberSet.run(set, Effect.interruptible(effect))
        // connections open, in all and per source address: past either cap a new one is refused
        // before its handshake (a connection costs a fiber and iroh's state, and ids are free to make)
        const open = { total: 0, from: new Map<string, number>() }
        const admit = (from: string) =>
          Effect.acquireRelease(
            Effect.sync(() => {
              const mine = open.from.get(from) ?? 0
              if (open.total >= maxConnections || mine >= perAddressConnections) return false
              open.total++
              open.from.set(from, mine + 1)
              return true
            }),
            (admitted) =>
              Effect.sync(() => {
                if (!admitted) return
                open.total--
                const left = (open.from.get(from) ?? 1) - 1
                if (left === 0) open.from.delete(from)
                else open.from.set(from, left)
              })
          )
        const serveConnection = (incoming: Iroh.Incoming) =>
          Effect.gen(function*() {
            const from = yield* Effect.tryPromise(() => incoming.remoteAddr()).pipe(Effect.map(sourceOf), Effect.orElseSucceed(() => "unknown"))
            if (!(yield* admit(from))) return yield* Effect.promise(() => incoming.refuse().catch(() => undefined))
            const connection = yield* Effect.tryPromise(async () => (await incoming.accept()).connect())
            const remote = `${IROH_TRANSPORT_TYPE}:${connection.remoteId().toString()}`
            const close = (why: string) => connection.close(1n, textNumbers(why))
            const peer = yield* peerSlots(remote)
            const host = yield* addressSlots(from)
            while (true) {
              const stream = yield* Effect.tryPromise(() => connection.acceptBi())
              const served = serveStream(stream, remote, handler, limit, timeouts, close)
              yield* fork(peer.withPermits(1)(host.withPermits(1)(streams.withPermits(1)(served))))
            }
          }).pipe(Effect.ignore, Effect.scoped)
        yield* fork(
          Effect.gen(function*() {
            while (true) {
              const incoming = yield* Effect.tryPromise(() => endpoint.acceptNext())
              if (incoming === null) return
              yield* fork(serveConnection(incoming))
            }
          }).pipe(Effect.ignore)
        )
        const ticket = iroh.EndpointTicket.fromAddr(new iroh.EndpointAddr(endpoint.id(), null, dialable(endpoint)))
        return { transport_type: IROH_TRANSPORT_TYPE, address: ticket.toString() } satisfies Address
      })

    const serve: TransportShape["serve"] = (bind, handler) => serveOnce(bind, start(bind, handler))

    return { transportType: IROH_TRANSPORT_TYPE, canHandle, send, serve } satisfies TransportShape
  })

/** The iroh transport as the Transport service, with options. */
export const layerIrohWith = (options: IrohTransportOptions): Layer.Layer<Transport> =>
  Layer.scoped(Transport, makeIroh(options))

/** The iroh transport as the Transport service, with the default options (no relays). */
export const layerIroh: Layer.Layer<Transport> = layerIrohWith({})

// ---------------------------------------------------------------------------------------------
// helpers

const ALPN_BYTES: Array<number> = textNumbers(IROH_ALPN)

/**
 * Semaphores of `permits` each, one per key (a peer, an address), kept while some connection of that
 * key holds one: the function returned gives, in a scope, the key's semaphore for that scope.
 */
const keyedPermits = (permits: number) => {
  const held = new Map<string, { readonly semaphore: Effect.Semaphore; refs: number }>()
  return (key: string): Effect.Effect<Effect.Semaphore, never, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.sync(() => {
        let slots = held.get(key)
        if (slots === undefined) held.set(key, slots = { semaphore: Effect.unsafeMakeSemaphore(permits), refs: 0 })
        slots.refs++
        return slots
      }),
      (slots) =>
        Effect.sync(() => {
          if (--slots.refs === 0) held.delete(key)
        })
    ).pipe(Effect.map((slots) => slots.semaphore))
}

/**
 * A client's connection to a peer: the direct addresses it was dialled at, the sends using it, and
 * once it is no longer cached why (it closes when its last user lets go).
 */
interface Cached {
  readonly connection: Promise<Iroh.Connection>
  readonly dialled: ReadonlyArray<string>
  users: number
  retired?: Array<number>
}

/** The connection one send uses, for its timeout to let go of. */
interface Used {
  current?: Cached
  released: boolean
  timedOut: boolean
}

/** Close a retired connection no send uses any more. */
const closeIfDone = (cached: Cached): void => {
  const reason = cached.retired
  if (reason !== undefined && cached.users === 0) cached.connection.then((c) => c.close(0n, reason)).catch(() => undefined)
}

/** Why a client closes a connection: the peer moved (its ticket names none of the addresses dialled), or went silent. */
const MOVED: Array<number> = textNumbers("peer moved")
const SILENT: Array<number> = textNumbers("no response")

/** The IP address a connection comes from (its port dropped), or the relay it comes through. */
const sourceOf = (remote: Iroh.IncomingAddr): string => {
  // relayed connections each count on their own (many honest peers share one relay)
  if (remote.kind !== "ip" || remote.addr === undefined) return `${remote.kind}:${remote.endpointId ?? remote.addr ?? ""}`
  return remote.addr.slice(0, remote.addr.lastIndexOf(":"))
}
