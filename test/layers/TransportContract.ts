/**
 * The Transport contract: what every transport layer (http, iroh, sim) must do. Call
 * `transportContract(name, options)` inside a test file with the implementation's constructor.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import type { Address, HandshakeRequest, SyncResponse } from "../../src/schema/Protocol.js"
import { PROTOCOL_VERSION } from "../../src/schema/Protocol.js"
import type { Handler, RequestContext, TransportShape } from "../../src/services/Transport.js"

/** How to build and reach one transport implementation under test. */
export interface TransportContractOptions {
  /** Builds a fresh, independent transport whose resources (pools, servers) live in the scope. */
  readonly make: Effect.Effect<TransportShape, never, Scope.Scope>
  /** A bind string that asks for a fresh address (`127.0.0.1:0` for http). */
  readonly bind: string
  /** An address of this transport's type where nothing is served. */
  readonly unreachable: Effect.Effect<Address, never, Scope.Scope>
  /** Run the tests with the live clock (real sockets) or the test clock (simulated networks). Default live. */
  readonly clock?: "live" | "test"
}

/** A well-formed public key for fixtures. */
export const key = (n: number): string => `ed25519:${Buffer.alloc(32, n).toString("base64")}`
/** A well-formed entry ID for fixtures. */
export const entryId = (n: number): string => `bafyr4i${"abcdefghijklmnopqrstuvwxyz234567"[n % 32]!.repeat(52)}`
/** A well-formed wire entry (base64) for fixtures. */
export const wireEntry = (n: number, size = 16): string => Buffer.alloc(size, n).toString("base64")

/** A tree the echo handler answers with an Error. */
export const TREE_UNKNOWN = entryId(30)
/** A tree the echo handler answers with BootstrapPending. */
export const TREE_PENDING = entryId(29)
/** A tree on which the echo handler dies (a defect). */
export const TREE_DEFECT = entryId(28)
/** The server key of the echo handler. */
export const SERVER_KEY = key(7)

/** A handshake request fixture. */
export const handshakeRequest = (listen: ReadonlyArray<Address> = []): { readonly Handshake: HandshakeRequest } => ({
  Handshake: {
    device_id: key(1),
    public_key: key(1),
    display_name: "test client",
    protocol_version: PROTOCOL_VERSION,
    challenge: Array.from({ length: 32 }, (_, i) => i * 7 % 256),
    listen_addresses: listen
  }
})

/**
 * A deterministic handler answering every kind: Handshake echoes the challenge (reversed as the new
 * challenge); SyncTree bootstraps on empty tips, otherwise answers Incremental with the tips
 * reversed and the `known` sample as entries; SendEntries answers Ack for ≤1 entry, Count otherwise.
 */
export const echoHandler = (seen?: Ref.Ref<ReadonlyArray<RequestContext>>): Handler => (request, context) =>
  Effect.gen(function*() {
    if (seen) yield* Ref.update(seen, (all) => [...all, context])
    if ("Handshake" in request) {
      const hs = request.Handshake
      return {
        Handshake: {
          device_id: SERVER_KEY,
          public_key: SERVER_KEY,
          display_name: "Eidetica Peer",
          protocol_version: hs.protocol_version,
          challenge_response: Buffer.from(hs.challenge).toString("base64"),
          new_challenge: [...hs.challenge].reverse(),
          available_trees: [{ tree_id: entryId(1), name: null, entry_count: hs.listen_addresses.length, last_modified: 0 }]
        }
      } satisfies SyncResponse
    }
    if ("SyncTree" in request) {
      const st = request.SyncTree
      if (st.tree_id === TREE_UNKNOWN) return { Error: `Tree not found: ${st.tree_id}` }
      if (st.tree_id === TREE_PENDING) return { BootstrapPending: { request_id: "req-1", message: "awaiting admin" } }
      if (st.tree_id === TREE_DEFECT) return yield* Effect.die(new Error("handler bug"))
      if (st.our_tips.length === 0) {
        return {
          Bootstrap: {
            tree_id: st.tree_id,
            root_entry: wireEntry(0),
            all_entries: [wireEntry(1), wireEntry(2)],
            key_approved: true,
            ...(st.requested_permission ? { granted_permission: st.requested_permission } : {}),
            ...(st.cursor ? { next: `${st.cursor}+` } : {})
          }
        }
      }
      return {
        Incremental: {
          tree_id: st.tree_id,
          their_tips: [...st.our_tips].reverse(),
          missing_entries: (st.known ?? []).map((_, i) => wireEntry(i)),
          ...(st.cursor ? { next: `${st.cursor}+` } : {})
        }
      }
    }
    return request.SendEntries.length <= 1 ? "Ack" : { Count: request.SendEntries.length }
  })

