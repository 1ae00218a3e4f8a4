/**
 * Bootstrap requests: a peer asks for access to a database with a key and a permission. When the
 * key already holds that authority (directly or through the global grant) it is approved at once
 * and no key is added; otherwise the request waits here until an admin approves it (adding the key
 * to auth) or rejects it.
 *
 * Requests live in instance metadata, one row each at `sync/bootstrap/<treeId>/<requestId>` (the
 * tree ID URI-encoded), so what a tree holds is read without reading other trees' requests; a small
 * index `sync/bootstrap-index/<requestId>` → treeId finds one request by its ID. Rows of the older
 * layout (`sync/bootstrap/<requestId>`) are moved to this one the first time an instance touches
 * its requests.
 *
 * Anyone who knows a synced tree's ID can ask (with a fresh key each time), so a tree holds at most
 * `MAX_PENDING_PER_TREE` pending requests; past that, new ones are refused until an admin decides
 * some. Decided requests are history only (an approval lives on in auth), so a tree keeps the
 * `MAX_DECIDED_PER_TREE` most recently decided ones and older ones are deleted as new decisions are
 * written. Recording and deciding read and then write, so they run one at a time per storage: two
 * admins approving and rejecting the same request at once get one decision, not both.
 */
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Settings from "../core/Settings.js"
import { InvalidRequestState, PermissionDenied, RequestNotFound, type StorageError } from "../schema/Errors.js"
import type { AuthSettings } from "../schema/Auth.js"
import * as Permission from "../schema/Permission.js"
import { readMetaRecord, Storage, type StorageShape } from "../services/Storage.js"
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
const INDEX_PREFIX = "sync/bootstrap-index/"

/** Pending requests a tree may hold at once. */
export const MAX_PENDING_PER_TREE = 1_000

/**
 * Decided (approved or rejected) requests a tree keeps: the most recently decided ones. They are a
 * record for the admin only (the server reads pending requests, and an approval lives on in auth),
 * so a count bound keeps their rows, and the reads of a tree's requests, small whatever the traffic.
 */
export const MAX_DECIDED_PER_TREE = 100

/** A tree already holds `MAX_PENDING_PER_TREE` pending requests. */
export class PendingRequestsFull extends Data.TaggedError("PendingRequestsFull")<{
  readonly treeId: string
  readonly limit: number
}> {
  override get message() {
    return `database ${this.treeId} already has ${this.limit} pending bootstrap requests; an admin must approve or reject some before more are taken`
  }
}

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
    const pending = (yield* treeRequests(storage, input.treeId)).filter((r) => r.status === "Pending")
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
    // the index first: a crash between the two leaves an index row pointing nowhere (a request
    // never made), never a pending request that cannot be found to be decided
    yield* storage.setMeta(INDEX_PREFIX + request.requestId, request.treeId)
    yield* storage.setMeta(rowKey(request.treeId, request.requestId), JSON.stringify(request))
    return request
  }))

/** Every request, oldest first, optionally only those with a status. */
export const list = (status?: Status): Effect.Effect<ReadonlyArray<BootstrapRequest>, StorageError, Storage> =>
  Effect.zipRight(
    migrated,
    Effect.map(Effect.flatMap(Storage, (s) => readRows(s, PREFIX)), (rows) =>
      rows
        .filter((r) => status === undefined || r.status === status)
        .sort((a, b) => a.timestamp - b.timestamp || (a.requestId < b.requestId ? -1 : 1))
    )
  )

/** One request. */
export const get = (requestId: string): Effect.Effect<BootstrapRequest, RequestNotFound | StorageError, Storage> =>
  Effect.zipRight(migrated, Effect.flatMap(Storage, (s) => getRow(s, requestId)))

/**
 * Approve (adding the key to auth with the requested permission, signed by `approver`) or reject a
 * pending request. The approver must be an Admin of the database; approving follows the admin
 * hierarchy (nobody grants more than they hold). Decisions run one at a time, so a request is
 * decided once: a second decision, even one started at the same moment, fails with InvalidRequestState.
 *
 * An approval writes the request as Approved before it commits the grant, and puts it back to
 * Pending when the commit fails: a crash in between leaves an approved request whose key was never
 * added (the requester's next try files a new request), never a pending or rejected one whose key
 * holds access.
 */
