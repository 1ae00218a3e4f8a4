/**
 * The Sync layer: the client's `syncWithPeer` (cached handshake, the key that proves our read
 * access, then the sync itself) and `pushEntries`, the transports and the server's lifecycle, over
 * Instance, Storage, Auth, the state cache, write events and the enabled transports. The sync
 * itself (paged pull, then push of what the peer lacks) lives in `internal/SyncPull.ts`, the
 * server's handler in `SyncServer.ts`. Servers and transports live in the layer's scope: closing it
 * stops them.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Scope from "effect/Scope"
import * as Entry from "../core/Entry.js"
import type { StoredEntry } from "../core/Entry.js"
import * as Settings from "../core/Settings.js"
import * as SyncAuth from "../core/SyncAuth.js"
import * as Ticket from "../core/Ticket.js"
import type { Signer } from "../database/Database.js"
import { ingestPartial, type IngestEnv } from "../database/Ingest.js"
import { StateCache } from "../database/StateCache.js"
import {
  type AuthenticationRequired,
  HandshakeFailed,
  InvalidTicket,
  NoTransportEnabled,
  NoTransportForAddress,
  type PermissionDenied,
  ProtocolVersionMismatch,
  ServerAlreadyRunning,
  ServerNotRunning,
  TransportError,
  TreeNotFound
} from "../schema/Errors.js"
import {
  type Address,
  type HandshakeResponse,
  PROTOCOL_VERSION,
  type SyncRequest,
} from "../schema/Protocol.js"
import { Auth } from "../services/Auth.js"
import { Instance } from "../services/Instance.js"
import { Storage } from "../services/Storage.js"
import { monotonicMillis } from "../services/Time.js"
import { Sync, type SyncError, type SyncOptions, type SyncResult, type SyncShape } from "../services/Sync.js"
import {
  formatAddress,
  TransportRouter,
  type TransportShape
} from "../services/Transport.js"
import { WriteEvents } from "../services/WriteEvents.js"
import { frontierKeyOf, type PullDeps, push, remember, syncAs } from "./internal/SyncPull.js"
import { isEntryId, truncate } from "./internal/SyncWire.js"
import * as Server from "./SyncServer.js"
import { makeHttp } from "./TransportHttp.js"
import { generateIrohSecretKey, makeIroh } from "./TransportIroh.js"

export { Sync } from "../services/Sync.js"

/** Options of the Sync layer (tests and benchmarks; the defaults suit production). */
export interface SyncLayerOptions {
  /** Wrap every transport as it is enabled (to count bytes, inject faults, trace). */
  readonly wrapTransport?: ((transport: TransportShape) => TransportShape) | undefined
  /** The byte budget of the entries of one message (default 900,000, under the 1 MiB cap). */
  readonly pageBytes?: number | undefined
  /** Peer addresses whose handshake, and (address, database) pairs whose frontier, are kept (default MAX_REMEMBERED). */
  readonly remembered?: number | undefined
}

/** The most IDs (`our_tips` plus `known`) one SyncTree request may carry. */
export const MAX_REQUEST_IDS = Server.MAX_REQUEST_IDS

/** The display name this node gives in handshakes. */
export const DISPLAY_NAME = Server.DISPLAY_NAME

