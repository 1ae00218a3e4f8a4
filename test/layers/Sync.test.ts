import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { Doc } from "../../src/core/Doc.js"
import * as Entry from "../../src/core/Entry.js"
import * as SyncAuth from "../../src/core/SyncAuth.js"
import * as BootstrapRequests from "../../src/database/BootstrapRequests.js"
import { sigKeyOf } from "../../src/database/Database.js"
import { ingestPartial } from "../../src/database/Ingest.js"
import * as Transaction from "../../src/database/Transaction.js"
import { SettingsStore } from "../../src/database/SettingsStore.js"
import { DocStore } from "../../src/database/Stores.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import { parseAddress } from "../../src/layers/Sync.js"
import { Instance } from "../../src/services/Instance.js"
import * as SimNetwork from "../../src/layers/TransportSim.js"
import * as Server from "../../src/layers/SyncServer.js"
import { API_PATH } from "../../src/layers/TransportHttp.js"
import * as Permission from "../../src/schema/Permission.js"
import type { SyncRequest, SyncResponse } from "../../src/schema/Protocol.js"
import { PROTOCOL_VERSION } from "../../src/schema/Protocol.js"
import { Auth, type AuthShape } from "../../src/services/Auth.js"
import type { StorageShape } from "../../src/services/Storage.js"
import { Sync } from "../../src/services/Sync.js"
import type { TransportShape } from "../../src/services/Transport.js"
import {
  enableSync,
  grant,
  makeNode,
  type Node,
  nodeLayer,
  readData,
  setupDb,
  signProof,
  syncTree,
  write
} from "./SyncFixtures.js"

const SECRET = "the-secret-value-42"

/** A syntactically valid entry ID that no node holds. */
const fabricatedId = Entry.idOfBytes(new TextEncoder().encode("nobody has this"))

const text = (response: SyncResponse) => JSON.stringify(response)

const errorOf = (response: SyncResponse): string => {
  if (typeof response === "object" && "Error" in response) return response.Error
  throw new Error(`expected an Error response, got ${text(response).slice(0, 200)}`)
}

/** Decode a wire entry (base64) to its ID. */
const wireId = (wire: string) => Either.getOrThrow(Entry.decode(new Uint8Array(Buffer.from(wire, "base64")))).id

/** Every entry ID of a tree, parents first. */
const allIds = (node: Node, treeId: string) =>
  Effect.flatMap(node.storage.tips(treeId), (tips) => node.storage.ancestors(treeId, tips))

/** A private database on node A (auth, no global grant, sync enabled) holding a secret. */
const privateServer = Effect.gen(function*() {
  const a = yield* makeNode()
  const setup = yield* setupDb(a, { syncEnabled: true, data: { secret: SECRET } })
  return { a, ...setup }
})

const expectNoLeak = (response: SyncResponse, ...forbidden: ReadonlyArray<string>) => {
  const body = text(response)
  expect(body).not.toContain(SECRET)
  for (const f of forbidden) expect(body).not.toContain(f)
  if (typeof response === "object" && "Error" in response) {
    expect(body).not.toContain("missing_entries")
    expect(body).not.toContain("all_entries")
  }
}

describe("SyncAuth", () => {
  it("signing bytes are length-prefixed fields in the reference's order", () => {
    const bytes = SyncAuth.signingBytes({
      serverPubkey: "S",
      treeId: "T",
      tips: ["a", "bc"],
      timestampMs: 258,
      nonce: [7, 8]
    })
    const field = (b: ReadonlyArray<number>) => [0, 0, 0, 0, 0, 0, 0, b.length, ...b]
    const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0))
    expect(Array.from(bytes)).toEqual([
      ...field(ascii(SyncAuth.DOMAIN)),
      ...field(ascii("S")),
      ...field(ascii("T")),
      ...field([0, 0, 0, 0, 0, 0, 0, 2]),
      ...field(ascii("a")),
      ...field(ascii("bc")),
      ...field([0, 0, 0, 0, 0, 0, 1, 2]),
      ...field([7, 8])
    ])
  })

  it("the page splitter keeps the longest prefix within the budget, at least one entry", () => {
    const entries = ["a".repeat(10), "b".repeat(10), "c".repeat(10)]
    expect(SyncAuth.pageLength(entries, 26)).toBe(2)
    expect(SyncAuth.pageLength(entries, 25)).toBe(1)
    expect(SyncAuth.pageLength(entries, 1)).toBe(1)
    expect(SyncAuth.pageLength(entries, 1000)).toBe(3)
    expect(SyncAuth.pageLength([], 10)).toBe(0)
    expect(SyncAuth.splitPage(entries, 26)).toEqual({ page: entries.slice(0, 2), rest: entries.slice(2) })
  })

  it("addresses without a transport prefix are http", () =>
    Effect.runSync(
      Effect.gen(function*() {
        expect(yield* parseAddress("127.0.0.1:3000")).toEqual({ transport_type: "http", address: "127.0.0.1:3000" })
        expect(yield* parseAddress("localhost:3000")).toEqual({ transport_type: "http", address: "localhost:3000" })
        expect(yield* parseAddress("http:127.0.0.1:3000")).toEqual({ transport_type: "http", address: "127.0.0.1:3000" })
        expect(yield* parseAddress("sim:peer-1")).toEqual({ transport_type: "sim", address: "peer-1" })
        // a URL's form, as a user pastes it
        expect(yield* parseAddress("http://127.0.0.1:3000")).toEqual({ transport_type: "http", address: "127.0.0.1:3000" })
        expect(yield* parseAddress("http://[::1]:3000/")).toEqual({ transport_type: "http", address: "[::1]:3000" })
        expect(yield* parseAddress({ transport_type: "iroh", address: "x" })).toEqual({ transport_type: "iroh", address: "x" })
      })
    ))
})

describe("Sync handler: read authorization (scenarios 12-18)", () => {
  it.scoped("12: an unauthenticated incremental pull of a private database is refused without leaking", () =>
    Effect.gen(function*() {
      const { a, treeId, key } = yield* privateServer
      const response = yield* a.sync.handle(syncTree(treeId, [fabricatedId]), {})
      expect(errorOf(response)).toBe(`Authentication required to read database '${treeId}'`)
      expectNoLeak(response, key, a.instance.deviceId)
      // the bootstrap form is refused the same way
      const bootstrap = yield* a.sync.handle(syncTree(treeId, []), {})
      expect(errorOf(bootstrap)).toBe(`Authentication required to read database '${treeId}'`)
      expectNoLeak(bootstrap, key)
    }))

  it.scoped("13: a database with a global grant serves the same request (positive control)", () =>
    Effect.gen(function*() {
      const a = yield* makeNode()
      const { treeId } = yield* setupDb(a, { syncEnabled: true, global: Permission.Write(10), data: { secret: SECRET } })
      const response = yield* a.sync.handle(syncTree(treeId, [fabricatedId]), {})
      if (typeof response !== "object" || !("Incremental" in response)) throw new Error(text(response))
      // the unknown tip tells the server nothing, so everything comes back, parents first
      expect(response.Incremental.missing_entries.map(wireId)).toEqual(yield* allIds(a, treeId))
      expect(response.Incremental.their_tips).toEqual(yield* a.storage.tips(treeId))
      expect(response.Incremental.next).toBeUndefined()
    }))

  it.scoped("a proven requesting key that asks for no permission is told what it holds; unproven, nothing", () =>
    Effect.gen(function*() {
      const { a, treeId, signer } = yield* privateServer
      const writer = yield* a.auth.generateKey
      yield* grant(a, treeId, signer, writer.publicKey, Permission.Write(7))
      const asking = (auth: SyncRequest) => a.sync.handle(auth, {})
      const proof = yield* signProof(a.auth, writer, { serverPubkey: a.instance.deviceId, treeId, tips: [], timestampMs: yield* Clock.currentTimeMillis })
      const told = yield* asking({ SyncTree: { tree_id: treeId, our_tips: [], requesting_key: writer.publicKey, auth: proof } })
      if (typeof told !== "object" || !("Bootstrap" in told)) throw new Error(text(told))
      expect(told.Bootstrap.key_approved).toBe(true)
      expect(told.Bootstrap.granted_permission).toEqual(Permission.Write(7))
      // a proof by another key than the one named tells nothing about the named key
      const other = yield* signProof(a.auth, signer, { serverPubkey: a.instance.deviceId, treeId, tips: [], timestampMs: yield* Clock.currentTimeMillis })
      const untold = yield* asking({ SyncTree: { tree_id: treeId, our_tips: [], requesting_key: writer.publicKey, auth: other } })
      if (typeof untold !== "object" || !("Bootstrap" in untold)) throw new Error(text(untold))
      expect(untold.Bootstrap.key_approved).toBe(false)
      expect(untold.Bootstrap.granted_permission).toBeUndefined()
    }))

  it.scoped("14: a signed pull by a key granted Read is served", () =>
    Effect.gen(function*() {
      const { a, treeId, signer } = yield* privateServer
      const reader = yield* a.auth.generateKey
      yield* grant(a, treeId, signer, reader.publicKey, Permission.Read)
      const tips = [fabricatedId]
      const proof = yield* signProof(a.auth, reader, {
        serverPubkey: a.instance.deviceId,
        treeId,
        tips,
        timestampMs: yield* Clock.currentTimeMillis
      })
      const response = yield* a.sync.handle(syncTree(treeId, tips, { auth: proof }), {})
      expect(typeof response === "object" && "Incremental" in response).toBe(true)
      expect(text(response)).not.toContain("Error")
    }))

  it.scoped("15: a valid signature from a key without a grant is refused (Permission denied)", () =>
    Effect.gen(function*() {
      const { a, treeId, key } = yield* privateServer
      const stranger = yield* a.auth.generateKey
      const proof = yield* signProof(a.auth, stranger, {
        serverPubkey: a.instance.deviceId,
        treeId,
        tips: [fabricatedId],
        timestampMs: yield* Clock.currentTimeMillis
      })
      const response = yield* a.sync.handle(syncTree(treeId, [fabricatedId], { auth: proof }), {})
      expect(errorOf(response)).toMatch(/^Permission denied: /)
      expectNoLeak(response, key)
    }))

  it.scoped("16: a replayed signed request is refused the second time", () =>
    Effect.gen(function*() {
      const { a, treeId, signer } = yield* privateServer
      const proof = yield* signProof(a.auth, signer, {
        serverPubkey: a.instance.deviceId,
        treeId,
        tips: [fabricatedId],
        timestampMs: yield* Clock.currentTimeMillis
      })
      const request = syncTree(treeId, [fabricatedId], { auth: proof })
      const first = yield* a.sync.handle(request, {})
      expect(typeof first === "object" && "Incremental" in first).toBe(true)
      const second = yield* a.sync.handle(request, {})
      expect(errorOf(second)).toBe("Authentication failed: request nonce already spent")
      expectNoLeak(second)
    }))

  it.scoped("17: a request signed ten minutes ago is stale", () =>
    Effect.gen(function*() {
      const { a, treeId, signer } = yield* privateServer
      const now = yield* Clock.currentTimeMillis
      for (const timestampMs of [now - 10 * 60_000, now + 10 * 60_000]) {
        const proof = yield* signProof(a.auth, signer, {
          serverPubkey: a.instance.deviceId,
          treeId,
          tips: [fabricatedId],
          timestampMs
        })
        const response = yield* a.sync.handle(syncTree(treeId, [fabricatedId], { auth: proof }), {})
        expect(errorOf(response)).toBe("Authentication failed: request timestamp outside the freshness window")
        expectNoLeak(response)
      }
    }))

  it.scoped("18: a request signed for another server is refused", () =>
    Effect.gen(function*() {
      const { a, treeId, signer } = yield* privateServer
      const other = yield* a.auth.generateKey
      const proof = yield* signProof(a.auth, signer, {
        serverPubkey: other.publicKey,
        treeId,
        tips: [fabricatedId],
        timestampMs: yield* Clock.currentTimeMillis
      })
      const response = yield* a.sync.handle(syncTree(treeId, [fabricatedId], { auth: proof }), {})
      expect(errorOf(response)).toMatch(/^Authentication failed: invalid request signature/)
      // tampering with the tips after signing breaks the signature too
      const tampered = yield* signProof(a.auth, signer, {
        serverPubkey: a.instance.deviceId,
        treeId,
        tips: [fabricatedId],
        timestampMs: yield* Clock.currentTimeMillis
      })
      const response2 = yield* a.sync.handle(syncTree(treeId, [fabricatedId, treeId], { auth: tampered }), {})
      expect(errorOf(response2)).toMatch(/^Authentication failed: invalid request signature/)
    }))

  it.scoped("the handshake lists only databases readable without proof", () =>
    Effect.gen(function*() {
      const a = yield* makeNode()
      const open = yield* setupDb(a, { username: "pub", syncEnabled: true, global: Permission.Read })
      yield* setupDb(a, { username: "priv", syncEnabled: true })
      yield* setupDb(a, { username: "off", global: Permission.Read })
      const challenge = Array.from(yield* a.auth.randomBytes(32))
      const response = yield* a.sync.handle(
        {
          Handshake: {
            device_id: a.instance.deviceId,
            public_key: a.instance.deviceId,
            protocol_version: PROTOCOL_VERSION,
            challenge,
            listen_addresses: []
          }
        },
        {}
      )
      if (typeof response !== "object" || !("Handshake" in response)) throw new Error(text(response))
      expect(response.Handshake.available_trees.map((t) => t.tree_id)).toEqual([open.treeId])
      expect(response.Handshake.available_trees[0]!.entry_count).toBe(yield* a.storage.count(open.treeId))
      expect(
        yield* a.auth.verify(response.Handshake.public_key, response.Handshake.challenge_response, Uint8Array.from(challenge))
      ).toBe(true)
      const mismatch = yield* a.sync.handle(
        {
          Handshake: {
            device_id: a.instance.deviceId,
            public_key: a.instance.deviceId,
            protocol_version: 7,
            challenge,
            listen_addresses: []
          }
        },
        {}
      )
      expect(errorOf(mismatch)).toBe("Protocol version mismatch: expected 0, received 7")
    }))
})

