/**
 * The background engine end to end over real HTTP on 127.0.0.1: commits reach registered peers
 * with no explicit sync call, writes made while a peer is down arrive after it returns, peers and
 * pending work survive a restart on SQLite, and a line A–B–C relays. Then, over a fake peer
 * client: what unregistering does to a flush in flight and to handles kept after it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type * as PeerActor from "../../src/actors/PeerActor.js"
import { Doc, type Plain } from "../../src/core/Doc.js"
import type { Signer } from "../../src/database/Database.js"
import { SettingsStore } from "../../src/database/SettingsStore.js"
import { DocStore, DocStoreView } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as Eidetica from "../../src/layers/Eidetica.js"
import { parseAddress } from "../../src/layers/Sync.js"
import * as Permission from "../../src/schema/Permission.js"
import { Instance, type InstanceShape, type User } from "../../src/services/Instance.js"
import { Storage, type StorageShape } from "../../src/services/Storage.js"
import { Sync, type SyncShape } from "../../src/services/Sync.js"
import { SyncEngine, type SyncEngineShape, type SyncHandle } from "../../src/services/SyncEngine.js"
import type { TransportShape } from "../../src/services/Transport.js"

const onCommit = { syncEnabled: true, syncOnCommit: true, properties: {} }

interface Node {
  readonly instance: InstanceShape
  readonly sync: SyncShape
  readonly engine: SyncEngineShape
  readonly storage: StorageShape
  readonly address: string
  readonly run: <A, E>(effect: Effect.Effect<A, E, Eidetica.Services>) => Effect.Effect<A, E>
}

/** A complete engine with HTTP on 127.0.0.1 (port 0 unless given), built in `scope`. */
const makeNode = (options: Eidetica.Options = { storage: "memory" }, port = 0) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(Eidetica.layer(options))
    const run = <A, E>(effect: Effect.Effect<A, E, Eidetica.Services>) => Effect.provide(effect, context)
    return yield* run(
      Effect.gen(function*() {
        const sync = yield* Sync
        yield* sync.enableHttpTransport({ timeout: "2 seconds" })
        const address = yield* sync.startServer(`127.0.0.1:${port}`)
        return {
          instance: yield* Instance,
          sync,
          engine: yield* SyncEngine,
          storage: yield* Storage,
          address,
          run
        } satisfies Node
      })
    )
  }).pipe(Effect.orDie)

/** A user on `node`, its default key, logged in. */
const userOn = (node: Node, name: string) =>
  Effect.gen(function*() {
    yield* node.instance.createUser(name)
    const user = yield* node.instance.loginUser(name)
    return { user, key: yield* user.getDefaultKey }
  }).pipe(Effect.orDie)

/** A database on `node` anyone may write (global Write(10)), tracked with sync on commit. */
const sharedDb = (node: Node, user: User, key: string) =>
  node.run(
    Effect.gen(function*() {
      const { db, signer } = yield* user.createDatabase(Doc.from({ name: "notes" }), key)
      const txn = Transaction.begin(db, signer)
      yield* new SettingsStore(txn).setGlobalPermission(Permission.Write(10))
      yield* Transaction.commit(txn)
      yield* user.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: onCommit })
      return { treeId: db.rootId, signer }
    })
  ).pipe(Effect.orDie)

/** Commit `data[key] = value`. */
const write = (node: Node, treeId: string, signer: Signer, key: string, value: Plain) =>
  node.run(
    Effect.gen(function*() {
      const txn = Transaction.begin({ rootId: treeId }, signer)
      yield* new DocStore(txn, "data").set(key, value)
      return yield* Transaction.commit(txn)
    })
  ).pipe(Effect.orDie)

const readKey = (node: Node, treeId: string, key: string) =>
  node.run(new DocStoreView({ rootId: treeId }, "data").get(key)).pipe(Effect.orElseSucceed(() => undefined))

/** Poll (every 10 ms, at most `within`) until `node` reads `key` = `value`; fails the test otherwise. */
const eventually = (node: Node, treeId: string, key: string, value: Plain, within: Duration.DurationInput = "5 seconds") =>
  poll(readKey(node, treeId, key), (v) => v === value, within)

/** Run `effect` every 10 ms until its value satisfies `pred` (at most `within`). */
const poll = <A, E>(effect: Effect.Effect<A, E>, pred: (a: A) => boolean, within: Duration.DurationInput = "5 seconds") =>
  Effect.repeat(Effect.delay(effect, "10 millis"), { until: pred }).pipe(
    Effect.timeoutFail({ duration: within, onTimeout: () => new Error(`condition not met within ${Duration.format(within)}`) }),
    Effect.orDie
  )

