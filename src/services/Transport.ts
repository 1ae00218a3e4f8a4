/**
 * The Transport port: send a sync request to an address and get the response; serve a handler
 * on a bound address until the scope closes. Layers: HTTP (`layers/TransportHttp`), iroh and a
 * simulated network. `TransportRouter` picks, among the enabled transports, the first that
 * handles an address's `transport_type`.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type {
  MalformedMessage,
  PayloadTooLarge,
  ServerAlreadyRunning,
  TransportError
} from "../schema/Errors.js"
import { NoTransportEnabled, NoTransportForAddress } from "../schema/Errors.js"
import type { Address } from "../schema/Address.js"
import type { SyncRequest, SyncResponse } from "../schema/Protocol.js"

/** What a server knows about the connection a request came in on. */
export interface RequestContext {
  /** The remote socket address as the transport sees it (unauthenticated). */
  readonly remoteAddress?: string | undefined
  /**
   * The sender's device key as the sender announced it, when the transport carries one. It is
   * NOT authenticated: use it only as a hint (the server uses it not to relay pushed entries back
   * to the peer that pushed them), never to grant anything.
   */
  readonly peer?: string | undefined
}

/** Answers one request. It never fails: problems are answered as `{"Error": …}` responses. */
export type Handler = (request: SyncRequest, context: RequestContext) => Effect.Effect<SyncResponse>

/** The errors `send` may fail with. */
export type SendError = TransportError | MalformedMessage | PayloadTooLarge

/** The errors `serve` may fail with. */
export type ServeError = TransportError | ServerAlreadyRunning

/** The Transport service interface. */
export interface TransportShape {
  /** The `transport_type` of the addresses this transport handles (`"http"`, `"iroh"`, `"sim"`). */
  readonly transportType: string
  /** Whether this transport can reach the address. */
  readonly canHandle: (address: Address) => boolean
  /** Send one request and wait for its response. */
  readonly send: (address: Address, request: SyncRequest) => Effect.Effect<SyncResponse, SendError>
  /**
   * Serve `handler` on `bind` (for http `host:port`, port 0 for an ephemeral one) until the
   * scope closes, which stops the server and releases the address. Returns the bound address.
   */
  readonly serve: (bind: string, handler: Handler) => Effect.Effect<Address, ServeError, Scope.Scope>
}

/** The Transport service: one transport implementation. */
export class Transport extends Context.Tag("eidetica-ts/Transport")<Transport, TransportShape>() {}

/** An address as one string, `http:127.0.0.1:8080`, for messages and map keys. */
export const formatAddress = (address: Address): string => `${address.transport_type}:${address.address}`

/** An immutable, ordered set of enabled transports that routes each address to the first that handles it. */
export class TransportRouter extends Data.Class<{ readonly transports: ReadonlyArray<TransportShape> }> {
  /** A router over these transports, in priority order. */
  static make(...transports: ReadonlyArray<TransportShape>): TransportRouter {
    return new TransportRouter({ transports })
  }

  /** A router with no transport enabled. */
  static readonly empty: TransportRouter = new TransportRouter({ transports: [] })

  /** This router with one more transport, tried after the ones already enabled. */
  add(transport: TransportShape): TransportRouter {
    return new TransportRouter({ transports: [...this.transports, transport] })
  }

  /** Whether any transport is enabled. */
  get isEmpty(): boolean {
    return this.transports.length === 0
  }

  /** The first transport whose `canHandle` accepts the address. */
  select(address: Address): Effect.Effect<TransportShape, NoTransportEnabled | NoTransportForAddress> {
    if (this.transports.length === 0) return Effect.fail(new NoTransportEnabled())
    const found = this.transports.find((transport) => transport.canHandle(address))
    return found === undefined
      ? Effect.fail(new NoTransportForAddress({ address: formatAddress(address) }))
      : Effect.succeed(found)
  }

  /** Send through the first transport that handles the address. */
  send(
    address: Address,
    request: SyncRequest
  ): Effect.Effect<SyncResponse, SendError | NoTransportEnabled | NoTransportForAddress> {
    return Effect.flatMap(this.select(address), (transport) => transport.send(address, request))
  }
}