describe("Sync handler: the sync-enabled gate (scenarios 19-21)", () => {
  it.scoped("19-21: a database nobody syncs answers exactly like an absent one, until sync is enabled", () =>
    Effect.gen(function*() {
      const a = yield* makeNode()
      const { treeId, user, key } = yield* setupDb(a, { global: Permission.Write(10), data: { k: "v" } })
      const absent = fabricatedId
      // 19: bootstrap
      expect(errorOf(yield* a.sync.handle(syncTree(treeId, []), {}))).toBe(`Tree not found: ${treeId}`)
      expect(errorOf(yield* a.sync.handle(syncTree(absent, []), {}))).toBe(`Tree not found: ${absent}`)
      // 20: incremental
      expect(errorOf(yield* a.sync.handle(syncTree(treeId, [treeId]), {}))).toBe(`Tree not found: ${treeId}`)
      expect(errorOf(yield* a.sync.handle(syncTree(absent, [treeId]), {}))).toBe(`Tree not found: ${absent}`)
      // pushes are gated the same way
      const root = Option.getOrThrow(yield* a.storage.get(treeId))
      const pushed = yield* a.sync.handle({ SendEntries: [Buffer.from(root.bytes).toString("base64")] }, {})
      expect(errorOf(pushed)).toBe(`Tree not found: ${treeId}`)
      // 21: enabled
      yield* a.run(enableSync(user, treeId, key))
      const bootstrap = yield* a.sync.handle(syncTree(treeId, []), {})
      if (typeof bootstrap !== "object" || !("Bootstrap" in bootstrap)) throw new Error(text(bootstrap))
      expect(wireId(bootstrap.Bootstrap.root_entry)).toBe(treeId)
      expect(bootstrap.Bootstrap.key_approved).toBe(false)
      expect([treeId, ...bootstrap.Bootstrap.all_entries.map(wireId)]).toEqual(yield* allIds(a, treeId))
      const incremental = yield* a.sync.handle(syncTree(treeId, [treeId]), {})
      expect(typeof incremental === "object" && "Incremental" in incremental).toBe(true)
      // disabling again closes it
      yield* a.run(user.trackDatabase({ databaseId: treeId, keyId: key, syncSettings: { syncEnabled: false, syncOnCommit: false, properties: {} } }))
      expect(errorOf(yield* a.sync.handle(syncTree(treeId, []), {}))).toBe(`Tree not found: ${treeId}`)
    }))
})

describe("Sync client", () => {
  it.scoped("methods needing a transport fail with NoTransportEnabled; server misuse has the reference's errors", () =>
    Effect.gen(function*() {
      const a = yield* makeNode()
      const noTransport = yield* Effect.flip(a.sync.syncWithPeer("127.0.0.1:1", fabricatedId))
      expect(noTransport._tag).toBe("NoTransportEnabled")
      expect(noTransport.message).toBe("No transport enabled. Call enable_http_transport() first")
      expect((yield* Effect.flip(a.sync.startServer("127.0.0.1:0")))._tag).toBe("NoTransportEnabled")
      expect((yield* Effect.flip(a.sync.stopServer)).message).toBe("Server not running")
      expect((yield* Effect.flip(a.sync.getServerAddress))._tag).toBe("ServerNotRunning")
      yield* a.sync.enableHttpTransport()
      yield* a.sync.enableHttpTransport()
      const address = yield* a.sync.startServer("127.0.0.1:0")
      expect(address).toMatch(/^127\.0\.0\.1:\d+$/)
      expect(yield* a.sync.getServerAddress).toBe(address)
      const again = yield* Effect.flip(a.sync.startServer("127.0.0.1:0"))
      expect(again._tag).toBe("ServerAlreadyRunning")
      expect(again.message).toBe(`Server already running on ${address}`)
      yield* a.sync.stopServer
      expect((yield* Effect.flip(a.sync.getServerAddress))._tag).toBe("ServerNotRunning")
      const restarted = yield* a.sync.startServer("127.0.0.1:0")
      expect(restarted).toMatch(/^127\.0\.0\.1:\d+$/)
      const unknown = yield* Effect.flip(a.sync.syncWithPeer("iroh:abc", fabricatedId))
      expect(unknown._tag).toBe("NoTransportForAddress")
    }))

  it.scoped("enabling a transport tells Auth that entries may come (the node layer starts its verifier then), once", () =>
    Effect.gen(function*() {
      const hints: Array<number> = []
      // the node Auth layer, recording each hint to its background verifier
      const spied = Layer.effect(
        Auth,
        Effect.map(Auth, (auth): AuthShape => ({
          ...auth,
          verifyAhead: (items) => {
            hints.push(items.length)
            return auth.verifyAhead!(items)
          }
        }))
      ).pipe(Layer.provide(AuthLayers.layerNode))
      const sync = Context.get(yield* Layer.build(nodeLayer({}, spied)), Sync) // lives as long as the test's scope
      expect(hints).toEqual([])
      yield* sync.enableHttpTransport()
      expect(hints).toEqual([0])
      yield* sync.enableHttpTransport() // enabled already: nothing new may come
      expect(hints).toEqual([0])
    }))

  it.scoped("25: a malformed ed25519 signer key fails with a clear error before anything is sent", () =>
    Effect.gen(function*() {
      const { a, treeId } = yield* privateServer
      yield* a.sync.enableHttpTransport()
      const address = yield* a.sync.startServer("127.0.0.1:0")
      const b = yield* makeNode()
      yield* b.sync.enableHttpTransport()
      const good = yield* b.auth.generateKey
      for (const publicKey of ["ed25519:not-a-key", "ed25519:", "ed25519:" + "A".repeat(44)]) {
        const error = yield* Effect.flip(b.sync.syncWithPeer(address, treeId, { signer: { publicKey, secretKey: good.secretKey } }))
        expect(error._tag).toBe("CryptoError")
        expect(error.message).toContain("invalid public key")
      }
      const mismatched = yield* Effect.flip(
        b.sync.syncWithPeer(address, treeId, { signer: { publicKey: good.publicKey, secretKey: (yield* b.auth.generateKey).secretKey } })
      )
      expect(mismatched._tag).toBe("CryptoError")
      expect(yield* b.storage.count(treeId)).toBe(0)
    }))

  it.scoped("the client maps refusals to typed errors", () =>
    Effect.gen(function*() {
      const { a, treeId, signer } = yield* privateServer
      yield* a.sync.enableHttpTransport()
      const address = yield* a.sync.startServer("127.0.0.1:0")
      const b = yield* makeNode()
      yield* b.sync.enableHttpTransport()
      // the device key of B is not in A's auth
      const denied = yield* Effect.flip(b.sync.syncWithPeer(address, treeId))
      expect(denied._tag).toBe("PermissionDenied")
      expect((yield* Effect.flip(b.sync.syncWithPeer(address, fabricatedId)))._tag).toBe("TreeNotFound")
      // with the admin's key as signer B bootstraps the private database
      const result = yield* b.sync.syncWithPeer(address, treeId, { signer })
      expect(result.received).toBe(yield* a.storage.count(treeId))
      expect(yield* readData(b, treeId)).toEqual({ secret: SECRET })
      // an unreachable peer is a TransportError
      yield* a.sync.stopServer
      expect((yield* Effect.flip(b.sync.syncWithPeer(address, treeId, { signer })))._tag).toBe("TransportError")
    }))

  it.scoped("a tree full of pending bootstrap requests refuses another with PermissionDenied and records nothing", () =>
    Effect.gen(function*() {
      const { a, treeId } = yield* privateServer
      yield* a.sync.enableHttpTransport()
      const address = yield* a.sync.startServer("127.0.0.1:0")
      for (let i = 0; i < BootstrapRequests.MAX_PENDING_PER_TREE; i++) {
        yield* a.run(BootstrapRequests.record({ treeId, requestingKey: `ed25519:asker-${i}`, requestedPermission: Permission.Read }))
      }
      const b = yield* makeNode()
      yield* b.sync.enableHttpTransport()
      const asker = yield* b.auth.generateKey
      const refused = yield* Effect.flip(
        b.sync.syncWithPeer(address, treeId, { signer: asker, request: { permission: Permission.Write(10) } })
      )
      expect(refused._tag).toBe("PermissionDenied")
      expect(refused.message).toContain(`database ${treeId} already has ${BootstrapRequests.MAX_PENDING_PER_TREE} pending bootstrap requests`)
      const pending = yield* a.run(BootstrapRequests.list("Pending"))
      expect(pending).toHaveLength(BootstrapRequests.MAX_PENDING_PER_TREE)
      expect(pending.some((r) => r.requestingKey === asker.publicKey)).toBe(false)
      expect(yield* b.storage.count(treeId)).toBe(0)
    }))
})

