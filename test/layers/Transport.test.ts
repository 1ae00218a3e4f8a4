import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Net from "node:net"
import { API_PATH, layerHttp, makeHttp } from "../../src/layers/TransportHttp.js"
import type { Address, SyncRequest } from "../../src/schema/Protocol.js"
import type { RequestContext, TransportShape } from "../../src/services/Transport.js"
import { Transport, TransportRouter } from "../../src/services/Transport.js"
import { echoHandler, entryId, handshakeRequest, transportContract, wireEntry } from "./TransportContract.js"

/** A loopback port nobody listens on (bound, then released). */
const freePort = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as Net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

transportContract("http", {
  make: makeHttp(),
  bind: "127.0.0.1:0",
  unreachable: Effect.map(freePort, (port) => ({ transport_type: "http", address: `127.0.0.1:${port}` }))
})

/** A bare TCP server that answers any request with one canned HTTP response; returns its port. */
const cannedServer = (status: string, body: unknown): Effect.Effect<number, never, Scope.Scope> =>
  cannedText(status, JSON.stringify(body))

/** The same with the body as raw text (for what JSON.stringify cannot produce). */
const cannedText = (status: string, text: string): Effect.Effect<number, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Net.Server>((resume) => {
      const server = Net.createServer((socket) => {
        socket.once("data", () => {
          socket.end(
            `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${text.length}\r\nconnection: close\r\n\r\n${text}`
          )
        })
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))

/** A bare TCP server; `onClose` registers what ends with a connection. Closing the scope cuts them all. */
const bareServer = (
  onConnection: (socket: Net.Socket, onClose: (stop: () => void) => void) => void
): Effect.Effect<Address, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: Net.Server; sockets: Set<Net.Socket> }>((resume) => {
      const sockets = new Set<Net.Socket>()
      const server = Net.createServer((socket) => {
        sockets.add(socket)
        socket.on("error", () => {})
        const stops: Array<() => void> = []
        socket.on("close", () => {
          sockets.delete(socket)
          for (const stop of stops) stop()
        })
        onConnection(socket, (stop) => stops.push(stop))
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets })))
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ server }) => ({ transport_type: "http", address: `127.0.0.1:${(server.address() as Net.AddressInfo).port}` })))

/**
 * A bare TCP server answering any request with `"Ack"` padded to `bytes`, written `slice` bytes
 * every `everyMs` (a slow link); with `stallAfter`, it writes that many body bytes and then nothing.
 */
const slowResponder = (
  options: { bytes: number; slice: number; everyMs: number; stallAfter?: number }
): Effect.Effect<Address, never, Scope.Scope> =>
  bareServer((socket, onClose) => {
    socket.once("data", () => {
      const { bytes, slice, everyMs } = options
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${bytes}\r\n\r\n`)
      const body = Buffer.from("\"Ack\"".padEnd(bytes, " "))
      const end = Math.min(bytes, options.stallAfter ?? bytes)
      let sent = 0
      const timer = setInterval(() => {
        const next = Math.min(end, sent + slice)
        socket.write(body.subarray(sent, next))
        sent = next
        if (sent >= end) clearInterval(timer)
      }, everyMs)
      onClose(() => clearInterval(timer))
    })
  })

interface Raw {
  readonly status: number
  readonly body: unknown
}

/** A raw fetch, bypassing the transport's client, for what a hostile or broken client may send. */
const raw = (
  address: Address,
  init: { method?: string; path?: string; body?: string | Uint8Array | ReadableStream<Uint8Array> } = {}
): Effect.Effect<Raw> =>
  Effect.promise(async () => {
    const response = await fetch(`http://${address.address}${init.path ?? API_PATH}`, {
      method: init.method ?? "POST",
      headers: { "content-type": "application/json" },
      ...(init.body === undefined ? {} : { body: init.body, duplex: "half" })
    } as RequestInit)
    const text = await response.text()
    let body: unknown = text
    try {
      body = JSON.parse(text)
    } catch {
      // keep the text
    }
    return { status: response.status, body }
  })

