/**
 * The background sync engine (DESIGN.md §4): the SyncEngine port over supervised peer and
 * database actors. Registered peers live in Storage metadata (`sync/peers/<peer>`), pending work
 * in `sync/pending/<peer>/<tree>`; both come back when the layer starts again. One subscription
 * to write events feeds the database actors, so commits are never blocked by sync.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { Signer } from "../database/Database.js"
import { type Address, addressProblem } from "../schema/Address.js"
import { InvalidAddress, type StorageError } from "../schema/Errors.js"
import type { SyncSettings } from "../schema/SyncSettings.js"
import { Instance } from "../services/Instance.js"
import { readMetaRecord, Storage } from "../services/Storage.js"
import { Sync, type SyncShape } from "../services/Sync.js"
import {
  type FlushReport,
  type PeerStatus,
  SyncEngine,
  type SyncEngineShape,
  type SyncHandle
} from "../services/SyncEngine.js"
import { formatAddress } from "../services/Transport.js"
import { type WriteEvent, WriteEvents } from "../services/WriteEvents.js"
import * as DatabaseActor from "./DatabaseActor.js"
import * as PeerActor from "./PeerActor.js"
import * as SyncSupervisor from "./SyncSupervisor.js"

export { SyncEngine } from "../services/SyncEngine.js"

/** Options of the engine (tests and benchmarks; the defaults suit production). */
export interface Options {
  /** Retry policy of failed work (default 2 s doubling to 64 s, ±10% jitter, "failed" after 10). */
  readonly backoff?: Partial<PeerActor.Backoff> | undefined
  /** Databases with pending work per peer mailbox (default 1,024). */
  readonly capacity?: number | undefined
  /** How actors reach peers (default: the Sync service); the simulation and tests may replace it. */
  readonly client?: ((peer: string, signerFor: (treeId: string) => Effect.Effect<SignerChoice>) => PeerActor.PeerClient) | undefined
}

/** The key a request to a peer is signed with, and why, when it is not the one asked for. */
export interface SignerChoice {
  /**
   * Undefined when the registration names no key: the Sync service then picks as `syncWithPeer`
   * does (the key of a logged-in user that the database knows, with the most authority; else the
   * device key), so a private database syncs in the background as it does by hand.
   */
  readonly signer: Signer | undefined
  /** Set when the tracked user's key is not available and the device key stands in. */
  readonly note?: string | undefined
}

/** A registered peer as persisted. */
export interface PeerRecord {
  readonly peerPubkey: string
  readonly displayName?: string | undefined
  readonly addresses: ReadonlyArray<Address>
  /** The databases synced with this peer, with the key proving our read access. */
  readonly trees: Readonly<Record<string, { readonly keyId?: string | undefined }>>
}

/** Metadata key prefix of registered peers. */
export const PEERS_PREFIX = "sync/peers/"
/** Metadata key prefix of pending work. */
export const PENDING_PREFIX = "sync/pending/"

/**
 * The default client, through the Sync service: a sync is `syncWithPeer`; a push sends the entries
 * alone (one round trip) and falls back to a full sync when the peer refuses them (it lacks their
 * history, or the push went wrong in any way the peer could explain).
 */
export const syncClient = (sync: SyncShape) =>
(peer: string, signerFor: (treeId: string) => Effect.Effect<SignerChoice>): PeerActor.PeerClient => {
  const run = (address: Address, treeId: string) =>
    Effect.flatMap(signerFor(treeId), (choice) =>
      sync.syncWithPeer(address, treeId, { signer: choice.signer, expectPeer: peer }).pipe(
        Effect.mapError((e): PeerActor.PeerFailure => ({
          _tag: e._tag,
          message: `${e.message || e._tag}${choice.note === undefined ? "" : ` (${choice.note})`}`
        }))
      ))
  const push = (address: Address, treeId: string, entryIds: ReadonlyArray<string>) =>
    sync.pushEntries(address, treeId, entryIds, { expectPeer: peer }).pipe(
      Effect.catchTags({
        RemoteError: () => run(address, treeId),
        InvalidEntry: () => run(address, treeId),
        // pushed unproven to a database we hold as open, which the peer no longer is: a sync pulls
        // its settings (the global grant's removal) and pushes again, proven
        AuthenticationRequired: () => run(address, treeId)
      }),
      Effect.mapError((e): PeerActor.PeerFailure => ({ _tag: e._tag, message: e.message || e._tag }))
    )
  return { sync: run, push }
}

