/**
 * The HTTP transport's server on bare node:http: `POST /api/v0` runs the sync handler as a fiber,
 * `GET /health` answers ok. Request bodies are capped (413), count against a server-wide budget
 * (503 past it) and are dropped when they stall (408); nothing a client sends makes it answer 5xx.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { TransportError } from "../../schema/Errors.js"
import { isPubKey } from "../../schema/Ids.js"
import type { Address } from "../../schema/Address.js"
import type { SyncResponse } from "../../schema/Protocol.js"
import type { Handler } from "../../services/Transport.js"
import { API_PATH, HEALTH_PATH, PEER_HEADER, timerMs, TRANSPORT_TYPE } from "./HttpWire.js"
import { requestOfBytes } from "./SyncWire.js"


/** How much of an oversized request body is read and thrown away (so the client sees the 413) before the connection is cut. */
const DRAIN_LIMIT = 64 * 1024 * 1024

/** How long a connection answered with `connection: close` may take to flush that answer before it is cut. */
const CLOSE_GRACE_MS = 2_000

/** The request-body limits of one server, from the transport's options. */
export interface ServerLimits {
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

/**
 * Listen on `bind` and answer requests with `handler` until the scope closes; handlers still
 * running then are interrupted and awaited. The bound address (port 0 gives an ephemeral one).
 */
export const startServer = (
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
    const decoded = requestOfBytes(body.bytes)
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
