/**
 * The HTTP server's limits on request bodies being received: a server-wide budget of buffered bytes
 * (503 past it) and an inactivity timeout on a body (408), both given back on every way out. Small
 * limits, loopback only, raw sockets for the clients that stall.
 */
import { describe, expect, it } from "@effect/vitest"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Net from "node:net"
import { API_PATH, makeHttp } from "../../src/layers/TransportHttp.js"
import type { Address, SyncResponse } from "../../src/schema/Protocol.js"

const KiB = 1024
const BUDGET = 256 * KiB

/** A server whose budget and largest body are both BUDGET; `bodyTimeout` as given. */
const limitedServer = (bodyTimeout: Duration.DurationInput) =>
  Effect.flatMap(
    makeHttp({ maxBodyBytes: BUDGET, maxBufferedBytes: BUDGET, bodyTimeout }),
    (server) => server.serve("127.0.0.1:0", () => Effect.succeed<SyncResponse>("Ack"))
  )

interface Upload {
  /** What the server answered so far. */
  text: string
  closed: boolean
  readonly socket: Net.Socket
}

/**
 * A raw POST that declares `declared` body bytes (or is chunked), sends `sent` of them and then
 * nothing more (the socket stays open until the scope closes). Succeeds once the bytes are written.
 */
const stalledUpload = (
  address: Address,
  declared: number | "chunked",
  sent: number
): Effect.Effect<Upload, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Upload>((resume) => {
      const [host, port] = address.address.split(":")
      const socket = Net.connect(Number(port), host!)
      const upload: Upload = { text: "", closed: false, socket }
      let resumed = false
      const done = () => {
        if (!resumed) resume(Effect.succeed(upload))
        resumed = true
      }
      socket.on("data", (chunk: Buffer) => (upload.text += chunk.toString("latin1")))
      socket.on("error", () => {})
      socket.on("close", () => {
        upload.closed = true
        done()
      })
      socket.on("connect", () => {
        const length = declared === "chunked" ? "transfer-encoding: chunked" : `content-length: ${declared}`
        socket.write(`POST ${API_PATH} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n${length}\r\n\r\n`)
        // a chunked body: one chunk of `sent` bytes and no last chunk
        if (declared === "chunked") socket.write(`${sent.toString(16)}\r\n`)
        socket.write(Buffer.alloc(sent, 0x20), done)
      })
    }),
    (upload) => Effect.sync(() => upload.socket.destroy())
  )