/** Build the Sync service; its transports and server live until the scope closes. */
export const make = (options: SyncLayerOptions = {}) =>
  Effect.gen(function*() {
    const instance = yield* Instance
    const storage = yield* Storage
    const auth = yield* Auth
    const env = yield* Effect.context<IngestEnv | StateCache>()
    const layerScope = yield* Effect.scope
    const pageBytes = options.pageBytes ?? SyncAuth.PAGE_BYTES
    const wrap = options.wrapTransport ?? ((t: TransportShape) => t)

    const router = yield* SubscriptionRef.make(TransportRouter.empty)
    const lifecycle = yield* Effect.makeSemaphore(1)
    let httpEnabled = false
    let irohEnabled = false
    /** Running servers, one per transport at most, in the order they started (the first is `getServerAddress`'s). */
    const servers: Array<{ readonly scope: Scope.CloseableScope; readonly address: string; readonly bound: Address }> = []
    const remembered = options.remembered ?? MAX_REMEMBERED
    /** Verified handshakes by formatted address, the `remembered` most recent. */
    const handshakes = new Map<string, HandshakeResponse>()
    /** Per (peer, tree): tips the peer is known to hold after our last sync with it (as many). */
    const frontiers = new Map<string, ReadonlyArray<string>>()
    /** Per (peer, tree, key): grants the peer refused, and when (monotonic ms): see `syncGranted`. */
    const refusedGrants = new Map<string, { readonly grants: string; readonly at: number }>()

    const ingest = (entries: ReadonlyArray<StoredEntry>, peer?: string) =>
      Effect.provide(ingestPartial(entries, "remote", peer), env)

    const handle = Server.makeHandler({ instance, storage, auth, env, pageBytes })

    // ---------------------------------------------------------------------------------------
    // client

    const send = (address: Address, request: SyncRequest) =>
      Effect.flatMap(Ref.get(router), (r) => r.send(address, request)).pipe(
        Effect.tapErrorTag("TransportError", () => Effect.sync(() => handshakes.delete(formatAddress(address))))
      )

    /** The peer at an address, proven by a handshake (cached per address), and checked against `expectPeer`. */
    const connect = (address: Address, expectPeer?: string) =>
      Effect.filterOrFail(
        handshake(address),
        ({ peer }) => expectPeer === undefined || peer.public_key === expectPeer,
        ({ peer }) => {
          // another node answers there now (or for now): ask again next time, not the cache
          handshakes.delete(formatAddress(address))
          return new HandshakeFailed({
            reason: `the peer at ${formatAddress(address)} is ${peer.public_key}, not the registered peer ${expectPeer}`
          })
        }
      )

    const handshake = (address: Address) =>
      Effect.gen(function*() {
        const key = formatAddress(address)
        const cached = handshakes.get(key)
        if (cached !== undefined) return { peer: cached, roundTrips: 0 }
        const challenge = yield* auth.randomBytes(32)
        const response = yield* send(address, {
          Handshake: {
            device_id: instance.deviceId,
            public_key: instance.deviceId,
            protocol_version: PROTOCOL_VERSION,
            challenge: Array.from(challenge),
            listen_addresses: servers.map((s) => s.bound)
          }
        })
        if (typeof response === "object" && "Error" in response) {
          const mismatch = /^Protocol version mismatch: expected (\d+), received (\d+)/.exec(response.Error)
          if (mismatch) {
            return yield* new ProtocolVersionMismatch({ expected: PROTOCOL_VERSION, received: Number(mismatch[1]) })
          }
          return yield* new HandshakeFailed({ reason: `the peer answered: ${truncate(response.Error, 300)}` })
        }
        if (typeof response !== "object" || !("Handshake" in response)) {
          return yield* new HandshakeFailed({ reason: "the peer did not answer the handshake with a handshake" })
        }
        const peer = response.Handshake
        if (peer.protocol_version !== PROTOCOL_VERSION) {
          return yield* new ProtocolVersionMismatch({ expected: PROTOCOL_VERSION, received: peer.protocol_version })
        }
        const ok = yield* auth.verify(peer.public_key, peer.challenge_response, challenge)
        if (!ok) {
          return yield* new HandshakeFailed({
            reason: `the peer's challenge response does not verify against its public key ${peer.public_key}`
          })
        }
        remember(handshakes, key, peer, remembered)
        return { peer, roundTrips: 1 }
      })

    /**
     * Who proves our read access when the caller names no key: a logged-in user's key that the
     * database's auth (as held here) knows, preferring the most authority; else the device key.
     */
    const defaultSigner = (treeId: string) => Effect.map(defaultSigners(treeId), (signers) => signers[0]!)

    /**
     * Every key that may prove our read access when the caller names none, best first: the
     * `defaultSigner` choice (the device key when the database's auth knows it and no user's key),
     * then the other logged-in users' keys, then the device key. The auth we
     * hold may be stale or absent (a database we do not have yet, a key granted since our last
     * sync), so a refused key is not the end: the next is tried.
     */
    const defaultSigners = (treeId: string): Effect.Effect<ReadonlyArray<Signer>> =>
      Effect.gen(function*() {
        const session = yield* instance.sessionSigners
        let best: Signer | undefined
        if (session.length > 0 && (yield* storage.has([treeId])).has(treeId)) {
          const state = yield* Server.authStateOf(env, treeId)
          if (state._tag === "Present") {
            // no user's key known there, the device's is: it proves (a push signed by a user's
            // key the database does not know is refused, and a push is tried with one key only)
            best = Settings.strongest(state.auth, session)?.signer ??
              (state.auth.keys[instance.deviceId]?.status === "Active" ? instance.device : undefined)
          }
        }
        const ordered = best === undefined ? [...session, instance.device] : [best, ...session, instance.device]
        const unique = new Map(ordered.map((s) => [s.publicKey, s]))
        return [...unique.values()].slice(0, MAX_SIGNER_ATTEMPTS)
      }).pipe(Effect.orElseSucceed(() => [instance.device]))

    /** The address of a sync target, once a transport is enabled and the tree ID is well formed. */
    const peerAddress = (target: string | Address, treeId: string) =>
      Effect.gen(function*() {
        const address = yield* parseAddress(target)
        if ((yield* Ref.get(router)).isEmpty) return yield* new NoTransportEnabled()
        if (!isEntryId(treeId)) return yield* new TreeNotFound({ treeId })
        return address
      })

    /** What a sync (`internal/SyncPull.ts`) takes from this service. */
    const pull: PullDeps = {
      deviceId: instance.deviceId,
      storage,
      auth,
      pageBytes,
      send,
      connect,
      forgetHandshake: (address) => handshakes.delete(formatAddress(address)),
      ingest,
      frontiers,
      remembered
    }

    /**
     * One sync proven by `signer`, as `syncAs`; but when the peer refuses the key our read access
     * while the database's auth as held here gives that key an active record (a device granted by
     * an admin on another device, who has not synced with this peer since), and what the peer may
     * lack carries that grant, it is pushed first (the peer takes a push that carries a grant to
     * its key from a key Admin there), then the sync runs again. Nothing changes on the normal path.
     */
    const syncGranted = (address: Address, treeId: string, signer: Signer, syncOptions: SyncOptions | undefined) =>
      Effect.catchTag(syncAs(pull, address, treeId, signer, syncOptions), "PermissionDenied", (denied) =>
        Effect.gen(function*() {
          if (syncOptions?.request !== undefined || !/ may not read database /.test(denied.detail)) return yield* denied
          const held = yield* heldAuth(treeId)
          if (held === undefined || held.keys[signer.publicKey]?.status !== "Active") return yield* denied
          // all the peer may lack: what we have not seen it hold (the root, at least, it holds);
          // pushed only if it carries a grant to the key the peer would take (else it is refused)
          const ids = yield* storage.missing(treeId, [treeId, ...(frontiers.get(frontierKeyOf(address, treeId)) ?? [])])
          const pending = new Set(ids)
          const settings = (yield* storage.storeEntries(treeId, Entry.SETTINGS)).filter((r) => pending.has(r.id))
          const grants = new Set<string>()
          for (const e of yield* storage.getMany(settings.map((r) => r.id))) {
            if (Server.grantIn([e], treeId, signer.publicKey, held)) grants.add(e.id)
          }
          if (grants.size === 0) return yield* denied
          // the same grants refused there lately are not offered again (each offer is a page or more)
          const offer = `${frontierKeyOf(address, treeId)}\u0000${signer.publicKey}`
          const grantIds = [...grants].sort().join(",")
          const now = yield* monotonicMillis
          const last = refusedGrants.get(offer)
          if (last !== undefined && last.grants === grantIds && now - last.at < GRANT_OFFER_COOLDOWN_MS) return yield* denied
          const connected = yield* connect(address, syncOptions?.expectPeer)
          const proof = { signer, serverPubkey: connected.peer.public_key }
          const pushed = yield* Effect.either(push(pull, address, treeId, ids, proof, grants))
          // still refused (no grant the peer takes): the answer is the first refusal
          if (Either.isLeft(pushed)) {
            // the grant's page refused as invalid there (it lacks more than a page below the grant): as refused
            const rejected = pushed.left._tag === "RemoteError" && pushed.left.detail.startsWith("Rejected ")
            if (!isRefusal(pushed.left) && !rejected) return yield* pushed.left
            remember(refusedGrants, offer, { grants: grantIds, at: now }, remembered)
            return yield* denied
          }
          refusedGrants.delete(offer)
          const synced = yield* syncAs(pull, address, treeId, signer, syncOptions)
          return {
            received: synced.received,
            sent: synced.sent + pushed.right.sent,
            roundTrips: synced.roundTrips + pushed.right.roundTrips + 1
          } satisfies SyncResult
        }))

    /** The database's auth as held here; undefined when we do not hold the database or it has none. */
    const heldAuth = (treeId: string) =>
      Effect.gen(function*() {
        if (!(yield* storage.has([treeId])).has(treeId)) return undefined
        const state = yield* Server.authStateOf(env, treeId)
        return state._tag === "Present" ? state.auth : undefined
      }).pipe(Effect.orElseSucceed(() => undefined))

    const syncWithPeer: SyncShape["syncWithPeer"] = (target, treeId, syncOptions) =>
      Effect.gen(function*() {
        const address = yield* peerAddress(target, treeId)
        if (syncOptions?.signer !== undefined || syncOptions?.request !== undefined) {
          return yield* syncGranted(address, treeId, syncOptions.signer ?? (yield* defaultSigner(treeId)), syncOptions)
        }
        // no key named: the best key first; a refusal tries the next, and the first refusal is the answer
        let refusal: PermissionDenied | AuthenticationRequired | undefined
        for (const signer of yield* defaultSigners(treeId)) {
          const attempt = yield* Effect.either(syncGranted(address, treeId, signer, syncOptions))
          if (Either.isRight(attempt)) return attempt.right
          if (!isRefusal(attempt.left)) return yield* attempt.left
          refusal ??= attempt.left
        }
        return yield* refusal!
      })

    const pushEntries: SyncShape["pushEntries"] = (target, treeId, entryIds, pushOptions) =>
      Effect.gen(function*() {
        const address = yield* peerAddress(target, treeId)
        const connected = yield* connect(address, pushOptions?.expectPeer)
        // parents first: a child's height is above each of its parents'
        const heights = yield* storage.heights(entryIds)
        const ordered = [...heights.keys()].sort((x, y) => heights.get(x)! - heights.get(y)! || (x < y ? -1 : x > y ? 1 : 0))
        // a database open to all takes unproven pushes (as far as we know: a peer that disagrees refuses)
        const open = yield* Effect.map(Server.authStateOf(env, treeId), Settings.isOpen).pipe(Effect.orElseSucceed(() => false))
        const proof = open ? undefined : { signer: yield* defaultSigner(treeId), serverPubkey: connected.peer.public_key }
        const pushed = yield* push(pull, address, treeId, ordered, proof)
        return { received: 0, sent: pushed.sent, roundTrips: connected.roundTrips + pushed.roundTrips } satisfies SyncResult
      })

    // ---------------------------------------------------------------------------------------
    // tickets

    const createTicket: SyncShape["createTicket"] = (treeId) =>
      Effect.gen(function*() {
        if (!isEntryId(treeId) || !(yield* storage.has([treeId])).has(treeId)) return yield* new TreeNotFound({ treeId })
        return Ticket.format({ databaseId: treeId, addresses: servers.map((s) => s.bound) })
      })

    const syncWithTicket: SyncShape["syncWithTicket"] = (text, syncOptions) =>
      Effect.gen(function*() {
        const ticket = yield* Ticket.parse(text)
        if (ticket.addresses.length === 0) {
          return yield* new InvalidTicket({ reason: "Ticket has no address hints (the node that made it was running no server)" })
        }
        // the reference's try_addresses_concurrently: the first success wins (the others are
        // interrupted); when every address fails, a node's own answer (pending, refused) is the
        // answer before a hint that could not be reached; else the last failure
        const answers: Array<SyncError> = []
        return yield* Effect.raceAll(ticket.addresses.map((address) =>
          syncWithPeer(address, ticket.databaseId, syncOptions).pipe(
            Effect.timeoutFail({
              duration: TICKET_ATTEMPT_TIMEOUT,
              onTimeout: () => new TransportError({ address: formatAddress(address), reason: `no sync within ${Duration.format(TICKET_ATTEMPT_TIMEOUT)}` })
            }),
            Effect.tapError((e) => Effect.sync(() => {
              if (isAnswer(e)) answers.push(e)
            }))
          )
        )).pipe(Effect.mapError((last) => answers.find((e) => e._tag === "BootstrapPending") ?? answers[0] ?? last))
      })

    // ---------------------------------------------------------------------------------------
    // transports and server

    // Entries come from peers from now on (a bootstrap, pushes, a peer's pages): the verifier (the
    // node Auth layer's worker threads) starts now, not within the first large batch, whose pages
    // would wait for it while its start takes the cores.
    const enableTransport: SyncShape["enableTransport"] = (transport) =>
      Effect.zipRight(SubscriptionRef.update(router, (r) => r.add(wrap(transport))), auth.verifyAhead?.([]) ?? Effect.void)

    const enableHttpTransport: SyncShape["enableHttpTransport"] = (httpOptions) =>
      lifecycle.withPermits(1)(
        Effect.gen(function*() {
          if (httpEnabled) return
          const http = yield* Scope.extend(makeHttp({ timeout: httpOptions?.timeout, totalTimeout: httpOptions?.totalTimeout, announce: instance.deviceId }), layerScope)
          yield* enableTransport(http)
          httpEnabled = true
        })
      )

    const enableIrohTransport: SyncShape["enableIrohTransport"] = (irohOptions) =>
      lifecycle.withPermits(1)(
        Effect.gen(function*() {
          if (irohEnabled) return
          const secretKey = yield* irohSecretKey
          const iroh = yield* Scope.extend(makeIroh({ ...irohOptions, secretKey, announce: instance.deviceId }), layerScope)
          yield* enableTransport(iroh)
          irohEnabled = true
        })
      )

    /** The iroh server's secret key, kept in storage so its endpoint id (and tickets) survive restarts. */
    const irohSecretKey = Effect.gen(function*() {
      const saved = yield* storage.getMeta(IROH_SECRET_META)
      const bytes = Option.isSome(saved) ? secretOf(saved.value) : undefined
      if (bytes !== undefined) return bytes
      const fresh = generateIrohSecretKey()
      yield* storage.setMeta(IROH_SECRET_META, JSON.stringify(Buffer.from(fresh).toString("base64")))
      return fresh
    })

    const startServer: SyncShape["startServer"] = (bind) =>
      lifecycle.withPermits(1)(
        Effect.gen(function*() {
          const r = yield* Ref.get(router)
          if (r.isEmpty) return yield* new NoTransportEnabled()
          // "iroh:127.0.0.1:0" names its transport; "127.0.0.1:0" and "localhost:0" take the first
          const named = /^([a-z][a-z0-9+.-]*):(.*:\d+)$/i.exec(bind)
          const transport = named === null ? r.transports[0]! : r.transports.find((t) => t.transportType === named[1]!.toLowerCase())
          if (transport === undefined) {
            return yield* new TransportError({ address: bind, operation: "listen", reason: `no ${named![1]} transport is enabled` })
          }
          // one server per transport: another transport's may run beside it
          const running = servers.find((s) => s.bound.transport_type === transport.transportType)
          if (running !== undefined) return yield* new ServerAlreadyRunning({ address: running.address })
          const scope = yield* Scope.fork(layerScope, ExecutionStrategy.sequential)
          const bound = yield* transport.serve(named === null ? bind : named[2]!, handle).pipe(
            Scope.extend(scope),
            Effect.onError(() => Scope.close(scope, Exit.void))
          )
          // as peers dial it: `host:port` for http (API.md), `type:address` for any other transport
          const address = bound.transport_type === "http" ? bound.address : formatAddress(bound)
          servers.push({ scope, address, bound })
          return address
        })
      )

    const stopServer: SyncShape["stopServer"] = lifecycle.withPermits(1)(
      Effect.gen(function*() {
        if (servers.length === 0) return yield* new ServerNotRunning()
        for (const { scope } of servers.splice(0)) yield* Scope.close(scope, Exit.void)
      })
    )

    const getServerAddress: SyncShape["getServerAddress"] = Effect.suspend(() =>
      servers.length === 0 ? Effect.fail(new ServerNotRunning()) : Effect.succeed(servers[0]!.address)
    )

    return Sync.of({
      enableHttpTransport,
      enableIrohTransport,
      enableTransport,
      transportCount: Stream.map(router.changes, (r) => r.transports.length),
      startServer,
      stopServer,
      getServerAddress,
      syncWithPeer,
      pushEntries,
      createTicket,
      syncWithTicket,
      handle
    })
  })

