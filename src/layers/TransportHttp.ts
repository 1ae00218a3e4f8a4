/**
 * The HTTP transport: one endpoint, `POST /api/v0`, JSON in and out (plus `GET /health` for the
 * CLI). Server and client on bare node:http: a request handler that runs the sync handler as a
 * fiber, and a keep-alive `Agent` (one connection pool for the transport's life). Bodies are capped
 * (8 MiB by default) in both directions, and nothing a client sends can make the server answer 5xx
 * except a defect in the handler itself, or a server already holding its budget of buffered request
 * bytes (503: stalled uploads cannot pin unbounded memory; a stalled body is dropped, 408). The
 * client's timeout counts inactivity, so a response arriving over a slow but working link is not
 * cut. Our own messages are serialized as they are (their shape is the protocol's by
 * construction); what comes from the other side is decoded with the protocol's schemas, so
 * malformed input is a typed error.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { MalformedMessage, PayloadTooLarge, ServerAlreadyRunning, TransportError } from "../schema/Errors.js"
import { isPubKey } from "../schema/Ids.js"
import type { Address, SyncRequest, SyncResponse } from "../schema/Protocol.js"
import { decodeRequestEither, decodeResponseEither, MAX_MESSAGE_BYTES } from "../schema/Protocol.js"
import type { Handler, SendError, TransportShape } from "../services/Transport.js"
import { Transport } from "../services/Transport.js"

/** The `transport_type` of HTTP addresses. */
export const TRANSPORT_TYPE = "http"

/** The path of the sync endpoint. */
export const API_PATH = "/api/v0"

/** The path of the health endpoint (answers `{"status":"ok"}`). */
export const HEALTH_PATH = "/health"

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

/** The header that announces the sender's device key (see `RequestContext.peer`). */
export const PEER_HEADER = "x-eidetica-peer"

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
    const running = yield* Ref.make<ServerState>({ _tag: "Idle" })

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
        return yield* startServer(bind, handler, serverLimits).pipe(
          Effect.tap((address) => Ref.set(running, { _tag: "Running", address: address.address })),
          Scope.extend(scope),
          Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void))
        )
      }).pipe(Effect.uninterruptible)

    return { transportType: TRANSPORT_TYPE, canHandle, send, serve } satisfies TransportShape
  })

/** The HTTP transport as the Transport service, with options. */
export const layerHttpWith = (options: HttpTransportOptions): Layer.Layer<Transport> =>
  Layer.scoped(Transport, makeHttp(options))

/** The HTTP transport as the Transport service, with the default options. */
export const layerHttp: Layer.Layer<Transport> = layerHttpWith({})

// ---------------------------------------------------------------------------------------------
// server

type ServerState =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Starting"; readonly bind: string }
  | { readonly _tag: "Running"; readonly address: string }

const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/** How much of an oversized request body is read and thrown away (so the client sees the 413) before the connection is cut. */
const DRAIN_LIMIT = 64 * 1024 * 1024

/** How long a connection answered with `connection: close` may take to flush that answer before it is cut. */
const CLOSE_GRACE_MS = 2_000

/** The request-body limits of one server, from the transport's options. */
interface ServerLimits {
  /** The largest single body (413 past it). */
  readonly maxBody: number
  /** The most body bytes held at once over all requests (503 past it). */
  readonly maxBuffered: number
  /** How long a body may go without bytes (408 past it). */
  readonly bodyTimeout: Duration.Duration
}

/** The request-body bytes a running server holds right now, against its limit. */
interface Budget {
  readonly capacity: number
  used: number
}

/** What `readBody` needs: the limits and the server's shared budget. */
interface BodyLimits {
  readonly maxBody: number
  readonly budget: Budget
  /** In milliseconds; `undefined` for none. */
  readonly idleMs: number | undefined
}