/** A transport for `fake:` addresses whose answers a test scripts from the real handler's. */
const fakePeer = (
  real: Node,
  bend: (request: SyncRequest, response: SyncResponse) => SyncResponse = (_request, response) => response
): TransportShape => ({
  transportType: "fake",
  canHandle: (address) => address.transport_type === "fake",
  send: (_address, request) => Effect.map(real.sync.handle(request, {}), (response) => bend(request, response)),
  serve: () => Effect.die("not a server")
})

describe("Sync client against a lying peer", () => {
  const setup = Effect.gen(function*() {
    const a = yield* makeNode()
    const { treeId, signer } = yield* setupDb(a, { syncEnabled: true, global: Permission.Write(10), data: { k: 1 } })
    const other = yield* setupDb(a, { username: "other", syncEnabled: true, global: Permission.Write(10) })
    const b = yield* makeNode()
    return { a, b, treeId, signer, otherTree: other.treeId }
  })

  it.scoped("a handshake whose challenge response does not verify fails with HandshakeFailed; a version mismatch is typed", () =>
    Effect.gen(function*() {
      const { a, b, treeId } = yield* setup
      yield* b.sync.enableTransport(
        fakePeer(a, (_req, res) =>
          typeof res === "object" && "Handshake" in res
            ? { Handshake: { ...res.Handshake, challenge_response: Buffer.alloc(64).toString("base64") } }
            : res
        )
      )
      const failed = yield* Effect.flip(b.sync.syncWithPeer("fake:a", treeId))
      expect(failed._tag).toBe("HandshakeFailed")
      const c = yield* makeNode()
      yield* c.sync.enableTransport(
        fakePeer(a, (_req, res) =>
          typeof res === "object" && "Handshake" in res ? { Handshake: { ...res.Handshake, protocol_version: 1 } } : res
        )
      )
      const mismatch = yield* Effect.flip(c.sync.syncWithPeer("fake:a", treeId))
      expect(mismatch._tag).toBe("ProtocolVersionMismatch")
      expect(mismatch.message).toBe("Protocol version mismatch: expected 0, received 1")
    }))

  it.scoped("a bootstrap whose root is not the requested tree is refused and nothing is stored", () =>
    Effect.gen(function*() {
      const { a, b, treeId, otherTree } = yield* setup
      const otherRoot = Option.getOrThrow(yield* a.storage.get(otherTree))
      yield* b.sync.enableTransport(
        fakePeer(a, (_req, res) =>
          typeof res === "object" && "Bootstrap" in res
            ? { Bootstrap: { ...res.Bootstrap, root_entry: Buffer.from(otherRoot.bytes).toString("base64") } }
            : res
        )
      )
      const error = yield* Effect.flip(b.sync.syncWithPeer("fake:a", treeId))
      expect(error._tag).toBe("InvalidEntry")
      expect(yield* b.storage.roots).toEqual([])
    }))

  it.scoped("entries of another database or forged entries in a pull are refused; valid ones stay", () =>
    Effect.gen(function*() {
      const { a, b, treeId, otherTree } = yield* setup
      const intruder = Option.getOrThrow(yield* a.storage.get(otherTree))
      yield* b.sync.enableTransport(
        fakePeer(a, (_req, res) =>
          typeof res === "object" && "Bootstrap" in res
            ? {
              Bootstrap: {
                ...res.Bootstrap,
                all_entries: [...res.Bootstrap.all_entries, Buffer.from(intruder.bytes).toString("base64")]
              }
            }
            : res
        )
      )
      const error = yield* Effect.flip(b.sync.syncWithPeer("fake:a", treeId))
      expect(error._tag).toBe("InvalidEntry")
      expect(error.message).toContain(`belongs to database ${otherTree}`)
      expect(yield* b.storage.count(treeId)).toBe(yield* a.storage.count(treeId))
      expect(yield* b.storage.count(otherTree)).toBe(0)
    }))

  it.scoped("a peer that keeps paging without sending anything new is stopped", () =>
    Effect.gen(function*() {
      const { a, b, treeId } = yield* setup
      let calls = 0
      yield* b.sync.enableTransport(
        fakePeer(a, (_req, res) => {
          if (typeof res !== "object") return res
          if ("Bootstrap" in res) return { Bootstrap: { ...res.Bootstrap, next: "more" } }
          if ("Incremental" in res) {
            calls++
            return { Incremental: { ...res.Incremental, missing_entries: [], next: "more" } }
          }
          return res
        })
      )
      const error = yield* Effect.flip(b.sync.syncWithPeer("fake:a", treeId))
      expect(error._tag).toBe("RemoteError")
      expect(calls).toBeLessThanOrEqual(2)
    }))

  it.scoped("a tip the peer names but does not send is not remembered as shared: the next sync fetches it", () =>
    Effect.gen(function*() {
      const { a, b, treeId, signer } = yield* setup
      // once, the peer names its tips but sends none of what leads to them (as a commit landing
      // while it answers could make it do)
      let withhold = false
      yield* b.sync.enableTransport(
        fakePeer(a, (_req, res) => {
          if (!withhold || typeof res !== "object" || !("Incremental" in res)) return res
          withhold = false
          return { Incremental: { ...res.Incremental, missing_entries: [] } }
        })
      )
      yield* b.sync.syncWithPeer("fake:a", treeId) // bootstrap
      const x = yield* write(a, treeId, signer, "x", "X")
      withhold = true
      yield* b.sync.syncWithPeer("fake:a", treeId)
      expect((yield* b.storage.has([x])).size).toBe(0)
      // had we remembered x as shared, we would tell the peer we hold it, and never get it
      yield* b.sync.syncWithPeer("fake:a", treeId)
      expect((yield* b.storage.has([x])).size).toBe(1)
      // and a write on top of it comes with a known parent
      yield* write(a, treeId, signer, "y", "Y")
      expect(yield* b.sync.syncWithPeer("fake:a", treeId)).toMatchObject({ received: 1 })
      expect(yield* readData(b, treeId)).toMatchObject({ x: "X", y: "Y" })
    }))
})

describe("Sync client: incremental pulls", () => {
  it.scoped("pages holding only entries we already have do not stop the pull", () =>
    Effect.gen(function*() {
      // A answers one entry per page (as a 900 KB page does when thousands of entries are shared)
      const a = yield* makeNode({ pageBytes: 1 })
      const { treeId, signer } = yield* setupDb(a, { syncEnabled: true, global: Permission.Write(10) })
      for (let i = 0; i < 10; i++) yield* write(a, treeId, signer, `shared${i}`, i)
      // B holds that history from elsewhere (another peer, or before a restart): no frontier with A,
      // so it sends A a sparse sample, and A resends the shared entries above the sample, lowest first
      const b = yield* makeNode()
      const shared = yield* a.storage.getMany(yield* allIds(a, treeId))
      expect((yield* b.run(ingestPartial(shared, "remote"))).rejected).toEqual([])
      yield* b.instance.createUser("bob")
      const bob = yield* b.instance.loginUser("bob")
      const opened = yield* b.run(bob.openDatabase(treeId))
      for (let i = 0; i < 5; i++) yield* write(b, treeId, opened.signer, `b${i}`, i)
      yield* write(a, treeId, signer, "fromA", true)
      yield* b.sync.enableTransport(fakePeer(a))
      const first = yield* b.sync.syncWithPeer("fake:a", treeId)
      expect(first).toMatchObject({ received: 1, sent: 5 })
      expect((yield* readData(b, treeId))["fromA"]).toBe(true)
      expect(yield* b.storage.tips(treeId)).toEqual(yield* a.storage.tips(treeId))
      expect(yield* b.sync.syncWithPeer("fake:a", treeId)).toMatchObject({ received: 0, sent: 0 })
    }))
})