/** Register `peer` on `node` for a database (with the peer's device key and address). */
const register = (node: Node, peer: Node, treeId: string): Effect.Effect<SyncHandle> =>
  node.engine.registerSyncPeer({
    peerPubkey: peer.instance.deviceId,
    treeId,
    addresses: [{ transport_type: "http", address: peer.address }],
    displayName: "peer"
  }).pipe(Effect.orDie)

/** Track a database (held or not yet) on a node with sync on commit. */
const track = (node: Node, user: User, key: string, treeId: string) =>
  node.run(user.trackDatabase({ databaseId: treeId, keyId: key, syncSettings: onCommit })).pipe(Effect.orDie)

/** A SQLite file in a temporary directory removed with the test's scope. */
const sqliteFile = Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "eidetica-engine-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  return join(dir, "a.db")
})

/** A and B, with a shared database on A that B bootstrapped through the engine; peers registered both ways. */
const pair = Effect.gen(function*() {
  const a = yield* makeNode()
  const b = yield* makeNode()
  const alice = yield* userOn(a, "alice")
  const bob = yield* userOn(b, "bob")
  const { signer, treeId } = yield* sharedDb(a, alice.user, alice.key)
  yield* track(b, bob.user, bob.key, treeId)
  const onA = yield* register(a, b, treeId)
  const onB = yield* register(b, a, treeId)
  yield* onB.waitForInitialSync.pipe(Effect.timeout("5 seconds"))
  return { a, b, alice, bob, signer, treeId, onA, onB }
})

