/**
 * Clocks that disagree or jump, between real nodes (SQLite, loopback HTTP, real signatures). Each
 * node's engine reads Effect's Clock; here one node's wall clock is shifted by a changeable offset
 * while its monotonic time and sleeps stay real, as a laptop whose clock is off (or is corrected)
 * sees them. Open databases sync whatever the skew (anyone may read them); a private database's
 * signed requests need clocks within the 60 s window, and the error says so; once the clock is
 * corrected, the retry due by the backoff delivers (not one as late as the jump); a spent nonce is
 * not forgotten by a server whose clock jumps forward and back.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { Doc as CoreDoc } from "../../src/core/Doc.js"
import * as SyncAuth from "../../src/core/SyncAuth.js"
import * as Database from "../../src/database/Database.js"
import { Runner } from "../../src/facade/Runner.js"
import * as Eidetica from "../../src/layers/Eidetica.js"
import { Doc, Instance, Permission } from "../../src/promise.js"
import type { SyncRequest } from "../../src/schema/Protocol.js"
import { Auth } from "../../src/services/Auth.js"
import { Instance as InstanceTag } from "../../src/services/Instance.js"
import { Sync } from "../../src/services/Sync.js"

/** Milliseconds added to a node's wall clock; change it to make the clock jump. */
interface Skew {
  offset: number
}

/** Effect's clock with the wall time shifted by `skew.offset`; monotonic time and sleeps unchanged. */
const shiftedClock = (skew: Skew): Clock.Clock => {
  const base = Clock.make()
  const millis = () => base.unsafeCurrentTimeMillis() + skew.offset
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: millis,
    unsafeCurrentTimeNanos: () => base.unsafeCurrentTimeNanos(),
    currentTimeMillis: Effect.sync(millis),
    currentTimeNanos: base.currentTimeNanos,
    sleep: (d) => base.sleep(d)
  } as Clock.Clock
}

const skewedLayer = (skew: Skew, filename: string) =>
  Eidetica.layer({ storage: "sqlite", filename }).pipe(Layer.provideMerge(Layer.setClock(shiftedClock(skew))))

const open: Array<Instance> = []
const dirs: Array<string> = []
afterEach(async () => {
  for (const i of open.splice(0)) await i.close().catch(() => undefined)
  for (const d of dirs.splice(0)) Fs.rmSync(d, { recursive: true, force: true })
})

/** A Promise-facade instance on a SQLite file whose engine reads the shifted clock. */
const openSkewed = async (skew: Skew, filename: string): Promise<Instance> => {
  const runner = new Runner(ManagedRuntime.make(skewedLayer(skew, filename) as Layer.Layer<Eidetica.Services, unknown>))
  const service = await runner.run(InstanceTag)
  // the facade's constructor is private to TypeScript only; Instance.open takes no clock
  const instance = new (Instance as unknown as new(r: Runner, s: unknown) => Instance)(runner, service)
  open.push(instance)
  return instance
}

/** Nodes A (true clock) and B (clock `skew`), alice's database on A, shared with bob's key on B. */
const pair = async (skew: Skew, mode: "private" | "open") => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eidetica-clock-"))
  dirs.push(dir)
  const a = await openSkewed({ offset: 0 }, Path.join(dir, "a.db"))
  const b = await openSkewed(skew, Path.join(dir, "b.db"))
  const addresses: Array<string> = []
  for (const i of [a, b]) {
    await i.enableSync()
    await i.sync().enableHttpTransport({ timeoutMs: 2_000 })
    addresses.push(await i.sync().startServer("127.0.0.1:0"))
  }
  await a.createUser("alice")
  const alice = await a.loginUser("alice")
  const keyA = await alice.getDefaultKey()
  await b.createUser("bob")
  const bob = await b.loginUser("bob")
  const keyB = await bob.getDefaultKey()
  const db = await alice.createDatabase(Doc.from({ name: "notes" }), keyA)
  const t = await db.newTransaction()
  if (mode === "open") await (await t.settings()).setGlobalPermission(Permission.Write(10))
  else await (await t.settings()).setAuthKey(keyB, { permission: Permission.Write(10), name: "bob" })
  await t.commit()
  const syncSettings = { syncEnabled: true, syncOnCommit: true, intervalSeconds: 300, properties: {} }
  await alice.trackDatabase({ databaseId: db.rootId, keyId: keyA, syncSettings })
  // B fetches it while the clocks agree, and serves it too
  await b.sync().syncWithPeer(addresses[0]!, db.rootId)
  await bob.trackDatabase({ databaseId: db.rootId, keyId: keyB, syncSettings })
  return { a, b, addrA: addresses[0]!, addrB: addresses[1]!, alice, bob, rootId: db.rootId }
}

type User = Awaited<ReturnType<Instance["loginUser"]>>