describe("Sync handler: DAG sync (scenarios 31, 32)", () => {
  /** A and B share the database; B holds only what `copy` gives it. */
  const pair = Effect.gen(function*() {
    const a = yield* makeNode()
    const setup = yield* setupDb(a, { syncEnabled: true, global: Permission.Write(10) })
    const b = yield* makeNode()
    const copy = (ids: ReadonlyArray<string>, from: Node = a, to: Node = b) =>
      Effect.gen(function*() {
        const entries = yield* from.storage.getMany(ids)
        const report = yield* to.run(ingestPartial(entries, "remote"))
        expect(report.rejected).toEqual([])
      })
    return { a, b, copy, ...setup }
  })

  const incremental = (node: Node, treeId: string, tips: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const response = yield* node.sync.handle(syncTree(treeId, tips), {})
      if (typeof response !== "object" || !("Incremental" in response)) throw new Error(text(response))
      return { ids: response.Incremental.missing_entries.map(wireId), theirTips: response.Incremental.their_tips }
    })

  it.scoped("31: linear chain, branches and partial overlap", () =>
    Effect.gen(function*() {
      const { a, b, copy, treeId, signer } = yield* pair
      const base = yield* allIds(a, treeId) // root and the global-grant entry
      yield* copy(base)
      const e1 = yield* write(a, treeId, signer, "k", 1)
      const e2 = yield* write(a, treeId, signer, "k", 2)
      const e3 = yield* write(a, treeId, signer, "k", 3)
      const linear = yield* incremental(a, treeId, yield* b.storage.tips(treeId))
      expect(linear.ids).toEqual([e1, e2, e3])
      const entries = yield* a.storage.getMany(linear.ids)
      yield* b.run(ingestPartial(entries, "remote"))
      expect(yield* b.storage.tips(treeId)).toEqual([e3])
      // partial overlap: a peer holding e2 gets only what follows e2
      expect((yield* incremental(a, treeId, [e2])).ids).toEqual([e3])
      // branching: A has e3 → {e4a, e4b} (e4b written on C, a third replica)
      const c = yield* makeNode()
      yield* copy(yield* allIds(a, treeId), a, c)
      const e4a = yield* write(a, treeId, signer, "x", "a")
      const e4b = yield* write(c, treeId, signer, "x", "b")
      yield* copy([e4b], c, a)
      expect([...(yield* a.storage.tips(treeId))].sort()).toEqual([e4a, e4b].sort())
      const branches = yield* incremental(a, treeId, [e3])
      expect([...branches.ids].sort()).toEqual([e4a, e4b].sort())
      yield* b.run(ingestPartial(yield* a.storage.getMany(branches.ids), "remote"))
      expect([...(yield* b.storage.tips(treeId))].sort()).toEqual([e4a, e4b].sort())
      // the same through the client, over HTTP: nothing more to pull, nothing to push
      yield* a.sync.enableHttpTransport()
      yield* b.sync.enableHttpTransport()
      const address = yield* a.sync.startServer("127.0.0.1:0")
      const result = yield* b.sync.syncWithPeer(address, treeId)
      expect(result).toMatchObject({ received: 0, sent: 0 })
    }))

  it.scoped("every tip an answer names is sent or held by the requester, even when a commit lands mid-answer", () =>
    Effect.gen(function*() {
      const { a, b, copy, treeId, signer } = yield* pair
      yield* copy(yield* allIds(a, treeId))
      // A's handler over its storage, where a commit lands right after the first of the answer's two
      // reads (tips, missing), whichever comes first
      let landing: Effect.Effect<unknown, unknown> | undefined
      const then = <A, E>(read: Effect.Effect<A, E>) =>
        Effect.tap(read, () => {
          const commit = landing
          landing = undefined
          return commit === undefined ? Effect.void : Effect.orDie(commit)
        })
      const storage: StorageShape = {
        ...a.storage,
        tips: (id) => then(a.storage.tips(id)),
        missing: (id, known) => then(a.storage.missing(id, known))
      }
      const handle = Server.makeHandler({ instance: a.instance, storage, auth: a.auth, env: a.context, pageBytes: 900_000 })
      landing = write(a, treeId, signer, "x", "X")
      const response = yield* handle(syncTree(treeId, yield* b.storage.tips(treeId)), {})
      if (typeof response !== "object" || !("Incremental" in response)) throw new Error(text(response))
      expect(landing).toBeUndefined()
      const sent = new Set(response.Incremental.missing_entries.map(wireId))
      const held = yield* b.storage.has(response.Incremental.their_tips)
      expect(response.Incremental.their_tips.filter((t) => !sent.has(t) && !held.has(t))).toEqual([])
    }))

  it.scoped("32: out-of-order arrival within a push converges on the right tips; a lone child is refused", () =>
    Effect.gen(function*() {
      const { a, b, copy, treeId, signer } = yield* pair
      yield* copy(yield* allIds(a, treeId))
      const { user, key } = yield* setupDb(b, { username: "bob" })
      yield* b.run(enableSync(user, treeId, key))
      const e1 = yield* write(a, treeId, signer, "k", 1)
      const e2 = yield* write(a, treeId, signer, "k", 2)
      const e3 = yield* write(a, treeId, signer, "k", 3)
      const wire = (ids: ReadonlyArray<string>) =>
        Effect.map(a.storage.getMany(ids), (es) => es.map((e) => Buffer.from(e.bytes).toString("base64")))
      // a child without its parents is refused and nothing of it stored
      const lone = yield* b.sync.handle({ SendEntries: yield* wire([e3]) }, {})
      expect(errorOf(lone)).toMatch(/^Rejected 1 entries: .*unknown parent/)
      expect((yield* b.storage.has([e3])).size).toBe(0)
      // the whole chain child-first is accepted
      const reply = yield* b.sync.handle({ SendEntries: yield* wire([e3, e2, e1]) }, {})
      expect(reply).toEqual({ Count: 3 })
      expect(yield* b.storage.tips(treeId)).toEqual([e3])
      expect(yield* b.storage.storeTips(treeId, "data")).toEqual([e3])
      // diamond e3 → {e4a, e4b} → e5, delivered in every order
      const c = yield* makeNode()
      yield* copy(yield* allIds(a, treeId), a, c)
      const e4a = yield* write(a, treeId, signer, "x", "a")
      const e4b = yield* write(c, treeId, signer, "x", "b")
      yield* copy([e4b], c, a)
      const e5 = yield* write(a, treeId, signer, "x", "merged")
      const orders = [[e4a, e4b, e5], [e5, e4b, e4a], [e4b, e5, e4a], [e5, e4a, e4b]]
      for (const order of orders) {
        const d = yield* makeNode()
        const { user: du, key: dk } = yield* setupDb(d, { username: "dee" })
        yield* d.run(enableSync(du, treeId, dk))
        yield* copy(yield* allIds(b, treeId), b, d)
        expect(yield* d.sync.handle({ SendEntries: yield* wire(order) }, {})).toEqual({ Count: 3 })
        expect(yield* d.storage.tips(treeId)).toEqual([e5])
        expect(yield* d.storage.storeTips(treeId, "data")).toEqual([e5])
      }
      // one entry answers Ack
      const single = yield* write(a, treeId, signer, "y", 1)
      expect(yield* b.sync.handle({ SendEntries: yield* wire([e4a]) }, {})).toEqual("Ack")
      void single
      // entries already held (a relay's echo) are skipped before decoding: none stored, none refused
      const tipsBefore = yield* b.storage.tips(treeId)
      expect(yield* b.sync.handle({ SendEntries: yield* wire([e3, e2, e1]) }, {})).toEqual({ Count: 0 })
      expect(yield* b.storage.tips(treeId)).toEqual(tipsBefore)
      // the same bytes with one bit changed are another ID: decoded, checked and refused
      const [held] = yield* a.storage.getMany([e3])
      const bent = Uint8Array.from(held!.bytes)
      bent[bent.length - 1]! ^= 1
      const bentReply = yield* b.sync.handle({ SendEntries: [Buffer.from(bent).toString("base64")] }, {})
      expect(errorOf(bentReply)).toMatch(/^Rejected 1 entries: /)
      expect(yield* b.storage.tips(treeId)).toEqual(tipsBefore)
    }))
})

