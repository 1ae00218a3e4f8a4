/**
 * The HTTP transport: one endpoint, `POST /api/v0`, JSON in and out (plus `GET /health` for the
 * CLI). Server (internal/HttpServer.ts) and client (internal/HttpClient.ts) on bare node:http: a request handler that runs the sync handler as a
 * fiber, and a keep-alive `Agent` (one connection pool for the transport's life). Bodies are capped
 * (8 MiB by default) in both directions, and nothing a client sends can make the server answer 5xx
 * except a defect in the handler itself, or a server already holding its budget of buffered request
 * bytes (503: stalled uploads cannot pin unbounded memory; a stalled body is dropped, 408). The
 * client's timeout counts inactivity, so a response arriving over a slow but working link is not
 * cut. Our own messages are serialized as they are (their shape is the protocol's by
 * construction); what comes from the other side is decoded with the protocol's schemas, so
 * malformed input is a typed error.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import { MalformedMessage, PayloadTooLarge, TransportError } from "../schema/Errors.js"
import { isPubKey } from "../schema/Ids.js"
import type { Address } from "../schema/Address.js"
import type { SyncResponse } from "../schema/Protocol.js"
import { decodeResponseEither, MAX_MESSAGE_BYTES } from "../schema/Protocol.js"
import type { SendError, TransportShape } from "../services/Transport.js"
import { Transport } from "../services/Transport.js"
import { type Client, post, statusReason, targetOf } from "./internal/HttpClient.js"
import { type ServerLimits, startServer } from "./internal/HttpServer.js"
import { makeServeOnce } from "./internal/ServeOnce.js"
import { describeCause, PEER_HEADER, TRANSPORT_TYPE } from "./internal/HttpWire.js"

export { API_PATH, HEALTH_PATH, PEER_HEADER, TRANSPORT_TYPE } from "./internal/HttpWire.js"

/** Options of the HTTP transport. */
export interface HttpTransportOptions {
  /**
   * How long one `send` may go without progress (connecting, writing the request, the response
   * headers, each chunk of the response body) before it fails. A response that keeps arriving is
   * not cut, however slow the link (up to `totalTimeout`). Default 30 seconds.
   */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * The longest one `send` may take in all, however steadily it progresses: a backstop against a
   * peer that trickles its answer to hold the request open. Default 10 minutes, or `timeout` if
   * that is longer (a 900 KB page at 1.5 KB/s).
   */
  readonly totalTimeout?: Duration.DurationInput | undefined
  /** The largest request or response body accepted, in bytes. Default 8 MiB. */
  readonly maxBodyBytes?: number | undefined
  /**
   * Server: the most request-body bytes held at once, summed over all requests being read. A
   * request whose body would pass it is answered 503 at once and its connection closed. Default
   * 32 MiB (a legitimate page is under 1 MiB, so this is dozens of concurrent pushes).
   */
  readonly maxBufferedBytes?: number | undefined
  /**
   * Server: how long a request body may stall (no bytes arriving) before the request is answered
   * 408 and its connection closed, giving back what it held of `maxBufferedBytes`. Default 30
   * seconds. (Node's own `requestTimeout`, 300 seconds for a whole request, stays as the outer cap.)
   */
  readonly bodyTimeout?: Duration.DurationInput | undefined
  /**
   * Our device key, announced to servers in the `x-eidetica-peer` header of every request (an
   * unauthenticated hint; a server uses it not to relay our pushes back to us).
   */
  readonly announce?: string | undefined
}

/** The default of `HttpTransportOptions.timeout` (inactivity of one send). */
export const DEFAULT_TIMEOUT: Duration.Duration = Duration.seconds(30)

/** The default of `HttpTransportOptions.totalTimeout` (the whole of one send). */
export const DEFAULT_TOTAL_TIMEOUT: Duration.Duration = Duration.minutes(10)

/** The default of `HttpTransportOptions.maxBufferedBytes` (request bytes a server holds at once). */
export const DEFAULT_MAX_BUFFERED_BYTES = 32 * 1024 * 1024

/** The default of `HttpTransportOptions.bodyTimeout` (a stalled request body). */
export const DEFAULT_BODY_TIMEOUT: Duration.Duration = Duration.seconds(30)


/** Build an HTTP transport; its client pool and any server it starts live until the scope closes. */
export const makeHttp = (options: HttpTransportOptions = {}): Effect.Effect<TransportShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const timeout = Duration.decode(options.timeout ?? DEFAULT_TIMEOUT)
    const totalTimeout = options.totalTimeout !== undefined
      ? Duration.decode(options.totalTimeout)
      : Duration.max(DEFAULT_TOTAL_TIMEOUT, timeout)
    const limit = options.maxBodyBytes ?? MAX_MESSAGE_BYTES
    const serverLimits: ServerLimits = {
      maxBody: limit,
      maxBuffered: options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES,
      bodyTimeout: Duration.decode(options.bodyTimeout ?? DEFAULT_BODY_TIMEOUT)
    }
    const agent = yield* Effect.acquireRelease(
      Effect.sync(() => new Http.Agent({ keepAlive: true, noDelay: true })),
      (agent) => Effect.sync(() => agent.destroy())
    )
    const headers: Http.OutgoingHttpHeaders = { "content-type": "application/json" }
    if (options.announce !== undefined && isPubKey(options.announce)) headers[PEER_HEADER] = options.announce
    const client: Client = { agent, limit, timeout, totalTimeout, headers, targets: new Map() }
    const serveOnce = yield* makeServeOnce

    const canHandle = (address: Address): boolean => address.transport_type === TRANSPORT_TYPE

    const send: TransportShape["send"] = (address, request) =>
      Effect.suspend((): Effect.Effect<SyncResponse, SendError> => {
        if (!canHandle(address)) {
          return Effect.fail(
            new TransportError({
              address: address.address,
              reason: `not an http address (transport_type ${JSON.stringify(address.transport_type)})`
            })
          )
        }
        const target = targetOf(client, address.address)
        if (target === undefined) {
          return Effect.fail(
            new TransportError({ address: address.address, reason: "invalid http address; expected host:port" })
          )
        }
        // our own request: its shape is the protocol's by construction, so it is not validated again
        const body = Buffer.from(JSON.stringify(request), "utf8")
        if (body.length > limit) return Effect.fail(new PayloadTooLarge({ limit }))
        return Effect.flatMap(post(client, target, address.address, body), (reply): Effect.Effect<SyncResponse, SendError> => {
          if (reply.status < 200 || reply.status >= 300) {
            return Effect.fail(
              new TransportError({ address: address.address, reason: statusReason(reply.status, reply.text) })
            )
          }
          let json: unknown
          try {
            json = JSON.parse(reply.text)
          } catch (cause) {
            return Effect.fail(new MalformedMessage({ detail: `the response is not JSON (${describeCause(cause)})` }))
          }
          return decodeResponseEither(json)
        })
      })

    const serve: TransportShape["serve"] = (bind, handler) => serveOnce(bind, startServer(bind, handler, serverLimits))

    return { transportType: TRANSPORT_TYPE, canHandle, send, serve } satisfies TransportShape
  })

/** The HTTP transport as the Transport service, with options. */
export const layerHttpWith = (options: HttpTransportOptions): Layer.Layer<Transport> =>
  Layer.scoped(Transport, makeHttp(options))

/** The HTTP transport as the Transport service, with the default options. */
export const layerHttp: Layer.Layer<Transport> = layerHttpWith({})
