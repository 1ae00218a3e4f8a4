/**
 * The Sync layer: the client's `syncWithPeer` (cached handshake, paged pull, then push of what
 * the peer lacks) and `pushEntries`, the transports and the server's lifecycle, over Instance,
 * Storage, Auth, the state cache, write events and the enabled transports. The server's handler
 * lives in `SyncServer.ts`. Servers and transports live in the
 * layer's scope: closing it stops them.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Scope from "effect/Scope"
import * as Entry from "../core/Entry.js"
import type { StoredEntry } from "../core/Entry.js"
import * as Settings from "../core/Settings.js"
import * as SyncAuth from "../core/SyncAuth.js"
import { checkSigner, type Signer } from "../database/Database.js"
import { ingestPartial, type IngestEnv } from "../database/Ingest.js"
import { StateCache } from "../database/StateCache.js"
import { hintedSigner, rootSigners } from "../database/VerifyAhead.js"
import {
  AuthenticationRequired,
  HandshakeFailed,
  BootstrapPending,
  InvalidEntry,
  NoTransportEnabled,
  NoTransportForAddress,
  PermissionDenied,
  ProtocolVersionMismatch,
  RemoteError,
  ServerAlreadyRunning,
  ServerNotRunning,
  TreeNotFound
} from "../schema/Errors.js"
import {
  type Address,
  type HandshakeResponse,
  MAX_SEND_ENTRIES,
  PROTOCOL_VERSION,
  type SyncRequest,
  type SyncRequestAuth,
  type SyncResponse,
} from "../schema/Protocol.js"
import { Auth } from "../services/Auth.js"
import { Instance } from "../services/Instance.js"
import { Storage } from "../services/Storage.js"
import { Sync, type SyncOptions, type SyncResult, type SyncShape } from "../services/Sync.js"
import {
  formatAddress,
  TransportRouter,
  type TransportShape
} from "../services/Transport.js"
import { WriteEvents } from "../services/WriteEvents.js"
import { advanceTips, decodeAll, entriesOf, nextOf, PREFETCH_PAGES } from "./internal/SyncPages.js"
import { encodePage as encodePageOf, fromBase64, isEntryId, truncate } from "./internal/SyncWire.js"
import * as Server from "./SyncServer.js"
import { makeHttp } from "./TransportHttp.js"

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
    let server: { readonly scope: Scope.CloseableScope; readonly address: string; readonly transportType: string } | undefined
    const remembered = options.remembered ?? MAX_REMEMBERED
    /** Verified handshakes by formatted address, the `remembered` most recent. */
    const handshakes = new Map<string, HandshakeResponse>()
    /** Per (peer, tree): tips the peer is known to hold after our last sync with it (as many). */
    const frontiers = new Map<string, ReadonlyArray<string>>()

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
        ({ peer }) =>
          new HandshakeFailed({
            reason: `the peer at ${formatAddress(address)} is ${peer.public_key}, not the registered peer ${expectPeer}`
          })
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
            listen_addresses: server === undefined ? [] : [{ transport_type: server.transportType, address: server.address }]
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
     * `defaultSigner` choice, then the other logged-in users' keys, then the device key. The auth we
     * hold may be stale or absent (a database we do not have yet, a key granted since our last
     * sync), so a refused key is not the end: the next is tried.
     */
    const defaultSigners = (treeId: string): Effect.Effect<ReadonlyArray<Signer>> =>
      Effect.gen(function*() {
        const session = yield* instance.sessionSigners
        let best: Signer | undefined
        if (session.length > 0 && (yield* storage.has([treeId])).has(treeId)) {
          const state = yield* Server.authStateOf(env, treeId)
          if (state._tag === "Present") best = Settings.strongest(state.auth, session)?.signer
        }
        const ordered = best === undefined ? [...session, instance.device] : [best, ...session, instance.device]
        const unique = new Map(ordered.map((s) => [s.publicKey, s]))
        return [...unique.values()].slice(0, MAX_SIGNER_ATTEMPTS)
      }).pipe(Effect.orElseSucceed(() => [instance.device]))

    const signRequest = (signer: Signer, serverPubkey: string, treeId: string, tips: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const nonce = yield* auth.randomBytes(32)
        const timestampMs = yield* Clock.currentTimeMillis
        const signature = yield* auth.sign(
          signer.secretKey,
          SyncAuth.signingBytes({ serverPubkey, treeId, tips, timestampMs, nonce })
        )
        return { key: signer.publicKey, timestamp_ms: timestampMs, nonce: Array.from(nonce), signature } satisfies
          SyncRequestAuth
      })

    const remoteError = (address: Address, treeId: string, text: string) => {
      if (text.startsWith("Tree not found")) return new TreeNotFound({ treeId })
      if (text.startsWith("Authentication required")) {
        return new AuthenticationRequired({ detail: text.replace(/^Authentication required\s*/, "") })
      }
      if (text.startsWith("Permission denied")) {
        return new PermissionDenied({ detail: text.replace(/^Permission denied:\s*/, "") })
      }
      if (text.startsWith("Authentication failed")) {
        // The peer may have restarted with another identity: handshake again next time.
        handshakes.delete(formatAddress(address))
        return new PermissionDenied({ detail: text })
      }
      return new RemoteError({ address: formatAddress(address), detail: truncate(text, 500) })
    }

    /** The address of a sync target, once a transport is enabled and the tree ID is well formed. */
    const peerAddress = (target: string | Address, treeId: string) =>
      Effect.gen(function*() {
        const address = yield* parseAddress(target)
        if ((yield* Ref.get(router)).isEmpty) return yield* new NoTransportEnabled()
        if (!isEntryId(treeId)) return yield* new TreeNotFound({ treeId })
        return address
      })

    const syncWithPeer: SyncShape["syncWithPeer"] = (target, treeId, syncOptions) =>
      Effect.gen(function*() {
        const address = yield* peerAddress(target, treeId)
        if (syncOptions?.signer !== undefined || syncOptions?.request !== undefined) {
          return yield* syncAs(address, treeId, syncOptions.signer ?? (yield* defaultSigner(treeId)), syncOptions)
        }
        // no key named: the best key first; a refusal tries the next, and the first refusal is the answer
        let refusal: PermissionDenied | AuthenticationRequired | undefined
        for (const signer of yield* defaultSigners(treeId)) {
          const attempt = yield* Effect.either(syncAs(address, treeId, signer, syncOptions))
          if (Either.isRight(attempt)) return attempt.right
          if (!isRefusal(attempt.left)) return yield* attempt.left
          refusal ??= attempt.left
        }
        return yield* refusal!
      })

    /** One sync with a peer, its read access proven by `signer`. */
    const syncAs = (address: Address, treeId: string, signer: Signer, syncOptions: SyncOptions | undefined) =>
      Effect.gen(function*() {
        yield* Effect.provideService(checkSigner(signer), Auth, auth)
        const connected = yield* connect(address, syncOptions?.expectPeer)
        const peer = connected.peer
        let roundTrips = connected.roundTrips
        let received = 0
        let theirTips: ReadonlyArray<string> | undefined
        const frontierKey = `${formatAddress(address)}\u0000${treeId}`
        const requestFor = (tips: ReadonlyArray<string>, known: ReadonlyArray<string>) =>
          Effect.map(signRequest(signer, peer.public_key, treeId, tips), (proof): SyncRequest => ({
            SyncTree: {
              tree_id: treeId,
              our_tips: tips,
              peer_pubkey: instance.deviceId,
              auth: proof,
              ...(syncOptions?.request !== undefined
                ? {
                  requesting_key: signer.publicKey,
                  requested_permission: syncOptions.request.permission,
                  ...(syncOptions.request.keyName !== undefined ? { requesting_key_name: syncOptions.request.keyName } : {})
                }
                : {}),
              // known is only a hint: it gives way to the tips when together they would pass the bound
              ...(known.length > 0 ? { known: known.slice(0, Math.max(0, MAX_REQUEST_IDS - tips.length)) } : {})
            }
          }))
        // what we hold, plus a sparse sample and the frontier of our last sync with this peer, so the
        // peer finds what we share without resending history
        const ourTips = yield* storage.tips(treeId)
        const known = ourTips.length === 0
          ? []
          : [...new Set([...(frontiers.get(frontierKey) ?? []), ...(yield* storage.sample(treeId))])].slice(0, MAX_KNOWN)
        let tips = ourTips
        /** Every ID our requests have named: a page moves the pull on only if the next request names one more. */
        const named = new Set([...ourTips, ...known])
        /** Signers of entries this sync has stored: the signatures of their next entries are verified ahead. */
        const signers = new Set<string>()
        // a page is decoded as it arrives, and its known signers' signatures go to the verifier at
        // once, so they are checked while the previous page is still being stored; the page after it
        // is asked for at once too (as if this one were stored), up to PREFETCH_PAGES ahead of the
        // page being stored, so the verifier always has the next page in hand
        const request = (pageTips: ReadonlyArray<string>) => Effect.flatMap(requestFor(pageTips, known), (r) => send(address, r))
        interface Fetched {
          readonly response: SyncResponse
          readonly decoded: Effect.Effect.Success<ReturnType<typeof decodeAll>> | undefined
          readonly root: Either.Either<StoredEntry, string> | undefined
          /** Whether the page after this one was asked for already. */
          readonly chained: boolean
        }
        type FetchError = Effect.Effect.Error<ReturnType<typeof request>>
        /** Pages asked for and not yet taken by the loop below, in order. */
        const queued: Array<Fiber.RuntimeFiber<Fetched, FetchError>> = []
        const fetch = (pageTips: ReadonlyArray<string>): Effect.Effect<Fetched, FetchError, Scope.Scope> =>
          Effect.flatMap(request(pageTips), (response) =>
            Effect.gen(function*() {
              // a bootstrap's first page: the active keys of the root's settings are its likely signers
              const root = typeof response === "object" && "Bootstrap" in response
                ? Entry.decode(fromBase64(response.Bootstrap.root_entry))
                : undefined
              if (root !== undefined && Either.isRight(root)) for (const k of rootSigners(root.right)) signers.add(k)
              const wire = entriesOf(response)
              const decoded = wire === undefined ? undefined : yield* decodeAll(wire, treeId, signers, auth)
              const page = decoded === undefined || (root !== undefined && Either.isLeft(root))
                ? []
                : root === undefined ? decoded.entries : [root.right, ...decoded.entries]
              const chain = nextOf(response) !== undefined && page.length > 0 && decoded!.rejected.length === 0 &&
                queued.length < PREFETCH_PAGES
              if (chain) queued.push(yield* Effect.forkScoped(fetch(advanceTips(pageTips, page))))
              return { response, decoded, root, chained: chain } satisfies Fetched
            })
          )
        queued.push(yield* Effect.forkScoped(fetch(tips)))
        // a bootstrap has a whole database to verify: let the verifier get ready while the first page comes
        if (ourTips.length === 0 && auth.verifyAhead !== undefined) yield* auth.verifyAhead([])
        // pull, page by page; every page is verified and stored on arrival, while the next are fetched
        while (true) {
          const { chained, decoded: prefetched, response, root: prefetchedRoot } = yield* Fiber.join(queued.shift()!)
          roundTrips++
          let wire: ReadonlyArray<string>
          let next: string | undefined
          let root: StoredEntry | undefined
          if (typeof response === "object" && "Error" in response) {
            return yield* remoteError(address, treeId, response.Error)
          } else if (typeof response === "object" && "BootstrapPending" in response) {
            return yield* new BootstrapPending({
              requestId: response.BootstrapPending.request_id,
              detail: response.BootstrapPending.message
            })
          } else if (typeof response === "object" && "Bootstrap" in response) {
            const b = response.Bootstrap
            if (b.tree_id !== treeId) return yield* unexpected(address, `a bootstrap of ${b.tree_id}, not ${treeId}`)
            const decodedRoot = prefetchedRoot ?? Entry.decode(fromBase64(b.root_entry))
            if (Either.isLeft(decodedRoot)) {
              return yield* new InvalidEntry({ reason: `the bootstrap root does not decode: ${decodedRoot.left}` })
            }
            if (decodedRoot.right.id !== treeId || !Entry.isRoot(decodedRoot.right.entry)) {
              return yield* new InvalidEntry({
                entryId: decodedRoot.right.id,
                reason: `the peer sent it as the root of ${treeId}, which it is not`
              })
            }
            root = decodedRoot.right
            wire = b.all_entries
            next = b.next
          } else if (typeof response === "object" && "Incremental" in response) {
            const inc = response.Incremental
            if (inc.tree_id !== treeId) return yield* unexpected(address, `entries of ${inc.tree_id}, not ${treeId}`)
            theirTips = inc.their_tips
            wire = inc.missing_entries
            next = inc.next
          } else {
            return yield* unexpected(address, `a ${describeResponse(response)} response to a sync request`)
          }
          const decoded = prefetched ?? (yield* decodeAll(wire, treeId, signers, auth))
          const page = root === undefined ? decoded.entries : [root, ...decoded.entries]
          let progressed = false
          if (next !== undefined && page.length > 0 && decoded.rejected.length === 0) {
            // ask for the next page now (unless it was asked for on arrival), as if this one were
            // stored (if it is not, we stop below)
            tips = advanceTips(tips, page)
            for (const id of tips) {
              if (!named.has(id)) progressed = true
              named.add(id)
            }
            if (!chained) queued.push(yield* Effect.forkScoped(fetch(tips)))
          }
          const report = yield* ingest(page, peer.public_key)
          received += report.stored.length
          const rejected = decoded.rejected[0] ?? report.rejected[0]
          // the valid entries stay stored; a peer sending invalid ones is an error
          if (rejected !== undefined) return yield* rejected
          for (const e of page) {
            const signer = hintedSigner(e)
            if (signer !== undefined) signers.add(signer)
          }
          if (next === undefined) break
          // Progress is what the next request tells the peer, not what this page stored: our `known`
          // is a sparse sample, so the peer may rightly resend entries we hold (a whole page of them
          // when they are many); only a next request naming nothing new would get the same answer.
          if (!progressed) return yield* unexpected(address, "another page that moves the pull no further")
        }
        // push what the peer lacks, relative to its tips we hold, parents first
        let sent = 0
        let pushedTips: ReadonlyArray<string> = []
        // Only the tips of theirs we hold: one we lack (written while the peer answered) named as
        // known in later requests would keep the peer from ever sending it.
        let heldTips: ReadonlyArray<string> = []
        if (theirTips !== undefined) {
          const held = yield* storage.has(theirTips)
          heldTips = theirTips.filter((t) => held.has(t))
          const toSend = yield* storage.missing(treeId, heldTips)
          pushedTips = yield* storage.tips(treeId)
          const pushed = yield* push(address, treeId, toSend)
          sent = pushed.sent
          roundTrips += pushed.roundTrips
        }
        // the peer now holds everything up to our tips as they were when we pushed
        const frontier = theirTips === undefined ? yield* storage.tips(treeId) : [...heldTips, ...pushedTips]
        remember(frontiers, frontierKey, frontier.slice(0, MAX_FRONTIER), remembered)
        return { received, sent, roundTrips } satisfies SyncResult
      }).pipe(Effect.scoped) // a prefetched page still in flight when we stop early is interrupted

    /** Send entries (parents first) with SendEntries, in pages under the message cap. */
    const push = (address: Address, treeId: string, ids: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        let sent = 0
        let roundTrips = 0
        while (sent < ids.length) {
          const { wire } = yield* encodePageOf(storage, ids.slice(sent, sent + MAX_PUSH_IDS), pageBytes)
          const response = yield* send(address, { SendEntries: wire })
          roundTrips++
          if (typeof response === "object" && "Error" in response) {
            return yield* remoteError(address, treeId, response.Error)
          }
          if (response !== "Ack" && !(typeof response === "object" && "Count" in response)) {
            return yield* unexpected(address, `a ${describeResponse(response)} response to pushed entries`)
          }
          sent += wire.length
        }
        return { sent, roundTrips }
      })

    const pushEntries: SyncShape["pushEntries"] = (target, treeId, entryIds, pushOptions) =>
      Effect.gen(function*() {
        const address = yield* peerAddress(target, treeId)
        const connected = yield* connect(address, pushOptions?.expectPeer)
        // parents first: a child's height is above each of its parents'
        const heights = yield* storage.heights(entryIds)
        const ordered = [...heights.keys()].sort((x, y) => heights.get(x)! - heights.get(y)! || (x < y ? -1 : x > y ? 1 : 0))
        const pushed = yield* push(address, treeId, ordered)
        return { received: 0, sent: pushed.sent, roundTrips: connected.roundTrips + pushed.roundTrips } satisfies SyncResult
      })

    // ---------------------------------------------------------------------------------------
    // transports and server

    const enableTransport: SyncShape["enableTransport"] = (transport) =>
      SubscriptionRef.update(router, (r) => r.add(wrap(transport)))

    const enableHttpTransport: SyncShape["enableHttpTransport"] = (httpOptions) =>
      lifecycle.withPermits(1)(
        Effect.gen(function*() {
          if (httpEnabled) return
          const http = yield* Scope.extend(makeHttp({ timeout: httpOptions?.timeout, announce: instance.deviceId }), layerScope)
          yield* enableTransport(http)
          httpEnabled = true
        })
      )

    const startServer: SyncShape["startServer"] = (bind) =>
      lifecycle.withPermits(1)(
        Effect.gen(function*() {
          if (server !== undefined) return yield* new ServerAlreadyRunning({ address: server.address })
          const r = yield* Ref.get(router)
          const transport = r.transports[0]
          if (transport === undefined) return yield* new NoTransportEnabled()
          const scope = yield* Scope.fork(layerScope, ExecutionStrategy.sequential)
          const bound = yield* transport.serve(bind, handle).pipe(
            Scope.extend(scope),
            Effect.onError(() => Scope.close(scope, Exit.void))
          )
          // as peers dial it: `host:port` for http (API.md), `type:address` for any other transport
          const address = bound.transport_type === "http" ? bound.address : formatAddress(bound)
          server = { scope, address, transportType: bound.transport_type }
          return bound.address
        })
      )

    const stopServer: SyncShape["stopServer"] = lifecycle.withPermits(1)(
      Effect.gen(function*() {
        if (server === undefined) return yield* new ServerNotRunning()
        const { scope } = server
        server = undefined
        yield* Scope.close(scope, Exit.void)
      })
    )

    const getServerAddress: SyncShape["getServerAddress"] = Effect.suspend(() =>
      server === undefined ? Effect.fail(new ServerNotRunning()) : Effect.succeed(server.address)
    )

    return Sync.of({
      enableHttpTransport,
      enableTransport,
      transportCount: Stream.map(router.changes, (r) => r.transports.length),
      startServer,
      stopServer,
      getServerAddress,
      syncWithPeer,
      pushEntries,
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

/** A peer's refusal of the key that proved our read access. */
const isRefusal = (e: { readonly _tag: string }): e is PermissionDenied | AuthenticationRequired =>
  e._tag === "PermissionDenied" || e._tag === "AuthenticationRequired"

/** Keys tried, at most, when a sync names none and the best one is refused. */
const MAX_SIGNER_ATTEMPTS = 8
/** Bound on the sample sent as `known` (it is logarithmic in the tree's height, so this is generous). */
const MAX_KNOWN = 4_096
/** The most peer addresses whose handshake, and (address, tree) pairs whose frontier, are kept. */
export const MAX_REMEMBERED = 1_024

/** Keep `value` under `key` as the newest, the oldest dropped past `limit` (a node syncing with ever new addresses). */
const remember = <V>(map: Map<string, V>, key: string, value: V, limit: number): void => {
  map.delete(key)
  map.set(key, value)
  if (map.size > limit) map.delete(map.keys().next().value!)
}

/** Bound on the remembered frontier of a (peer, tree). */
const MAX_FRONTIER = 1_024
/** Entries considered per push message: as many as a server takes (the page budget cuts first for any realistic size). */
const MAX_PUSH_IDS = MAX_SEND_ENTRIES

const describeResponse = (response: SyncResponse): string =>
  typeof response === "string" ? response : Object.keys(response)[0] ?? "empty"

const unexpected = (address: Address, what: string) =>
  Effect.fail(new RemoteError({ address: formatAddress(address), detail: `unexpected answer: ${what}` }))