describe("Sync end to end over HTTP", () => {
  const served = Effect.gen(function*() {
    const a = yield* makeNode()
    const setup = yield* setupDb(a, { syncEnabled: true, global: Permission.Write(10), data: { title: "hello", n: 1 } })
    yield* a.sync.enableHttpTransport()
    const address = yield* a.sync.startServer("127.0.0.1:0")
    const b = yield* makeNode()
    yield* b.sync.enableHttpTransport()
    yield* b.instance.createUser("bob")
    const bob = yield* b.instance.loginUser("bob")
    return { a, b, address, bob, ...setup }
  })

  it.live("bootstrap, push, divergence and convergence in one call", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { a, b, address, bob, treeId, signer } = yield* served
        // bootstrap
        const first = yield* b.sync.syncWithPeer(address, treeId)
        expect(first.received).toBe(yield* a.storage.count(treeId))
        expect(first.sent).toBe(0)
        expect(yield* readData(b, treeId)).toEqual({ title: "hello", n: 1 })
        expect(yield* b.storage.tips(treeId)).toEqual(yield* a.storage.tips(treeId))
        // a second sync costs one round trip: the handshake is cached and nothing moves
        expect(yield* b.sync.syncWithPeer(address, treeId)).toEqual({ received: 0, sent: 0, roundTrips: 1 })
        // B writes (under the global grant) and pushes
        const opened = yield* b.run(bob.openDatabase(treeId))
        const fromB = yield* write(b, treeId, opened.signer, "byB", true)
        const push = yield* b.sync.syncWithPeer(address, treeId)
        expect(push).toMatchObject({ received: 0, sent: 1 })
        expect((yield* a.storage.has([fromB])).has(fromB)).toBe(true)
        expect(yield* readData(a, treeId)).toEqual({ title: "hello", n: 1, byB: true })
        // both diverge by several entries and converge in one call
        for (let i = 0; i < 3; i++) yield* write(a, treeId, signer, `a${i}`, i)
        for (let i = 0; i < 4; i++) yield* write(b, treeId, opened.signer, `b${i}`, i)
        const both = yield* b.sync.syncWithPeer(address, treeId)
        expect(both).toMatchObject({ received: 3, sent: 4 })
        expect(yield* a.storage.tips(treeId)).toEqual(yield* b.storage.tips(treeId))
        expect(yield* readData(a, treeId)).toEqual(yield* readData(b, treeId))
        expect(Object.keys(yield* readData(a, treeId)).sort()).toEqual(
          ["title", "n", "byB", "a0", "a1", "a2", "b0", "b1", "b2", "b3"].sort()
        )
        expect(yield* a.storage.count(treeId)).toBe(yield* b.storage.count(treeId))
      })
    ))

  it.live("a bootstrap larger than one page arrives by continuation, every page verified", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const kinds: Array<string> = []
        const counting = (t: TransportShape): TransportShape => ({
          ...t,
          send: (address, request) => {
            kinds.push(Object.keys(request)[0]!)
            return t.send(address, request)
          }
        })
        const a = yield* makeNode()
        const { treeId, signer } = yield* setupDb(a, { syncEnabled: true, global: Permission.Read })
        // 3,000 entries with ~500-byte values, one commit each: about 2 MiB on the wire, several pages
        const big = "v".repeat(500)
        yield* a.run(
          Effect.gen(function*() {
            for (let i = 0; i < 3_000; i++) {
              const txn = Transaction.begin({ rootId: treeId }, signer)
              yield* new DocStore(txn, "data").set(`k${i % 50}`, `${i}:${big}`)
              yield* Transaction.commit(txn)
            }
          })
        )
        yield* a.sync.enableHttpTransport()
        const address = yield* a.sync.startServer("127.0.0.1:0")
        const b = yield* makeNode({ wrapTransport: counting })
        yield* b.sync.enableHttpTransport()
        const result = yield* b.sync.syncWithPeer(address, treeId)
        const total = yield* a.storage.count(treeId)
        expect(total).toBeGreaterThan(3_000)
        expect(result.received).toBe(total)
        expect(kinds.filter((k) => k === "SyncTree").length).toBeGreaterThan(1)
        expect(kinds.filter((k) => k === "SendEntries").length).toBe(0)
        expect(yield* b.storage.tips(treeId)).toEqual(yield* a.storage.tips(treeId))
        expect(new Set(yield* allIds(b, treeId))).toEqual(new Set(yield* allIds(a, treeId)))
        expect(yield* readData(b, treeId)).toEqual(yield* readData(a, treeId))
        // every page is a bounded message
        const response = yield* a.sync.handle(syncTree(treeId, []), {})
        expect(JSON.stringify(response).length).toBeLessThan(1024 * 1024)
        if (typeof response !== "object" || !("Bootstrap" in response)) throw new Error("expected a bootstrap")
        expect(response.Bootstrap.next).toBe("more")
        // pushing a large backlog is paged too
        const c = yield* makeNode({ wrapTransport: counting })
        const { user, key } = yield* setupDb(c, { username: "carol" })
        yield* c.run(enableSync(user, treeId, key))
        // C holds the root and the entry that grants global Read, nothing else
        const head = yield* a.storage.getMany((yield* allIds(a, treeId)).slice(0, 2))
        yield* c.run(ingestPartial(head, "remote"))
        yield* c.sync.enableHttpTransport()
        const cAddress = yield* c.sync.startServer("127.0.0.1:0")
        kinds.length = 0
        const pushed = yield* b.sync.syncWithPeer(cAddress, treeId)
        expect(pushed.sent).toBe(total - 2)
        expect(kinds.filter((k) => k === "SendEntries").length).toBeGreaterThan(1)
        expect(yield* c.storage.tips(treeId)).toEqual(yield* a.storage.tips(treeId))
      })
    ), 120_000)

  it.live("a push containing a forged entry is refused and reported; only the valid entries are stored", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { a, b, address, bob, treeId } = yield* served
        yield* b.sync.syncWithPeer(address, treeId)
        const opened = yield* b.run(bob.openDatabase(treeId))
        const good = yield* write(b, treeId, opened.signer, "good", 1)
        const goodEntry = Option.getOrThrow(yield* b.storage.get(good))
        // forge: same signer and signature, other data
        const data = Doc.from({ good: 666 }).encode()
        const forgedEntry: typeof goodEntry.entry = {
          ...goodEntry.entry,
          subtrees: goodEntry.entry.subtrees.map((s) => (s.name === "data" ? { ...s, data } : s))
        }
        const forged = Entry.stored(forgedEntry)
        const before = { tips: yield* a.storage.tips(treeId), count: yield* a.storage.count(treeId) }
        const response = yield* a.sync.handle(
          { SendEntries: [goodEntry, forged].map((e) => Buffer.from(e.bytes).toString("base64")) },
          {}
        )
        expect(errorOf(response)).toMatch(/^Rejected 1 entries: .*signature does not verify/)
        expect((yield* a.storage.has([forged.id])).size).toBe(0)
        expect((yield* a.storage.has([good])).size).toBe(1)
        expect(yield* a.storage.count(treeId)).toBe(before.count + 1)
        // sent alone over HTTP, the forged entry is refused with RemoteError and changes nothing
        const alone = yield* a.sync.handle({ SendEntries: [Buffer.from(forged.bytes).toString("base64")] }, {})
        expect(errorOf(alone)).toMatch(/^Rejected 1 entries/)
        expect(yield* readData(a, treeId)).toMatchObject({ good: 1 })
      })
    ))
})

describe("pushes into a database without a global grant", () => {
  /** A private database on A served over HTTP; B holds it through a member key. */
  const pushSetup = Effect.gen(function*() {
    const { a, db, signer: admin, treeId } = yield* privateServer
    // B's device key is the member: what B's engine signs with when no user is logged in
    const b = yield* makeNode()
    const member = b.instance.device
    yield* grant(a, treeId, admin, member.publicKey, Permission.Write(10))
    yield* a.sync.enableHttpTransport()
    const address = yield* a.sync.startServer("127.0.0.1:0")
    yield* b.sync.enableHttpTransport()
    yield* b.sync.syncWithPeer(address, treeId, { signer: member })
    return { a, b, db, admin, member, address, treeId }
  })
  const wireOf = (node: Node, id: string) =>
    Effect.map(node.storage.get(id), (e) => Buffer.from(Option.getOrThrow(e).bytes).toString("base64"))
  const pushProof = (node: Node, signer: { publicKey: string; secretKey: string }, serverPubkey: string, entryIds: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const nonce = yield* node.auth.randomBytes(32)
      const timestampMs = yield* Clock.currentTimeMillis
      const signature = yield* node.auth.sign(signer.secretKey, SyncAuth.pushSigningBytes({ serverPubkey, entryIds, timestampMs, nonce }))
      return { key: signer.publicKey, timestamp_ms: timestampMs, nonce: Array.from(nonce), signature }
    })

  it.live("take a push only with a fresh proof, for this server and these entries, from a key holding a permission there", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { a, b, member, treeId } = yield* pushSetup
        const e = yield* write(b, treeId, member, "from-b", 1)
        const wire = yield* wireOf(b, e)
        const stranger = yield* a.auth.generateKey
        const me = a.instance.deviceId
        const refusals: ReadonlyArray<[SyncRequest, RegExp]> = [
          [{ SendEntries: [wire] }, new RegExp(`^Authentication required to write to database '${treeId}'$`)],
          [{ SendEntries: [wire], auth: yield* pushProof(b, stranger, me, [e]) }, /^Permission denied: key .* may not push to database/],
          [{ SendEntries: [wire], auth: yield* pushProof(b, member, b.instance.deviceId, [e]) }, /^Authentication failed: invalid request signature/],
          [{ SendEntries: [wire], auth: yield* pushProof(b, member, me, [fabricatedId]) }, /^Authentication failed: invalid request signature/],
          [
            { SendEntries: [wire], auth: { ...(yield* pushProof(b, member, me, [e])), timestamp_ms: 1 } },
            /^Authentication failed: invalid request signature/
          ]
        ]
        for (const [request, expected] of refusals) {
          expect(errorOf(yield* a.sync.handle(request, {}))).toMatch(expected)
          expect((yield* a.storage.has([e])).size).toBe(0)
        }
        const proof = yield* pushProof(b, member, me, [e])
        expect(yield* a.sync.handle({ SendEntries: [wire], auth: proof }, {})).toBe("Ack")
        expect((yield* a.storage.has([e])).size).toBe(1)
        expect(errorOf(yield* a.sync.handle({ SendEntries: [wire], auth: proof }, {}))).toBe(SyncAuth.NONCE_SPENT)
      })
    ))

  it.live("a key revoked here pushes no more, though its client, not told, still pins the settings from before", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { a, address, admin, b, member, treeId } = yield* pushSetup
        // the engine's push (signed with the member key B holds) lands while the key is a member
        const first = yield* write(b, treeId, member, "before", 1)
        expect((yield* b.sync.pushEntries(address, treeId, [first])).sent).toBe(1)
        expect((yield* a.storage.has([first])).size).toBe(1)
        const revocation = Transaction.begin({ rootId: treeId }, admin)
        yield* a.run(new SettingsStore(revocation).revokeAuthKey(member.publicKey))
        yield* a.run(Transaction.commit(revocation))
        // B has not heard of it: its commit pins the old settings, valid by the entry's own rules
        const after = yield* write(b, treeId, member, "after", 1)
        const viaPush = yield* Effect.flip(b.sync.pushEntries(address, treeId, [after], {}))
        expect(viaPush._tag).toBe("PermissionDenied")
        expect(viaPush.message).toContain("may not push to database")
        const viaSync = yield* Effect.flip(b.sync.syncWithPeer(address, treeId, { signer: member }))
        expect(viaSync._tag).toBe("PermissionDenied")
        expect((yield* a.storage.has([after])).size).toBe(0)
        expect(yield* readData(a, treeId)).not.toHaveProperty("after")

        // nor through a throwaway key that a settings entry of the push itself "grants"
        const throwaway = yield* b.auth.generateKey
        const selfGrant = yield* b.run(
          Effect.gen(function*() {
            const txn = Transaction.begin({ rootId: treeId }, throwaway)
            yield* new SettingsStore(txn).setAuthKey(throwaway.publicKey, { permission: Permission.Write(10) })
            const staged = txn.staged.get(Entry.SETTINGS)!
            const tips = yield* b.storage.storeTips(treeId, Entry.SETTINGS)
            const data = yield* staged.codec.encode(Entry.SETTINGS, staged.delta)
            const unsigned = yield* Transaction.nextEntry(b.storage, treeId, tips, [{ name: Entry.SETTINGS, parents: tips, data }], sigKeyOf(throwaway))
            return Entry.stored(Entry.withSignature(unsigned, yield* b.auth.sign(throwaway.secretKey, Entry.signingBytes(unsigned))))
          })
        )
        const ids = [after, selfGrant.id]
        const bypass = yield* a.sync.handle(
          {
            SendEntries: [yield* wireOf(b, after), Buffer.from(selfGrant.bytes).toString("base64")],
            auth: yield* pushProof(b, throwaway, a.instance.deviceId, ids)
          },
          {}
        )
        expect(errorOf(bypass)).toMatch(/^Permission denied: key .* may not push to database/)
        expect((yield* a.storage.has(ids)).size).toBe(0)
      })
    ))
})

