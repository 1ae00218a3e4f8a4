/**
 * What the HTTP transport's server and client share: the paths, the transport type, the peer
 * header, node timer delays and readable causes.
 */
import * as Duration from "effect/Duration"
import { HTTP_TRANSPORT_TYPE } from "../../schema/Address.js"

/** The `transport_type` of HTTP addresses. */
export const TRANSPORT_TYPE = HTTP_TRANSPORT_TYPE

/** The path of the sync endpoint. */
export const API_PATH = "/api/v0"

/** The path of the health endpoint (answers `{"status":"ok"}`). */
export const HEALTH_PATH = "/health"

/** The header that announces the sender's device key (see `RequestContext.peer`). */
export const PEER_HEADER = "x-eidetica-peer"

/** The longest delay a node timer takes (about 24.8 days); longer timeouts mean none. */
export const MAX_TIMER_MS = 2_147_483_647

/** A duration as a node timer's delay, or `undefined` for none (too long for a timer). */
export const timerMs = (duration: Duration.Duration): number | undefined => {
  const ms = Duration.toMillis(duration)
  return ms < MAX_TIMER_MS ? ms : undefined
}

/** The most specific readable reason: the socket error (ECONNREFUSED …) may sit in `cause`. */
export const describeCause = (error: unknown): string => {
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
