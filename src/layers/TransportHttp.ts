/**
 * The HTTP transport: one endpoint, `POST /api/v0`, JSON in and out (plus `GET /health` for the
 * CLI). Server on node:http through @effect/platform-node; client on undici through
 * @effect/platform's HttpClient, one connection pool for the transport's life. Bodies are capped
 * (8 MiB by default) in both directions, and nothing a client sends can make the server answer 5xx
 * except a defect in the handler itself.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { MalformedMessage, PayloadTooLarge, ServerAlreadyRunning, TransportError } from "../schema/Errors.js"
import type { Address, SyncResponse } from "../schema/Protocol.js"
import {
  decodeRequestEither,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  MAX_MESSAGE_BYTES
} from "../schema/Protocol.js"
import type { Handler, TransportShape } from "../services/Transport.js"
import { Transport } from "../services/Transport.js"

/** The `transport_type` of HTTP addresses. */
export const TRANSPORT_TYPE = "http"

/** The path of the sync endpoint. */
export const API_PATH = "/api/v0"

/** The path of the health endpoint (answers `{"status":"ok"}`). */
export const HEALTH_PATH = "/health"

/** Options of the HTTP transport. */
export interface HttpTransportOptions {
  /** How long one `send` may take, connection to last response byte. Default 30 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /** The largest request or response body accepted, in bytes. Default 8 MiB. */
  readonly maxBodyBytes?: number | undefined
}

/** Build an HTTP transport; its client pool and any server it starts live until the scope closes. */
export const makeHttp = (options: HttpTransportOptions = {}): Effect.Effect<TransportShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const timeout = Duration.decode(options.timeout ?? Duration.seconds(30))
    const limit = options.maxBodyBytes ?? MAX_MESSAGE_BYTES
    const dispatcher = yield* NodeHttpClient.makeDispatcher
    const client = NodeHttpClient.makeUndici(dispatcher).pipe(HttpClient.withTracerPropagation(false))
    const running = yield* Ref.make<ServerState>({ _tag: "Idle" })

    const canHandle = (address: Address): boolean => address.transport_type === TRANSPORT_TYPE

    const send: TransportShape["send"] = (address, request) =>
      Effect.gen(function*() {
        if (!canHandle(address)) {
          return yield* new TransportError({
            address: address.address,
            reason: `not an http address (transport_type ${JSON.stringify(address.transport_type)})`
          })
        }
        const body = encoder.encode(JSON.stringify(encodeRequest(request)))
        if (body.length > limit) return yield* new PayloadTooLarge({ limit })
        const response = yield* client
          .execute(
            HttpClientRequest.post(`http://${address.address}${API_PATH}`).pipe(
              HttpClientRequest.bodyUint8Array(body, "application/json")
            )
          )
          .pipe(
            Effect.mapError(
              (error) =>
                new TransportError({ address: address.address, reason: describeCause(error), cause: error })
            )
          )
        const text = yield* readLimited(response, address.address, limit)
        if (response.status < 200 || response.status >= 300) {
          return yield* new TransportError({ address: address.address, reason: statusReason(response.status, text) })
        }
        const json = yield* Effect.try({
          try: () => JSON.parse(text) as unknown,
          catch: (cause) =>
            new MalformedMessage({ detail: `the response is not JSON (${describeCause(cause)})` })
        })
        return yield* decodeResponse(json)
      }).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new TransportError({
              address: address.address,
              reason: `no response within ${Duration.format(timeout)}`
            })
        })
      )

    const serve: TransportShape["serve"] = (bind, handler) =>
      Effect.gen(function*() {
        const claimed = yield* Ref.modify(running, (state): [ServerState, ServerState] =>
          state._tag === "Idle" ? [state, { _tag: "Starting", bind }] : [state, state]
        )
        if (claimed._tag !== "Idle") {
          return yield* new ServerAlreadyRunning({
            address: claimed._tag === "Running" ? claimed.address : claimed.bind
          })
        }
        // The server gets its own child scope so a failed start releases everything at once,
        // rather than when the caller's scope eventually closes.
        const parent = yield* Effect.scope
        const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
        yield* Scope.addFinalizer(scope, Ref.set(running, { _tag: "Idle" }))
        return yield* startServer(bind, handler, limit).pipe(
          Effect.tap((address) => Ref.set(running, { _tag: "Running", address: address.address })),
          Scope.extend(scope),
          Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void))
        )
      }).pipe(Effect.uninterruptible)

    return { transportType: TRANSPORT_TYPE, canHandle, send, serve } satisfies TransportShape
  })

/** The HTTP transport as the Transport service. */
export const layerHttp = (options: HttpTransportOptions = {}): Layer.Layer<Transport> =>
  Layer.scoped(Transport, makeHttp(options))

// ---------------------------------------------------------------------------------------------
// server