describe("a push carrying a grant to its key (a device granted by an admin elsewhere)", () => {
  it.live("past the one-message limit (the server lacks more than a page under the grant): PermissionDenied, and the grant is not offered at every sync", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const a = yield* makeNode()
        const { signer: admin, treeId } = yield* setupDb(a, { syncEnabled: true })
        yield* a.sync.enableHttpTransport()
        const address = yield* a.sync.startServer("127.0.0.1:0")
        // B: the admin's other device, with history A never receives
        const b = yield* makeNode()
        yield* b.sync.enableHttpTransport()
        yield* b.sync.syncWithPeer(address, treeId, { signer: admin })
        for (let i = 0; i < 20; i++) yield* write(b, treeId, admin, `offline-${i}`, "x".repeat(200))
        yield* b.run(Effect.flatMap(Instance, (i) => i.createUser("bea")))
        const bea = yield* b.run(Effect.flatMap(Instance, (i) => i.loginUser("bea")))
        yield* b.run(enableSync(bea, treeId, yield* bea.getDefaultKey))
        const bAddress = yield* b.sync.startServer("127.0.0.1:0")
        // P: pages of a few entries, so what A lacks under the grant is more than a page
        const pushes = { n: 0 }
        const p = yield* makeNode({
          pageBytes: 2_000,
          wrapTransport: (t: TransportShape) => ({
            ...t,
            send: (to, request) => {
              if ("SendEntries" in request) pushes.n++
              return t.send(to, request)
            }
          })
        })
        yield* p.sync.enableHttpTransport()
        const device = p.instance.device
        yield* grant(b, treeId, admin, device.publicKey, Permission.Write(10))
        yield* p.sync.syncWithPeer(bAddress, treeId, { signer: device })
        const perSync: Array<number> = []
        for (let i = 0; i < 3; i++) {
          pushes.n = 0
          expect((yield* Effect.flip(p.sync.syncWithPeer(address, treeId)))._tag).toBe("PermissionDenied")
          perSync.push(pushes.n)
        }
        expect(perSync).toEqual([1, 0, 0])
      })
    ), 60_000)

  it.live("a device revoked on the server, that has not heard, offers its grant in one message, then not again at each sync", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const a = yield* makeNode()
        const { signer: admin, treeId } = yield* setupDb(a, { syncEnabled: true })
        for (let i = 0; i < 300; i++) yield* write(a, treeId, admin, `old-${i}`, "x".repeat(500))
        yield* a.sync.enableHttpTransport()
        const address = yield* a.sync.startServer("127.0.0.1:0")
        const pushed = { bytes: 0 }
        const p = yield* makeNode({
          wrapTransport: (t: TransportShape) => ({
            ...t,
            send: (to, request) => {
              if ("SendEntries" in request) pushed.bytes += JSON.stringify(request).length
              return t.send(to, request)
            }
          })
        })
        yield* p.sync.enableHttpTransport()
        const device = p.instance.device
        yield* grant(a, treeId, admin, device.publicKey, Permission.Write(10))
        // P holds the database, its grant included (a process restarted since: no frontier kept)
        const all = yield* a.storage.ancestors(treeId, yield* a.storage.tips(treeId))
        expect((yield* p.run(ingestPartial(yield* a.storage.getMany(all), "remote"))).rejected).toEqual([])
        // A revokes P, which has not heard
        const txn = Transaction.begin({ rootId: treeId }, admin)
        yield* a.run(new SettingsStore(txn).revokeAuthKey(device.publicKey))
        yield* a.run(Transaction.commit(txn))
        const perSync: Array<number> = []
        for (let i = 0; i < 3; i++) {
          pushed.bytes = 0
          expect((yield* Effect.flip(p.sync.syncWithPeer(address, treeId)))._tag).toBe("PermissionDenied")
          perSync.push(pushed.bytes)
        }
        // the first offers the page with the grant (one message, here the whole history); the next
        // syncs offer nothing (each sent it whole again, and an engine syncs at every commit)
        expect(perSync[0]).toBeGreaterThan(0)
        expect(perSync[0]).toBeLessThan(1_300_000)
        expect(perSync.slice(1)).toEqual([0, 0])
      })
    ), 120_000)

  /**
   * A private database on A (the server) over HTTP; B, another device of its admin, holds it
   * through the admin's key; a second admin, Admin(5), and a Write(10) key that A and B both know.
   */
  const grantSetup = Effect.gen(function*() {
    const { a, signer: admin, treeId, user, key } = yield* privateServer
    const lesser = yield* a.auth.generateKey
    const writer = yield* a.auth.generateKey
    yield* grant(a, treeId, admin, lesser.publicKey, Permission.Admin(5))
    yield* grant(a, treeId, admin, writer.publicKey, Permission.Write(10))
    yield* a.sync.enableHttpTransport()
    const address = yield* a.sync.startServer("127.0.0.1:0")
    const b = yield* makeNode()
    yield* b.sync.enableHttpTransport()
    yield* b.sync.syncWithPeer(address, treeId, { signer: admin })
    return { a, b, admin, lesser, writer, address, treeId, user, key }
  })
  type Key = { readonly publicKey: string; readonly secretKey: string }
  const wireOf = (node: Node, id: string) =>
    Effect.map(node.storage.get(id), (e) => Buffer.from(Option.getOrThrow(e).bytes).toString("base64"))
  /** Push by hand from `from` to `to`, proven by `signer`: entries `from` holds (by ID) or made by hand. */
  const pushBy = (from: Node, to: Node, signer: Key, entries: ReadonlyArray<string | Entry.StoredEntry>) =>
    Effect.gen(function*() {
      const wire: Array<string> = []
      const ids: Array<string> = []
      for (const e of entries) {
        wire.push(typeof e === "string" ? yield* wireOf(from, e) : Buffer.from(e.bytes).toString("base64"))
        ids.push(typeof e === "string" ? e : e.id)
      }
      const nonce = yield* from.auth.randomBytes(32)
      const timestampMs = yield* Clock.currentTimeMillis
      const signature = yield* from.auth.sign(
        signer.secretKey,
        SyncAuth.pushSigningBytes({ serverPubkey: to.instance.deviceId, entryIds: ids, timestampMs, nonce })
      )
      return yield* to.sync.handle(
        { SendEntries: wire, auth: { key: signer.publicKey, timestamp_ms: timestampMs, nonce: Array.from(nonce), signature } },
        {}
      )
    })
  /** A settings entry made by hand on `node` (not stored, nothing checked): `change` staged, hinted as `signer`, signed by `signWith`. */
  const settingsBy = (node: Node, treeId: string, signer: Key, change: (s: SettingsStore) => Effect.Effect<void>, signWith: Key = signer) =>
    node.run(
      Effect.gen(function*() {
        const txn = Transaction.begin({ rootId: treeId }, signer)
        yield* change(new SettingsStore(txn))
        const staged = txn.staged.get(Entry.SETTINGS)!
        const tips = yield* node.storage.storeTips(treeId, Entry.SETTINGS)
        const data = yield* staged.codec.encode(Entry.SETTINGS, staged.delta)
        const unsigned = yield* Transaction.nextEntry(node.storage, treeId, tips, [{ name: Entry.SETTINGS, parents: tips, data }], sigKeyOf(signer))
        return Entry.stored(Entry.withSignature(unsigned, yield* node.auth.sign(signWith.secretKey, Entry.signingBytes(unsigned))))
      })
    )
  const PUSH_REFUSED = /^Permission denied: key .* may not push to database/
  const permissionAt = (node: Node, treeId: string, pubkey: string) =>
    Effect.map(node.run(Server.authStateOf(node.context, treeId)), (state) => (state._tag === "Present" ? state.auth.keys[pubkey] : undefined))
  const storedOf = (node: Node, ids: ReadonlyArray<string>) => Effect.map(node.storage.has(ids), (held) => held.size)

  it.live("is taken, whole, when the grant is new here and signed by a key Admin here now", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { a, admin, b, treeId } = yield* grantSetup
        const device = yield* b.auth.generateKey
        const granted = yield* grant(b, treeId, admin, device.publicKey, Permission.Write(10))
        const written = yield* write(b, treeId, device, "from-the-new-device", 1)
        // the write alone is refused (A does not know the key); with the grant it is taken
        expect(errorOf(yield* pushBy(b, a, device, [written]))).toMatch(PUSH_REFUSED)
        expect(yield* pushBy(b, a, device, [granted, written])).toEqual({ Count: 2 })
        expect(yield* readData(a, treeId)).toMatchObject({ "from-the-new-device": 1 })
        expect(yield* permissionAt(a, treeId, device.publicKey)).toMatchObject({ status: "Active" })
        // a member now: its next push needs no grant
        const next = yield* write(b, treeId, device, "next", 2)
        expect(yield* pushBy(b, a, device, [next])).toBe("Ack")
      })
    ))

  it.live("syncWithPeer of the granted device pushes it in pages: those the server refuses before the grant's are passed over", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { a, address, admin, b, treeId } = yield* grantSetup
        for (let i = 0; i < 20; i++) yield* write(b, treeId, admin, `old-${i}`, "x".repeat(200))
        expect((yield* b.sync.syncWithPeer(address, treeId, { signer: admin })).sent).toBe(20)
        // P, with pages of a few entries, gets the database and its grant from B, which serves it
        yield* b.run(Effect.flatMap(Instance, (i) => i.createUser("bea")))
        const bea = yield* b.run(Effect.flatMap(Instance, (i) => i.loginUser("bea")))
        yield* b.run(enableSync(bea, treeId, yield* bea.getDefaultKey))
        const bAddress = yield* b.sync.startServer("127.0.0.1:0")
        const p = yield* makeNode({ pageBytes: 2_000 })
        yield* p.sync.enableHttpTransport()
        const device = p.instance.device
        yield* grant(b, treeId, admin, device.publicKey, Permission.Write(10))
        yield* p.sync.syncWithPeer(bAddress, treeId, { signer: device })
        yield* write(p, treeId, device, "from-p", 1)
        const result = yield* p.sync.syncWithPeer(address, treeId)
        expect(result.sent).toBeGreaterThanOrEqual(2)
        expect(yield* readData(a, treeId)).toMatchObject({ "from-p": 1 })
        expect(yield* permissionAt(a, treeId, device.publicKey)).toMatchObject({ status: "Active" })
      })
    ))

  it.live("bypass: a grant the key made itself, or by a key that is Write only or no longer Admin here, lets nothing in", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { a, admin, b, lesser, treeId, writer } = yield* grantSetup
        const device = yield* b.auth.generateKey
        const toDevice = (s: SettingsStore) => s.setAuthKey(device.publicKey, { permission: Permission.Write(10) })
        // self-made
        const selfMade = yield* settingsBy(b, treeId, device, toDevice)
        expect(errorOf(yield* pushBy(b, a, device, [selfMade]))).toMatch(PUSH_REFUSED)
        // by a Write(10) key
        const byWriter = yield* settingsBy(b, treeId, writer, toDevice)
        expect(errorOf(yield* pushBy(b, a, device, [byWriter]))).toMatch(PUSH_REFUSED)
        expect(yield* storedOf(a, [selfMade.id, byWriter.id])).toBe(0)
        // by an admin revoked here since: valid by the settings it pins (B has not heard), refused
        const byRevoked = yield* grant(b, treeId, lesser, device.publicKey, Permission.Write(10))
        const written = yield* write(b, treeId, device, "via-a-revoked-admin", 1)
        const revocation = Transaction.begin({ rootId: treeId }, admin)
        yield* a.run(new SettingsStore(revocation).revokeAuthKey(lesser.publicKey))
        yield* a.run(Transaction.commit(revocation))
        expect(errorOf(yield* pushBy(b, a, device, [byRevoked, written]))).toMatch(PUSH_REFUSED)
        expect(yield* storedOf(a, [byRevoked, written])).toBe(0)
        expect(yield* permissionAt(a, treeId, device.publicKey)).toBeUndefined()
        expect(yield* readData(a, treeId)).not.toHaveProperty("via-a-revoked-admin")
      })
    ))

  it.live("bypass: an admin granting more than it holds, or changing beside the grant what it may not, lets nothing in", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { a, admin, b, lesser, treeId } = yield* grantSetup
        const device = yield* b.auth.generateKey
        // Admin(5) granting Admin(1): refused at the gate
        const tooMuch = yield* settingsBy(b, treeId, lesser, (s) => s.setAuthKey(device.publicKey, { permission: Permission.Admin(1) }))
        expect(errorOf(yield* pushBy(b, a, device, [tooMuch]))).toMatch(PUSH_REFUSED)
        // a grant it may make, with a demotion of the Admin(0) beside it: the settings rules refuse the entry
        const beside = yield* settingsBy(b, treeId, lesser, (s) =>
          Effect.zipRight(
            s.setAuthKey(device.publicKey, { permission: Permission.Write(10) }),
            s.setAuthKey(admin.publicKey, { permission: Permission.Write(10) })
          ))
        expect(errorOf(yield* pushBy(b, a, device, [beside]))).toMatch(/^Rejected 1 entries: .*cannot modify key/)
        expect(yield* storedOf(a, [tooMuch.id, beside.id])).toBe(0)
        expect(yield* permissionAt(a, treeId, device.publicKey)).toBeUndefined()
        expect(yield* permissionAt(a, treeId, admin.publicKey)).toMatchObject({ permissions: Permission.Admin(0), status: "Active" })
      })
    ))

  it.live("bypass: replaying a grant stored here before the key was removed or revoked lets nothing in; a revoked key stays refused", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { a, address, admin, treeId } = yield* grantSetup
        for (const how of ["removed", "revoked"] as const) {
          // a device of the admin of its own each time (what one leaves unsent does not hang over the other)
          const b = yield* makeNode()
          yield* b.sync.enableHttpTransport()
          yield* b.sync.syncWithPeer(address, treeId, { signer: admin })
          const device = yield* b.auth.generateKey
          const granted = yield* grant(b, treeId, admin, device.publicKey, Permission.Write(10))
          const first = yield* write(b, treeId, device, `${how}-first`, 1)
          expect(yield* pushBy(b, a, device, [granted, first])).toEqual({ Count: 2 })
          const txn = Transaction.begin({ rootId: treeId }, admin)
          if (how === "removed") Transaction.stage(txn, Entry.SETTINGS, "settings").removePath(`auth.keys.${device.publicKey}`)
          else yield* a.run(new SettingsStore(txn).revokeAuthKey(device.publicKey))
          yield* a.run(Transaction.commit(txn))
          expect(yield* permissionAt(a, treeId, device.publicKey)).toEqual(how === "removed" ? undefined : expect.objectContaining({ status: "Revoked" }))
          // B has not heard: its next write pins the grant; pushed with the grant again
          const second = yield* write(b, treeId, device, `${how}-second`, 2)
          expect(errorOf(yield* pushBy(b, a, device, [granted, second]))).toMatch(PUSH_REFUSED)
          expect(yield* storedOf(a, [second])).toBe(0)
          if (how === "revoked") {
            // a new grant by an admin who has not heard of the revocation: still refused
            const again = yield* grant(b, treeId, admin, device.publicKey, Permission.Write(10))
            const third = yield* write(b, treeId, device, `${how}-third`, 3)
            expect(errorOf(yield* pushBy(b, a, device, [again, third]))).toMatch(PUSH_REFUSED)
            expect(yield* storedOf(a, [again, third])).toBe(0)
          }
        }
        expect(yield* readData(a, treeId)).toMatchObject({ "removed-first": 1, "revoked-first": 1 })
        expect(yield* readData(a, treeId)).not.toHaveProperty("removed-second")
        expect(yield* readData(a, treeId)).not.toHaveProperty("revoked-second")
      })
    ))

  it.live("bypass: a genuine grant pushed with a forged entry, or a grant whose signature is forged, lets nothing in", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { a, admin, b, treeId } = yield* grantSetup
        // a grant naming the admin, signed by the key it grants
        const other = yield* b.auth.generateKey
        const fakeAdmin = yield* settingsBy(b, treeId, admin, (s) => s.setAuthKey(other.publicKey, { permission: Permission.Write(10) }), other)
        expect(errorOf(yield* pushBy(b, a, other, [fakeAdmin]))).toMatch(PUSH_REFUSED)
        expect(yield* storedOf(a, [fakeAdmin.id])).toBe(0)
        expect(yield* permissionAt(a, treeId, other.publicKey)).toBeUndefined()
        const device = yield* b.auth.generateKey
        const stranger = yield* b.auth.generateKey
        const granted = yield* grant(b, treeId, admin, device.publicKey, Permission.Write(10))
        const written = yield* write(b, treeId, device, "genuine", 1)
        // the same entry, its signature made by another key than the one it names
        const original = Option.getOrThrow(yield* b.storage.get(written)).entry
        const forged = Entry.stored(Entry.withSignature(original, yield* b.auth.sign(stranger.secretKey, Entry.signingBytes(original))))
        const answer = errorOf(yield* pushBy(b, a, device, [granted, written, forged]))
        expect(answer).toMatch(/^Rejected 3 entries: .*signature/)
        expect(yield* storedOf(a, [granted, written, forged.id])).toBe(0)
        expect(yield* permissionAt(a, treeId, device.publicKey)).toBeUndefined()
        // the genuine pair alone is taken
        expect(yield* pushBy(b, a, device, [granted, written])).toEqual({ Count: 2 })
      })
    ))

  it.live("bypass: a grant in another database opens nothing in this one", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { a, address, admin, b, key, treeId, user } = yield* grantSetup
        const other = yield* a.run(user.createDatabase(Doc.from({ name: "other" }), key))
        yield* a.run(enableSync(user, other.db.rootId, key))
        yield* b.sync.syncWithPeer(address, other.db.rootId, { signer: admin })
        const device = yield* b.auth.generateKey
        const grantThere = yield* grant(b, other.db.rootId, admin, device.publicKey, Permission.Write(10))
        const here = yield* write(b, treeId, admin, "by-the-admin", 1)
        expect(errorOf(yield* pushBy(b, a, device, [grantThere, here]))).toMatch(new RegExp(`may not push to database '${treeId}'`))
        expect(yield* storedOf(a, [grantThere, here])).toBe(0)
        // a settings entry of this database granting the key, but claiming to be of the other: refused too
        const crossed = yield* settingsBy(b, other.db.rootId, admin, (s) => s.setAuthKey(device.publicKey, { permission: Permission.Write(10) }))
        expect(errorOf(yield* pushBy(b, a, device, [crossed, here]))).toMatch(new RegExp(`may not push to database '${treeId}'`))
        expect(yield* storedOf(a, [crossed.id, here])).toBe(0)
      })
    ))
})

