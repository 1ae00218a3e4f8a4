/**
 * Bootstrap requests at the database level: one decision per request even when two admins decide
 * at the same moment, and a bound on the pending requests one tree holds.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import { Doc } from "../../src/core/Doc.js"
import * as Settings from "../../src/core/Settings.js"
import * as BootstrapRequests from "../../src/database/BootstrapRequests.js"
import * as Database from "../../src/database/Database.js"
import { SettingsStore } from "../../src/database/SettingsStore.js"
import { layerCache } from "../../src/database/StoreState.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { StorageError } from "../../src/schema/Errors.js"
import * as Permission from "../../src/schema/Permission.js"
import { Auth } from "../../src/services/Auth.js"
import { Storage, type StorageShape } from "../../src/services/Storage.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"

/**
 * Memory storage whose every call first yields to other fibers, as a storage with real I/O would:
 * without it, fibers on the synchronous memory storage never interleave and no race can show.
 */
const yieldingStorage = Layer.effect(
  Storage,
  Effect.map(StorageLayers.makeMemory, (inner) => {
    const wrapped: Record<string, unknown> = {}
    for (const [name, op] of Object.entries(inner)) {
      wrapped[name] = Effect.isEffect(op)
        ? Effect.zipRight(Effect.yieldNow(), op)
        : (...args: Array<unknown>) => Effect.zipRight(Effect.yieldNow(), (op as (...a: Array<unknown>) => Effect.Effect<unknown>)(...args))
    }
    return wrapped as unknown as StorageShape
  })
)

const env = Layer.mergeAll(yieldingStorage, AuthLayers.layerNode, layerCache, WriteEvents.layer)

/**
 * A storage that can be made to fail (a typed StorageError) or crash (a defect: the process dies
 * there, and the test goes on as the restarted instance on the same data) at a chosen call, and
 * that counts the metadata rows its listings return.
 */
interface Faults {
  fault?: ((op: string, args: ReadonlyArray<unknown>) => "fail" | "crash" | undefined) | undefined
  rowsListed: number
}

const faultyStorage = (faults: Faults) =>
  Layer.effect(
    Storage,
    Effect.map(StorageLayers.makeMemory, (inner) => {
      const guard = (op: string, args: ReadonlyArray<unknown>) =>
        Effect.suspend(() => {
          const f = faults.fault?.(op, args)
          if (f === "crash") return Effect.die(new Error(`crash at ${op}`))
          if (f === "fail") return Effect.fail(new StorageError({ operation: op }))
          return Effect.yieldNow()
        })
      const wrapped: Record<string, unknown> = {}
      for (const [name, op] of Object.entries(inner)) {
        wrapped[name] = Effect.isEffect(op)
          ? Effect.zipRight(guard(name, []), op)
          : (...args: Array<unknown>) =>
            Effect.zipRight(guard(name, args), (op as (...a: Array<unknown>) => Effect.Effect<unknown>)(...args)).pipe(
              Effect.tap((result) => {
                if (name === "listMeta" && Array.isArray(result)) faults.rowsListed += result.length
              })
            )
      }
      return wrapped as unknown as StorageShape
    })
  )

const faultyEnv = (faults: Faults) => Layer.mergeAll(faultyStorage(faults), AuthLayers.layerNode, layerCache, WriteEvents.layer)

/** The permission a key holds in its own auth entry, when Active. */
const grantOf = (db: Database.Database, key: string) =>
  Effect.map(Database.authSettings(db), (auth) => {
    const own = auth._tag === "Present" ? auth.auth.keys[key] : undefined
    return own?.status === "Active" ? own.permissions : undefined
  })

const setup = Effect.gen(function* () {
  const auth = yield* Auth
  const admin = yield* auth.generateKey
  const other = yield* auth.generateKey
  const db = yield* Database.create({ signer: admin, settings: Doc.from({ name: "room" }) })
  return { auth, admin, other, db }
})