const startServer = (
  bind: string,
  handler: Handler,
  limits: ServerLimits
): Effect.Effect<Address, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const { host, port } = yield* parseBind(bind)
    const bodyLimits: BodyLimits = {
      maxBody: limits.maxBody,
      budget: { capacity: limits.maxBuffered, used: 0 },
      idleMs: timerMs(limits.bodyTimeout)
    }
    const runtime = yield* Effect.runtime<never>()
    // Handlers still running when the server has stopped are interrupted and awaited (finalizers
    // run in reverse: this one after the server's close below), so none outlives the scope.
    const running = new Set<Fiber.RuntimeFiber<SyncResponse>>()
    yield* Effect.addFinalizer(() => Fiber.interruptAll(running))
    const server = yield* Effect.acquireRelease(
      Effect.sync(() => Http.createServer({ noDelay: true })),
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
        resume(Effect.fail(new TransportError({ address: bind, operation: "listen", reason: cause.message, cause })))
      server.once("error", onError)
      server.listen({ host, port }, () => {
        server.off("error", onError)
        resume(Effect.void)
      })
    })
    // After a successful listen an error event is not expected; without a listener it would crash the process.
    server.on("error", () => {})
    const fork = Runtime.runFork(runtime)
    const run: Run = (effect) => {
      const fiber = fork(effect)
      running.add(fiber)
      fiber.addObserver(() => running.delete(fiber))
      return fiber
    }
    server.on("request", (request: Http.IncomingMessage, response: Http.ServerResponse) =>
      onRequest(request, response, handler, bodyLimits, run)
    )
    const bound = server.address() as AddressInfo
    return { transport_type: TRANSPORT_TYPE, address: hostPort(host, bound.port) }
  })

type Run = (effect: Effect.Effect<SyncResponse>) => Fiber.RuntimeFiber<SyncResponse>

const onRequest = (
  request: Http.IncomingMessage,
  response: Http.ServerResponse,
  handler: Handler,
  limits: BodyLimits,
  run: Run
): void => {
  const method = request.method ?? "GET"
  const url = request.url ?? "/"
  const query = url.indexOf("?")
  const path = query < 0 ? url : url.slice(0, query)
  if (path === HEALTH_PATH) {
    if (method === "GET" || method === "HEAD") reply(response, 200, JSON.stringify({ status: "ok" }))
    else errorReply(response, 405, `method ${method} not allowed on ${HEALTH_PATH}; use GET`, "GET, HEAD")
    return
  }
  if (path !== API_PATH) {
    errorReply(response, 404, `not found: ${method} ${path.slice(0, 200)}; the sync endpoint is POST ${API_PATH}`)
    return
  }
  if (method !== "POST") {
    errorReply(response, 405, `method ${method} not allowed on ${API_PATH}; use POST`, "POST")
    return
  }
  readBody(request, limits, (body) => {
    switch (body._tag) {
      case "TooLarge":
        return errorReply(response, 413, `request body exceeds the limit of ${limits.maxBody} bytes`)
      case "OverBudget":
        return errorReply(
          response,
          503,
          `server busy: request bodies being received fill its buffer of ${limits.budget.capacity} bytes; try again later`,
          undefined,
          true
        )
      case "Stalled":
        return errorReply(
          response,
          408,
          `request body stalled: no bytes for ${limits.idleMs} ms after ${body.received} bytes; request dropped`,
          undefined,
          true
        )
      case "Aborted":
        return errorReply(response, 400, "request body aborted")
      case "Body":
        break
    }
    if (body.bytes.length === 0) return errorReply(response, 400, "empty body; expected a JSON sync request")
    const decoded = requestOf(body.bytes)
    if (Either.isLeft(decoded)) return errorReply(response, 400, decoded.left)
    const fiber = run(handler(decoded.right, { remoteAddress: remoteOf(request), peer: peerOf(request) }))
    fiber.addObserver((exit) => {
      if (Exit.isSuccess(exit)) {
        let text: string | undefined
        try {
          text = JSON.stringify(exit.value)
        } catch {
          text = undefined
        }
        if (text !== undefined) return reply(response, 200, text)
      } else if (Cause.isInterruptedOnly(exit.cause)) {
        // the client went away (or the server is closing): nobody to answer
        if (!response.headersSent) response.destroy()
        return
      }
      // A handler must answer every request with a response; a defect is our bug, and the
      // only path to a 5xx.
      errorReply(response, 500, "internal error while handling the request")
    })
    response.once("close", () => {
      if (!response.writableFinished) fiber.unsafeInterruptAsFork(FiberId.none)
    })
  })
}

