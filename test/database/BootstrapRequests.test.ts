/**
 * Bootstrap requests at the database level: one decision per request even when two admins decide
 * at the same moment, and a bound on the pending requests one tree holds.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import { Doc } from "../../src/core/Doc.js"
import * as Settings from "../../src/core/Settings.js"
import * as BootstrapRequests from "../../src/database/BootstrapRequests.js"
import * as Database from "../../src/database/Database.js"
import { SettingsStore } from "../../src/database/SettingsStore.js"
import { layerCache } from "../../src/database/StoreState.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
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
})