/** The Sync layer over Instance, Storage, Auth, the state cache and write events, with options. */
export const layerWith = (options: SyncLayerOptions): Layer.Layer<
  Sync,
  never,
  Instance | Storage | Auth | StateCache | WriteEvents
> => Layer.scoped(Sync, make(options))

/** The Sync layer with the default options. */
export const layer: Layer.Layer<Sync, never, Instance | Storage | Auth | StateCache | WriteEvents> = layerWith({})

/** Parse a peer address: `host:port` is http; `type:rest` names the transport; an Address passes through. */
export const parseAddress = (target: string | Address): Effect.Effect<Address, NoTransportForAddress> => {
  if (typeof target !== "string") return Effect.succeed(target)
  const prefixed = /^([a-z][a-z0-9+.-]*):(.+)$/i.exec(target)
  // "localhost:3000" and "127.0.0.1:3000" are http; "http:127.0.0.1:3000", "sim:peer-1" name their
  // transport; a URL's form, "http://127.0.0.1:3000/", is read as "http:127.0.0.1:3000"
  if (prefixed !== null && !/^\d+$/.test(prefixed[2]!)) {
    const rest = prefixed[2]!.startsWith("//") ? prefixed[2]!.slice(2).replace(/\/+$/, "") : prefixed[2]!
    return Effect.succeed({ transport_type: prefixed[1]!.toLowerCase(), address: rest })
  }
  if (target.length === 0) return Effect.fail(new NoTransportForAddress({ address: JSON.stringify(target) }))
  return Effect.succeed({ transport_type: "http", address: target })
}