describe("bootstrap requests", () => {
  it.effect("an approval and a rejection started together: one decision is made, and auth agrees with it", () =>
    Effect.gen(function* () {
      const { admin, other, db, auth } = yield* setup
      const asker = yield* auth.generateKey
      // a second admin, so two different admins decide
      const txn = Transaction.begin(db, admin)
      yield* new SettingsStore(txn).setAuthKey(other.publicKey, { permission: Permission.Admin(1) })
      yield* Transaction.commit(txn)
      const request = yield* BootstrapRequests.record({
        treeId: db.rootId,
        requestingKey: asker.publicKey,
        requestedPermission: Permission.Write(10)
      })
      const [approval, rejection] = yield* Effect.all(
        [
          Effect.either(BootstrapRequests.resolve(request.requestId, admin, true)),
          Effect.either(BootstrapRequests.resolve(request.requestId, other, false))
        ],
        { concurrency: "unbounded" }
      )
      // exactly one decision stands; the other fails as already decided
      expect([approval, rejection].filter(Either.isRight)).toHaveLength(1)
      const loser = Either.isRight(approval) ? rejection : approval
      expect(Either.isLeft(loser) && loser.left._tag).toBe("InvalidRequestState")
      const stored = yield* BootstrapRequests.get(request.requestId)
      const keys = yield* Database.authSettings(db)
      const granted = keys._tag === "Present" ? Settings.permissionOf(keys.auth, asker.publicKey) : undefined
      if (stored.status === "Approved") expect(granted).toEqual(Permission.Write(10))
      else expect(granted).toBeUndefined()
      expect(stored.status).toBe(Either.isRight(approval) ? "Approved" : "Rejected")
    }).pipe(Effect.provide(env)))

  it.effect("approving a request whose key was revoked since it was made is refused; the key stays revoked", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const asker = yield* auth.generateKey
      const request = yield* BootstrapRequests.record({ treeId: db.rootId, requestingKey: asker.publicKey, requestedPermission: Permission.Write(10) })
      // meanwhile the key is granted, then revoked (found compromised)
      for (const step of ["grant", "revoke"] as const) {
        const txn = Transaction.begin(db, admin)
        if (step === "grant") yield* new SettingsStore(txn).setAuthKey(asker.publicKey, { permission: Permission.Write(10) })
        else yield* new SettingsStore(txn).revokeAuthKey(asker.publicKey)
        yield* Transaction.commit(txn)
      }
      const refused = yield* Effect.flip(BootstrapRequests.resolve(request.requestId, admin, true))
      expect(refused._tag).toBe("PermissionDenied")
      expect(refused.message).toMatch(/was revoked .* after request .* was made/)
      const keys = yield* Database.authSettings(db)
      expect(keys._tag === "Present" && keys.auth.keys[asker.publicKey]?.status).toBe("Revoked")
      // it can still be rejected
      expect((yield* BootstrapRequests.resolve(request.requestId, admin, false)).status).toBe("Rejected")
    }).pipe(Effect.provide(env)))

  it.effect("identical requests filed together make one pending request", () =>
    Effect.gen(function* () {
      const { db, auth } = yield* setup
      const asker = yield* auth.generateKey
      const ask = BootstrapRequests.record({ treeId: db.rootId, requestingKey: asker.publicKey, requestedPermission: Permission.Read })
      const [a, b] = yield* Effect.all([ask, ask], { concurrency: "unbounded" })
      expect(a.requestId).toBe(b.requestId)
      expect(yield* BootstrapRequests.list("Pending")).toHaveLength(1)
    }).pipe(Effect.provide(env)))

  it.effect("a tree holds at most MAX_PENDING_PER_TREE pending requests; deciding one makes room; other trees are unaffected", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const other = yield* Database.create({ signer: admin })
      const limit = BootstrapRequests.MAX_PENDING_PER_TREE
      const ask = (treeId: string, i: number) =>
        BootstrapRequests.record({ treeId, requestingKey: `ed25519:asker-${i}`, requestedPermission: Permission.Read })
      const first = yield* ask(db.rootId, 0)
      for (let i = 1; i < limit; i++) yield* ask(db.rootId, i)
      const full = yield* Effect.flip(ask(db.rootId, limit))
      expect(full._tag).toBe("PendingRequestsFull")
      expect(full.message).toBe(
        `database ${db.rootId} already has ${limit} pending bootstrap requests; an admin must approve or reject some before more are taken`
      )
      // nothing was recorded by the refused request; a retry of a queued one still finds its slot
      expect(yield* BootstrapRequests.list("Pending")).toHaveLength(limit)
      expect((yield* ask(db.rootId, 0)).requestId).toBe(first.requestId)
      // another tree has its own bound
      expect((yield* ask(other.rootId, limit)).status).toBe("Pending")
      // rejecting one makes room for one
      yield* BootstrapRequests.resolve(first.requestId, admin, false)
      expect((yield* ask(db.rootId, limit)).status).toBe("Pending")
      expect(yield* Effect.flip(ask(db.rootId, limit + 1))).toMatchObject({ _tag: "PendingRequestsFull" })
    }).pipe(Effect.provide(env)))

  // Approving writes the decision and commits the grant: two writes, with a crash possible between
  // them. Whatever the point, the request must never stay Pending (or be rejected later) while its
  // key holds the access the approval gave.
  for (const point of ["the decision is written", "the grant is committed"] as const) {
    it.effect(`a crash when ${point} never leaves the request undecided with its key granted`, () => {
      const faults: Faults = { rowsListed: 0 }
      return Effect.gen(function* () {
        const { admin, db, auth } = yield* setup
        const asker = yield* auth.generateKey
        const ask = BootstrapRequests.record({ treeId: db.rootId, requestingKey: asker.publicKey, requestedPermission: Permission.Write(10) })
        const request = yield* ask
        faults.fault = (op, args) =>
          point === "the grant is committed"
            ? (op === "put" ? "crash" : undefined)
            : op === "setMeta" && String(args[1]).includes(`"status":"Approved"`) ? "crash" : undefined
        const crashed = yield* Effect.exit(BootstrapRequests.resolve(request.requestId, admin, true))
        faults.fault = undefined
        expect(Exit.isFailure(crashed) && Cause.isDie(crashed.cause)).toBe(true)
        const stored = yield* BootstrapRequests.get(request.requestId)
        const granted = yield* grantOf(db, asker.publicKey)
        if (granted !== undefined) expect(stored.status).toBe("Approved")
        if (point === "the grant is committed") {
          // approved without the grant: fail-safe; the requester's next try files a new request
          expect(stored.status).toBe("Approved")
          expect(granted).toBeUndefined()
          const retry = yield* ask
          expect(retry.requestId).not.toBe(request.requestId)
          expect(retry.status).toBe("Pending")
          yield* BootstrapRequests.resolve(retry.requestId, admin, true)
        } else {
          // nothing happened: the request is still there to decide
          expect(stored.status).toBe("Pending")
          expect(granted).toBeUndefined()
          yield* BootstrapRequests.resolve(request.requestId, admin, true)
        }
        expect(yield* grantOf(db, asker.publicKey)).toEqual(Permission.Write(10))
      }).pipe(Effect.provide(faultyEnv(faults)))
    })
  }

  it.effect("an approval whose commit fails puts the request back to Pending, without the grant", () => {
    const faults: Faults = { rowsListed: 0 }
    return Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const asker = yield* auth.generateKey
      const request = yield* BootstrapRequests.record({ treeId: db.rootId, requestingKey: asker.publicKey, requestedPermission: Permission.Write(10) })
      faults.fault = (op) => (op === "put" ? "fail" : undefined)
      const failed = yield* Effect.flip(BootstrapRequests.resolve(request.requestId, admin, true))
      faults.fault = undefined
      expect(failed._tag).toBe("StorageError")
      expect((yield* BootstrapRequests.get(request.requestId)).status).toBe("Pending")
      expect(yield* grantOf(db, asker.publicKey)).toBeUndefined()
      // the admin tries again, and it goes through
      expect((yield* BootstrapRequests.resolve(request.requestId, admin, true)).status).toBe("Approved")
      expect(yield* grantOf(db, asker.publicKey)).toEqual(Permission.Write(10))
    }).pipe(Effect.provide(faultyEnv(faults)))
  })

  it.effect("rejecting a pending request whose key already holds what it asked for is refused; revoke first, or approve", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const grant = (key: string) =>
        Effect.gen(function* () {
          const txn = Transaction.begin(db, admin)
          yield* new SettingsStore(txn).setAuthKey(key, { permission: Permission.Write(10) })
          yield* Transaction.commit(txn)
        })
      // what an approval cut short between its grant and its record leaves (the older order): the
      // request Pending, its key granted
      const [asker, other] = [yield* auth.generateKey, yield* auth.generateKey]
      const request = yield* BootstrapRequests.record({ treeId: db.rootId, requestingKey: asker.publicKey, requestedPermission: Permission.Write(10) })
      yield* grant(asker.publicKey)
      const refused = yield* Effect.flip(BootstrapRequests.resolve(request.requestId, admin, false))
      expect(refused._tag).toBe("PermissionDenied")
      expect(refused.message).toContain(`key ${asker.publicKey} already holds Write(10)`)
      expect(refused.message).toContain("revokeAuthKey")
      expect((yield* BootstrapRequests.get(request.requestId)).status).toBe("Pending")
      expect(yield* grantOf(db, asker.publicKey)).toEqual(Permission.Write(10))
      // revoked, the rejection goes through
      const txn = Transaction.begin(db, admin)
      yield* new SettingsStore(txn).revokeAuthKey(asker.publicKey)
      yield* Transaction.commit(txn)
      expect((yield* BootstrapRequests.resolve(request.requestId, admin, false)).status).toBe("Rejected")
      // or the request is approved, which records the grant that is there
      const second = yield* BootstrapRequests.record({ treeId: db.rootId, requestingKey: other.publicKey, requestedPermission: Permission.Write(10) })
      yield* grant(other.publicKey)
      expect((yield* BootstrapRequests.resolve(second.requestId, admin, true)).status).toBe("Approved")
      expect(yield* grantOf(db, other.publicKey)).toEqual(Permission.Write(10))
    }).pipe(Effect.provide(env)))

  it.effect("a tree keeps its MAX_DECIDED_PER_TREE most recently decided requests; pending ones and other trees are kept", () =>
    Effect.gen(function* () {
      const { admin, db } = yield* setup
      const other = yield* Database.create({ signer: admin })
      const ask = (treeId: string, i: number) =>
        BootstrapRequests.record({ treeId, requestingKey: `ed25519:asker-${i}`, requestedPermission: Permission.Read })
      const elsewhere = yield* ask(other.rootId, 0)
      yield* BootstrapRequests.resolve(elsewhere.requestId, admin, false)
      const waiting = yield* ask(db.rootId, -1)
      const limit = BootstrapRequests.MAX_DECIDED_PER_TREE
      expect(limit).toBe(100)
      const decided: Array<string> = []
      for (let i = 0; i < limit + 5; i++) {
        yield* TestClock.adjust(1)
        const r = yield* ask(db.rootId, i)
        yield* BootstrapRequests.resolve(r.requestId, admin, false)
        decided.push(r.requestId)
      }
      const kept = (yield* BootstrapRequests.list()).filter((r) => r.treeId === db.rootId && r.status !== "Pending")
      expect(kept.map((r) => r.requestId).sort()).toEqual(decided.slice(5).sort())
      for (const gone of decided.slice(0, 5)) {
        expect((yield* Effect.flip(BootstrapRequests.get(gone)))._tag).toBe("RequestNotFound")
      }
      expect((yield* BootstrapRequests.get(waiting.requestId)).status).toBe("Pending")
      expect((yield* BootstrapRequests.get(elsewhere.requestId)).status).toBe("Rejected")
    }).pipe(Effect.provide(env)))

  it.effect("recording a request reads that tree's requests only, not every tree's", () => {
    const faults: Faults = { rowsListed: 0 }
    return Effect.gen(function* () {
      const ask = (treeId: string, i: number) =>
        BootstrapRequests.record({ treeId, requestingKey: `ed25519:asker-${i}`, requestedPermission: Permission.Read })
      for (let i = 0; i < 200; i++) yield* ask("tree/busy", i)
      yield* ask("tree/quiet", 0)
      faults.rowsListed = 0
      const again = yield* ask("tree/quiet", 1)
      expect(faults.rowsListed).toBe(1)
      // the tree IDs, slashes and all, come back as they were
      expect(yield* BootstrapRequests.get(again.requestId)).toEqual(again)
      expect((yield* BootstrapRequests.list("Pending")).filter((r) => r.treeId === "tree/busy")).toHaveLength(200)
    }).pipe(Effect.provide(faultyEnv(faults)))
  })

  it.effect("requests stored by an earlier version (sync/bootstrap/<id>) are still found, listed, reused and decided", () =>
    Effect.gen(function* () {
      const { admin, db, auth } = yield* setup
      const storage = yield* Storage
      const asker = yield* auth.generateKey
      const old = (requestId: string, status: BootstrapRequests.Status): BootstrapRequests.BootstrapRequest => ({
        requestId,
        treeId: db.rootId,
        requestingKey: asker.publicKey,
        requestedPermission: Permission.Write(10),
        timestamp: 0,
        status
      })
      yield* storage.setMeta("sync/bootstrap/old-pending", JSON.stringify(old("old-pending", "Pending")))
      yield* storage.setMeta("sync/bootstrap/old-rejected", JSON.stringify(old("old-rejected", "Rejected")))
      yield* storage.setMeta("sync/bootstrap/damaged", "{not json")
      expect((yield* BootstrapRequests.list()).map((r) => r.requestId).sort()).toEqual(["old-pending", "old-rejected"])
      expect((yield* BootstrapRequests.get("old-rejected")).status).toBe("Rejected")
      // the same request asked again finds the old pending one
      const again = yield* BootstrapRequests.record({ treeId: db.rootId, requestingKey: asker.publicKey, requestedPermission: Permission.Write(10) })
      expect(again.requestId).toBe("old-pending")
      expect((yield* BootstrapRequests.resolve("old-pending", admin, true)).status).toBe("Approved")
      expect(yield* grantOf(db, asker.publicKey)).toEqual(Permission.Write(10))
      // moved: no row of the old layout is left but the unreadable one
      const oldKeys = (yield* storage.listMeta("sync/bootstrap/")).map(([k]) => k).filter((k) => !k.slice(15).includes("/"))
      expect(oldKeys).toEqual(["sync/bootstrap/damaged"])
    }).pipe(Effect.provide(env)))
})