/** Register the contract's tests for one transport implementation. */
export const transportContract = (name: string, options: TransportContractOptions) => {
  const test = options.clock === "test" ? it.scoped : it.scopedLive
  const { bind, make } = options

  describe(`Transport contract: ${name}`, () => {
    test("serve returns a bound address of the transport's type that the transport can handle", () =>
      Effect.gen(function*() {
        const transport = yield* make
        const address = yield* transport.serve(bind, echoHandler())
        expect(address.transport_type).toBe(transport.transportType)
        expect(address.address.length).toBeGreaterThan(0)
        expect(transport.canHandle(address)).toBe(true)
        expect(transport.canHandle({ transport_type: `not-${transport.transportType}`, address: address.address }))
          .toBe(false)
      }))

    test("round-trips a Handshake", () =>
      Effect.gen(function*() {
        const server = yield* make
        const client = yield* make
        const address = yield* server.serve(bind, echoHandler())
        const request = handshakeRequest([{ transport_type: "http", address: "10.0.0.1:1" }])
        const response = yield* client.send(address, request)
        expect(response).toEqual({
          Handshake: {
            device_id: SERVER_KEY,
            public_key: SERVER_KEY,
            display_name: "Eidetica Peer",
            protocol_version: PROTOCOL_VERSION,
            challenge_response: Buffer.from(handshakeRequest().Handshake.challenge).toString("base64"),
            new_challenge: [...handshakeRequest().Handshake.challenge].reverse(),
            available_trees: [{ tree_id: entryId(1), name: null, entry_count: 1, last_modified: 0 }]
          }
        })
      }))

    test("round-trips SyncTree as Bootstrap (empty tips) and Incremental (with tips, known and cursor)", () =>
      Effect.gen(function*() {
        const server = yield* make
        const client = yield* make
        const address = yield* server.serve(bind, echoHandler())
        const bootstrap = yield* client.send(address, {
          SyncTree: {
            tree_id: entryId(3),
            our_tips: [],
            requesting_key: key(2),
            requesting_key_name: "laptop",
            requested_permission: { type: "Write", priority: 10 },
            metadata: { note: ["any", 1, null] },
            auth: { key: key(2), timestamp_ms: 1_700_000_000_000, nonce: Array(32).fill(9), signature: wireEntry(5, 64) },
            cursor: "page1"
          }
        })
        expect(bootstrap).toEqual({
          Bootstrap: {
            tree_id: entryId(3),
            root_entry: wireEntry(0),
            all_entries: [wireEntry(1), wireEntry(2)],
            key_approved: true,
            granted_permission: { type: "Write", priority: 10 },
            next: "page1+"
          }
        })
        const incremental = yield* client.send(address, {
          SyncTree: { tree_id: entryId(3), our_tips: [entryId(4), entryId(5)], known: [entryId(6), entryId(7), entryId(8)] }
        })
        expect(incremental).toEqual({
          Incremental: {
            tree_id: entryId(3),
            their_tips: [entryId(5), entryId(4)],
            missing_entries: [wireEntry(0), wireEntry(1), wireEntry(2)]
          }
        })
      }))

    test("round-trips SendEntries (Ack and Count) and the Error and BootstrapPending answers", () =>
      Effect.gen(function*() {
        const server = yield* make
        const client = yield* make
        const address = yield* server.serve(bind, echoHandler())
        expect(yield* client.send(address, { SendEntries: [] })).toBe("Ack")
        expect(yield* client.send(address, { SendEntries: [wireEntry(1)] })).toBe("Ack")
        expect(yield* client.send(address, { SendEntries: [wireEntry(1), wireEntry(2), wireEntry(3)] }))
          .toEqual({ Count: 3 })
        expect(yield* client.send(address, { SyncTree: { tree_id: TREE_UNKNOWN, our_tips: [] } }))
          .toEqual({ Error: `Tree not found: ${TREE_UNKNOWN}` })
        expect(yield* client.send(address, { SyncTree: { tree_id: TREE_PENDING, our_tips: [] } }))
          .toEqual({ BootstrapPending: { request_id: "req-1", message: "awaiting admin" } })
      }))

    test("carries entries byte-exact, many at once (1 MiB in one message)", () =>
      Effect.gen(function*() {
        const server = yield* make
        const client = yield* make
        const entries = Array.from({ length: 1024 }, (_, i) => wireEntry(i % 256, 768))
        const address = yield* server.serve(bind, (request) =>
          Effect.succeed(
            "SendEntries" in request
              ? { Incremental: { tree_id: entryId(1), their_tips: [], missing_entries: request.SendEntries } }
              : { Error: "unexpected" }
          ))
        const response = yield* client.send(address, { SendEntries: entries })
        expect(response).toEqual({ Incremental: { tree_id: entryId(1), their_tips: [], missing_entries: entries } })
      }))

    test("answers concurrent requests each with its own response", () =>
      Effect.gen(function*() {
        const server = yield* make
        const client = yield* make
        const address = yield* server.serve(bind, echoHandler())
        const counts = yield* Effect.forEach(
          Array.from({ length: 40 }, (_, i) => i + 2),
          (n) => client.send(address, { SendEntries: Array.from({ length: n }, (_, i) => wireEntry(i)) }),
          { concurrency: "unbounded" }
        )
        expect(counts).toEqual(Array.from({ length: 40 }, (_, i) => ({ Count: i + 2 })))
      }))

    test("two servers on fresh addresses get different addresses", () =>
      Effect.gen(function*() {
        const a = yield* make
        const b = yield* make
        const addressA = yield* a.serve(bind, echoHandler())
        const addressB = yield* b.serve(bind, echoHandler())
        expect(addressA.address).not.toBe(addressB.address)
        const client = yield* make
        expect(yield* client.send(addressA, { SendEntries: [] })).toBe("Ack")
        expect(yield* client.send(addressB, { SendEntries: [] })).toBe("Ack")
      }))

    test("a second serve on the same transport fails with ServerAlreadyRunning until the first scope closes", () =>
      Effect.gen(function*() {
        const transport = yield* make
        const scope = yield* Scope.make()
        const first = yield* transport.serve(bind, echoHandler()).pipe(Scope.extend(scope))
        const error = yield* transport.serve(bind, echoHandler()).pipe(Effect.flip)
        expect(error._tag).toBe("ServerAlreadyRunning")
        if (error._tag === "ServerAlreadyRunning") expect(error.address).toBe(first.address)
        yield* Scope.close(scope, Exit.void)
        const again = yield* transport.serve(bind, echoHandler())
        expect(yield* (yield* make).send(again, { SendEntries: [] })).toBe("Ack")
      }))

    test("closing the serve scope stops the server: a later send fails with TransportError", () =>
      Effect.gen(function*() {
        const server = yield* make
        const client = yield* make
        const scope = yield* Scope.make()
        const address = yield* server.serve(bind, echoHandler()).pipe(Scope.extend(scope))
        expect(yield* client.send(address, { SendEntries: [] })).toBe("Ack")
        yield* Scope.close(scope, Exit.void)
        const error = yield* client.send(address, { SendEntries: [] }).pipe(Effect.flip)
        expect(error._tag).toBe("TransportError")
      }))

    test("send to an address where nothing is served fails with TransportError", () =>
      Effect.gen(function*() {
        const client = yield* make
        const address = yield* options.unreachable
        const error = yield* client.send(address, handshakeRequest()).pipe(Effect.flip)
        expect(error._tag).toBe("TransportError")
      }))

    test("a handler defect fails that send with TransportError and the server keeps serving", () =>
      Effect.gen(function*() {
        const server = yield* make
        const client = yield* make
        const address = yield* server.serve(bind, echoHandler())
        const error = yield* client.send(address, { SyncTree: { tree_id: TREE_DEFECT, our_tips: [] } }).pipe(
          Effect.flip
        )
        expect(error._tag).toBe("TransportError")
        expect(yield* client.send(address, { SendEntries: [] })).toBe("Ack")
      }))
  })
}
