/**
 * The HTTP transport's client on bare node:http: one POST per message over a keep-alive Agent,
 * the answer read within the body limit, the timeout counting inactivity.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Http from "node:http"
import { PayloadTooLarge, TransportError } from "../../schema/Errors.js"
import { httpAddressParts } from "../../schema/Address.js"
import { API_PATH, describeCause, timerMs } from "./HttpWire.js"

/** A transport's client: its connection pool, limits, timeouts, headers and parsed addresses. */
export interface Client {
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

/** Where a request goes. */
export interface Target {
  readonly host: string
  readonly port: number
}

/** An answer as read: its status and body text. */
export interface Reply {
  readonly status: number
  readonly text: string
}

/** The host and port of a `host:port` or `[v6]:port` address (undefined when it is neither), remembered. */
export const targetOf = (client: Client, address: string): Target | undefined => {
  if (client.targets.has(address)) return client.targets.get(address)
  const target = httpAddressParts(address)
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
export const post = (client: Client, target: Target, address: string, body: Buffer): Effect.Effect<Reply, TransportError | PayloadTooLarge> =>
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

/** Why a non-2xx answer failed, with the server's `{"Error": …}` text when it gave one. */
export const statusReason = (status: number, text: string): string => {
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