type ServerState =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Starting"; readonly bind: string }
  | { readonly _tag: "Running"; readonly address: string }

const encoder = new TextEncoder()
const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/** How much of an oversized request body is read and thrown away (so the client sees the 413) before the connection is cut. */
const DRAIN_LIMIT = 64 * 1024 * 1024

const startServer = (
  bind: string,
  handler: Handler,
  limit: number
): Effect.Effect<Address, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const { host, port } = yield* parseBind(bind)
    const server = yield* Effect.acquireRelease(
      Effect.sync(() => Http.createServer()),
      (server) =>
        Effect.async<void>((resume) => {
          // close() stops accepting and waits for open connections; cutting them all is what
          // releases the port now instead of after the clients' keep-alive timeouts.
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
    yield* Effect.async<void, TransportError>((resume) => {
      const onError = (cause: Error) =>
        resume(Effect.fail(new TransportError({ address: bind, reason: `cannot listen: ${cause.message}`, cause })))
      server.once("error", onError)
      server.listen({ host, port }, () => {
        server.off("error", onError)
        resume(Effect.void)
      })
    })
    // After a successful listen an error event is not expected; without a listener it would crash the process.
    server.on("error", () => {})
    const nodeHandler = yield* NodeHttpServer.makeHandler(app(handler, limit))
    server.on("request", nodeHandler)
    const bound = server.address() as AddressInfo
    return { transport_type: TRANSPORT_TYPE, address: hostPort(host, bound.port) }
  })

const app = (handler: Handler, limit: number) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const path = request.url.split("?")[0]
    if (path === HEALTH_PATH) {
      return request.method === "GET" || request.method === "HEAD"
        ? json(200, { status: "ok" })
        : withAllow(errorReply(405, `method ${request.method} not allowed on ${HEALTH_PATH}; use GET`), "GET, HEAD")
    }
    if (path !== API_PATH) {
      return errorReply(404, `not found: ${request.method} ${path.slice(0, 200)}; the sync endpoint is POST ${API_PATH}`)
    }
    if (request.method !== "POST") {
      return withAllow(errorReply(405, `method ${request.method} not allowed on ${API_PATH}; use POST`), "POST")
    }
    const incoming = NodeHttpServerRequest.toIncomingMessage(request)
    const body = yield* readBody(incoming, limit)
    switch (body._tag) {
      case "TooLarge":
        return errorReply(413, `request body exceeds the limit of ${limit} bytes`)
      case "Aborted":
        return errorReply(400, "request body aborted")
      case "Body":
        break
    }
    if (body.bytes.length === 0) return errorReply(400, "empty body; expected a JSON sync request")
    const parsed = parseJson(body.bytes)
    if (Either.isLeft(parsed)) return errorReply(400, parsed.left)
    const decoded = decodeRequestEither(parsed.right)
    if (Either.isLeft(decoded)) return errorReply(400, decoded.left.message)
    const response = yield* handler(decoded.right, { remoteAddress: remoteOf(incoming) })
    return json(200, encodeResponse(response))
  }).pipe(
    // A handler must answer every request with a response; a defect here is our bug, and the
    // only path to a 5xx. Interruption means the client went away: nobody to answer.
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.interrupt
        : Effect.succeed(errorReply(500, "internal error while handling the request"))
    )
  )

type BodyResult =
  | { readonly _tag: "Body"; readonly bytes: Uint8Array }
  | { readonly _tag: "TooLarge" }
  | { readonly _tag: "Aborted" }

// Reads the request body into at most `limit` bytes; past that it stops keeping data and drains
// the rest (up to DRAIN_LIMIT) so the client, still writing, can read the 413 answer.
const readBody = (incoming: Http.IncomingMessage, limit: number): Effect.Effect<BodyResult> =>
  Effect.async<BodyResult>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const cleanup = () => {
      incoming.off("data", onData)
      incoming.off("end", onEnd)
      incoming.off("error", onError)
    }
    const tooLarge = () => {
      cleanup()
      chunks.length = 0
      drain(incoming)
      resume(Effect.succeed({ _tag: "TooLarge" }))
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) tooLarge()
      else chunks.push(chunk)
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed({ _tag: "Body", bytes: Buffer.concat(chunks, size) }))
    }
    const onError = () => {
      cleanup()
      resume(Effect.succeed({ _tag: "Aborted" }))
    }
    const declared = Number(incoming.headers["content-length"])
    if (Number.isFinite(declared) && declared > limit) {
      tooLarge()
      return
    }
    incoming.on("data", onData)
    incoming.on("end", onEnd)
    incoming.on("error", onError)
    return Effect.sync(cleanup)
  })

const drain = (incoming: Http.IncomingMessage): void => {
  let drained = 0
  incoming.on("data", (chunk: Buffer) => {
    drained += chunk.length
    if (drained > DRAIN_LIMIT) incoming.socket.destroy()
  })
  incoming.on("error", () => {})
  incoming.resume()
}