export const resolve = (
  requestId: string,
  approver: Signer,
  approve: boolean
): Effect.Effect<BootstrapRequest, RequestNotFound | InvalidRequestState | PermissionDenied | Transaction.CommitError, DatabaseEnv> =>
  exclusively(Effect.gen(function* () {
    const storage = yield* Storage
    const request = yield* getRow(storage, requestId)
    if (request.status !== "Pending") return yield* new InvalidRequestState({ requestId, status: request.status })
    const db = { rootId: request.treeId }
    const auth = yield* authSettings(db)
    const held = auth._tag === "Present" ? Settings.permissionOf(auth.auth, approver.publicKey) : undefined
    if (held === undefined || !Permission.canAdmin(held))
      return yield* new PermissionDenied({
        detail: `Insufficient permission for request ${requestId}: key ${approver.publicKey} is not an Admin of database ${request.treeId}`
      })
    const own = auth._tag === "Present" ? auth.auth.keys[request.requestingKey] : undefined
    const decided: BootstrapRequest = {
      ...request,
      status: approve ? "Approved" : "Rejected",
      decidedBy: approver.publicKey,
      decidedAt: yield* Clock.currentTimeMillis
    }
    const key = rowKey(request.treeId, requestId)
    if (!approve) {
      // The key already holds exactly what it asked for: most likely this very request was approved
      // by an earlier version that crashed before writing the decision down. Marking it Rejected
      // would tell the admin the key was kept out while it has access, and revoking the key behind
      // the admin's back is not what "reject" says; so the rejection is refused, with the two ways on.
      if (auth._tag === "Present" && holdsExactly(auth.auth, request.requestingKey, request.requestedPermission))
        return yield* new PermissionDenied({
          detail: `key ${request.requestingKey} already holds ${Permission.format(request.requestedPermission)} in database ${request.treeId} (an approval of request ${requestId} may have been interrupted); rejecting would not take that access away: revoke the key with revokeAuthKey and then reject, or approve the request to record the grant`
        })
      yield* storage.setMeta(key, JSON.stringify(decided))
      yield* pruneAfter(storage, request.treeId)
      return decided
    }
    // a key revoked since it asked stays revoked: granting it again is a deliberate setAuthKey
    if (own?.status === "Revoked")
      return yield* new PermissionDenied({
        detail: `key ${request.requestingKey} was revoked in database ${request.treeId} after request ${requestId} was made; reject the request, or grant the key again with setAuthKey`
      })
    // the key holds at least what it asked for already (granted since it asked): record the
    // approval and change nothing, so a stale request never lowers a key's permission
    if (own?.status === "Active" && Permission.satisfies(own.permissions, request.requestedPermission)) {
      yield* storage.setMeta(key, JSON.stringify(decided))
      yield* pruneAfter(storage, request.treeId)
      return decided
    }
    // an admin through the global grant signs with a global hint
    const direct = auth._tag === "Present" && auth.auth.keys[approver.publicKey] !== undefined
    const signer: Signer = { ...approver, global: !direct }
    const txn = Transaction.begin(db, signer)
    yield* new SettingsStore(txn).setAuthKey(request.requestingKey, {
      permission: request.requestedPermission,
      name: request.requestingKeyName
    })
    // Approved first, then the grant; uninterruptible so that only a crash can split the two
    yield* Effect.uninterruptible(Effect.gen(function* () {
      yield* storage.setMeta(key, JSON.stringify(decided))
      yield* Transaction.commit(txn).pipe(
        Effect.catchAll((error) =>
          Effect.gen(function* () {
            // back to Pending only when the grant is known not to be there; when it cannot be told,
            // the request stays Approved (fail-safe: the requester asks again)
            const after = yield* Effect.option(authSettings(db))
            const landed = Option.isNone(after) || (after.value._tag === "Present" &&
              holdsExactly(after.value.auth, request.requestingKey, request.requestedPermission))
            if (!landed) yield* Effect.ignore(storage.setMeta(key, JSON.stringify(request)))
            return yield* Effect.fail(error)
          })
        )
      )
    }))
    yield* pruneAfter(storage, request.treeId)
    return decided
  }))

// ---------------------------------------------------------------------------------------------

const rowKey = (treeId: string, requestId: string) => `${PREFIX}${encodeURIComponent(treeId)}/${requestId}`

const holdsExactly = (auth: AuthSettings, key: string, permission: Permission.Permission): boolean => {
  const own = auth.keys[key]
  return own?.status === "Active" && Permission.compare(own.permissions, permission) === 0
}

const decode = (key: string, value: string): Effect.Effect<Option.Option<BootstrapRequest>> => {
  const request = readMetaRecord<BootstrapRequest>(value, (r) =>
    typeof r.requestId === "string" && typeof r.treeId === "string" && typeof r.status === "string")
  return request !== undefined
    ? Effect.succeed(Option.some(request))
    : Effect.as(Effect.logWarning(`skipping the unreadable bootstrap request record ${key}`), Option.none())
}

