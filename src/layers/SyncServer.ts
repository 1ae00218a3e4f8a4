/**
 * The sync server's handler: handshake, the sync-enabled gate, read authorization (signed requests:
 * audience, freshness, single-use nonce), bootstrap requests, paged bootstrap and incremental
 * answers, and verified pushes. Transport-independent: HTTP, the simulated network and in-process
 * callers all reach it through `handle`. Problems become `{"Error": …}` answers, never failures.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import { Doc } from "../core/Doc.js"
import * as Entry from "../core/Entry.js"
import type { StoredEntry } from "../core/Entry.js"
import * as Settings from "../core/Settings.js"
import * as SyncAuth from "../core/SyncAuth.js"
import * as BootstrapRequests from "../database/BootstrapRequests.js"
import { ingest as ingestWhole, ingestPartial, type IngestEnv, type IngestReport } from "../database/Ingest.js"
import type { StateCache } from "../database/StateCache.js"
import { stateOf } from "../database/StoreState.js"
import type { AuthSettings } from "../schema/Auth.js"
import * as Permission from "../schema/Permission.js"
import {
  PROTOCOL_VERSION,
  type SyncRequest,
  type SyncRequestAuth,
  type SyncResponse,
  type SyncTreeRequest,
  type TreeInfo
} from "../schema/Protocol.js"
import type { AuthShape } from "../services/Auth.js"
import type { InstanceShape } from "../services/Instance.js"
import type { StorageShape } from "../services/Storage.js"
import { monotonicMillis } from "../services/Time.js"
import type { SyncShape } from "../services/Sync.js"
import type { RequestContext } from "../services/Transport.js"
import { encodePage, fromBase64, toBase64, truncate } from "./internal/SyncWire.js"

/** The most IDs (`our_tips` plus `known`) one SyncTree request may carry. */
export const MAX_REQUEST_IDS = 16_384

/** The display name this node gives in handshakes. */
export const DISPLAY_NAME = "Eidetica Peer"

/**
 * Whether one of these entries of `treeId` grants `pubkey`: a `_settings` entry signed (as its
 * hint names, by public key) by a key holding Admin in `current` (the database's auth here now),
 * writing `pubkey` an Active record with no more authority than that signer holds now. The signer's
 * claim and the change's own rules are checked when the push is ingested, all or nothing; the
 * server passes only the entries new to it, so a grant it already stores (say before a later
 * revocation) is no grant. A client asks it of what it would push, against the auth it holds.
 */
export const grantIn = (entries: ReadonlyArray<StoredEntry>, treeId: string, pubkey: string, current: AuthSettings): boolean =>
  entries.some((e) => isGrant(e, treeId, pubkey, current))

/** The entries `grantIn` counts as grants, with the key each names as its signer (not verified). */
export const grantsIn = (
  entries: ReadonlyArray<StoredEntry>,
  treeId: string,
  pubkey: string,
  current: AuthSettings
): Array<{ readonly entry: StoredEntry; readonly signer: string }> => {
  const out: Array<{ readonly entry: StoredEntry; readonly signer: string }> = []
  for (const e of entries) {
    const signer = isGrant(e, treeId, pubkey, current)
    if (signer !== false) out.push({ entry: e, signer })
  }
  return out
}

/** The most grant candidates of one push whose signatures the server checks before taking it whole. */
export const MAX_GRANT_CANDIDATES = 8

const isGrant = (e: StoredEntry, treeId: string, pubkey: string, current: AuthSettings): string | false => {
  if (e.treeId !== treeId || e.entry.sig.sig === undefined || !("Direct" in e.entry.sig.key)) return false
  const hint = e.entry.sig.key.Direct.hint
  if (hint.pubkey === undefined || hint.is_global === true) return false
  const signer = current.keys[hint.pubkey]
  if (signer === undefined || signer.status !== "Active" || !Permission.canAdmin(signer.permissions)) return false
  const data = Entry.subtree(e.entry, Entry.SETTINGS)?.data
  if (data === undefined) return false
  const delta = Option.getOrUndefined(Option.liftThrowable(Doc.decode)(data))
  if (delta === undefined) return false
  const written = Settings.authOf(delta, { all: false, keys: new Set([pubkey]), global: false })
  const record = written._tag === "Present" ? written.auth.keys[pubkey] : undefined
  return record !== undefined && record.status === "Active" && Permission.compare(record.permissions, signer.permissions) <= 0
    ? hint.pubkey
    : false
}