// `close` answers with `connection: close`: node ends the connection once the answer is flushed,
// and the grace timer cuts it if that does not happen (a peer that reads nothing).
const reply = (response: Http.ServerResponse, status: number, text: string, allow?: string, close = false): void => {
  if (response.headersSent || response.destroyed) return
  const socket = close ? response.socket : null
  // encoded once: its length is the Content-Length (a page can be most of a megabyte)
  const body = Buffer.from(text, "utf8")
  const headers: Http.OutgoingHttpHeaders = { "content-type": "application/json", "content-length": body.length }
  if (allow !== undefined) headers["allow"] = allow
  if (close) headers["connection"] = "close"
  response.writeHead(status, headers)
  response.end(body)
  if (socket !== null) setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref()
}

const errorReply = (response: Http.ServerResponse, status: number, message: string, allow?: string, close = false): void =>
  reply(response, status, JSON.stringify({ Error: message } satisfies SyncResponse), allow, close)

type BodyResult =
  | { readonly _tag: "Body"; readonly bytes: Uint8Array }
  | { readonly _tag: "TooLarge" }
  | { readonly _tag: "OverBudget" }
  | { readonly _tag: "Stalled"; readonly received: number }
  | { readonly _tag: "Aborted" }

// Reads the request body into at most `maxBody` bytes, each byte kept counted against the server's
// budget and given back on every way out (body read, too large, over budget, stalled, aborted,
// connection closed). Past `maxBody` it stops keeping data and drains the rest (up to DRAIN_LIMIT)
// so the client, still writing, can read the 413 answer; a body that would pass the budget is
// refused at once (503) and its connection closed, as is one that stalls for `idleMs` (408).
const readBody = (incoming: Http.IncomingMessage, limits: BodyLimits, done: (result: BodyResult) => void): void => {
  const { budget, maxBody } = limits
  const chunks: Array<Buffer> = []
  let size = 0
  let settled = false
  let idle: ReturnType<typeof setTimeout> | undefined
  const settle = (result: BodyResult) => {
    if (settled) return
    settled = true
    incoming.off("data", onData)
    incoming.off("end", onEnd)
    incoming.off("error", onAborted)
    incoming.off("close", onAborted)
    if (idle !== undefined) clearTimeout(idle)
    // the one place bytes leave the budget; a whole body is handed over and decoded at once
    budget.used -= size
    size = 0
    chunks.length = 0
    if (result._tag === "TooLarge") drain(incoming, limits.idleMs)
    done(result)
  }
  const onData = (chunk: Buffer) => {
    if (size + chunk.length > maxBody) return settle({ _tag: "TooLarge" })
    if (budget.used + chunk.length > budget.capacity) return settle({ _tag: "OverBudget" })
    budget.used += chunk.length
    size += chunk.length
    chunks.push(chunk)
    idle?.refresh()
  }
  const onEnd = () => settle({ _tag: "Body", bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) })
  const onAborted = () => settle({ _tag: "Aborted" })
  const declared = Number(incoming.headers["content-length"])
  if (Number.isFinite(declared)) {
    if (declared > maxBody) return settle({ _tag: "TooLarge" })
    if (declared > budget.capacity - budget.used) return settle({ _tag: "OverBudget" })
  }
  incoming.on("data", onData)
  incoming.on("end", onEnd)
  incoming.on("error", onAborted)
  incoming.on("close", onAborted)
  if (limits.idleMs !== undefined) {
    idle = setTimeout(() => settle({ _tag: "Stalled", received: size }), limits.idleMs)
  }
}