const readRows = (storage: StorageShape, prefix: string): Effect.Effect<Array<BootstrapRequest>, StorageError> =>
  Effect.flatMap(storage.listMeta(prefix), (rows) =>
    Effect.map(Effect.forEach(rows, ([k, v]) => decode(k, v)), (decoded) => decoded.flatMap(Option.toArray))
  )

/** The requests of one tree (its rows only). */
const treeRequests = (storage: StorageShape, treeId: string) => readRows(storage, `${PREFIX}${encodeURIComponent(treeId)}/`)

const getRow = (storage: StorageShape, requestId: string): Effect.Effect<BootstrapRequest, RequestNotFound | StorageError> =>
  Effect.gen(function* () {
    const treeId = yield* storage.getMeta(INDEX_PREFIX + requestId)
    if (Option.isNone(treeId)) return yield* new RequestNotFound({ requestId })
    const key = rowKey(treeId.value, requestId)
    const row = yield* storage.getMeta(key)
    const request = Option.isNone(row) ? Option.none() : yield* decode(key, row.value)
    if (Option.isNone(request)) return yield* new RequestNotFound({ requestId })
    return request.value
  })

/** Keep a tree's `MAX_DECIDED_PER_TREE` most recently decided requests; delete the rest (row first, then index). */
const prune = (storage: StorageShape, treeId: string): Effect.Effect<void, StorageError> =>
  Effect.gen(function* () {
    const decided = (yield* treeRequests(storage, treeId))
      .filter((r) => r.status !== "Pending")
      .sort((a, b) =>
        (b.decidedAt ?? 0) - (a.decidedAt ?? 0) || b.timestamp - a.timestamp || (a.requestId < b.requestId ? -1 : 1)
      )
    for (const old of decided.slice(MAX_DECIDED_PER_TREE)) {
      yield* storage.deleteMeta(rowKey(treeId, old.requestId))
      yield* storage.deleteMeta(INDEX_PREFIX + old.requestId)
    }
  })

// The decision stands whatever happens to the pruning; a failed pruning is retried by the next decision.
const pruneAfter = (storage: StorageShape, treeId: string): Effect.Effect<void> =>
  Effect.catchAll(prune(storage, treeId), (error) =>
    Effect.logWarning(`could not prune the decided bootstrap requests of ${treeId}: ${error.message}`))

// One lock per storage (that is, per instance), so read-then-write steps on requests do not
// interleave; and whether that storage's rows of the older layout were moved yet.
interface StorageState {
  readonly lock: Effect.Semaphore
  migrated: boolean
}
const states = new WeakMap<StorageShape, StorageState>()

const stateOf = (storage: StorageShape): StorageState => {
  let state = states.get(storage)
  if (state === undefined) {
    state = { lock: Effect.unsafeMakeSemaphore(1), migrated: false }
    states.set(storage, state)
  }
  return state
}

const exclusively = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | StorageError, R | Storage> =>
  Effect.flatMap(Storage, (storage) => {
    const state = stateOf(storage)
    return state.lock.withPermits(1)(Effect.zipRight(migrate(storage, state), effect))
  })

/** The older layout moved, once per storage (taking the lock only until it is done). */
const migrated: Effect.Effect<void, StorageError, Storage> = Effect.flatMap(Storage, (storage) => {
  const state = stateOf(storage)
  return state.migrated ? Effect.void : state.lock.withPermits(1)(migrate(storage, state))
})

// Rows of the older layout, `sync/bootstrap/<requestId>` (no tree in the key), are rewritten as
// row and index and only then deleted, so a crash part-way leaves the old row to move again.
// Checked when it runs (under the lock), so a fiber that waited for the lock does not move them again.
const migrate = (storage: StorageShape, state: StorageState): Effect.Effect<void, StorageError> =>
  Effect.gen(function* () {
    if (state.migrated) return
    const trees = new Set<string>()
    for (const [key, value] of yield* storage.listMeta(PREFIX)) {
      if (key.slice(PREFIX.length).includes("/")) continue
      const request = yield* decode(key, value)
      if (Option.isSome(request)) {
        yield* storage.setMeta(INDEX_PREFIX + request.value.requestId, request.value.treeId)
        yield* storage.setMeta(rowKey(request.value.treeId, request.value.requestId), value)
        trees.add(request.value.treeId)
        yield* storage.deleteMeta(key)
      }
    }
    for (const treeId of trees) yield* prune(storage, treeId)
    state.migrated = true
  })