describe("Sync server under hostile input", () => {
  it.live("malformed and hostile bodies: no 5xx, nothing leaked, no state change", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const a = yield* makeNode()
        const priv = yield* setupDb(a, { username: "priv", syncEnabled: true, data: { secret: SECRET } })
        const pub = yield* setupDb(a, { username: "pub", syncEnabled: true, global: Permission.Write(10), data: { x: 1 } })
        yield* a.sync.enableHttpTransport()
        const address = yield* a.sync.startServer("127.0.0.1:0")
        const snapshot = Effect.gen(function*() {
          return {
            priv: { tips: yield* a.storage.tips(priv.treeId), count: yield* a.storage.count(priv.treeId) },
            pub: { tips: yield* a.storage.tips(pub.treeId), count: yield* a.storage.count(pub.treeId) },
            roots: [...(yield* a.storage.roots)].sort()
          }
        })
        const before = yield* snapshot
        const post = (body: string) =>
          Effect.promise(async () => {
            const res = await fetch(`http://${address}${API_PATH}`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body
            })
            return { status: res.status, body: await res.text() }
          })
        const privEntries = yield* a.storage.getMany(yield* allIds(a, priv.treeId))
        const privWire = privEntries.map((e) => Buffer.from(e.bytes).toString("base64"))
        const pubEntries = yield* a.storage.getMany(yield* allIds(a, pub.treeId))
        const last = pubEntries[pubEntries.length - 1]!
        const forged = Entry.stored({
          ...last.entry,
          subtrees: last.entry.subtrees.map((s) => ({ ...s, data: Doc.from({ x: 999 }).encode() }))
        })
        const validProof = yield* signProof(a.auth, priv.signer, {
          serverPubkey: a.instance.deviceId,
          treeId: priv.treeId,
          tips: [fabricatedId],
          timestampMs: yield* Clock.currentTimeMillis
        })
        const replayed = JSON.stringify({ SyncTree: { tree_id: priv.treeId, our_tips: [fabricatedId], auth: validProof } })
        const hugeTips = Array.from({ length: 20_000 }, () => fabricatedId)
        const bodies: Array<string> = [
          "",
          "not json",
          "{",
          "null",
          "[]",
          "42",
          "\"Ack\"",
          "{}",
          JSON.stringify({ Handshake: {} }),
          JSON.stringify({ Handshake: { device_id: "x" }, SyncTree: {} }),
          JSON.stringify({ Unknown: 1 }),
          JSON.stringify({ SyncTree: { tree_id: "../../etc/passwd", our_tips: [] } }),
          JSON.stringify({ SyncTree: { tree_id: priv.treeId, our_tips: "tips" } }),
          JSON.stringify({ SyncTree: { tree_id: priv.treeId, our_tips: [] } }),
          JSON.stringify({ SyncTree: { tree_id: priv.treeId, our_tips: [fabricatedId] } }),
          JSON.stringify({ SyncTree: { tree_id: priv.treeId, our_tips: [priv.treeId] } }),
          JSON.stringify({ SyncTree: { tree_id: priv.treeId, our_tips: hugeTips } }),
          JSON.stringify({ SyncTree: { tree_id: pub.treeId, our_tips: hugeTips } }),
          JSON.stringify({ SyncTree: { tree_id: priv.treeId, our_tips: [], requesting_key: "ed25519:bad" } }),
          JSON.stringify({ SyncTree: { tree_id: fabricatedId, our_tips: [] } }),
          JSON.stringify({ SyncTree: { tree_id: priv.treeId, our_tips: [fabricatedId], auth: { ...validProof, key: "ed25519:bad" } } }),
          JSON.stringify({ SyncTree: { tree_id: priv.treeId, our_tips: [fabricatedId], auth: { ...validProof, nonce: [1, 2, 3] } } }),
          JSON.stringify({ SyncTree: { tree_id: priv.treeId, our_tips: [fabricatedId], auth: { ...validProof, signature: "AAAA" } } }),
          JSON.stringify({ SyncTree: { tree_id: priv.treeId, our_tips: [fabricatedId], auth: { ...validProof, timestamp_ms: -1 } } }),
          JSON.stringify({ SendEntries: "x" }),
          JSON.stringify({ SendEntries: ["!!!not base64!!!"] }),
          JSON.stringify({ SendEntries: ["AAAA", "////"] }),
          JSON.stringify({ SendEntries: [Buffer.from("garbage bytes that are not cbor").toString("base64")] }),
          JSON.stringify({ SendEntries: privWire }),
          JSON.stringify({ SendEntries: [Buffer.from(forged.bytes).toString("base64")] }),
          JSON.stringify({ SendEntries: Array.from({ length: 5_000 }, () => "AAAA") }),
          JSON.stringify({ Handshake: { device_id: a.instance.deviceId, public_key: a.instance.deviceId, protocol_version: 99, challenge: Array(32).fill(0), listen_addresses: [] } }),
          JSON.stringify({ Handshake: { device_id: a.instance.deviceId, public_key: a.instance.deviceId, protocol_version: 0, challenge: Array(32).fill(300), listen_addresses: [] } })
        ]
        const secretsOf = [SECRET, priv.key, a.instance.deviceId, ...privWire.slice(0, 3)]
        for (const body of bodies) {
          const res = yield* post(body)
          expect(res.status, body.slice(0, 100)).toBeLessThan(500)
          for (const s of secretsOf) {
            // the handshake echoes nothing of the request but does name the server's own device key
            if (s === a.instance.deviceId && res.body.includes("\"Handshake\"")) continue
            expect(res.body, body.slice(0, 100)).not.toContain(s)
          }
          expect(res.body).not.toContain("missing_entries\":[\"")
          if (!body.includes(pub.treeId)) expect(res.body).not.toContain("all_entries")
        }
        // replay: the first use is served, the second refused
        const firstUse = yield* post(replayed)
        expect(firstUse.status).toBe(200)
        expect(firstUse.body).toContain("Incremental")
        const replay = yield* post(replayed)
        expect(replay.body).toContain("nonce already spent")
        expect(replay.body).not.toContain(SECRET)
        expect(yield* snapshot).toEqual(before)
      })
    ), 60_000)
})