const errorText = (r: Raw): string => {
  expect(typeof r.body === "object" && r.body !== null && "Error" in r.body).toBe(true)
  return (r.body as { Error: string }).Error
}

describe("TransportHttp", () => {
  it.scopedLive("binds a real ephemeral port on 127.0.0.1 and reports the peer's socket address to the handler", () =>
    Effect.gen(function*() {
      const seen = yield* Ref.make<ReadonlyArray<RequestContext>>([])
      const transport = yield* makeHttp()
      const address = yield* transport.serve("127.0.0.1:0", echoHandler(seen))
      expect(address.transport_type).toBe("http")
      const match = /^127\.0\.0\.1:(\d+)$/.exec(address.address)
      expect(match).not.toBeNull()
      expect(Number(match![1])).toBeGreaterThan(0)
      yield* transport.send(address, { SendEntries: [] })
      const [context] = yield* Ref.get(seen)
      expect(context?.remoteAddress).toMatch(/^127\.0\.0\.1:\d+$/)
    }))

  it.scopedLive("the client announces its device key (announce option) and the handler sees it as context.peer", () =>
    Effect.gen(function*() {
      const seen = yield* Ref.make<ReadonlyArray<RequestContext>>([])
      const address = yield* (yield* makeHttp()).serve("127.0.0.1:0", echoHandler(seen))
      const me = `ed25519:${Buffer.alloc(32, 9).toString("base64")}`
      yield* (yield* makeHttp({ announce: me })).send(address, { SendEntries: [] })
      yield* (yield* makeHttp()).send(address, { SendEntries: [] })
      yield* (yield* makeHttp({ announce: "not a key" })).send(address, { SendEntries: [] })
      expect((yield* Ref.get(seen)).map((c) => c.peer)).toEqual([me, undefined, undefined])
      // a header that is not a device key, sent by hand, is not passed on
      yield* Ref.set(seen, [])
      for (const value of ["garbage", `${me} ${me}`, "ed25519:" + "A".repeat(5_000)]) {
        const answer = yield* Effect.promise(() =>
          fetch(`http://${address.address}/api/v0`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-eidetica-peer": value },
            body: JSON.stringify({ SendEntries: [] })
          })
        )
        expect(answer.status).toBe(200)
      }
      expect((yield* Ref.get(seen)).map((c) => c.peer)).toEqual([undefined, undefined, undefined])
    }))

  it.scopedLive("serves on IPv6 loopback [::1]:0", () =>
    Effect.gen(function*() {
      const transport = yield* makeHttp()
      const address = yield* transport.serve("[::1]:0", echoHandler())
      expect(address.address).toMatch(/^\[::1\]:\d+$/)
      expect(yield* transport.send(address, { SendEntries: [wireEntry(1), wireEntry(2)] })).toEqual({ Count: 2 })
    }))

  it.scopedLive("rejects a bind string that is not host:port, and a port in use, with TransportError", () =>
    Effect.gen(function*() {
      const transport = yield* makeHttp()
      const bad = yield* transport.serve("nonsense", echoHandler()).pipe(Effect.flip)
      expect(bad._tag).toBe("TransportError")
      expect(bad.message).toBe("Failed to listen on nonsense: invalid bind address; expected host:port, e.g. 127.0.0.1:0 or [::1]:0")
      const address = yield* transport.serve("127.0.0.1:0", echoHandler())
      const other = yield* makeHttp()
      const inUse = yield* other.serve(address.address, echoHandler()).pipe(Effect.flip)
      expect(inUse._tag).toBe("TransportError")
      expect(inUse.message).toContain(`Failed to listen on ${address.address}: `)
      expect(inUse.message).toContain("EADDRINUSE")
      // a failed start leaves the transport free to serve
      yield* other.serve("127.0.0.1:0", echoHandler())
    }))

  it.scopedLive("closing the scope releases the port: the same port can be bound again", () =>
    Effect.gen(function*() {
      const transport = yield* makeHttp()
      const scope = yield* Scope.make()
      const address = yield* transport.serve("127.0.0.1:0", echoHandler()).pipe(Scope.extend(scope))
      // an idle keep-alive connection must not hold the server open
      expect(yield* transport.send(address, { SendEntries: [] })).toBe("Ack")
      yield* Scope.close(scope, Exit.void)
      const again = yield* (yield* makeHttp()).serve(address.address, echoHandler())
      expect(again.address).toBe(address.address)
    }))

  it.scopedLive("connection refused is a TransportError naming the cause", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const error = yield* (yield* makeHttp()).send({ transport_type: "http", address: `127.0.0.1:${port}` }, {
        SendEntries: []
      }).pipe(Effect.flip)
      expect(error._tag).toBe("TransportError")
      expect(error.message).toContain(`Failed to connect to 127.0.0.1:${port}`)
      expect(error.message).toContain("ECONNREFUSED")
    }))

  it.scopedLive("send to a non-http address or a garbage address is a TransportError", () =>
    Effect.gen(function*() {
      const transport = yield* makeHttp()
      const wrongType = yield* transport.send({ transport_type: "iroh", address: "x" }, { SendEntries: [] }).pipe(
        Effect.flip
      )
      expect(wrongType._tag).toBe("TransportError")
      const garbage = yield* transport.send({ transport_type: "http", address: "not a host" }, { SendEntries: [] })
        .pipe(Effect.flip)
      expect(garbage._tag).toBe("TransportError")
    }))

  it.scopedLive("a response body over the limit fails with PayloadTooLarge; an oversized request is refused before sending", () =>
    Effect.gen(function*() {
      const server = yield* makeHttp()
      const big = Array.from({ length: 64 }, (_, i) => wireEntry(i, 1024))
      const address = yield* server.serve("127.0.0.1:0", () =>
        Effect.succeed({ Incremental: { tree_id: entryId(1), their_tips: [], missing_entries: big } }))
      const small = yield* makeHttp({ maxBodyBytes: 16 * 1024 })
      const tooLarge = yield* small.send(address, { SendEntries: [] }).pipe(Effect.flip)
      expect(tooLarge._tag).toBe("PayloadTooLarge")
      const request = yield* small.send(address, { SendEntries: big }).pipe(Effect.flip)
      expect(request._tag).toBe("PayloadTooLarge")
      // the default limit (8 MiB) takes it
      const response = yield* (yield* makeHttp()).send(address, { SendEntries: [] })
      expect(response).toEqual({ Incremental: { tree_id: entryId(1), their_tips: [], missing_entries: big } })
    }))

  it.scopedLive("a chunked response (no Content-Length) is read within the limit too", () =>
    Effect.gen(function*() {
      const chunkedServer = (chunks: ReadonlyArray<string>) =>
        Effect.acquireRelease(
          Effect.async<Net.Server>((resume) => {
            const server = Net.createServer((socket) => {
              socket.once("data", () => {
                socket.write("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                for (const chunk of chunks) socket.write(`${Buffer.byteLength(chunk).toString(16)}\r\n${chunk}\r\n`)
                socket.end("0\r\n\r\n")
              })
              socket.on("error", () => {})
            })
            server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
          }),
          (server) =>
            Effect.async<void>((resume) => {
              server.close(() => resume(Effect.void))
            })
        ).pipe(Effect.map((server) => ({ transport_type: "http", address: `127.0.0.1:${(server.address() as Net.AddressInfo).port}` })))
      const client = yield* makeHttp({ maxBodyBytes: 16 * 1024 })
      const ok = yield* chunkedServer(["{\"Cou", "nt\": 5}"])
      expect(yield* client.send(ok, { SendEntries: [] })).toEqual({ Count: 5 })
      const big = yield* chunkedServer(Array.from({ length: 20 }, () => " ".repeat(4096)))
      const error = yield* client.send(big, { SendEntries: [] }).pipe(Effect.flip)
      expect(error._tag).toBe("PayloadTooLarge")
    }))

  it.scopedLive("a slow peer fails the send with TransportError after the configured timeout", () =>
    Effect.gen(function*() {
      const server = yield* makeHttp()
      const address = yield* server.serve("127.0.0.1:0", () => Effect.as(Effect.sleep("5 seconds"), "Ack" as const))
      const client = yield* makeHttp({ timeout: "200 millis" })
      const error = yield* client.send(address, { SendEntries: [] }).pipe(Effect.flip)
      expect(error._tag).toBe("TransportError")
      expect(error.message).toContain("no response within")
    }))

  it.scopedLive("the timeout counts inactivity: a response that keeps arriving over a slow link is read in full", () =>
    Effect.gen(function*() {
      // 200 KB at 10 KB every 50 ms: about 1 s, four times the timeout
      const address = yield* slowResponder({ bytes: 200_000, slice: 10_000, everyMs: 50 })
      const client = yield* makeHttp({ timeout: "250 millis" })
      const start = performance.now()
      expect(yield* client.send(address, { SendEntries: [] })).toBe("Ack")
      expect(performance.now() - start).toBeGreaterThan(500)
    }))

  it.scopedLive("a response that stalls midway fails after the timeout, saying where it stalled", () =>
    Effect.gen(function*() {
      const address = yield* slowResponder({ bytes: 200_000, slice: 10_000, everyMs: 20, stallAfter: 30_000 })
      const client = yield* makeHttp({ timeout: "250 millis" })
      const error = yield* client.send(address, { SendEntries: [] }).pipe(Effect.flip)
      expect(error._tag).toBe("TransportError")
      expect(error.message).toContain("no response within 250ms (the response stalled after 30000 bytes)")
    }))

  it.scopedLive("the total timeout cuts a response that trickles on forever", () =>
    Effect.gen(function*() {
      // one byte every 50 ms: never idle for the 250 ms timeout, never done
      const address = yield* slowResponder({ bytes: 200_000, slice: 1, everyMs: 50 })
      const client = yield* makeHttp({ timeout: "250 millis", totalTimeout: "800 millis" })
      const start = performance.now()
      const error = yield* client.send(address, { SendEntries: [] }).pipe(Effect.flip)
      expect(error._tag).toBe("TransportError")
      expect(error.message).toContain("no complete response within the total timeout of 800ms")
      expect(performance.now() - start).toBeGreaterThan(700)
    }))

  it.scopedLive("a 400 answer surfaces the server's Error message in the TransportError", () =>
    Effect.gen(function*() {
      // A server speaking a newer protocol would reject our shape with 400; emulate with a raw server.
      const port = yield* cannedServer("400 Bad Request", { Error: "unknown request kind \"Future\"" })
      const error = yield* (yield* makeHttp()).send({ transport_type: "http", address: `127.0.0.1:${port}` }, {
        SendEntries: []
      }).pipe(Effect.flip)
      expect(error._tag).toBe("TransportError")
      expect(error.message).toContain("HTTP 400: unknown request kind \"Future\"")
    }))

  it.scopedLive("a 2xx answer that is not a sync response is MalformedMessage", () =>
    Effect.gen(function*() {
      const port = yield* cannedServer("200 OK", { Weird: true })
      const error = yield* (yield* makeHttp()).send({ transport_type: "http", address: `127.0.0.1:${port}` }, {
        SendEntries: []
      }).pipe(Effect.flip)
      expect(error._tag).toBe("MalformedMessage")
      expect(error.message).toContain("Weird")
    }))

  it.scopedLive("a 2xx answer nested 10,000 deep is MalformedMessage, not a defect", () =>
    Effect.gen(function*() {
      const deep = "[".repeat(10_000) + "]".repeat(10_000)
      const port = yield* cannedText("200 OK", `{"Incremental":{"tree_id":${deep},"their_tips":[],"missing_entries":[]}}`)
      const exit = yield* Effect.exit((yield* makeHttp()).send({ transport_type: "http", address: `127.0.0.1:${port}` }, {
        SendEntries: []
      }))
      expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error._tag : String(exit)).toBe("MalformedMessage")
    }))

  describe("nothing a client sends gets a 5xx; each refusal is a clear Error body", () => {
    const serve = Effect.flatMap(makeHttp(), (t) => t.serve("127.0.0.1:0", echoHandler()))

    it.scopedLive("malformed JSON → 400", () =>
      Effect.gen(function*() {
        const r = yield* raw(yield* serve, { body: "{\"Handshake\": " })
        expect(r.status).toBe(400)
        expect(errorText(r)).toMatch(/malformed JSON/)
      }))

    it.scopedLive("invalid UTF-8 → 400", () =>
      Effect.gen(function*() {
        const r = yield* raw(yield* serve, { body: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) })
        expect(r.status).toBe(400)
        expect(errorText(r)).toMatch(/UTF-8/)
      }))

    it.scopedLive("unknown message kind → 400 naming it", () =>
      Effect.gen(function*() {
        const r = yield* raw(yield* serve, { body: JSON.stringify({ Nope: 1 }) })
        expect(r.status).toBe(400)
        expect(errorText(r)).toContain("unknown request kind \"Nope\"")
      }))

    it.scopedLive("wrong shapes → 400 naming the field", () =>
      Effect.gen(function*() {
        const address = yield* serve
        const cases: ReadonlyArray<[unknown, string]> = [
          [[1, 2], "JSON object"],
          ["Ack", "JSON object"],
          [null, "JSON object"],
          [{}, "exactly one key"],
          [{ SendEntries: [], SyncTree: {} }, "exactly one key"],
          [{ SyncTree: { tree_id: entryId(1) } }, "SyncTree.our_tips: is missing"],
          [{ SyncTree: { tree_id: "nope", our_tips: [] } }, "SyncTree.tree_id"],
          [{ SyncTree: { tree_id: entryId(1), our_tips: [], peer_pubkey: 7 } }, "SyncTree.peer_pubkey"],
          [{ SendEntries: ["not base64!"] }, "SendEntries[0]"],
          [{ SendEntries: "AAAA" }, "SendEntries"],
          [
            { Handshake: { ...handshakeRequest().Handshake, challenge: Array(31).fill(0) } },
            "Handshake.challenge: expected exactly 32 bytes"
          ],
          [
            { Handshake: { ...handshakeRequest().Handshake, challenge: [...Array(31).fill(0), 256] } },
            "Handshake.challenge[31]"
          ]
        ]
        for (const [body, expected] of cases) {
          const r = yield* raw(address, { body: JSON.stringify(body) })
          expect(r.status, JSON.stringify(body)).toBe(400)
          expect(errorText(r)).toContain(expected)
        }
      }))

    it.scopedLive("a 20 KB body nested 10,000 deep → 400, and the server still serves", () =>
      Effect.gen(function*() {
        const address = yield* serve
        const deep = "[".repeat(10_000) + "]".repeat(10_000)
        const r = yield* raw(address, { body: `{"SyncTree":{"tree_id":${deep},"our_tips":[]}}` })
        expect(r.status).toBe(400)
        expect(errorText(r)).toMatch(/more than 64 deep/)
        const ok = yield* raw(address, { body: JSON.stringify({ SendEntries: [] }) })
        expect(ok).toEqual({ status: 200, body: "Ack" })
      }))

    it.scopedLive("empty body → 400", () =>
      Effect.gen(function*() {
        const r = yield* raw(yield* serve, { body: "" })
        expect(r.status).toBe(400)
        expect(errorText(r)).toMatch(/empty body/)
      }))

    it.scopedLive("a 9 MiB body → 413, with Content-Length and chunked, and the server still serves", () =>
      Effect.gen(function*() {
        const address = yield* serve
        const nine = new Uint8Array(9 * 1024 * 1024).fill(0x20)
        const declared = yield* raw(address, { body: nine })
        expect(declared.status).toBe(413)
        expect(errorText(declared)).toMatch(/exceeds the limit of 8388608 bytes/)
        const chunk = new Uint8Array(1024 * 1024).fill(0x20)
        let sent = 0
        const stream = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sent++ < 9) controller.enqueue(chunk)
            else controller.close()
          }
        })
        const chunked = yield* raw(address, { body: stream })
        expect(chunked.status).toBe(413)
        const ok = yield* raw(address, { body: JSON.stringify({ SendEntries: [] }) })
        expect(ok).toEqual({ status: 200, body: "Ack" })
      }))

    it.scopedLive("wrong method → 405, wrong path → 404, GET /health → ok", () =>
      Effect.gen(function*() {
        const address = yield* serve
        const get = yield* raw(address, { method: "GET" })
        expect(get.status).toBe(405)
        expect(errorText(get)).toContain("use POST")
        const put = yield* raw(address, { method: "PUT", body: "{}" })
        expect(put.status).toBe(405)
        const path = yield* raw(address, { path: "/api/v1", body: JSON.stringify({ SendEntries: [] }) })
        expect(path.status).toBe(404)
        expect(errorText(path)).toContain("POST /api/v0")
        const health = yield* raw(address, { method: "GET", path: "/health" })
        expect(health).toEqual({ status: 200, body: { status: "ok" } })
      }))

    it.scopedLive("a handler defect is the only 500, still with an Error body", () =>
      Effect.gen(function*() {
        const address = yield* Effect.flatMap(makeHttp(), (t) => t.serve("127.0.0.1:0", () => Effect.die("boom")))
        const r = yield* raw(address, { body: JSON.stringify({ SendEntries: [] }) })
        expect(r.status).toBe(500)
        expect(errorText(r)).toContain("internal error")
      }))
  })

  it.scopedLive("layerHttp provides the Transport service", () =>
    Effect.gen(function*() {
      const transport = yield* Transport
      const address = yield* transport.serve("127.0.0.1:0", echoHandler())
      expect(yield* transport.send(address, { SendEntries: [] })).toBe("Ack")
    }).pipe(Effect.provide(layerHttp)))

  it.scopedLive("sequential round-trip rate for small requests over loopback", () =>
    Effect.gen(function*() {
      const server = yield* makeHttp()
      const client = yield* makeHttp()
      const address = yield* server.serve("127.0.0.1:0", echoHandler())
      const request: SyncRequest = { SyncTree: { tree_id: entryId(1), our_tips: [entryId(2)] } }
      yield* Effect.repeatN(client.send(address, request), 200)
      const n = 500
      const start = yield* Clock.currentTimeMillis
      yield* Effect.repeatN(client.send(address, request), n - 1)
      const seconds = ((yield* Clock.currentTimeMillis) - start) / 1000
      const rate = Math.round(n / seconds)
      console.log(`http transport: ${n} sequential round trips in ${seconds.toFixed(2)} s = ${rate} req/s`)
      expect(rate).toBeGreaterThan(50)
    }))
})