/** Build the engine in the current scope: reload peers and pending work, start their actors. */
export const make = (options: Options = {}): Effect.Effect<
  SyncEngineShape,
  StorageError,
  Scope.Scope | Sync | Instance | Storage | WriteEvents
> =>
  Effect.gen(function*() {
    const storage = yield* Storage
    const instance = yield* Instance
    const sync = yield* Sync
    const writeEvents = yield* WriteEvents
    const makeClient = options.client ?? syncClient(sync)
    const records = new Map<string, PeerRecord>()

    for (const [key, value] of yield* storage.listMeta(PEERS_PREFIX)) {
      const record = readMetaRecord<PeerRecord>(value, (r) => typeof r.peerPubkey === "string" && Array.isArray(r.addresses) && typeof r.trees === "object" && r.trees !== null)
      if (record === undefined) yield* Effect.logWarning(`skipping the unreadable sync peer record ${key}`)
      else records.set(record.peerPubkey, record)
    }

    const saveRecord = (record: PeerRecord) => storage.setMeta(PEERS_PREFIX + enc(record.peerPubkey), JSON.stringify(record))

    const signerFor = (peer: string) => (treeId: string): Effect.Effect<SignerChoice> =>
      Effect.gen(function*() {
        const keyId = records.get(peer)?.trees[treeId]?.keyId
        if (keyId === undefined) return { signer: undefined }
        if (keyId === instance.deviceId) return { signer: instance.device }
        const signer = yield* instance.sessionSigner(keyId)
        if (signer !== undefined) return { signer }
        return {
          signer: instance.device,
          note: `signed with the device key: user key ${keyId} is not logged in on this instance`
        }
      })

    const pendingStore = (peer: string): PeerActor.PendingStore => ({
      save: (treeId, work) =>
        storage.setMeta(pendingKey(peer, treeId), JSON.stringify(work)).pipe(
          Effect.as(true),
          Effect.catchAll((e) => Effect.as(Effect.logWarning(`could not save pending sync work for ${peer}; trying again`, e), false))
        ),
      remove: (treeId) =>
        storage.deleteMeta(pendingKey(peer, treeId)).pipe(
          Effect.as(true),
          Effect.catchAll((e) => Effect.as(Effect.logWarning(`could not clear pending sync work for ${peer}; trying again`, e), false))
        )
    })

    const loadPending = (peer: string) =>
      storage.listMeta(PENDING_PREFIX + enc(peer) + "/").pipe(
        Effect.flatMap((rows) =>
          Effect.gen(function*() {
            const work = new Map<string, PeerActor.PendingWork>()
            const registered = records.get(peer)?.trees ?? {}
            for (const [key, value] of rows) {
              const treeId = key.slice(key.lastIndexOf("/") + 1)
              // work of a database no longer registered with this peer (unregistering saves the
              // record, then clears the work: a crash between the two left it) is cleared, not run
              if (!Object.hasOwn(registered, treeId)) {
                yield* Effect.ignore(storage.deleteMeta(key))
                continue
              }
              const pending = readMetaRecord<PeerActor.PendingWork>(value, (r) => Array.isArray(r.entries) && typeof r.sync === "boolean")
              if (pending === undefined) yield* Effect.logWarning(`skipping the unreadable pending sync work ${key}`)
              else work.set(treeId, pending)
            }
            return work
          })
        ),
        Effect.catchAll((e) =>
          Effect.as(Effect.logWarning(`could not load pending sync work for ${peer}`, e), new Map<string, PeerActor.PendingWork>())
        )
      )

    /** Completed once a transport is enabled (none is ever disabled): peer actors' rounds wait for it. */
    const transportReady = yield* Deferred.make<void>()
    yield* Effect.forkScoped(
      Stream.runForEach(Stream.take(Stream.filter(sync.transportCount, (n) => n > 0), 1), () => Deferred.succeed(transportReady, undefined))
    )

    const peers = yield* SyncSupervisor.make(
      (peer) =>
        Effect.flatMap(loadPending(peer), (initial) =>
          PeerActor.make({
            peer,
            client: makeClient(peer, signerFor(peer)),
            addresses: Effect.sync(() => records.get(peer)?.addresses ?? []),
            store: pendingStore(peer),
            capacity: options.capacity,
            backoff: options.backoff,
            initial,
            // a client of one's own (tests, the simulation's drivers) needs no transport of the Sync service
            ready: options.client === undefined ? Deferred.await(transportReady) : undefined
          })
        ),
      { name: "peer" }
    )

    const targetsOf = (treeId: string): ReadonlyArray<DatabaseActor.PeerTarget> =>
      [...records.values()].filter((r) => treeId in r.trees).map((r) => ({
        peer: r.peerPubkey,
        push: (t, ids) => Effect.flatMap(peers.get(r.peerPubkey), (a) => a.push(t, ids)),
        sync: (t) => Effect.flatMap(peers.get(r.peerPubkey), (a) => a.sync(t))
      }))

    const settingsOf = (treeId: string): Effect.Effect<SyncSettings | undefined> =>
      instance.combinedSyncSettings(treeId).pipe(
        Effect.catchAll((e) => Effect.as(Effect.logWarning(`could not read sync settings of ${treeId}`, e), undefined))
      )

    const databases = yield* SyncSupervisor.make(
      (treeId) =>
        DatabaseActor.make({
          treeId,
          settings: settingsOf(treeId),
          peers: Effect.sync(() => targetsOf(treeId))
        }),
      { name: "database" }
    )

    /** Start the database actors of databases with registered peers and sync enabled. */
    const reconcile = (treeIds: Iterable<string>) =>
      Effect.forEach(new Set(treeIds), (treeId) =>
        Effect.flatMap(settingsOf(treeId), (s) => (s?.syncEnabled === true ? Effect.asVoid(databases.get(treeId)) : Effect.void)), {
        discard: true
      })

    const allTrees = () => [...records.values()].flatMap((r) => Object.keys(r.trees))
    /** Whether some peer syncs this database: a lookup per peer (every write asks, so no list is built). */
    const syncedWithSomePeer = (treeId: string) => {
      for (const r of records.values()) if (Object.hasOwn(r.trees, treeId)) return true
      return false
    }

    const onWrite = (event: WriteEvent) =>
      Effect.gen(function*() {
        if (!syncedWithSomePeer(event.treeId)) return
        const settings = yield* settingsOf(event.treeId)
        if (settings?.syncEnabled !== true) return
        const actor = yield* databases.get(event.treeId)
        yield* actor.onWrite(event, settings)
      }).pipe(Effect.catchAllCause((cause) => Effect.logError("sync engine: a write event was not handled", cause)))

    // the subscription is taken now, so no write after the layer is built is missed
    const events = yield* writeEvents.subscribe
    yield* Effect.forkScoped(Stream.runForEach(events, onWrite))

    // restart: every registered pair syncs once, and saved work resumes
    for (const record of records.values()) {
      const actor = yield* peers.get(record.peerPubkey)
      for (const treeId of Object.keys(record.trees)) {
        yield* actor.addTree(treeId)
        yield* Effect.ignore(actor.sync(treeId))
      }
    }
    yield* reconcile(allTrees())
    // a transport enabled after the peers were reloaded (an app opens, then enables HTTP): what
    // failed for want of one is tried again now, not after its backoff (the count as it is when
    // this fiber starts comes first: a poke then finds nothing failed, or what just failed)
    yield* Effect.forkScoped(
      Stream.runForEach(
        Stream.changes(sync.transportCount),
        () => Effect.forEach([...records.keys()], (peer) => Effect.flatMap(peers.get(peer), (actor) => actor.poke), { discard: true })
      )
    )
    // settings changes (sync turned on for a database) are noticed within a minute without a write,
    // while a peer is registered: with none there is nothing to reconcile, and an app that never
    // registers one keeps no timer (its process can end without close())
    const anyPeer = yield* SubscriptionRef.make(records.size > 0)
    yield* Effect.forkScoped(
      Stream.runDrain(
        Stream.flatMap(
          Stream.changes(anyPeer.changes),
          (registered) =>
            registered
              ? Stream.repeatEffectWithSchedule(
                Effect.suspend(() => reconcile(allTrees())),
                Schedule.spaced(`${DatabaseActor.SETTINGS_REFRESH_SECONDS} seconds`)
              )
              : Stream.empty,
          { switch: true }
        )
      )
    )

    const hasLocalData = (treeId: string) =>
      Effect.map(storage.tips(treeId), (tips) => tips.length > 0).pipe(Effect.orElseSucceed(() => false))

    const withLocal = (treeId: string) => (s: PeerStatus) => Effect.map(hasLocalData(treeId), (hasLocalData) => ({ ...s, hasLocalData }))

    const registered = (peer: string, treeId: string) => records.get(peer)?.trees[treeId] !== undefined

    // registrations (and added addresses) change `records` and their saved copies: one at a time, so a record is never
    // saved (or deleted) out of order with the in-memory change it follows
    const registry = yield* Effect.makeSemaphore(1)

    /** Fails with the first address its transport cannot read: it could only ever fail to sync. */
    const readable = (addresses: ReadonlyArray<Address>): Effect.Effect<void, InvalidAddress> => {
      for (const a of addresses) {
        const reason = addressProblem(a)
        if (reason !== undefined) return Effect.fail(new InvalidAddress({ address: formatAddress(a), reason }))
      }
      return Effect.void
    }

    /**
     * A handle may outlive its registration (an app keeps showing it): it then reads a detached idle
     * status, waits for nothing and changes nothing, and never touches the peer's actor, which
     * would bring the database back (and start a new actor for a peer unregistered altogether).
     */
    const handleOf = (peer: string, treeId: string): SyncHandle => {
      const actor = Effect.suspend(() => registered(peer, treeId) ? Effect.asSome(peers.get(peer)) : Effect.succeedNone)
      return {
        peerPubkey: peer,
        treeId,
        status: Effect.flatMap(
          actor,
          Option.match({ onNone: () => Effect.succeed(PeerActor.idleStatus), onSome: (a) => a.status(treeId) })
        ).pipe(Effect.flatMap(withLocal(treeId))),
        changes: Stream.unwrap(Effect.map(
          actor,
          Option.match({ onNone: () => Stream.make(PeerActor.idleStatus), onSome: (a) => a.changes(treeId) })
        )).pipe(Stream.mapEffect(withLocal(treeId))),
        addAddress: (address) =>
          Effect.zipRight(readable([address]), registry.withPermits(1)(Effect.gen(function*() {
            const record = records.get(peer)
            if (record === undefined || !registered(peer, treeId)) return
            const updated = { ...record, addresses: mergeAddresses(record.addresses, [address]) }
            records.set(peer, updated)
            yield* saveRecord(updated)
            yield* Effect.flatMap(peers.get(peer), (a) => a.poke)
          }))),
        // an unregistered pair will never sync: interrupted, like the waiters removeTree interrupts
        waitForInitialSync: Effect.flatMap(
          actor,
          Option.match({ onNone: () => Effect.interrupt, onSome: (a) => a.waitForInitialSync(treeId) })
        )
      }
    }

    const registerSyncPeer: SyncEngineShape["registerSyncPeer"] = (info) =>
      Effect.zipRight(readable(info.addresses), registry.withPermits(1)(Effect.gen(function*() {
        const existing = records.get(info.peerPubkey)
        const record: PeerRecord = {
          peerPubkey: info.peerPubkey,
          displayName: info.displayName ?? existing?.displayName,
          addresses: mergeAddresses(existing?.addresses ?? [], info.addresses),
          trees: {
            ...existing?.trees,
            [info.treeId]: info.auth?.keyId === undefined ? {} : { keyId: info.auth.keyId }
          }
        }
        records.set(info.peerPubkey, record)
        yield* SubscriptionRef.set(anyPeer, true)
        yield* saveRecord(record)
        const actor = yield* peers.get(info.peerPubkey)
        yield* actor.addTree(info.treeId)
        yield* Effect.ignore(actor.sync(info.treeId))
        yield* actor.poke
        yield* reconcile([info.treeId])
        return handleOf(info.peerPubkey, info.treeId)
      })))

    const unregisterSyncPeer: SyncEngineShape["unregisterSyncPeer"] = (peer, treeId) =>
      registry.withPermits(1)(Effect.gen(function*() {
        const record = records.get(peer)
        if (record === undefined) return
        const trees = Object.fromEntries(Object.entries(record.trees).filter(([t]) => treeId !== undefined && t !== treeId))
        if (Object.keys(trees).length === 0) {
          records.delete(peer)
          yield* SubscriptionRef.set(anyPeer, records.size > 0)
          yield* peers.stop(peer)
          yield* storage.deleteMeta(PEERS_PREFIX + enc(peer))
          for (const [key] of yield* storage.listMeta(PENDING_PREFIX + enc(peer) + "/")) yield* storage.deleteMeta(key)
          return
        }
        const updated = { ...record, trees }
        records.set(peer, updated)
        yield* saveRecord(updated)
        const actor = yield* peers.find(peer)
        if (actor._tag === "Some" && treeId !== undefined) yield* actor.value.removeTree(treeId)
      }))

    const flush: SyncEngineShape["flush"] = Effect.gen(function*() {
      const outcomes = yield* Effect.forEach(
        [...records.keys()],
        (peer) =>
          Effect.gen(function*() {
            // an unregistered peer gets no new actor, and one unregistered while it flushed is
            // left out: its work went with it, which is no failure
            if (!records.has(peer)) return []
            const outcome = yield* Effect.flatMap(peers.get(peer), (a) => a.flush)
            return records.has(peer) ? [outcome] : []
          }),
        { concurrency: "unbounded" }
      ).pipe(Effect.map((all) => all.flat()))
      return {
        delivered: outcomes.filter((o) => o.failed === 0).length,
        failed: outcomes.filter((o) => o.failed > 0).length
      } satisfies FlushReport
    })

    const service: SyncEngineShape = {
      registerSyncPeer,
      unregisterSyncPeer,
      handle: (peer, treeId) =>
        Effect.sync(() => (records.get(peer)?.trees[treeId] === undefined ? undefined : handleOf(peer, treeId))),
      flush,
      requestSync: (peer, treeId) =>
        records.get(peer)?.trees[treeId] === undefined
          ? Effect.void
          : Effect.flatMap(peers.get(peer), (a) => a.sync(treeId))
    }
    return service
  })

/** The engine's layer: its actors live until the layer's scope closes. */
export const layer = (options: Options = {}): Layer.Layer<
  SyncEngine,
  StorageError,
  Sync | Instance | Storage | WriteEvents
> => Layer.scoped(SyncEngine, make(options))

// ---------------------------------------------------------------------------------------------
// helpers

/** Device keys hold `/` and `+`: keep metadata keys splittable. */
const enc = (peer: string) => encodeURIComponent(peer)

const pendingKey = (peer: string, treeId: string) => `${PENDING_PREFIX}${enc(peer)}/${treeId}`

const mergeAddresses = (current: ReadonlyArray<Address>, added: ReadonlyArray<Address>): ReadonlyArray<Address> => {
  const seen = new Set(current.map(formatAddress))
  const out = [...current]
  for (const a of added) {
    if (seen.has(formatAddress(a))) continue
    seen.add(formatAddress(a))
    out.push({ transport_type: a.transport_type, address: a.address })
  }
  return out
}