describe("Sync server: what a request may carry", () => {
  const postTo = (address: string, body: unknown) =>
    Effect.promise(async () => {
      const res = await fetch(`http://${address}${API_PATH}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body)
      })
      return { status: res.status, body: await res.text() }
    })

  it.live("SendEntries: past 16,384 entries, or with bytes that are no entry, the message is malformed and nothing is stored", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const a = yield* makeNode()
        const pub = yield* setupDb(a, { username: "pub", syncEnabled: true, global: Permission.Write(10), data: { x: 1 } })
        yield* a.sync.enableHttpTransport()
        const address = yield* a.sync.startServer("127.0.0.1:0")
        // a genuine new entry, written on a second node holding the database
        const b = yield* makeNode()
        yield* b.sync.enableHttpTransport()
        yield* b.sync.syncWithPeer(address, pub.treeId)
        const fresh = yield* write(b, pub.treeId, pub.signer, "y", 2)
        const freshWire = Buffer.from(Option.getOrThrow(yield* b.storage.get(fresh)).bytes).toString("base64")
        // 250,000 three-byte fakes (2 MiB): refused on their count, before any is looked at
        const fakes = Array.from({ length: 250_000 }, (_, i) => Buffer.from([i & 255, (i >> 8) & 255, i >> 16]).toString("base64"))
        const many = yield* postTo(address, { SendEntries: fakes })
        expect(many.status).toBe(400)
        expect(many.body).toContain("SendEntries: at most 16384 entries in one message, got 250000")
        // a genuine entry beside bytes that are no entry: the whole message is refused
        const mixed = yield* postTo(address, { SendEntries: [freshWire, "AAAA", ...fakes.slice(0, 16_000)] })
        expect(mixed.body).toMatch(/^\{"Error":"Malformed request: entry 1 does not decode: /)
        expect(yield* a.storage.has([fresh])).toEqual(new Set())
        // the genuine one alone is stored (control)
        expect((yield* postTo(address, { SendEntries: [freshWire] })).body).toBe("\"Ack\"")
        expect(yield* a.storage.has([fresh])).toEqual(new Set([fresh]))
      })
    ), 60_000)

  it.live("a bootstrap request's key name is at most 256 characters: an admin reads a name, not a payload", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const a = yield* makeNode()
        const priv = yield* setupDb(a, { username: "priv", syncEnabled: true, data: { s: 1 } })
        yield* a.sync.enableHttpTransport()
        const address = yield* a.sync.startServer("127.0.0.1:0")
        const ask = (name: string) =>
          Effect.gen(function*() {
            const kp = yield* a.auth.generateKey
            const auth = yield* signProof(a.auth, kp, {
              serverPubkey: a.instance.deviceId,
              treeId: priv.treeId,
              tips: [],
              timestampMs: yield* Clock.currentTimeMillis
            })
            return yield* postTo(address, {
              SyncTree: {
                tree_id: priv.treeId,
                our_tips: [],
                requesting_key: kp.publicKey,
                requested_permission: Permission.Write(5),
                requesting_key_name: name,
                auth
              }
            })
          })
        const long = yield* ask("n".repeat(4_000_000))
        expect(long.status).toBe(400)
        expect(long.body).toContain("SyncTree.requesting_key_name")
        expect(yield* a.run(BootstrapRequests.list("Pending"))).toEqual([])
        const fits = yield* ask("n".repeat(256))
        expect(fits.body).toContain("BootstrapPending")
        expect((yield* a.run(BootstrapRequests.list("Pending"))).map((r) => r.requestingKeyName)).toEqual(["n".repeat(256)])
      })
    ), 60_000)
})

describe("Sync misc", () => {
  it.scoped("the server address of a transport other than http names its type, so peers can dial it as given", () =>
    Effect.gen(function*() {
      const network = yield* SimNetwork.make({ seed: 3 })
      const a = yield* makeNode()
      const { treeId } = yield* setupDb(a, { syncEnabled: true, global: Permission.Read })
      yield* a.sync.enableTransport(network.transport("node-a"))
      yield* a.sync.startServer("0")
      const address = yield* a.sync.getServerAddress
      expect(address).toBe("sim:node-a")
      const b = yield* makeNode()
      yield* b.sync.enableTransport(network.transport("node-b"))
      const result = yield* b.sync.syncWithPeer(address, treeId)
      expect(result.received).toBeGreaterThan(0)
      expect(yield* b.storage.tips(treeId)).toEqual(yield* a.storage.tips(treeId))
    }))

  it.live("the client keeps the handshakes of at most `remembered` peer addresses, the oldest dropped", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const handshakes: Array<string> = []
        const counting = (t: TransportShape): TransportShape => ({
          ...t,
          send: (address, request) => {
            if ("Handshake" in request) handshakes.push(address.address)
            return t.send(address, request)
          }
        })
        const servers = yield* Effect.forEach([1, 2, 3], () =>
          Effect.gen(function*() {
            const node = yield* makeNode()
            const { treeId } = yield* setupDb(node, { syncEnabled: true, global: Permission.Read })
            yield* node.sync.enableHttpTransport()
            return { treeId, address: yield* node.sync.startServer("127.0.0.1:0") }
          }))
        const b = yield* makeNode({ wrapTransport: counting, remembered: 2 })
        yield* b.sync.enableHttpTransport()
        const [s1, s2, s3] = servers as [typeof servers[0], typeof servers[0], typeof servers[0]]
        for (const s of [s1, s2, s1, s3, s1]) yield* b.sync.syncWithPeer(s.address, s.treeId)
        // s1's handshake was reused once, then dropped when s3's made three
        expect(handshakes).toEqual([s1.address, s2.address, s3.address, s1.address])
      })
    ))

  it.scoped("closing the node's scope stops its server", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const a = yield* Scope.extend(makeNode(), scope)
      yield* a.sync.enableHttpTransport()
      const address = yield* a.sync.startServer("127.0.0.1:0")
      yield* Scope.close(scope, Exit.void)
      const refused = yield* Effect.promise(() =>
        fetch(`http://${address}/health`).then(() => "up", () => "down")
      )
      expect(refused).toBe("down")
    }))
})
