/**
 * Bootstrap requests: a peer asks for access to a database with a key and a permission. When the
 * key already holds that authority (directly or through the global grant) it is approved at once
 * and no key is added; otherwise the request waits here until an admin approves it (adding the key
 * to auth) or rejects it. Requests live in instance metadata, `sync/bootstrap/<id>`.
 *
 * Anyone who knows a synced tree's ID can ask (with a fresh key each time), so a tree holds at most
 * `MAX_PENDING_PER_TREE` pending requests; past that, new ones are refused until an admin decides
 * some. Recording and deciding read and then write, so they run one at a time per storage: two
 * admins approving and rejecting the same request at once get one decision, not both.
 */
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Settings from "../core/Settings.js"
import { InvalidRequestState, PermissionDenied, RequestNotFound, type StorageError } from "../schema/Errors.js"
import * as Permission from "../schema/Permission.js"
import { Storage, type StorageShape } from "../services/Storage.js"
import { authSettings, type DatabaseEnv, type Signer } from "./Database.js"
import { SettingsStore } from "./SettingsStore.js"
import { uuidV4 } from "./Stores.js"
import * as Transaction from "./Transaction.js"

/** Where a request stands. */
export type Status = "Pending" | "Approved" | "Rejected"

/** A request for access to a database. */
export interface BootstrapRequest {
  readonly requestId: string
  readonly treeId: string
  readonly requestingKey: string
  readonly requestingKeyName?: string | undefined
  readonly requestedPermission: Permission.Permission
  /** When it was made (epoch ms). */
  readonly timestamp: number
  readonly status: Status
  /** The admin key that decided it. */
  readonly decidedBy?: string | undefined
  readonly decidedAt?: number | undefined
}

/** What the server does with a request for access. */
export type Decision =
  | { readonly _tag: "Approved"; readonly permission: Permission.Permission }
  | { readonly _tag: "Pending" }
  | { readonly _tag: "Refused"; readonly reason: string }

const PREFIX = "sync/bootstrap/"

/** Pending requests a tree may hold at once. */
export const MAX_PENDING_PER_TREE = 1_000

/** A tree already holds `MAX_PENDING_PER_TREE` pending requests. */
export class PendingRequestsFull extends Data.TaggedError("PendingRequestsFull")<{
  readonly treeId: string
  readonly limit: number
}> {
  override get message() {
    return `database ${this.treeId} already has ${this.limit} pending bootstrap requests; an admin must approve or reject some before more are taken`
  }
}

// One lock per storage (that is, per instance), so read-then-write steps on requests do not interleave.
const locks = new WeakMap<StorageShape, Effect.Semaphore>()

const exclusively = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | Storage> =>
  Effect.flatMap(Storage, (storage) => {
    let lock = locks.get(storage)
    if (lock === undefined) {
      lock = Effect.unsafeMakeSemaphore(1)
      locks.set(storage, lock)
    }
    return lock.withPermits(1)(effect)
  })

/** Decide a request against the database's current auth: approved when the key already has the authority. */
export const decide = (auth: Settings.AuthState, key: string, requested: Permission.Permission): Decision => {
  if (auth._tag !== "Present") return { _tag: "Pending" }
  const own = auth.auth.keys[key]
  if (own !== undefined && own.status === "Revoked") return { _tag: "Refused", reason: `key ${key} is revoked in this database` }
  const held = Settings.permissionOf(auth.auth, key)
  if (held !== undefined && Permission.satisfies(held, requested)) return { _tag: "Approved", permission: requested }
  return { _tag: "Pending" }
}

/**
 * Record a pending request (an identical pending one is reused, so retries do not pile up); refused
 * with PendingRequestsFull when the tree already holds `MAX_PENDING_PER_TREE`.
 */