const parseJson = (bytes: Uint8Array): Either.Either<unknown, string> => {
  let text: string
  try {
    text = strictUtf8.decode(bytes)
  } catch {
    return Either.left("the body is not valid UTF-8")
  }
  try {
    return Either.right(JSON.parse(text) as unknown)
  } catch (cause) {
    return Either.left(`malformed JSON: ${cause instanceof Error ? cause.message : String(cause)}`)
  }
}

const json = (status: number, body: unknown): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.text(JSON.stringify(body), { status, contentType: "application/json" })

const errorReply = (status: number, message: string): HttpServerResponse.HttpServerResponse =>
  json(status, { Error: message } satisfies SyncResponse)

const withAllow = (response: HttpServerResponse.HttpServerResponse, allow: string) =>
  HttpServerResponse.setHeader(response, "allow", allow)

const remoteOf = (incoming: Http.IncomingMessage): string | undefined => {
  const { remoteAddress, remotePort } = incoming.socket
  return remoteAddress === undefined
    ? undefined
    : remotePort === undefined
    ? remoteAddress
    : hostPort(remoteAddress, remotePort)
}

const parseBind = (bind: string): Effect.Effect<{ host: string; port: number }, TransportError> => {
  const match = /^\[([^\]]+)\]:(\d{1,5})$/.exec(bind) ?? /^([^:[\]\s]+):(\d{1,5})$/.exec(bind)
  const port = match ? Number(match[2]) : NaN
  return match && port <= 65535
    ? Effect.succeed({ host: match[1]!, port })
    : Effect.fail(
      new TransportError({
        address: bind,
        reason: "invalid bind address; expected host:port, e.g. 127.0.0.1:0 or [::1]:0"
      })
    )
}

const hostPort = (host: string, port: number): string => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`)

// ---------------------------------------------------------------------------------------------
// client

// Reads a response body within the limit. With a Content-Length (our server always sends one) the
// size is known up front and the plain text read is used, which is about twice as fast as the
// stream; without one the stream is read and fails as soon as it passes the limit (its finalizer
// then destroys the socket, so no more of it is received).
const readLimited = (
  response: HttpClientResponse.HttpClientResponse,
  address: string,
  limit: number
): Effect.Effect<string, TransportError | PayloadTooLarge> => {
  const declared = Number(response.headers["content-length"] ?? NaN)
  if (Number.isFinite(declared) && declared <= limit) {
    return Effect.mapError(
      response.text,
      (error) => new TransportError({ address, reason: `reading the response: ${describeCause(error)}`, cause: error })
    )
  }
  if (Number.isFinite(declared)) {
    // Read at most one chunk so the stream's finalizer destroys the body's socket.
    return response.stream.pipe(
      Stream.take(1),
      Stream.runDrain,
      Effect.ignore,
      Effect.zipRight(Effect.fail(new PayloadTooLarge({ limit })))
    )
  }
  return readStreamLimited(response, address, limit)
}

const readStreamLimited = (
  response: HttpClientResponse.HttpClientResponse,
  address: string,
  limit: number
): Effect.Effect<string, TransportError | PayloadTooLarge> =>
  response.stream.pipe(
    Stream.mapError(
      (error) => new TransportError({ address, reason: `reading the response: ${describeCause(error)}`, cause: error })
    ),
    Stream.runFoldEffect(
      { chunks: [] as Array<Uint8Array>, size: 0 },
      (acc, chunk): Effect.Effect<{ chunks: Array<Uint8Array>; size: number }, PayloadTooLarge> => {
        acc.size += chunk.length
        if (acc.size > limit) return Effect.fail(new PayloadTooLarge({ limit }))
        acc.chunks.push(chunk)
        return Effect.succeed(acc)
      }
    ),
    Effect.map(({ chunks, size }) => Buffer.concat(chunks, size).toString("utf8"))
  )

const statusReason = (status: number, text: string): string => {
  try {
    const body = JSON.parse(text) as unknown
    if (typeof body === "object" && body !== null && "Error" in body && typeof body.Error === "string") {
      return `HTTP ${status}: ${body.Error}`
    }
  } catch {
    // not JSON: fall through to the bare status
  }
  return `HTTP ${status}`
}

// The most specific readable reason: undici puts the socket error (ECONNREFUSED …) in `cause`.
const describeCause = (error: unknown): string => {
  const seen: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    if (current instanceof Error) {
      const code = "code" in current && typeof current.code === "string" ? current.code : undefined
      const text = current.message || code || current.name
      if (text && !seen.includes(text)) seen.push(text)
      current = "cause" in current ? current.cause : undefined
    } else {
      seen.push(String(current))
      break
    }
  }
  // The innermost cause is the socket-level one; keep the outer ones only as context.
  return seen.length === 0 ? "unknown error" : seen.reverse().join(" <- ")
}