/** A raw POST of a valid request padded with whitespace to `bytes`; its status. */
const postPadded = (address: Address, bytes: number): Effect.Effect<number> =>
  Effect.promise(async () => {
    const text = JSON.stringify({ SendEntries: [] })
    const response = await fetch(`http://${address.address}${API_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: text + " ".repeat(bytes - text.length)
    })
    await response.text()
    return response.status
  })

/** Polls `check` every 20 ms until it holds or `ms` pass; whether it held. */
const eventually = (check: Effect.Effect<boolean>, ms: number): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const until = performance.now() + ms
    while (performance.now() < until) {
      if (yield* check) return true
      yield* Effect.sleep("20 millis")
    }
    return yield* check
  })

/** The full budget less room for the request's own JSON. */
const FULL = BUDGET - KiB

describe("TransportHttp server limits", () => {
  it.scopedLive("stalled uploads hold at most the server's budget: the rest are answered 503 at once and closed", () =>
    Effect.gen(function*() {
      const address = yield* limitedServer("10 seconds")
      // eight uploads of 100 KiB that stall 1 KiB short of their declared length: two fit in 256 KiB
      const uploads = yield* Effect.forEach(
        Array.from({ length: 8 }),
        () => stalledUpload(address, 101 * KiB, 100 * KiB),
        { concurrency: "unbounded" }
      )
      const refused = () => uploads.filter((u) => u.closed)
      expect(yield* eventually(Effect.sync(() => refused().length >= 6), 5_000)).toBe(true)
      yield* Effect.sleep("100 millis")
      expect(refused().length).toBeLessThanOrEqual(7)
      for (const u of refused()) {
        expect(u.text).toMatch(/^HTTP\/1\.1 503 /)
        expect(u.text.toLowerCase()).toContain("connection: close")
        expect(u.text).toContain(`"Error":"server busy: request bodies being received fill its buffer of ${BUDGET} bytes; try again later"`)
      }
      // while they stall, a request that needs the whole budget is refused too
      expect(yield* postPadded(address, FULL)).toBe(503)
    }), 20_000)

  it.scopedLive("the budget comes back in full once the stalled uploads are gone, and after each completed request", () =>
    Effect.gen(function*() {
      const address = yield* limitedServer("10 seconds")
      const held = yield* Effect.forEach(
        Array.from({ length: 2 }),
        () => stalledUpload(address, 101 * KiB, 100 * KiB),
        { concurrency: "unbounded" }
      )
      yield* Effect.sleep("100 millis")
      expect(held.filter((u) => u.closed)).toHaveLength(0)
      expect(yield* postPadded(address, FULL)).toBe(503)
      // the clients give up (the abort path): every byte they held is given back
      for (const u of held) u.socket.destroy()
      expect(yield* eventually(Effect.map(postPadded(address, FULL), (status) => status === 200), 3_000)).toBe(true)
      // a completed request gives its bytes back too
      for (let i = 0; i < 3; i++) expect(yield* postPadded(address, FULL)).toBe(200)
    }), 20_000)

  it.scopedLive("a chunked body (no declared length) is counted as it arrives and refused once it would pass the budget", () =>
    Effect.gen(function*() {
      const address = yield* limitedServer("10 seconds")
      const first = yield* stalledUpload(address, "chunked", 200 * KiB)
      yield* Effect.sleep("100 millis")
      const second = yield* stalledUpload(address, "chunked", 100 * KiB)
      expect(yield* eventually(Effect.sync(() => second.closed), 5_000)).toBe(true)
      expect(second.text).toMatch(/^HTTP\/1\.1 503 /)
      expect(first.closed).toBe(false)
      first.socket.destroy()
      expect(yield* eventually(Effect.map(postPadded(address, FULL), (status) => status === 200), 3_000)).toBe(true)
    }), 20_000)

  it.scopedLive("a stalled body is answered 408 after the body timeout, its connection closed and its bytes given back", () =>
    Effect.gen(function*() {
      const address = yield* limitedServer("300 millis")
      const start = performance.now()
      const upload = yield* stalledUpload(address, 201 * KiB, 200 * KiB)
      expect(yield* eventually(Effect.sync(() => upload.closed), 5_000)).toBe(true)
      expect(performance.now() - start).toBeGreaterThanOrEqual(250)
      expect(upload.text).toMatch(/^HTTP\/1\.1 408 /)
      expect(upload.text).toContain("request body stalled: no bytes for 300 ms after 204800 bytes")
      expect(yield* postPadded(address, FULL)).toBe(200)
    }), 20_000)

  it.scopedLive("our own client sees the 503 as a TransportError naming it, and succeeds once the budget is free", () =>
    Effect.gen(function*() {
      const address = yield* limitedServer("10 seconds")
      const client = yield* makeHttp({ maxBodyBytes: BUDGET })
      const stalled = yield* stalledUpload(address, 201 * KiB, 200 * KiB)
      yield* Effect.sleep("100 millis")
      const page = { SendEntries: ["A".repeat(100 * KiB)] }
      const error = yield* client.send(address, page).pipe(Effect.flip)
      expect(error._tag).toBe("TransportError")
      expect(error.message).toContain("HTTP 503: server busy")
      stalled.socket.destroy()
      const sent = yield* eventually(
        Effect.map(Effect.either(client.send(address, page)), (result) => result._tag === "Right"),
        3_000
      )
      expect(sent).toBe(true)
    }), 20_000)
})