// ---------------------------------------------------------------------------------------------
// helpers

/** A failure that is a node's answer about the database (not a hint that could not be reached). */
const isAnswer = (e: { readonly _tag: string }): boolean =>
  isRefusal(e) || e._tag === "BootstrapPending" || e._tag === "TreeNotFound"

/** A peer's refusal of the key that proved our read access. */
const isRefusal = (e: { readonly _tag: string }): e is PermissionDenied | AuthenticationRequired =>
  e._tag === "PermissionDenied" || e._tag === "AuthenticationRequired"

/** Where the iroh server's secret key is kept (base64, as a JSON string). */
const IROH_SECRET_META = "sync.iroh.secret_key"

/** A saved iroh secret key, or undefined when the row is damaged (a fresh key is made then). */
const secretOf = (value: string): Uint8Array | undefined => {
  try {
    const text: unknown = JSON.parse(value)
    if (typeof text !== "string") return undefined
    const bytes = Buffer.from(text, "base64")
    return bytes.length === 32 ? new Uint8Array(bytes) : undefined
  } catch {
    return undefined
  }
}

/** How long each address of a ticket is given to complete a sync (the reference's 30 s). */
export const TICKET_ATTEMPT_TIMEOUT = Duration.seconds(30)

/** How long grants a peer refused are not offered to it again (unless others arrive meanwhile). */
export const GRANT_OFFER_COOLDOWN_MS = 10 * 60_000

/** Keys tried, at most, when a sync names none and the best one is refused. */
const MAX_SIGNER_ATTEMPTS = 8
/** The most peer addresses whose handshake, and (address, tree) pairs whose frontier, are kept. */
export const MAX_REMEMBERED = 1_024