// Reads and throws away the rest of a refused body; a drain that stalls for `idleMs` is cut too.
const drain = (incoming: Http.IncomingMessage, idleMs: number | undefined): void => {
  let drained = 0
  const stop = () => {
    if (idle !== undefined) clearTimeout(idle)
  }
  const idle = idleMs === undefined ? undefined : setTimeout(() => {
    stop()
    incoming.socket.destroy()
  }, idleMs)
  incoming.on("data", (chunk: Buffer) => {
    drained += chunk.length
    idle?.refresh()
    if (drained > DRAIN_LIMIT) incoming.socket.destroy()
  })
  incoming.on("end", stop)
  incoming.on("close", stop)
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

// Parse and decode a request body. Both steps are meant to be total; the catch is the last guard,
// since a throw here, in a socket callback outside any fiber, would take the whole process down.
const requestOf = (bytes: Uint8Array): Either.Either<SyncRequest, string> => {
  try {
    return Either.flatMap(parseJson(bytes), (json) => Either.mapLeft(decodeRequestEither(json), (e) => e.message))
  } catch {
    return Either.left("the body could not be read as a sync request")
  }
}

const peerOf = (incoming: Http.IncomingMessage): string | undefined => {
  const value = incoming.headers[PEER_HEADER]
  return isPubKey(value) ? value : undefined
}

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
        operation: "listen",
        reason: "invalid bind address; expected host:port, e.g. 127.0.0.1:0 or [::1]:0"
      })
    )
}