describe("SyncEngine over HTTP", () => {
  it.scopedLive("A commits, B sees it with no sync call; and back from B to A", () =>
    Effect.gen(function*() {
      const { a, b, bob, onA, onB, signer, treeId } = yield* pair
      const status = yield* onB.status
      expect(status.hasLocalData).toBe(true)
      expect(status.lastSync).toBeGreaterThan(0)
      yield* write(a, treeId, signer, "hello", "from A")
      yield* eventually(b, treeId, "hello", "from A")
      // B writes with its own user under the global grant; A sees it
      const opened = yield* b.run(bob.user.openDatabase(treeId)).pipe(Effect.orDie)
      yield* write(b, treeId, opened.signer, "reply", "from B")
      yield* eventually(a, treeId, "reply", "from B")
      const s = yield* poll(onA.status, (x) => x.state === "idle")
      expect(s.state).toBe("idle")
      expect(s.pendingEntries).toBe(0)
      expect(s.lastError).toBeUndefined()
      expect(typeof s.lastSync).toBe("number")
    }))

  /**
   * A pushes three commits to B, each peer registered with the other; how many SendEntries B sent
   * meanwhile (its relays: none should go back to A). `node` builds a node whose transports `wrap` wraps.
   */
  const relaysBack = (node: (wrap?: (t: TransportShape) => TransportShape) => Effect.Effect<Node, never, Scope.Scope>) =>
    Effect.gen(function*() {
      let relayed = 0
      const a = yield* node()
      const b = yield* node((t) => ({
        ...t,
        send: (address, request) => {
          if ("SendEntries" in request) relayed++
          return t.send(address, request)
        }
      }))
      const alice = yield* userOn(a, "alice")
      const bob = yield* userOn(b, "bob")
      const { signer, treeId } = yield* sharedDb(a, alice.user, alice.key)
      yield* track(b, bob.user, bob.key, treeId)
      const registerOn = (on: Node, peer: Node) =>
        Effect.flatMap(parseAddress(peer.address), (address) =>
          on.engine.registerSyncPeer({ peerPubkey: peer.instance.deviceId, treeId, addresses: [address] })).pipe(Effect.orDie)
      yield* registerOn(a, b)
      const onB = yield* registerOn(b, a)
      yield* onB.waitForInitialSync.pipe(Effect.timeout("10 seconds"))
      for (let i = 0; i < 3; i++) {
        yield* write(a, treeId, signer, `k${i}`, i)
        yield* eventually(b, treeId, `k${i}`, i)
      }
      yield* Effect.sleep("200 millis")
      return relayed
    })

  it.scopedLive("entries pushed to B are not relayed back to the peer that pushed them", () =>
    Effect.map(relaysBack((wrap) => makeNode({ storage: "memory", sync: { wrapTransport: wrap } })), (relayed) => expect(relayed).toBe(0)))

  it.scopedLive("over iroh too, entries pushed to B are not relayed back to the peer that pushed them", () =>
    Effect.gen(function*() {
      // nodes on iroh alone (loopback, no relays), which announce their device key in a line
      const irohNode = (wrap?: (t: TransportShape) => TransportShape) =>
        Effect.gen(function*() {
          const context = yield* Layer.build(Eidetica.layer({ storage: "memory", sync: { wrapTransport: wrap } }))
          const run = <A, E>(effect: Effect.Effect<A, E, Eidetica.Services>) => Effect.provide(effect, context)
          return yield* run(Effect.gen(function*() {
            const sync = yield* Sync
            yield* sync.enableIrohTransport({ clientBind: "127.0.0.1:0", timeout: "3 seconds" })
            const served = yield* sync.startServer("127.0.0.1:0")
            expect(served).toMatch(/^iroh:/)
            return { instance: yield* Instance, sync, engine: yield* SyncEngine, storage: yield* Storage, address: served, run } satisfies Node
          }))
        }).pipe(Effect.orDie)
      expect(yield* relaysBack(irohNode)).toBe(0)
    }), 30_000)

  it.scopedLive("writes made while B is down arrive after B returns (flush)", () =>
    Effect.gen(function*() {
      const { a, b, onA, signer, treeId } = yield* pair
      const port = Number(b.address.split(":")[1])
      yield* b.sync.stopServer.pipe(Effect.orDie)
      yield* write(a, treeId, signer, "offline", "1")
      yield* write(a, treeId, signer, "offline2", "2")
      const down = yield* poll(onA.status, (x) => x.state === "backoff")
      expect(down.lastError).toBeDefined()
      expect(down.pendingEntries).toBeGreaterThan(0)
      expect(down.retryAt).toBeGreaterThan(down.lastSync ?? 0)
      yield* b.sync.startServer(`127.0.0.1:${port}`).pipe(Effect.orDie)
      const report = yield* a.engine.flush
      expect(report).toEqual({ delivered: 1, failed: 0 })
      expect(yield* readKey(b, treeId, "offline")).toBe("1")
      expect(yield* readKey(b, treeId, "offline2")).toBe("2")
      const after = yield* onA.status
      expect(after).toMatchObject({ state: "idle", pendingEntries: 0 })
    }))

  it.scopedLive("registered peers, tracking and pending work survive closing and reopening a SQLite instance", () =>
    Effect.gen(function*() {
      const filename = yield* sqliteFile
      const b = yield* makeNode()
      const bob = yield* userOn(b, "bob")
      const bPort = Number(b.address.split(":")[1])

      const first = yield* Scope.make()
      const a1 = yield* Scope.extend(makeNode({ storage: "sqlite", filename }), first)
      const alice = yield* userOn(a1, "alice")
      const { signer, treeId } = yield* sharedDb(a1, alice.user, alice.key)
      yield* track(b, bob.user, bob.key, treeId)
      yield* register(b, a1, treeId) // B bootstraps from A
      const onA1 = yield* register(a1, b, treeId)
      yield* onA1.waitForInitialSync.pipe(Effect.timeout("5 seconds"))
      yield* b.sync.stopServer.pipe(Effect.orDie)
      const entryId = yield* write(a1, treeId, signer, "while-b-down", "kept")
      yield* poll(onA1.status, (s) => s.state === "backoff")
      yield* Scope.close(first, Exit.void)

      const a2 = yield* makeNode({ storage: "sqlite", filename })
      const handle = yield* a2.engine.handle(b.instance.deviceId, treeId)
      expect(handle).toBeDefined()
      const pending = yield* a2.storage.listMeta("sync/pending/").pipe(Effect.orDie)
      expect(pending.length).toBe(1)
      expect(pending[0]![1]).toContain(entryId)
      expect((yield* a2.instance.combinedSyncSettings(treeId).pipe(Effect.orDie))?.syncOnCommit).toBe(true)
      expect(yield* readKey(b, treeId, "while-b-down")).toBeUndefined()
      yield* b.sync.startServer(`127.0.0.1:${bPort}`).pipe(Effect.orDie)
      expect(yield* a2.engine.flush).toEqual({ delivered: 1, failed: 0 })
      expect(yield* readKey(b, treeId, "while-b-down")).toBe("kept")
      expect(yield* a2.storage.listMeta("sync/pending/").pipe(Effect.orDie)).toEqual([])
      expect((yield* handle!.status).state).toBe("idle")
    }))

  it.scopedLive("peers reloaded before a transport is enabled wait for one (no attempt spent, nothing saved), then sync at once", () =>
    Effect.gen(function*() {
      const filename = yield* sqliteFile
      const b = yield* makeNode()
      const bob = yield* userOn(b, "bob")
      const first = yield* Scope.make()
      const a1 = yield* Scope.extend(makeNode({ storage: "sqlite", filename }), first)
      const alice = yield* userOn(a1, "alice")
      const { treeId } = yield* sharedDb(a1, alice.user, alice.key)
      yield* track(b, bob.user, bob.key, treeId)
      yield* register(b, a1, treeId)
      const onA1 = yield* register(a1, b, treeId)
      yield* onA1.waitForInitialSync.pipe(Effect.timeout("5 seconds"))
      yield* Scope.close(first, Exit.void)
      yield* write(b, treeId, (yield* b.run(bob.user.openDatabase(treeId)).pipe(Effect.orDie)).signer, "while-a-closed", "b")
      // A reopens with a backoff of a minute and no transport yet: its reloaded actor waits for one
      // (failing for want of a transport spent a retry, put it in a minute's backoff, and saved a
      // row of pending work per database and peer)
      const a2 = yield* Layer.build(Eidetica.layer({ storage: "sqlite", filename, engine: { backoff: { baseMs: 60_000 } } }))
      const engine = Context.get(a2, SyncEngine)
      const sync = Context.get(a2, Sync)
      const handle = (yield* engine.handle(b.instance.deviceId, treeId))!
      yield* Effect.sleep("300 millis")
      const waiting = yield* handle.status
      expect([waiting.state, waiting.lastError]).toEqual(["idle", undefined])
      expect(yield* Context.get(a2, Storage).listMeta("sync/pending/").pipe(Effect.orDie)).toEqual([])
      // enabling one syncs now: B's write arrives long before the minute is up
      yield* sync.enableHttpTransport({ timeout: "2 seconds" })
      const read = new DocStoreView({ rootId: treeId }, "data").get("while-a-closed").pipe(
        Effect.provide(a2),
        Effect.orElseSucceed(() => undefined)
      )
      yield* poll(read, (v) => v === "b", "10 seconds")
      expect((yield* poll(handle.status, (s) => s.state === "idle")).lastError).toBeUndefined()
    }))

  it.scopedLive("pushEntries sends given entries in one round trip; a gap in the peer's history is refused", () =>
    Effect.gen(function*() {
      const { a, b, signer, treeId } = yield* pair
      yield* a.engine.unregisterSyncPeer(b.instance.deviceId) // no background pushes in this test
      const e1 = yield* write(a, treeId, signer, "p1", "1")
      const e2 = yield* write(a, treeId, signer, "p2", "2")
      const gap = yield* Effect.flip(a.sync.pushEntries(b.address, treeId, [e2]))
      expect(gap._tag).toBe("RemoteError")
      const result = yield* a.sync.pushEntries(b.address, treeId, [e2, e1]).pipe(Effect.orDie)
      expect(result).toMatchObject({ sent: 2, received: 0 })
      expect(yield* readKey(b, treeId, "p2")).toBe("2")
    }))

  it.scopedLive("a peer registered by its key is not synced with another node answering at its address", () =>
    Effect.gen(function*() {
      const { a, b, signer, treeId } = yield* pair
      // C tracks the same database under the global grant and would take anything pushed to it
      const c = yield* makeNode()
      const carol = yield* userOn(c, "carol")
      yield* track(c, carol.user, carol.key, treeId)
      yield* c.sync.syncWithPeer(a.address, treeId).pipe(Effect.orDie)
      const before = yield* c.storage.count(treeId)
      // A registers a peer D by its key, at C's address (an address reassigned, a wrong entry)
      const d = yield* makeNode()
      const impostor = yield* a.engine.registerSyncPeer({
        peerPubkey: d.instance.deviceId,
        treeId,
        addresses: [{ transport_type: "http", address: c.address }]
      }).pipe(Effect.orDie)
      yield* write(a, treeId, signer, "private", "for B only")
      const refused = yield* poll(impostor.status, (x) => x.lastError !== undefined)
      expect(refused.lastError).toContain(`the peer at http:${c.address} is ${c.instance.deviceId}, not the registered peer ${d.instance.deviceId}`)
      yield* eventually(b, treeId, "private", "for B only")
      yield* a.engine.flush
      expect(yield* c.storage.count(treeId)).toBe(before)
      expect(yield* readKey(c, treeId, "private")).toBeUndefined()
      // by hand too: syncWithPeer and pushEntries refuse before sending anything
      const tips = yield* a.storage.tips(treeId)
      const bySync = yield* Effect.flip(a.sync.syncWithPeer(c.address, treeId, { expectPeer: d.instance.deviceId }))
      expect(bySync._tag).toBe("HandshakeFailed")
      const byPush = yield* Effect.flip(a.sync.pushEntries(c.address, treeId, tips, { expectPeer: d.instance.deviceId }))
      expect(byPush._tag).toBe("HandshakeFailed")
      expect(yield* c.storage.count(treeId)).toBe(before)
      // the right key at that address is accepted
      expect((yield* a.sync.pushEntries(c.address, treeId, tips, { expectPeer: c.instance.deviceId }).pipe(Effect.orDie)).sent).toBeGreaterThan(0)
    }))

  it.scopedLive("a line A–B–C relays: a write on A reaches C with no A–C link", () =>
    Effect.gen(function*() {
      const { a, b, signer, treeId } = yield* pair
      const c = yield* makeNode()
      const carol = yield* userOn(c, "carol")
      yield* track(c, carol.user, carol.key, treeId)
      yield* register(b, c, treeId)
      const onC = yield* register(c, b, treeId)
      yield* onC.waitForInitialSync.pipe(Effect.timeout("5 seconds"))
      yield* write(a, treeId, signer, "relayed", "yes")
      yield* eventually(c, treeId, "relayed", "yes")
      // and back: C's write reaches A through B
      const opened = yield* c.run(carol.user.openDatabase(treeId)).pipe(Effect.orDie)
      yield* write(c, treeId, opened.signer, "from-c", "ok")
      yield* eventually(a, treeId, "from-c", "ok")
      expect(yield* a.engine.handle(c.instance.deviceId, treeId)).toBeUndefined()
    }))

  it.scopedLive("auth.keyId is honoured: a key that is not logged in falls back to the device key and says so", () =>
    Effect.gen(function*() {
      const a = yield* makeNode()
      const b = yield* makeNode()
      const alice = yield* userOn(a, "alice")
      // a private database: no global grant, so reads need a proven key
      const { db } = yield* a.run(alice.user.createDatabase(Doc.from({ name: "private" }), alice.key)).pipe(Effect.orDie)
      yield* track(a, alice.user, alice.key, db.rootId)
      const handle = yield* b.engine.registerSyncPeer({
        peerPubkey: a.instance.deviceId,
        treeId: db.rootId,
        addresses: [{ transport_type: "http", address: a.address }],
        auth: { keyId: "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" }
      }).pipe(Effect.orDie)
      const s = yield* poll(handle.status, (x) => x.lastError !== undefined)
      expect(s.state).toBe("backoff")
      expect(s.lastError).toContain("not logged in")
      expect(s.hasLocalData).toBe(false)
    }))
})