describe("TransportRouter", () => {
  const fake = (type: string, label: string): TransportShape => ({
    transportType: type,
    canHandle: (address) => address.transport_type === type,
    send: () => Effect.succeed({ Error: label }),
    serve: () => Effect.succeed({ transport_type: type, address: label })
  })

  it.effect("picks the first transport that handles the address", () =>
    Effect.gen(function*() {
      const router = TransportRouter.make(fake("sim", "sim-1"), fake("http", "http-1")).add(fake("http", "http-2"))
      expect(yield* router.send({ transport_type: "http", address: "h" }, { SendEntries: [] })).toEqual({
        Error: "http-1"
      })
      expect(yield* router.send({ transport_type: "sim", address: "s" }, { SendEntries: [] })).toEqual({
        Error: "sim-1"
      })
      expect((yield* router.select({ transport_type: "http", address: "h" })).transportType).toBe("http")
    }))

  it.effect("fails with NoTransportForAddress when none handles it", () =>
    Effect.gen(function*() {
      const router = TransportRouter.make(fake("http", "http-1"))
      const error = yield* router.send({ transport_type: "iroh", address: "ticket" }, { SendEntries: [] }).pipe(
        Effect.flip
      )
      expect(error._tag).toBe("NoTransportForAddress")
      expect(error.message).toBe("No transport can handle address: iroh:ticket")
    }))

  it.effect("fails with NoTransportEnabled when no transport is enabled", () =>
    Effect.gen(function*() {
      const error = yield* TransportRouter.empty.select({ transport_type: "http", address: "h" }).pipe(Effect.flip)
      expect(error._tag).toBe("NoTransportEnabled")
      expect(error.message).toBe("No transport enabled. Call enable_http_transport() first")
      expect(TransportRouter.empty.isEmpty).toBe(true)
    }))
})
