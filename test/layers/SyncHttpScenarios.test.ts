/**
 * The reference's scenarios 12-21, 25, 26, 31 and 32 over real loopback HTTP: raw JSON bodies
 * POSTed to /api/v0 (what any client could send) and the real client's syncWithPeer, on the live
 * clock. Sync.test.ts checks the same rules through the handler in process; this file checks that
 * nothing between the socket and the handler changes them.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Entry from "../../src/core/Entry.js"
import { ingestPartial } from "../../src/database/Ingest.js"
import * as BootstrapRequests from "../../src/database/BootstrapRequests.js"
import { SettingsStore } from "../../src/database/SettingsStore.js"
import * as Transaction from "../../src/database/Transaction.js"
import { API_PATH } from "../../src/layers/TransportHttp.js"
import * as Permission from "../../src/schema/Permission.js"
import type { SyncRequest } from "../../src/schema/Protocol.js"
import {
  enableSync,
  grant,
  makeNode,
  type Node,
  readData,
  setupDb,
  signProof,
  syncTree,
  write
} from "./SyncFixtures.js"

const SECRET = "the-secret-value-42"
const fabricatedId = Entry.idOfBytes(new TextEncoder().encode("nobody has this"))

const wireId = (wire: string) => Either.getOrThrow(Entry.decode(new Uint8Array(Buffer.from(wire, "base64")))).id
const allIds = (node: Node, treeId: string) =>
  Effect.flatMap(node.storage.tips(treeId), (tips) => node.storage.ancestors(treeId, tips))

/** POST a raw request to a node's /api/v0; returns status and parsed body. */
const post = (address: string, body: SyncRequest | string) =>
  Effect.promise(async () => {
    const res = await fetch(`http://${address}${API_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body)
    })
    const text = await res.text()
    return { status: res.status, text, json: JSON.parse(text) as any }
  })

const serve = (node: Node) =>
  Effect.gen(function*() {
    yield* node.sync.enableHttpTransport()
    return yield* node.sync.startServer("127.0.0.1:0")
  })

/** A private database (auth, no global grant, sync enabled) holding a secret, served over HTTP. */
const privateServer = Effect.gen(function*() {
  const a = yield* makeNode()
  const setup = yield* setupDb(a, { syncEnabled: true, data: { secret: SECRET } })
  const address = yield* serve(a)
  return { a, address, ...setup }
})

/** Wall-clock milliseconds: these tests run on the live clock against a real server. */
const now = () => Date.now()

describe("scenarios 12-18 over HTTP", () => {
  it.live("12: unauthenticated incremental pull of a private DB gets an Error; no secret, no key list", () =>
    Effect.scoped(Effect.gen(function*() {
      const { a, address, treeId, key } = yield* privateServer
      const r = yield* post(address, syncTree(treeId, [fabricatedId]))
      expect(r.status).toBe(200)
      expect(r.json).toEqual({ Error: `Authentication required to read database '${treeId}'` })
      expect(r.text).not.toContain(SECRET)
      expect(r.text).not.toContain(key)
      expect(r.text).not.toContain(a.instance.deviceId)
      // the real client is refused too and stores nothing
      const b = yield* makeNode()
      yield* b.sync.enableHttpTransport()
      const err = yield* Effect.flip(b.sync.syncWithPeer(address, treeId))
      expect(err._tag).toBe("PermissionDenied")
      expect(yield* b.storage.count(treeId)).toBe(0)
    })))

  it.live("13: a global grant serves the same fabricated-tip request with Incremental and all entries", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* makeNode()
      const { treeId } = yield* setupDb(a, { syncEnabled: true, global: Permission.Write(10), data: { secret: SECRET } })
      const address = yield* serve(a)
      const r = yield* post(address, syncTree(treeId, [fabricatedId]))
      expect(r.status).toBe(200)
      expect(Object.keys(r.json)).toEqual(["Incremental"])
      const ids: Array<string> = r.json.Incremental.missing_entries.map(wireId)
      const all = yield* allIds(a, treeId)
      // "all entries": every entry of the tree (the root included, since the requester named no held tip)
      expect(new Set(ids)).toEqual(new Set(all))
      expect(r.json.Incremental.their_tips).toEqual(yield* a.storage.tips(treeId))
    })))

  it.live("14: a signed pull by a key granted Read is served, with the data", () =>
    Effect.scoped(Effect.gen(function*() {
      const { a, address, treeId, signer } = yield* privateServer
      const b = yield* makeNode()
      const reader = yield* b.auth.generateKey
      yield* grant(a, treeId, signer, reader.publicKey, Permission.Read)
      const tips = [fabricatedId]
      const proof = yield* signProof(b.auth, reader, { serverPubkey: a.instance.deviceId, treeId, tips, timestampMs: now() })
      const r = yield* post(address, syncTree(treeId, tips, { auth: proof }))
      expect(Object.keys(r.json)).toEqual(["Incremental"])
      expect(new Set(r.json.Incremental.missing_entries.map(wireId))).toEqual(new Set(yield* allIds(a, treeId)))
      // and the real client, signing with that key, bootstraps and reads the secret
      yield* b.sync.enableHttpTransport()
      const res = yield* b.sync.syncWithPeer(address, treeId, { signer: reader })
      expect(res.received).toBe(yield* a.storage.count(treeId))
      expect(yield* readData(b, treeId)).toEqual({ secret: SECRET })
    })))

  it.live("15: a valid signature from a key with no grant is refused (Permission denied)", () =>
    Effect.scoped(Effect.gen(function*() {
      const { a, address, treeId, key } = yield* privateServer
      const stranger = yield* a.auth.generateKey
      for (const tips of [[fabricatedId], []]) {
        const proof = yield* signProof(a.auth, stranger, { serverPubkey: a.instance.deviceId, treeId, tips, timestampMs: now() })
        const r = yield* post(address, syncTree(treeId, tips, { auth: proof }))
        expect(r.json.Error).toMatch(/^Permission denied/)
        expect(r.text).not.toContain(SECRET)
        expect(r.text).not.toContain(key)
      }
    })))

  it.live("15b: a key that was granted Read and then revoked is refused", () =>
    Effect.scoped(Effect.gen(function*() {
      const { a, address, treeId, signer } = yield* privateServer
      const reader = yield* a.auth.generateKey
      yield* grant(a, treeId, signer, reader.publicKey, Permission.Read)
      yield* a.run(Effect.gen(function*() {
        const txn = Transaction.begin({ rootId: treeId }, signer)
        yield* new SettingsStore(txn).revokeAuthKey(reader.publicKey)
        yield* Transaction.commit(txn)
      }))
      const proof = yield* signProof(a.auth, reader, { serverPubkey: a.instance.deviceId, treeId, tips: [fabricatedId], timestampMs: now() })
      const r = yield* post(address, syncTree(treeId, [fabricatedId], { auth: proof }))
      expect(r.json.Error).toMatch(/^Permission denied/)
      expect(r.text).not.toContain(SECRET)
    })))

  it.live("16: the same signed request sent twice is refused the second time (nonce already spent)", () =>
    Effect.scoped(Effect.gen(function*() {
      const { a, address, treeId, signer } = yield* privateServer
      const proof = yield* signProof(a.auth, signer, { serverPubkey: a.instance.deviceId, treeId, tips: [fabricatedId], timestampMs: now() })
      const body = syncTree(treeId, [fabricatedId], { auth: proof })
      const first = yield* post(address, body)
      expect(Object.keys(first.json)).toEqual(["Incremental"])
      const second = yield* post(address, body)
      expect(second.json).toEqual({ Error: "Authentication failed: request nonce already spent" })
      expect(second.text).not.toContain(SECRET)
      // a replayed bootstrap (empty tips) as well
      const boot = yield* signProof(a.auth, signer, { serverPubkey: a.instance.deviceId, treeId, tips: [], timestampMs: now() })
      const b1 = yield* post(address, syncTree(treeId, [], { auth: boot }))
      expect(Object.keys(b1.json)).toEqual(["Bootstrap"])
      const b2 = yield* post(address, syncTree(treeId, [], { auth: boot }))
      expect(b2.json).toEqual({ Error: "Authentication failed: request nonce already spent" })
    })))

  it.live("17: ts = now - 10 min is stale; the +-60 s window edges", () =>
    Effect.scoped(Effect.gen(function*() {
      const { a, address, treeId, signer } = yield* privateServer
      const at = (timestampMs: number) =>
        Effect.flatMap(
          signProof(a.auth, signer, { serverPubkey: a.instance.deviceId, treeId, tips: [fabricatedId], timestampMs }),
          (proof) => post(address, syncTree(treeId, [fabricatedId], { auth: proof }))
        )
      for (const ts of [now() - 10 * 60_000, now() + 10 * 60_000, now() - 65_000, now() + 65_000]) {
        const r = yield* at(ts)
        expect(r.json).toEqual({ Error: "Authentication failed: request timestamp outside the freshness window" })
        expect(r.text).not.toContain(SECRET)
      }
      for (const ts of [now() - 55_000, now() + 55_000]) {
        const r = yield* at(ts)
        expect(Object.keys(r.json)).toEqual(["Incremental"])
      }
    })))

  it.live("18: a request signed for another server's pubkey is refused", () =>
    Effect.scoped(Effect.gen(function*() {
      const { a, address, treeId, signer } = yield* privateServer
      const other = yield* makeNode()
      const proof = yield* signProof(a.auth, signer, { serverPubkey: other.instance.deviceId, treeId, tips: [fabricatedId], timestampMs: now() })
      const r = yield* post(address, syncTree(treeId, [fabricatedId], { auth: proof }))
      expect(r.json.Error).toMatch(/^Authentication failed: invalid request signature/)
      expect(r.text).not.toContain(SECRET)
    })))
})

describe("scenarios 19-21 over HTTP", () => {
  it.live("19/20: sync disabled answers exactly like an absent DB (bootstrap and incremental); 21: enabling serves", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* makeNode()
      const { treeId, user, key, signer } = yield* setupDb(a, { global: Permission.Write(10), data: { k: "v" } })
      const address = yield* serve(a)
      const tips = yield* a.storage.tips(treeId)
      // 19
      const boot = yield* post(address, syncTree(treeId, []))
      const bootAbsent = yield* post(address, syncTree(fabricatedId, []))
      expect(boot.json).toEqual({ Error: `Tree not found: ${treeId}` })
      expect(bootAbsent.json).toEqual({ Error: `Tree not found: ${fabricatedId}` })
      expect(boot.status).toBe(bootAbsent.status)
      // 20 (with real tips and with a signed proof from the admin: still not found)
      const inc = yield* post(address, syncTree(treeId, tips))
      expect(inc.json).toEqual({ Error: `Tree not found: ${treeId}` })
      const proof = yield* signProof(a.auth, signer, { serverPubkey: a.instance.deviceId, treeId, tips, timestampMs: now() })
      const incSigned = yield* post(address, syncTree(treeId, tips, { auth: proof }))
      expect(incSigned.json).toEqual({ Error: `Tree not found: ${treeId}` })
      // a client is told TreeNotFound
      const b = yield* makeNode()
      yield* b.sync.enableHttpTransport()
      expect((yield* Effect.flip(b.sync.syncWithPeer(address, treeId)))._tag).toBe("TreeNotFound")
      expect(yield* b.storage.count(treeId)).toBe(0)
      // 21
      yield* a.run(enableSync(user, treeId, key))
      const boot2 = yield* post(address, syncTree(treeId, []))
      expect(Object.keys(boot2.json)).toEqual(["Bootstrap"])
      const inc2 = yield* post(address, syncTree(treeId, [treeId]))
      expect(Object.keys(inc2.json)).toEqual(["Incremental"])
      const res = yield* b.sync.syncWithPeer(address, treeId)
      expect(res.received).toBe(yield* a.storage.count(treeId))
      expect(yield* readData(b, treeId)).toEqual({ k: "v" })
    })))

  it.live("19b: a second user tracking the DB with sync disabled does not open it; OR across users", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* makeNode()
      const { treeId } = yield* setupDb(a, { global: Permission.Write(10), data: { k: "v" } })
      const address = yield* serve(a)
      yield* a.instance.createUser("carol")
      const carol = yield* a.instance.loginUser("carol")
      const ck = yield* carol.getDefaultKey
      yield* a.run(carol.trackDatabase({ databaseId: treeId, keyId: ck, syncSettings: { syncEnabled: false, syncOnCommit: false, properties: {} } }))
      expect((yield* post(address, syncTree(treeId, []))).json).toEqual({ Error: `Tree not found: ${treeId}` })
      yield* a.run(carol.trackDatabase({ databaseId: treeId, keyId: ck, syncSettings: { syncEnabled: true, syncOnCommit: false, properties: {} } }))
      expect(Object.keys((yield* post(address, syncTree(treeId, []))).json)).toEqual(["Bootstrap"])
    })))
})

describe("scenario 25 over HTTP (server side)", () => {
  it.live("25: a bootstrap request naming a malformed ed25519 key fails with a clear error, nothing recorded", () =>
    Effect.scoped(Effect.gen(function*() {
      const { a, address, treeId } = yield* privateServer
      const b = yield* makeNode()
      const real = yield* b.auth.generateKey
      for (const bad of ["ed25519:not-a-key", "ed25519:", "ed25519:" + "A".repeat(44), "rsa:abc"]) {
        // no proof at all
        const r0 = yield* post(address, {
          SyncTree: { tree_id: treeId, our_tips: [], requesting_key: bad, requesting_key_name: "x", requested_permission: Permission.Write(10) }
        })
        expect(r0.status).toBeLessThan(500)
        expect(JSON.stringify(r0.json)).not.toContain("Internal error")
        expect(r0.json.Error ?? `status ${r0.status}`).toBeTruthy()
        // a "proof" naming the bad key
        const proof = yield* signProof(b.auth, real, { serverPubkey: a.instance.deviceId, treeId, tips: [], timestampMs: now() })
        const r1 = yield* post(address, {
          SyncTree: {
            tree_id: treeId,
            our_tips: [],
            requesting_key: bad,
            requesting_key_name: "x",
            requested_permission: Permission.Write(10),
            auth: { ...proof, key: bad }
          }
        })
        expect(r1.status).toBeLessThan(500)
        const msg: string = r1.json.Error ?? ""
        expect(msg.length).toBeGreaterThan(0)
        expect(msg).not.toContain("Internal error")
        expect(r1.text).not.toContain(SECRET)
      }
      const pending = yield* a.run(BootstrapRequests.list())
      expect(pending).toEqual([])
    })))
})

describe("scenario 26 over HTTP", () => {
  it.live("26: N clients bootstrap the same DB at once: same root, entry set and tips", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* makeNode()
      const { treeId, signer } = yield* setupDb(a, { syncEnabled: true, global: Permission.Write(10), data: { title: "t" } })
      for (let i = 0; i < 30; i++) yield* write(a, treeId, signer, `k${i}`, i)
      const address = yield* serve(a)
      const clients = yield* Effect.forEach([0, 1, 2, 3, 4, 5], () =>
        Effect.tap(makeNode(), (n) => n.sync.enableHttpTransport()))
      const results = yield* Effect.forEach(clients, (c) => c.sync.syncWithPeer(address, treeId), { concurrency: "unbounded" })
      const total = yield* a.storage.count(treeId)
      const want = new Set(yield* allIds(a, treeId))
      const tips = yield* a.storage.tips(treeId)
      for (let i = 0; i < clients.length; i++) {
        expect(results[i]!.received).toBe(total)
        expect(Option.isSome(yield* clients[i]!.storage.get(treeId))).toBe(true)
        expect(new Set(yield* allIds(clients[i]!, treeId))).toEqual(want)
        expect(yield* clients[i]!.storage.tips(treeId)).toEqual(tips)
        expect((yield* readData(clients[i]!, treeId))["k29"]).toBe(29)
      }
    })), 60_000)

  it.live("26b: N clients bootstrap at once with requesting keys under a global grant (auto-approved)", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* makeNode()
      const { treeId } = yield* setupDb(a, { syncEnabled: true, global: Permission.Write(10), data: { title: "t" } })
      const address = yield* serve(a)
      const clients = yield* Effect.forEach([0, 1, 2, 3, 4], () => Effect.tap(makeNode(), (n) => n.sync.enableHttpTransport()))
      const keys = yield* Effect.forEach(clients, (c) => c.auth.generateKey)
      const results = yield* Effect.forEach(clients, (c, i) =>
        c.sync.syncWithPeer(address, treeId, { signer: keys[i]!, request: { permission: Permission.Write(10), keyName: `c${i}` } }),
      { concurrency: "unbounded" })
      const tips = yield* a.storage.tips(treeId)
      for (let i = 0; i < clients.length; i++) {
        expect(results[i]!.received).toBe(yield* a.storage.count(treeId))
        expect(yield* clients[i]!.storage.tips(treeId)).toEqual(tips)
      }
    })), 60_000)
})

describe("scenarios 31, 32 over HTTP", () => {
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
    const address = yield* serve(a)
    yield* b.sync.enableHttpTransport()
    return { a, b, copy, address, ...setup }
  })

  it.live("31: linear chain: B with tips [base] gets exactly {e1,e2,e3}; tips {e3}; partial overlap; branches", () =>
    Effect.scoped(Effect.gen(function*() {
      const { a, b, copy, address, treeId, signer } = yield* pair
      const base = yield* allIds(a, treeId)
      yield* copy(base)
      const e1 = yield* write(a, treeId, signer, "k", 1)
      const e2 = yield* write(a, treeId, signer, "k", 2)
      const e3 = yield* write(a, treeId, signer, "k", 3)
      const raw = yield* post(address, syncTree(treeId, yield* b.storage.tips(treeId)))
      expect(raw.json.Incremental.missing_entries.map(wireId)).toEqual([e1, e2, e3])
      const res = yield* b.sync.syncWithPeer(address, treeId)
      expect(res).toMatchObject({ received: 3, sent: 0 })
      expect(yield* b.storage.tips(treeId)).toEqual([e3])
      expect(yield* b.storage.storeTips(treeId, "data")).toEqual([e3])
      // partial overlap: a replica holding e2 gets only e3
      const c = yield* makeNode()
      yield* c.sync.enableHttpTransport()
      yield* copy([...base, e1, e2], a, c)
      const partial = yield* c.sync.syncWithPeer(address, treeId)
      expect(partial).toMatchObject({ received: 1, sent: 0 })
      const raw2 = yield* post(address, syncTree(treeId, [e2]))
      expect(raw2.json.Incremental.missing_entries.map(wireId)).toEqual([e3])
      // branching: e3 -> {e4a (on A), e4b (on C)}; B holds e3 and receives both; tips {e4a,e4b}
      const e4a = yield* write(a, treeId, signer, "x", "a")
      yield* copy([e3], a, c)
      const e4b = yield* write(c, treeId, signer, "x", "b")
      yield* copy([e4b], c, a)
      const branches = yield* b.sync.syncWithPeer(address, treeId)
      expect(branches).toMatchObject({ received: 2, sent: 0 })
      expect([...(yield* b.storage.tips(treeId))].sort()).toEqual([e4a, e4b].sort())
      expect(yield* b.storage.tips(treeId)).toEqual(yield* a.storage.tips(treeId))
    })))

  it.live("32: out-of-order arrival over HTTP: child-first push gives tips {e3}; a diamond in any order gives the merge tip", () =>
    Effect.scoped(Effect.gen(function*() {
      const { a, b, copy, treeId, signer } = yield* pair
      yield* copy(yield* allIds(a, treeId))
      const { user, key } = yield* setupDb(b, { username: "bob" })
      yield* b.run(enableSync(user, treeId, key))
      const bAddress = yield* b.sync.startServer("127.0.0.1:0")
      const e1 = yield* write(a, treeId, signer, "k", 1)
      const e2 = yield* write(a, treeId, signer, "k", 2)
      const e3 = yield* write(a, treeId, signer, "k", 3)
      const wire = (ids: ReadonlyArray<string>) =>
        Effect.map(a.storage.getMany(ids), (es) => es.map((e) => Buffer.from(e.bytes).toString("base64")))
      const r = yield* post(bAddress, { SendEntries: yield* wire([e3, e2, e1]) })
      expect(r.json).toEqual({ Count: 3 })
      expect(yield* b.storage.tips(treeId)).toEqual([e3])
      expect(yield* b.storage.storeTips(treeId, "data")).toEqual([e3])
      expect(yield* readData(b, treeId)).toEqual({ k: 3 })
      // diamond
      const c = yield* makeNode()
      yield* copy(yield* allIds(a, treeId), a, c)
      const e4a = yield* write(a, treeId, signer, "x", "a")
      const e4b = yield* write(c, treeId, signer, "x", "b")
      yield* copy([e4b], c, a)
      const e5 = yield* write(a, treeId, signer, "x", "merged")
      const orders = [[e4a, e4b, e5], [e5, e4b, e4a], [e4b, e5, e4a], [e5, e4a, e4b], [e4a, e5, e4b], [e4b, e4a, e5]]
      for (const order of orders) {
        const d = yield* makeNode()
        const { user: du, key: dk } = yield* setupDb(d, { username: "dee" })
        yield* d.run(enableSync(du, treeId, dk))
        yield* copy(yield* allIds(b, treeId), b, d)
        yield* d.sync.enableHttpTransport()
        const dAddress = yield* d.sync.startServer("127.0.0.1:0")
        const rr = yield* post(dAddress, { SendEntries: yield* wire(order) })
        expect(rr.json).toEqual({ Count: 3 })
        expect(yield* d.storage.tips(treeId)).toEqual([e5])
        expect(yield* d.storage.storeTips(treeId, "data")).toEqual([e5])
        expect((yield* readData(d, treeId))["x"]).toBe("merged")
      }
    })), 60_000)
})

describe("revocation and concurrency over HTTP", () => {
  it.live("12b: after the global grant is revoked, an unauthenticated pull is refused again", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* makeNode()
      const { treeId, signer } = yield* setupDb(a, { syncEnabled: true, global: Permission.Read, data: { secret: SECRET } })
      const address = yield* serve(a)
      expect(Object.keys((yield* post(address, syncTree(treeId, [fabricatedId]))).json)).toEqual(["Incremental"])
      yield* a.run(Effect.gen(function*() {
        const txn = Transaction.begin({ rootId: treeId }, signer)
        yield* new SettingsStore(txn).revokeGlobalPermission()
        yield* Transaction.commit(txn)
      }))
      const r = yield* post(address, syncTree(treeId, [fabricatedId]))
      expect(r.json).toEqual({ Error: `Authentication required to read database '${treeId}'` })
      expect(r.text).not.toContain(SECRET)
      const r2 = yield* post(address, syncTree(treeId, []))
      expect(r2.json).toEqual({ Error: `Authentication required to read database '${treeId}'` })
    })))

  it.live("26c: concurrent paged bootstraps while the server keeps committing: all end on the server's tips", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* makeNode({ pageBytes: 8_000 })
      const { treeId, signer } = yield* setupDb(a, { syncEnabled: true, global: Permission.Write(10) })
      for (let i = 0; i < 300; i++) yield* write(a, treeId, signer, `k${i % 40}`, `${i}:${"v".repeat(100)}`)
      const address = yield* serve(a)
      const clients = yield* Effect.forEach([0, 1, 2, 3], () => Effect.tap(makeNode(), (n) => n.sync.enableHttpTransport()))
      const writer = Effect.forEach([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], (i) =>
        Effect.zipRight(Effect.sleep(5), write(a, treeId, signer, `late${i}`, i)))
      yield* Effect.all([
        writer,
        Effect.forEach(clients, (c) => c.sync.syncWithPeer(address, treeId), { concurrency: "unbounded" })
      ], { concurrency: "unbounded" })
      const want = new Set(yield* allIds(a, treeId))
      for (const c of clients) {
        yield* c.sync.syncWithPeer(address, treeId)
        expect(yield* c.storage.tips(treeId)).toEqual(yield* a.storage.tips(treeId))
        expect(new Set(yield* allIds(c, treeId))).toEqual(want)
        expect(yield* readData(c, treeId)).toEqual(yield* readData(a, treeId))
      }
    })), 120_000)
})