describe("SyncEngine: a device granted by an admin on another device", () => {
  /** A key's record in a database's auth as `node` holds it. */
  const readAuthKey = (node: Node, treeId: string, pubkey: string) =>
    node.run(Effect.map(new DocStoreView({ rootId: treeId }, "_settings").getAll(), (all) => (all as { auth?: { keys?: Record<string, unknown> } }).auth?.keys?.[pubkey])).pipe(Effect.orDie)

  /**
   * S serves a private database of its admin; L, another device of that admin, got it from S and
   * grants P's device key Write(10); P gets the database and the grant from L, then L is gone (it
   * never syncs with S again). S has not seen the grant, so it does not know P's key.
   */
  const grantedElsewhere = Effect.gen(function*() {
    const s = yield* makeNode()
    const alice = yield* userOn(s, "alice")
    const { db, signer: admin } = yield* s.run(alice.user.createDatabase(Doc.from({ name: "private" }), alice.key)).pipe(Effect.orDie)
    const treeId = db.rootId
    yield* track(s, alice.user, alice.key, treeId)
    yield* write(s, treeId, admin, "on-s", "1")
    const lScope = yield* Scope.make()
    const l = yield* Scope.extend(makeNode(), lScope)
    const leslie = yield* userOn(l, "leslie")
    yield* track(l, leslie.user, leslie.key, treeId)
    yield* l.sync.syncWithPeer(s.address, treeId, { signer: admin }).pipe(Effect.orDie)
    // what P sends, by kind
    const sent = { SyncTree: 0, SendEntries: 0 }
    const p = yield* makeNode({
      storage: "memory",
      sync: {
        wrapTransport: (t) => ({
          ...t,
          send: (address, request) => {
            if ("SyncTree" in request) sent.SyncTree++
            if ("SendEntries" in request) sent.SendEntries++
            return t.send(address, request)
          }
        })
      }
    })
    const pat = yield* userOn(p, "pat")
    const device = p.instance.device
    yield* l.run(
      Effect.gen(function*() {
        const txn = Transaction.begin({ rootId: treeId }, admin)
        yield* new SettingsStore(txn).setAuthKey(device.publicKey, { permission: Permission.Write(10) })
        return yield* Transaction.commit(txn)
      })
    ).pipe(Effect.orDie)
    yield* track(p, pat.user, pat.key, treeId)
    yield* p.sync.syncWithPeer(l.address, treeId, { signer: device }).pipe(Effect.orDie)
    yield* Scope.close(lScope, Exit.void)
    return { s, p, admin, device, treeId, sent }
  })

  it.scopedLive("its engine gets its writes and the grant to S, with no call from L", () =>
    Effect.gen(function*() {
      const { device, p, s, sent, treeId } = yield* grantedElsewhere
      yield* write(p, treeId, device, "before", "from P")
      const handle = yield* register(p, s, treeId)
      yield* handle.waitForInitialSync.pipe(Effect.timeout("5 seconds"), Effect.orDie)
      expect(yield* readKey(s, treeId, "before")).toBe("from P")
      expect(yield* readAuthKey(s, treeId, device.publicKey)).toMatchObject({ status: "Active" })
      // from now on P's key is known there: a commit is one push, proven by the device key (the
      // database knows no key of P's logged-in user), nothing more
      yield* poll(handle.status, (x) => x.state === "idle")
      sent.SyncTree = 0
      sent.SendEntries = 0
      yield* write(p, treeId, device, "after", "from P too")
      yield* eventually(s, treeId, "after", "from P too")
      const status = yield* poll(handle.status, (x) => x.state === "idle" && x.pendingEntries === 0)
      expect(status.lastError).toBeUndefined()
      expect(sent).toEqual({ SyncTree: 0, SendEntries: 1 })
    }))

  it.scopedLive("removed on S, granted again on another device: its engine relays the new grant to S, then its writes", () =>
    Effect.gen(function*() {
      const { admin, device, p, s, treeId } = yield* grantedElsewhere
      const handle = yield* register(p, s, treeId)
      yield* handle.waitForInitialSync.pipe(Effect.timeout("5 seconds"), Effect.orDie)
      // the admin removes P's key on S; later, on another device (L2, which syncs only with P), grants it again
      yield* s.run(
        Effect.gen(function*() {
          const txn = Transaction.begin({ rootId: treeId }, admin)
          Transaction.stage(txn, "_settings", "settings").removePath(`auth.keys.${device.publicKey}`)
          return yield* Transaction.commit(txn)
        })
      ).pipe(Effect.orDie)
      const l2 = yield* makeNode()
      const lee = yield* userOn(l2, "lee")
      yield* track(l2, lee.user, lee.key, treeId)
      yield* l2.sync.syncWithPeer(s.address, treeId, { signer: admin }).pipe(Effect.orDie)
      yield* l2.run(
        Effect.gen(function*() {
          const txn = Transaction.begin({ rootId: treeId }, admin)
          yield* new SettingsStore(txn).setAuthKey(device.publicKey, { permission: Permission.Write(10) })
          return yield* Transaction.commit(txn)
        })
      ).pipe(Effect.orDie)
      yield* p.sync.syncWithPeer(l2.address, treeId, { signer: device }).pipe(Effect.orDie)
      yield* l2.sync.stopServer.pipe(Effect.orDie)
      // P's engine relays what it got from L2 (the grant among it) to S, which does not know its key
      // now, then pushes its write
      yield* write(p, treeId, device, "back", "again")
      yield* eventually(s, treeId, "back", "again")
      expect(yield* readAuthKey(s, treeId, device.publicKey)).toMatchObject({ status: "Active" })
      expect((yield* poll(handle.status, (x) => x.state === "idle" && x.pendingEntries === 0)).lastError).toBeUndefined()
    }))

  it.scopedLive("syncWithPeer pushes the grant along; the write alone is refused", () =>
    Effect.gen(function*() {
      const { device, p, s, treeId } = yield* grantedElsewhere
      const written = yield* write(p, treeId, device, "by-hand", "from P")
      const alone = yield* Effect.flip(p.sync.pushEntries(s.address, treeId, [written]))
      expect(alone._tag).toBe("PermissionDenied")
      // no key named: P's user key (unknown everywhere) is refused, then the device key is granted
      const result = yield* p.sync.syncWithPeer(s.address, treeId).pipe(Effect.orDie)
      expect(result.sent).toBeGreaterThanOrEqual(2)
      expect(yield* readKey(s, treeId, "by-hand")).toBe("from P")
    }))
})