/** What the handler works over. */
export interface ServerDeps {
  readonly instance: InstanceShape
  readonly storage: StorageShape
  readonly auth: AuthShape
  readonly env: Context.Context<IngestEnv | StateCache>
  /** The byte budget of the entries of one answer. */
  readonly pageBytes: number
}

/** The auth section of a database as held here. */
export const authStateOf = (env: Context.Context<IngestEnv | StateCache>, treeId: string) =>
  Effect.map(Effect.provide(stateOf(treeId, Entry.SETTINGS), env), (doc) => Settings.authOf(doc))

/** How long the handshake's list of open databases is kept before it is made again. */
export const AVAILABLE_TREES_TTL_MS = 5_000

/** Build the handler; it keeps the spent nonces of signed requests for the freshness window. */
export const makeHandler = (deps: ServerDeps): SyncShape["handle"] => {
  const { auth, env, instance, pageBytes, storage } = deps
  /**
   * Spent (key, nonce) pairs of signed requests, with when they may be forgotten: once the wall
   * clock has passed the end of the request's window AND a window's worth of monotonic time has
   * passed (Effect's `currentTimeNanos`), so a wall-clock jump forward and back does not forget a
   * nonce whose request is still fresh.
   */
  const spent = new Map<string, { readonly until: number; readonly untilMono: number }>()
  let nextSweep = 0
  /** The handshake's list of open databases and when it was made (monotonic ms), kept a few seconds. */
  let listed: { readonly at: number; readonly trees: ReadonlyArray<TreeInfo> } | undefined

  const ingest = (entries: ReadonlyArray<StoredEntry>, peer?: string) =>
    Effect.provide(ingestPartial(entries, "remote", peer), env)

  /** Store a batch whole, or (an entry of it invalid) nothing, reporting the first invalid entry. */
  const ingestAllOrNothing = (entries: ReadonlyArray<StoredEntry>, peer?: string) =>
    Effect.provide(ingestWhole(entries, "remote", peer), env).pipe(
      Effect.map((stored): IngestReport => ({ stored, rejected: [] })),
      Effect.catchTag("InvalidEntry", (invalid) => Effect.succeed<IngestReport>({ stored: [], rejected: [invalid] }))
    )

  const authState = (treeId: string) => authStateOf(env, treeId)

  const notFound = (treeId: string) => new Refusal({ message: `Tree not found: ${treeId}` })

  /** The sync-enabled gate: identical answers for absent and not-served trees. */
  const gate = (treeId: string) =>
    Effect.gen(function*() {
      const settings = yield* instance.combinedSyncSettings(treeId)
      if (settings?.syncEnabled !== true) return yield* notFound(treeId)
      const root = yield* storage.get(treeId)
      if (Option.isNone(root) || !Entry.isRoot(root.value.entry)) return yield* notFound(treeId)
    })


  /** Atomically mark a (key, nonce) pair spent; false when it already was. */
  const spend = (key: string, nonce: ReadonlyArray<number>, timestampMs: number, now: number) =>
    Effect.map(monotonicMillis, (mono): boolean => {
      if (mono >= nextSweep) {
        for (const [id, e] of spent) if (e.until < now && e.untilMono < mono) spent.delete(id)
        nextSweep = mono + 1_000
      }
      const id = `${key}|${Buffer.from(nonce).toString("hex")}`
      if (spent.has(id)) return false
      const ahead = Math.max(0, timestampMs - now)
      spent.set(id, { until: Math.max(timestampMs, now) + SyncAuth.FRESHNESS_WINDOW_MS, untilMono: mono + ahead + SyncAuth.FRESHNESS_WINDOW_MS })
      return true
    })

  /** Check a request's proof of key possession: signed for this server, and (unless `fresh` is false) fresh. (The nonce is spent by the caller.) */
  const verifyProof = (request: SyncTreeRequest, fresh = true) =>
    Effect.suspend(() => {
      const treeId = request.tree_id
      const proof = request.auth
      if (proof === undefined) {
        return Effect.fail(new Refusal({ message: `Authentication required to read database '${treeId}'` }))
      }
      return checkProof(
        proof,
        SyncAuth.signingBytes({
          serverPubkey: instance.deviceId,
          treeId,
          tips: request.our_tips,
          timestampMs: proof.timestamp_ms,
          nonce: proof.nonce
        }),
        fresh
      )
    })

  /** Check a proof's signature over `bytes` (which name this server) and, unless `fresh` is false, its freshness. */
  const checkProof = (proof: SyncRequestAuth, bytes: Uint8Array, fresh = true) =>
    Effect.gen(function*() {
      if (!(yield* auth.verify(proof.key, proof.signature, bytes))) {
        return yield* new Refusal({
          message: "Authentication failed: invalid request signature (or signed for another server)"
        })
      }
      const now = yield* Clock.currentTimeMillis
      if (fresh && !SyncAuth.isFresh(proof.timestamp_ms, now)) {
        return yield* new Refusal({ message: "Authentication failed: request timestamp outside the freshness window" })
      }
      return { proof, now }
    })

  /** Reads are open under an active global grant; otherwise the request must prove a key with Read. */
  const authorizeRead = (request: SyncTreeRequest) =>
    Effect.gen(function*() {
      const treeId = request.tree_id
      const state = yield* authState(treeId)
      if (Settings.isOpen(state)) {
        // a proof made for another server: the client believes it talks to another peer; tell it.
        // Its age does not matter: anyone may read an open database, and a peer whose clock is off
        // must not be refused what the reference serves it (and README promises).
        if (request.auth !== undefined) yield* verifyProof(request, false)
        return
      }
      const { now, proof } = yield* verifyProof(request)
      const permission = state._tag === "Present" ? Settings.permissionOf(state.auth, proof.key) : undefined
      if (permission === undefined) {
        return yield* new Refusal({ message: `Permission denied: key ${proof.key} may not read database '${treeId}'` })
      }
      if (!(yield* spend(proof.key, proof.nonce, proof.timestamp_ms, now))) {
        return yield* new Refusal({ message: SyncAuth.NONCE_SPENT })
      }
    })


  const availableTrees = Effect.gen(function*() {
    const tracked = yield* instance.trackedDatabases
    const out: Array<TreeInfo> = []
    for (const [treeId, settings] of tracked) {
      if (!settings.syncEnabled) continue
      const root = yield* storage.get(treeId)
      if (Option.isNone(root) || !Entry.isRoot(root.value.entry)) continue
      if (!Settings.isOpen(yield* authState(treeId))) continue
      out.push({ tree_id: treeId, name: null, entry_count: yield* storage.count(treeId), last_modified: 0 })
    }
    return out
  })

  /**
   * `availableTrees`, made at most every AVAILABLE_TREES_TTL_MS: anyone may send handshakes, and
   * each list reads every tracked database (~0.4 ms each: 100-140 ms at 300 of them).
   */
  const listedTrees = Effect.gen(function*() {
    const now = yield* monotonicMillis
    if (listed !== undefined && now - listed.at < AVAILABLE_TREES_TTL_MS) return listed.trees
    const trees = yield* availableTrees
    listed = { at: now, trees }
    return trees
  })

  const onHandshake = (request: Extract<SyncRequest, { Handshake: unknown }>["Handshake"]) =>
    Effect.gen(function*() {
      if (request.protocol_version !== PROTOCOL_VERSION) {
        return yield* new Refusal({
          message: `Protocol version mismatch: expected ${PROTOCOL_VERSION}, received ${request.protocol_version}`
        })
      }
      const challenge_response = yield* auth.sign(instance.device.secretKey, Uint8Array.from(request.challenge))
      const challenge = yield* auth.randomBytes(32)
      const response: SyncResponse = {
        Handshake: {
          device_id: instance.deviceId,
          public_key: instance.deviceId,
          display_name: DISPLAY_NAME,
          protocol_version: PROTOCOL_VERSION,
          challenge_response,
          new_challenge: Array.from(challenge),
          available_trees: yield* listedTrees
        }
      }
      return response
    })

  const onSyncTree = (request: SyncTreeRequest) =>
    Effect.gen(function*() {
      const treeId = request.tree_id
      const askedIds = request.our_tips.length + (request.known?.length ?? 0)
      if (askedIds > MAX_REQUEST_IDS) {
        return yield* new Refusal({
          message: `Malformed request: at most ${MAX_REQUEST_IDS} tips and known IDs, got ${askedIds}`
        })
      }
      yield* gate(treeId)
      let granted: Permission.Permission | undefined
      if (request.requesting_key !== undefined && request.requested_permission !== undefined) {
        // a request for access with a key: prove the key, then approve, refuse, or queue for an admin
        const { now, proof } = yield* verifyProof(request)
        if (proof.key !== request.requesting_key) {
          return yield* new Refusal({ message: "Authentication failed: the request must be signed by the requesting key" })
        }
        const decision = BootstrapRequests.decide(yield* authState(treeId), proof.key, request.requested_permission)
        if (decision._tag === "Refused") return yield* new Refusal({ message: `Permission denied: ${decision.reason}` })
        if (!(yield* spend(proof.key, proof.nonce, proof.timestamp_ms, now))) {
          return yield* new Refusal({ message: SyncAuth.NONCE_SPENT })
        }
        if (decision._tag === "Pending") {
          const pending = yield* Effect.provide(
            BootstrapRequests.record({
              treeId,
              requestingKey: proof.key,
              requestingKeyName: request.requesting_key_name,
              requestedPermission: request.requested_permission
            }),
            env
          ).pipe(Effect.catchTag("PendingRequestsFull", (full) => new Refusal({ message: `Permission denied: ${full.message}` })))
          const response: SyncResponse = {
            BootstrapPending: {
              request_id: pending.requestId,
              message: `access to '${treeId}' with ${Permission.format(request.requested_permission)} awaits an admin's approval`
            }
          }
          return response
        }
        granted = decision.permission
      } else {
        yield* authorizeRead(request)
        // a proven requesting key that asks for nothing: its answer says what it holds (the
        // reference's auto-detection), and an unproven one is served as anyone is
        if (request.requesting_key !== undefined && request.auth?.key === request.requesting_key) {
          const state = yield* authState(treeId)
          if (state._tag === "Present") granted = Settings.permissionOf(state.auth, request.requesting_key)
        }
      }
      if (request.our_tips.length === 0) {
        // everything, parents first (as `missing` for a requester holding nothing: the next pages'
        // requests are then answered from this answer, without walking the tree again)
        const all = yield* storage.missing(treeId, [])
        const root = yield* storage.get(treeId)
        if (Option.isNone(root)) return yield* notFound(treeId)
        const rootWire = toBase64(root.value.bytes)
        const rest = all.filter((id) => id !== treeId)
        const { more, wire } = yield* encodePage(storage, rest, pageBytes - rootWire.length)
        const response: SyncResponse = {
          Bootstrap: {
            tree_id: treeId,
            root_entry: rootWire,
            all_entries: wire,
            key_approved: granted !== undefined,
            ...(granted !== undefined ? { granted_permission: granted } : {}),
            ...(more ? { next: "more" } : {})
          }
        }
        return response
      }
      // the tips first: what is missing is read after, so it covers every tip named, even when a
      // commit lands in between (the requester then gets an entry more than the tips name, never a
      // tip it was not sent)
      const theirTips = yield* storage.tips(treeId)
      const held = yield* storage.has([...request.our_tips, ...(request.known ?? [])])
      const missing = yield* storage.missing(treeId, [...held])
      const { more, wire } = yield* encodePage(storage, missing, pageBytes)
      const response: SyncResponse = {
        Incremental: {
          tree_id: treeId,
          their_tips: theirTips,
          missing_entries: wire,
          ...(more ? { next: "more" } : {})
        }
      }
      return response
    })

  /**
   * Pushes into a database without an active global grant need a proof, signed for this server
   * over every pushed entry's ID, from a key holding some permission there now (as reads do): a key
   * revoked here can push no more, its own client's commits made before it learned of the
   * revocation included. (Entries it signed before its revocation may still arrive through a
   * member that relays them: each entry is judged by the settings it pins.)
   * One exception, for a device granted by an admin who has not synced here since: a key this
   * database does not know (not revoked here) may push if the push carries a grant to it, a
   * settings entry new here signed by a key that holds Admin here now (see `grantIn`). Such a push
   * is stored whole or not at all (the caller's part): a grant that does not validate, or any other
   * entry of the push that does not, lets nothing in. Returns whether the push came in by a grant.
   */
  const authorizePush = (
    trees: ReadonlySet<string>,
    ids: ReadonlyArray<string>,
    fresh: ReadonlyArray<StoredEntry>,
    proof: SyncRequestAuth | undefined
  ) =>
    Effect.gen(function*() {
      let checked: { readonly now: number } | undefined
      let byGrant = false
      for (const treeId of trees) {
        const state = yield* authState(treeId)
        if (Settings.isOpen(state)) continue
        if (proof === undefined) return yield* new Refusal({ message: `Authentication required to write to database '${treeId}'` })
        checked ??= yield* checkProof(
          proof,
          SyncAuth.pushSigningBytes({ serverPubkey: instance.deviceId, entryIds: ids, timestampMs: proof.timestamp_ms, nonce: proof.nonce })
        )
        if (state._tag === "Present" && Settings.permissionOf(state.auth, proof.key) !== undefined) continue
        const refused = new Refusal({ message: `Permission denied: key ${proof.key} may not push to database '${treeId}'` })
        if (state._tag !== "Present" || state.auth.keys[proof.key] !== undefined) return yield* refused
        // the grant's own signature, by the admin it names, is checked before the whole push is:
        // a forged grant buys an unknown key no validation of what it pushes
        let genuine = false
        for (const g of grantsIn(fresh, treeId, proof.key, state.auth).slice(0, MAX_GRANT_CANDIDATES)) {
          const sig = g.entry.entry.sig.sig!
          if (yield* Effect.orElseSucceed(auth.verify(g.signer, sig, Entry.signingBytesOf(g.entry)), () => false)) {
            genuine = true
            break
          }
        }
        if (!genuine) return yield* refused
        byGrant = true
      }
      if (checked !== undefined && proof !== undefined && !(yield* spend(proof.key, proof.nonce, proof.timestamp_ms, checked.now))) {
        return yield* new Refusal({ message: SyncAuth.NONCE_SPENT })
      }
      return byGrant
    })

  const onSendEntries = (wire: ReadonlyArray<string>, proof: SyncRequestAuth | undefined, peer: string | undefined) =>
    Effect.gen(function*() {
      const decoded: Array<StoredEntry> = []
      const reasons: Array<string> = []
      // An ID is the hash of exactly these bytes, and what we hold was validated when stored: entries
      // we already hold (a relay's echo, a retried push) are skipped before the costly decode.
      const bytes = wire.map(fromBase64)
      const ids = bytes.map(Entry.idOfBytes)
      const held = yield* storage.has(ids)
      const trees = new Set<string>()
      for (let i = 0; i < wire.length; i++) {
        if (held.has(ids[i]!)) {
          // these are the very bytes we stored: their tree is read without the checks, and gated below
          const known = Entry.decodeTrusted(bytes[i]!, ids[i]!)
          if (Either.isRight(known)) trees.add(known.right.treeId)
          continue
        }
        const result = Entry.decode(bytes[i]!, ids[i]!)
        // bytes that are no entry make the message malformed (the reference reads entries as part of
        // the message): refused whole, and the rest is not decoded
        if (Either.isLeft(result)) {
          return yield* new Refusal({ message: `Malformed request: entry ${i} does not decode: ${truncate(result.left, 200)}` })
        }
        decoded.push(result.right)
        trees.add(result.right.treeId)
      }
      for (const treeId of trees) yield* gate(treeId)
      const byGrant = yield* authorizePush(trees, ids, decoded, proof)
      const report = decoded.length === 0
        ? { stored: [], rejected: [] }
        : byGrant
        ? yield* ingestAllOrNothing(decoded, peer)
        : yield* ingest(decoded, peer)
      for (const r of report.rejected) reasons.push(r.message)
      if (reasons.length > 0) {
        // all-or-nothing: every entry of the push was refused, for the first reason found
        const response: SyncResponse = {
          Error: `Rejected ${byGrant ? decoded.length : reasons.length} entries: ${truncate(reasons[0]!, 300)}`
        }
        return response
      }
      const response: SyncResponse = wire.length <= 1 ? "Ack" : { Count: report.stored.length }
      return response
    })

  const handle: SyncShape["handle"] = (request, context: RequestContext) => {
    const answer: Effect.Effect<SyncResponse, unknown> = "Handshake" in request
      ? onHandshake(request.Handshake)
      : "SyncTree" in request
      ? onSyncTree(request.SyncTree)
      : onSendEntries(request.SendEntries, request.auth, context.peer)
    return answer.pipe(
      Effect.catchAllCause((cause) =>
        Effect.gen(function*() {
          const failure = Option.getOrUndefined(Cause.failureOption(cause))
          if (failure instanceof Refusal) return { Error: failure.message } satisfies SyncResponse
          // Storage or crypto trouble here, or a bug: say so without echoing anything of the data.
          yield* Effect.logWarning("sync handler failed", cause)
          return { Error: "Internal error while handling the request" } satisfies SyncResponse
        })
      )
    )
  }

  return handle
}

/** A refusal the server answers as `{"Error": message}`. */
class Refusal extends Data.TaggedError("Refusal")<{ readonly message: string }> {}