export const record = (input: {
  readonly treeId: string
  readonly requestingKey: string
  readonly requestingKeyName?: string | undefined
  readonly requestedPermission: Permission.Permission
}): Effect.Effect<BootstrapRequest, PendingRequestsFull | StorageError, Storage> =>
  exclusively(Effect.gen(function* () {
    const storage = yield* Storage
    const pending = (yield* list("Pending")).filter((r) => r.treeId === input.treeId)
    const same = pending.find(
      (r) =>
        r.requestingKey === input.requestingKey &&
        Permission.format(r.requestedPermission) === Permission.format(input.requestedPermission)
    )
    if (same !== undefined) return same
    if (pending.length >= MAX_PENDING_PER_TREE) {
      return yield* new PendingRequestsFull({ treeId: input.treeId, limit: MAX_PENDING_PER_TREE })
    }
    const request: BootstrapRequest = {
      ...input,
      requestId: yield* uuidV4,
      timestamp: yield* Clock.currentTimeMillis,
      status: "Pending"
    }
    yield* storage.setMeta(PREFIX + request.requestId, JSON.stringify(request))
    return request
  }))

/** Every request, oldest first, optionally only those with a status. */
export const list = (status?: Status): Effect.Effect<ReadonlyArray<BootstrapRequest>, StorageError, Storage> =>
  Effect.map(Effect.flatMap(Storage, (s) => s.listMeta(PREFIX)), (rows) =>
    rows
      .map(([, v]) => JSON.parse(v) as BootstrapRequest)
      .filter((r) => status === undefined || r.status === status)
      .sort((a, b) => a.timestamp - b.timestamp || (a.requestId < b.requestId ? -1 : 1))
  )

/** One request. */
export const get = (requestId: string): Effect.Effect<BootstrapRequest, RequestNotFound | StorageError, Storage> =>
  Effect.flatMap(Effect.flatMap(Storage, (s) => s.getMeta(PREFIX + requestId)), (o) =>
    Option.isNone(o) ? Effect.fail(new RequestNotFound({ requestId })) : Effect.succeed(JSON.parse(o.value) as BootstrapRequest)
  )

/**
 * Approve (adding the key to auth with the requested permission, signed by `approver`) or reject a
 * pending request. The approver must be an Admin of the database; approving follows the admin
 * hierarchy (nobody grants more than they hold). Decisions run one at a time, so a request is
 * decided once: a second decision, even one started at the same moment, fails with InvalidRequestState.
 */
export const resolve = (
  requestId: string,
  approver: Signer,
  approve: boolean
): Effect.Effect<BootstrapRequest, RequestNotFound | InvalidRequestState | PermissionDenied | Transaction.CommitError, DatabaseEnv> =>
  exclusively(Effect.gen(function* () {
    const storage = yield* Storage
    const request = yield* get(requestId)
    if (request.status !== "Pending") return yield* new InvalidRequestState({ requestId, status: request.status })
    const db = { rootId: request.treeId }
    const auth = yield* authSettings(db)
    const held = auth._tag === "Present" ? Settings.permissionOf(auth.auth, approver.publicKey) : undefined
    if (held === undefined || !Permission.canAdmin(held))
      return yield* new PermissionDenied({
        detail: `Insufficient permission for request ${requestId}: key ${approver.publicKey} is not an Admin of database ${request.treeId}`
      })
    if (approve) {
      // a key revoked since it asked stays revoked: granting it again is a deliberate setAuthKey
      const own = auth._tag === "Present" ? auth.auth.keys[request.requestingKey] : undefined
      if (own?.status === "Revoked")
        return yield* new PermissionDenied({
          detail: `key ${request.requestingKey} was revoked in database ${request.treeId} after request ${requestId} was made; reject the request, or grant the key again with setAuthKey`
        })
      // an admin through the global grant signs with a global hint
      const direct = auth._tag === "Present" && auth.auth.keys[approver.publicKey] !== undefined
      const signer: Signer = { ...approver, global: !direct }
      const txn = Transaction.begin(db, signer)
      yield* new SettingsStore(txn).setAuthKey(request.requestingKey, {
        permission: request.requestedPermission,
        name: request.requestingKeyName
      })
      yield* Transaction.commit(txn)
    }
    const decided: BootstrapRequest = {
      ...request,
      status: approve ? "Approved" : "Rejected",
      decidedBy: approver.publicKey,
      decidedAt: yield* Clock.currentTimeMillis
    }
    yield* storage.setMeta(PREFIX + requestId, JSON.stringify(decided))
    return decided
  }))