const hostPort = (host: string, port: number): string => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`)

// ---------------------------------------------------------------------------------------------
// client

interface Client {
  readonly agent: Http.Agent
  readonly limit: number
  /** Of inactivity: see `HttpTransportOptions.timeout`. */
  readonly timeout: Duration.Duration
  readonly totalTimeout: Duration.Duration
  /** The headers of every request but its length. */
  readonly headers: Http.OutgoingHttpHeaders
  /** Parsed `host:port` addresses (a few peers, asked again and again). */
  readonly targets: Map<string, Target | undefined>
}

interface Target {
  readonly host: string
  readonly port: number
}

interface Reply {
  readonly status: number
  readonly text: string
}

const targetOf = (client: Client, address: string): Target | undefined => {
  if (client.targets.has(address)) return client.targets.get(address)
  const match = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(address) ?? /^([^:[\]\s/?#@]+):(\d{1,5})$/.exec(address)
  const port = match ? Number(match[2]) : NaN
  const target = match && port > 0 && port <= 65535 ? { host: match[1]!, port } : undefined
  if (client.targets.size >= 1_024) client.targets.clear()
  client.targets.set(address, target)
  return target
}

/** Errors of a connection attempt (as opposed to a connection that failed later). */
const CONNECT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
  "ETIMEDOUT"
])

/** The longest delay a node timer takes (about 24.8 days); longer timeouts mean none. */
const MAX_TIMER_MS = 2_147_483_647

/** A duration as a node timer's delay, or `undefined` for none (too long for a timer). */
const timerMs = (duration: Duration.Duration): number | undefined => {
  const ms = Duration.toMillis(duration)
  return ms < MAX_TIMER_MS ? ms : undefined
}

/**
 * POST one body and read the answer within the limit: a Content-Length over the limit, or a
 * chunked body passing it, cuts the connection and fails with PayloadTooLarge. A request that
 * fails on a reused keep-alive connection before any answer (the server closed it meanwhile) is
 * sent once more on a fresh one. The timeout counts inactivity: connecting, the request written
 * out, the response headers and each chunk of the response body start it over, so a response that
 * keeps arriving over a slow link is not cut (but by the total timeout). The upload itself cannot
 * be followed once the body sits in the kernel's send buffer (all of a page does), so a request
 * body must still reach the server and be answered within one timeout. Interruption and either
 * timeout destroy the request.
 */
const post = (client: Client, target: Target, address: string, body: Buffer): Effect.Effect<Reply, TransportError | PayloadTooLarge> =>
  Effect.async<Reply, TransportError | PayloadTooLarge>((resume) => {
    const { limit } = client
    let finished = false
    let current: Http.ClientRequest | undefined
    let idle: ReturnType<typeof setTimeout> | undefined
    let total: ReturnType<typeof setTimeout> | undefined
    /** Response bytes read so far (for the timeout's message). */
    let received: number | undefined
    const finish = (effect: Effect.Effect<Reply, TransportError | PayloadTooLarge>) => {
      if (finished) return
      finished = true
      if (idle !== undefined) clearTimeout(idle)
      if (total !== undefined) clearTimeout(total)
      resume(effect)
    }
    const fail = (reason: string, cause?: unknown) =>
      finish(Effect.fail(new TransportError({ address, reason, ...(cause === undefined ? {} : { cause }) })))
    const progress = () => idle?.refresh()
    const attempt = (retry: boolean) => {
      let answered = false
      const request = Http.request({
        agent: client.agent,
        host: target.host,
        port: target.port,
        method: "POST",
        path: API_PATH,
        headers: { ...client.headers, "content-length": body.length }
      })
      current = request
      request.on("socket", (socket) => {
        if (socket.connecting) socket.once("connect", progress)
      })
      request.on("finish", progress)
      request.on("response", (response) => {
        answered = true
        received = 0
        progress()
        const declared = Number(response.headers["content-length"])
        if (Number.isFinite(declared) && declared > limit) {
          response.destroy()
          return finish(Effect.fail(new PayloadTooLarge({ limit })))
        }
        const chunks: Array<Buffer> = []
        let size = 0
        response.on("data", (chunk: Buffer) => {
          if (finished) return
          progress()
          size += chunk.length
          received = size
          if (size > limit) {
            response.destroy()
            finish(Effect.fail(new PayloadTooLarge({ limit })))
          } else chunks.push(chunk)
        })
        response.on("end", () => {
          const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)
          finish(Effect.succeed({ status: response.statusCode ?? 0, text: bytes.toString("utf8") }))
        })
        response.on("error", (error) => fail(`reading the response: ${describeCause(error)}`, error))
        response.on("close", () => {
          if (!response.complete) fail("the connection closed before the response was complete")
        })
      })
      request.on("error", (error: NodeJS.ErrnoException) => {
        // once answered, the response's own events decide (a server that refuses a body early,
        // 413 or 503, may close while the rest is still being written: its answer is what counts)
        if (finished || answered) return
        if (retry && request.reusedSocket && (error.code === "ECONNRESET" || error.code === "EPIPE")) {
          return attempt(false)
        }
        fail(
          error.code !== undefined && CONNECT_CODES.has(error.code)
            ? `${error.code} (${describeCause(error)})`
            : `the request failed: ${describeCause(error)}`,
          error
        )
      })
      request.end(body)
    }
    const idleMs = timerMs(client.timeout)
    if (idleMs !== undefined) {
      idle = setTimeout(() => {
        fail(
          `no response within ${Duration.format(client.timeout)}${
            received === undefined ? "" : ` (the response stalled after ${received} bytes)`
          }`
        )
        current?.destroy()
      }, idleMs)
    }
    const totalMs = timerMs(client.totalTimeout)
    if (totalMs !== undefined) {
      total = setTimeout(() => {
        fail(`no complete response within the total timeout of ${Duration.format(client.totalTimeout)}`)
        current?.destroy()
      }, totalMs)
    }
    attempt(true)
    return Effect.sync(() => {
      finished = true
      if (idle !== undefined) clearTimeout(idle)
      if (total !== undefined) clearTimeout(total)
      current?.destroy()
    })
  })

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

// The most specific readable reason: the socket error (ECONNREFUSED …) may sit in `cause`.
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