const FAKE_ADDRESS = { transport_type: "fake", address: "peer" } as const
const PEER = "ed25519:peer"

/** An engine over a peer client we control (no transport), its storage, and the calls it made. */
const fakeEngine = (client: PeerActor.PeerClient) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(Eidetica.layer({ storage: "memory", engine: { client: () => client } }))
    return { engine: Context.get(context, SyncEngine), storage: Context.get(context, Storage) }
  }).pipe(Effect.orDie)

const registration = (treeId: string) => ({ peerPubkey: PEER, treeId, addresses: [FAKE_ADDRESS] })

/** How `effect` ends within `d` of test time: None if it is still waiting then. */
const endsWithin = <A, E>(effect: Effect.Effect<A, E>, d: Duration.DurationInput = "1 second") =>
  Effect.gen(function*() {
    const waiting = yield* Effect.fork(Effect.timeoutOption(Effect.exit(effect), d))
    yield* TestClock.adjust(d)
    return yield* Fiber.join(waiting)
  })

/** A real endpoint ticket (an iroh endpoint id and one loopback address), as an iroh server gives it. */
const TICKET = "endpointaayo2tox3ksw3n6v7excmsohfkekml4eeoyzglezqysuys4bw4liqaibab7qaaabuapq"

describe("SyncEngine registration", () => {
  it.scoped("a flush returns when its peer is unregistered meanwhile, and leaves that peer out", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>() // never opened: the peer never answers
      const { engine } = yield* fakeEngine({ sync: () => Deferred.await(gate), push: () => Deferred.await(gate) })
      yield* engine.registerSyncPeer(registration("T1")).pipe(Effect.orDie)
      const flush = yield* Effect.fork(engine.flush)
      yield* TestClock.adjust("10 millis")
      yield* engine.unregisterSyncPeer(PEER).pipe(Effect.orDie)
      expect(yield* endsWithin(Fiber.join(flush))).toEqual(Option.some(Exit.succeed({ delivered: 0, failed: 0 })))
    }))

  it.scoped("a handle kept after unregistering its database reads idle and does not bring it back: not synced, not saved as pending", () =>
    Effect.gen(function*() {
      const calls: Array<string> = []
      const down = (treeId: string) =>
        Effect.suspend(() => {
          calls.push(treeId)
          return Effect.fail({ _tag: "TransportError", message: "down" })
        })
      const { engine, storage } = yield* fakeEngine({ sync: (_a, treeId) => down(treeId), push: (_a, treeId) => down(treeId) })
      yield* engine.registerSyncPeer(registration("T1")).pipe(Effect.orDie)
      const h2 = yield* engine.registerSyncPeer(registration("T2")).pipe(Effect.orDie)
      yield* engine.unregisterSyncPeer(PEER, "T2").pipe(Effect.orDie)
      expect(yield* engine.handle(PEER, "T2")).toBeUndefined()
      // an app still showing the old handle
      expect(yield* h2.status).toEqual({ state: "idle", hasLocalData: false, pendingEntries: 0 })
      const changes = yield* endsWithin(Effect.map(Stream.runCollect(h2.changes), (c) => [...c]))
      expect(changes).toEqual(Option.some(Exit.succeed([{ state: "idle", hasLocalData: false, pendingEntries: 0 }])))
      const waited = yield* endsWithin(h2.waitForInitialSync)
      expect(Option.isSome(waited) && Exit.isInterrupted(waited.value)).toBe(true)
      yield* h2.addAddress({ transport_type: "fake", address: "elsewhere" }).pipe(Effect.orDie)
      calls.length = 0
      expect(yield* engine.flush).toEqual({ delivered: 0, failed: 1 })
      expect(calls).toEqual(["T1"])
      const keys = (yield* storage.listMeta("sync/").pipe(Effect.orDie)).map(([k]) => k)
      expect(keys.filter((k) => k.startsWith("sync/pending/"))).toEqual([`sync/pending/${encodeURIComponent(PEER)}/T1`])
      const record = (yield* storage.listMeta("sync/peers/").pipe(Effect.orDie)).map(([, v]) => JSON.parse(v))
      expect(record).toMatchObject([{ addresses: [FAKE_ADDRESS], trees: { T1: {} } }])
    }))

  it.scoped("an http address the client cannot read, or an iroh one without a ticket's form, is refused as InvalidAddress, at registration and by addAddress; nothing is saved", () =>
    Effect.gen(function*() {
      const { engine, storage } = yield* fakeEngine({ sync: () => Effect.void, push: () => Effect.void })
      const bad = { transport_type: "http", address: "http://127.0.0.1:3000/api" }
      const refused = yield* Effect.flip(engine.registerSyncPeer({ ...registration("T1"), addresses: [FAKE_ADDRESS, bad] }))
      expect(refused._tag).toBe("InvalidAddress")
      expect(refused.message).toBe(
        "Invalid address: \"http://127.0.0.1:3000/api\" is not an http address: expected host:port, such as \"127.0.0.1:3000\" or \"[::1]:3000\""
      )
      expect(yield* engine.handle(PEER, "T1")).toBeUndefined()
      expect(yield* storage.listMeta("sync/").pipe(Effect.orDie)).toEqual([])
      const handle = yield* engine.registerSyncPeer(registration("T1")).pipe(Effect.orDie)
      for (const address of ["127.0.0.1", "127.0.0.1:0", "::1:3000", ""]) {
        const e = yield* Effect.flip(handle.addAddress({ transport_type: "http", address }))
        expect(e._tag, address).toBe("InvalidAddress")
      }
      // an iroh address needs a ticket's form: a host:port, a cased or cut ticket are refused
      for (const address of ["127.0.0.1:3000", TICKET.toUpperCase(), TICKET.slice(0, 60), `iroh:${TICKET}x!`]) {
        const e = yield* Effect.flip(handle.addAddress({ transport_type: "iroh", address }))
        expect(e.message, address).toMatch(/is not an iroh address: expected an endpoint ticket/)
      }
      // good forms are taken, and another transport's address is that transport's to read
      yield* handle.addAddress({ transport_type: "http", address: "[::1]:3000" }).pipe(Effect.orDie)
      yield* handle.addAddress({ transport_type: "iroh", address: TICKET }).pipe(Effect.orDie)
      yield* handle.addAddress({ transport_type: "iroh", address: `iroh:${TICKET}` }).pipe(Effect.orDie)
      yield* handle.addAddress({ transport_type: "carrier-pigeon", address: "the loft" }).pipe(Effect.orDie)
      const record = (yield* storage.listMeta("sync/peers/").pipe(Effect.orDie)).map(([, v]) => JSON.parse(v))
      expect(record).toMatchObject([{
        addresses: [
          FAKE_ADDRESS,
          { transport_type: "http", address: "[::1]:3000" },
          { transport_type: "iroh", address: TICKET },
          { transport_type: "iroh", address: `iroh:${TICKET}` },
          { transport_type: "carrier-pigeon", address: "the loft" }
        ]
      }])
    }))

  it.scoped("a handle kept after unregistering its peer altogether reads idle and waits for nothing", () =>
    Effect.gen(function*() {
      const { engine, storage } = yield* fakeEngine({ sync: () => Effect.void, push: () => Effect.void })
      const handle = yield* engine.registerSyncPeer(registration("T1")).pipe(Effect.orDie)
      yield* handle.waitForInitialSync
      yield* engine.unregisterSyncPeer(PEER).pipe(Effect.orDie)
      expect(yield* handle.status).toEqual({ state: "idle", hasLocalData: false, pendingEntries: 0 })
      const waited = yield* endsWithin(handle.waitForInitialSync)
      expect(Option.isSome(waited) && Exit.isInterrupted(waited.value)).toBe(true)
      expect(yield* engine.flush).toEqual({ delivered: 0, failed: 0 })
      expect(yield* storage.listMeta("sync/").pipe(Effect.orDie)).toEqual([])
    }))

  it.scoped("a subscription ends with the idle status when its pair is unregistered; a new registration has subscriptions of its own", () =>
    Effect.gen(function*() {
      const down = Effect.fail({ _tag: "TransportError", message: "down" })
      const { engine } = yield* fakeEngine({ sync: () => down, push: () => down })
      const idle = { state: "idle", hasLocalData: false, pendingEntries: 0 }
      for (const [unregister, label] of [[() => engine.unregisterSyncPeer(PEER, "T2"), "one database"], [() => engine.unregisterSyncPeer(PEER), "the peer"]] as const) {
        yield* engine.registerSyncPeer(registration("T1")).pipe(Effect.orDie)
        const handle = yield* engine.registerSyncPeer(registration("T2")).pipe(Effect.orDie)
        yield* handle.changes.pipe(Stream.filter((s) => s.state === "backoff"), Stream.runHead)
        const watching = yield* Effect.fork(Effect.map(Stream.runCollect(handle.changes), (c) => [...c]))
        yield* TestClock.adjust("10 millis")
        yield* unregister().pipe(Effect.orDie)
        const seen = yield* endsWithin(Fiber.join(watching))
        expect(Option.isSome(seen) && Exit.isSuccess(seen.value), label).toBe(true)
        const statuses = Option.isSome(seen) && Exit.isSuccess(seen.value) ? seen.value.value : []
        expect(statuses[0], label).toMatchObject({ state: "backoff", lastError: "down" })
        expect(statuses.at(-1), label).toEqual(idle)
        // registered again, the same handle reads the new registration, not the old status
        yield* engine.registerSyncPeer(registration("T2")).pipe(Effect.orDie)
        const again = yield* endsWithin(handle.changes.pipe(Stream.filter((s) => s.state === "backoff"), Stream.runHead))
        expect(again, label).toEqual(Option.some(Exit.succeed(Option.some(expect.objectContaining({ state: "backoff", lastError: "down" })))))
        yield* engine.unregisterSyncPeer(PEER).pipe(Effect.orDie)
      }
    }))
})
