/**
 * A TCP fault proxy for loopback tests: listens on 127.0.0.1, forwards to a target port, and
 * injects faults per connection chunk according to the current mode. Modes apply to existing
 * (keep-alive) connections too, since they are checked on every chunk.
 */
import * as Net from "node:net"

export type Mode =
  | { readonly _tag: "pass" }
  /** Listener closed: new connections are refused; existing ones are cut. */
  | { readonly _tag: "refuse" }
  /** RST the client as soon as it sends request bytes (nothing reaches the server). */
  | { readonly _tag: "resetRequest" }
  /** Forward the first `bytes` of the request to the server, then RST both sides. */
  | { readonly _tag: "resetMidRequest"; readonly bytes: number }
  /** Forward the request; RST the client after `bytes` bytes of the response (`once`: then pass). */
  | { readonly _tag: "resetMidResponse"; readonly bytes: number; readonly once?: boolean }
  /** Forward the request; send `bytes` bytes of the response, then a clean FIN. */
  | { readonly _tag: "truncate"; readonly bytes: number }
  /** Hold every chunk (both directions) `ms` before forwarding. */
  | { readonly _tag: "delay"; readonly ms: number }
  /** Accept and read, never forward or answer. */
  | { readonly _tag: "blackhole" }
  /** Forward the request (the server acts on it); hold the response `ms` before forwarding. */
  | { readonly _tag: "delayResponse"; readonly ms: number }
  /** Forward the request (the server acts on it); drop the response, keep the connection open. */
  | { readonly _tag: "swallowResponse" }
  /** A slow but working link: responses flow at `bytesPerSec`. */
  | { readonly _tag: "throttle"; readonly bytesPerSec: number }

export interface FaultProxy {
  readonly port: number
  readonly address: string
  mode: Mode
  /** Point at another upstream port (a restarted server). */
  target: number
  /** Switch mode; "refuse" closes the listener, leaving it re-listens on the same port. */
  readonly set: (mode: Mode) => Promise<void>
  /** Cut every open connection (as a crash of the far side would). */
  readonly cutAll: () => void
  readonly stats: { connections: number; faults: number }
  readonly close: () => Promise<void>
}

export const startProxy = async (target: number): Promise<FaultProxy> => {
  const sockets = new Set<Net.Socket>()
  const track = (s: Net.Socket) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
    s.on("error", () => {})
  }
  const rst = (s: Net.Socket | undefined) => {
    if (s === undefined || s.destroyed) return
    if (typeof (s as { resetAndDestroy?: () => void }).resetAndDestroy === "function") s.resetAndDestroy()
    else s.destroy()
  }
  const proxy: FaultProxy = {
    port: 0,
    address: "",
    mode: { _tag: "pass" },
    target,
    stats: { connections: 0, faults: 0 },
    set: async (mode) => {
      const was = proxy.mode
      proxy.mode = mode
      if (mode._tag === "refuse" && was._tag !== "refuse") {
        proxy.cutAll()
        await new Promise<void>((r) => server.close(() => r()))
      } else if (mode._tag !== "refuse" && was._tag === "refuse") {
        await listen(proxy.port)
      }
    },
    cutAll: () => {
      for (const s of sockets) rst(s)
    },
    close: async () => {
      proxy.cutAll()
      if (server.listening) await new Promise<void>((r) => server.close(() => r()))
    }
  }

  const onConnection = (client: Net.Socket) => {
    proxy.stats.connections++
    track(client)
    let upstream: Net.Socket | undefined
    let requestBytes = 0
    let responseBytes = 0
    let dead = false
    const queue: Array<Buffer> = []
    let pump: ReturnType<typeof setInterval> | undefined
    const kill = () => {
      dead = true
      rst(client)
      rst(upstream)
    }
    const ensureUpstream = () => {
      if (upstream !== undefined) return upstream
      const u = Net.connect({ host: "127.0.0.1", port: proxy.target })
      upstream = u
      track(u)
      u.on("error", () => kill())
      u.on("close", () => {
        if (dead) return
        // a throttled response still queued is delivered before the end
        const endWhenDrained = () => (queue.length === 0 && pump === undefined ? client.end() : setTimeout(endWhenDrained, 50))
        endWhenDrained()
      })
      u.on("data", (chunk: Buffer) => {
        if (dead) return
        const m = proxy.mode
        switch (m._tag) {
          case "resetMidResponse": {
            const room = m.bytes - responseBytes
            if (room > 0) client.write(chunk.subarray(0, room))
            responseBytes += chunk.length
            if (responseBytes >= m.bytes) {
              proxy.stats.faults++
              if (m.once === true) proxy.mode = { _tag: "pass" }
              // let the partial bytes leave before the RST
              setTimeout(kill, 20)
              dead = true
            }
            return
          }
          case "truncate": {
            const room = m.bytes - responseBytes
            if (room > 0) client.write(chunk.subarray(0, room))
            responseBytes += chunk.length
            if (responseBytes >= m.bytes) {
              proxy.stats.faults++
              dead = true
              client.end()
              rst(upstream)
            }
            return
          }
          case "delay":
            setTimeout(() => !client.destroyed && client.write(chunk), m.ms)
            return
          case "throttle": {
            // released in 50 ms slices at the given rate, in order
            const slice = Math.max(1, Math.floor(m.bytesPerSec / 20))
            for (let off = 0; off < chunk.length; off += slice) queue.push(chunk.subarray(off, off + slice))
            if (pump === undefined) {
              pump = setInterval(() => {
                const next = queue.shift()
                if (next === undefined || client.destroyed) {
                  clearInterval(pump)
                  pump = undefined
                  return
                }
                client.write(next)
              }, 50)
            }
            return
          }
          case "delayResponse":
            setTimeout(() => !client.destroyed && client.write(chunk), m.ms)
            return
          case "blackhole":
          case "swallowResponse":
            proxy.stats.faults++
            return
          case "refuse":
            return kill()
          default:
            responseBytes += chunk.length
            client.write(chunk)
        }
      })
      return u
    }
    client.on("data", (chunk: Buffer) => {
      if (dead) return
      const m = proxy.mode
      switch (m._tag) {
        case "refuse":
        case "resetRequest":
          proxy.stats.faults++
          return kill()
        case "resetMidRequest": {
          const room = m.bytes - requestBytes
          requestBytes += chunk.length
          if (room > 0) ensureUpstream().write(chunk.subarray(0, room))
          proxy.stats.faults++
          dead = true
          setTimeout(kill, 20)
          return
        }
        case "blackhole":
          proxy.stats.faults++
          return
        case "delay":
          setTimeout(() => !dead && ensureUpstream().write(chunk), m.ms)
          return
        default:
          requestBytes += chunk.length
          ensureUpstream().write(chunk)
      }
    })
    client.on("close", () => {
      dead = true
      rst(upstream)
    })
  }

  const server = Net.createServer(onConnection)
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject)
        resolve()
      })
    })
  await listen(0)
  const port = (server.address() as Net.AddressInfo).port
  ;(proxy as { port: number }).port = port
  ;(proxy as { address: string }).address = `127.0.0.1:${port}`
  return proxy
}

/** The port of a `127.0.0.1:<port>` address. */
export const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(":") + 1))

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