const write = async (user: User, rootId: string, key: string) => {
  const t = await (await user.openDatabase(rootId)).newTransaction()
  await (await t.docStore("notes")).set(key, key)
  return t.commit()
}

const notes = async (user: User, rootId: string) => (await (await user.openDatabase(rootId)).docStore("notes")).getAll()

const until = async (condition: () => Promise<boolean>, ms: number): Promise<boolean> => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await condition()) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return condition()
}

describe("clocks that disagree or jump", () => {
  for (const offset of [10 * 60_000, -86_400_000]) {
    it(`an open database syncs both ways with B's clock off by ${offset / 1000} s`, async () => {
      const skew = { offset: 0 }
      const p = await pair(skew, "open")
      skew.offset = offset
      await write(p.alice, p.rootId, "a1")
      await write(p.bob, p.rootId, "b1")
      await p.b.sync().syncWithPeer(p.addrA, p.rootId)
      await p.a.sync().syncWithPeer(p.addrB, p.rootId)
      expect(await notes(p.alice, p.rootId)).toEqual({ a1: "a1", b1: "b1" })
      expect(await notes(p.bob, p.rootId)).toEqual({ a1: "a1", b1: "b1" })
    })
  }

  it("a private database: skew past 60 s is reported as a clock problem; once corrected, the due retry delivers", async () => {
    const skew = { offset: 0 }
    const p = await pair(skew, "private")
    const handle = await p.b.sync().registerSyncPeer({
      peerPubkey: p.a.deviceId,
      treeId: p.rootId,
      addresses: [{ transportType: "http", address: p.addrA }]
    })
    await handle.waitForInitialSync()
    skew.offset = 10 * 60_000
    const refused = await p.b.sync().syncWithPeer(p.addrA, p.rootId).then(() => undefined, (e: Error & { _tag: string }) => e)
    expect(refused?._tag).toBe("PermissionDenied")
    expect(refused?.message).toMatch(/freshness window .*clock/)
    await write(p.bob, p.rootId, "b1")
    expect(await until(async () => (await handle.status()).state === "backoff", 5_000)).toBe(true)
    expect((await handle.status()).lastError).toMatch(/check the date and time/)
    // the clock is corrected: the retry is due 2 s after the failure, not 10 minutes later
    skew.offset = 0
    expect(await until(async () => "b1" in (await notes(p.alice, p.rootId)), 15_000)).toBe(true)
    expect(await until(async () => (await handle.status()).state === "idle", 5_000)).toBe(true)
  }, 40_000)

  it("a replayed signed request stays refused after the server's clock jumps forward and back", async () => {
    const skew = { offset: 0 }
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eidetica-clock-"))
    dirs.push(dir)
    const rt = ManagedRuntime.make(skewedLayer(skew, Path.join(dir, "s.db")))
    try {
      const { request, fresh, send } = await rt.runPromise(Effect.gen(function*() {
        const instance = yield* InstanceTag
        const sync = yield* Sync
        const auth = yield* Auth
        yield* instance.createUser("alice")
        const user = yield* instance.loginUser("alice")
        const key = yield* user.getDefaultKey
        const { db } = yield* user.createDatabase(CoreDoc.from({ name: "private" }), key)
        yield* user.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: { syncEnabled: true, syncOnCommit: false, properties: {} } })
        const signer = yield* user.signer(key)
        const tips = [...(yield* Database.tips(db))]
        const signed = (timestampMs: number) =>
          Effect.gen(function*() {
            const nonce = yield* auth.randomBytes(32)
            const signature = yield* auth.sign(
              signer.secretKey,
              SyncAuth.signingBytes({ serverPubkey: instance.deviceId, treeId: db.rootId, tips, timestampMs, nonce })
            )
            return {
              SyncTree: { tree_id: db.rootId, our_tips: tips, auth: { key: signer.publicKey, timestamp_ms: timestampMs, nonce: Array.from(nonce), signature } }
            } satisfies SyncRequest
          })
        return { request: yield* signed(Date.now()), fresh: signed, send: (r: SyncRequest) => sync.handle(r, {}) }
      }))
      expect(await rt.runPromise(send(request))).toHaveProperty("Incremental")
      expect(await rt.runPromise(send(request))).toEqual({ Error: SyncAuth.NONCE_SPENT })
      // the server's clock jumps 2 minutes ahead, and an ordinary request from a client that agrees sweeps the spent set
      skew.offset = 120_000
      expect(await rt.runPromise(Effect.flatMap(fresh(Date.now() + 120_000), send))).toHaveProperty("Incremental")
      // corrected back: the captured request is fresh again, and its nonce must still be spent
      skew.offset = 0
      expect(await rt.runPromise(send(request))).toEqual({ Error: SyncAuth.NONCE_SPENT })
    } finally {
      await rt.dispose()
    }
  })
})
