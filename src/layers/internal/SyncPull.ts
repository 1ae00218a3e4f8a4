/**
 * The client's side of one sync, once the transports are chosen: the paged pull (SyncTree requests
 * proving our read access, a bootstrap or incremental answer page by page, pages prefetched ahead
 * and each verified and stored on arrival), then the push of what the peer lacks; and `push`, which
 * `pushEntries` uses too. Separate from `Sync.ts` so the pull pipeline reads apart from the
 * service's wiring (transports, router, server lifecycle, handshake cache, choice of signer): what
 * it needs of the service comes in explicitly, as `PullDeps`.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import * as Entry from "../../core/Entry.js"
import type { StoredEntry } from "../../core/Entry.js"
import * as SyncAuth from "../../core/SyncAuth.js"
import { checkSigner, type Signer } from "../../database/Database.js"
import type { IngestReport } from "../../database/Ingest.js"
import { hintedSigner, rootSigners } from "../../database/VerifyAhead.js"
import {
  AuthenticationRequired,
  BootstrapPending,
  type CryptoError,
  type HandshakeFailed,
  InvalidEntry,
  type NoTransportEnabled,
  type NoTransportForAddress,
  PermissionDenied,
  type ProtocolVersionMismatch,
  RemoteError,
  type StorageError,
  TreeNotFound
} from "../../schema/Errors.js"
import {
  type Address,
  type HandshakeResponse,
  MAX_SEND_ENTRIES,
  type SyncRequest,
  type SyncRequestAuth,
  type SyncResponse
} from "../../schema/Protocol.js"
import { Auth, type AuthShape } from "../../services/Auth.js"
import type { StorageShape } from "../../services/Storage.js"
import type { SyncOptions, SyncResult } from "../../services/Sync.js"
import { formatAddress, type SendError } from "../../services/Transport.js"
import { MAX_REQUEST_IDS } from "../SyncServer.js"
import { advanceTips, decodeAll, entriesOf, nextOf, PREFETCH_PAGES } from "./SyncPages.js"
import { encodePage, fromBase64, truncate } from "./SyncWire.js"

/** What a sync takes from the Sync service it runs in. */
export interface PullDeps {
  /** This node's device key, named in every request as `peer_pubkey`. */
  readonly deviceId: string
  readonly storage: StorageShape
  readonly auth: AuthShape
  /** The byte budget of the entries of one pushed message. */
  readonly pageBytes: number
  /** Send a request through the enabled transports. */
  readonly send: (
    address: Address,
    request: SyncRequest
  ) => Effect.Effect<SyncResponse, SendError | NoTransportEnabled | NoTransportForAddress>
  /** The peer at an address, proven by a handshake (cached per address), and checked against `expectPeer`. */
  readonly connect: (
    address: Address,
    expectPeer?: string
  ) => Effect.Effect<
    { readonly peer: HandshakeResponse; readonly roundTrips: number },
    SendError | NoTransportEnabled | NoTransportForAddress | HandshakeFailed | ProtocolVersionMismatch
  >
  /** Drop the cached handshake of an address, so the next sync with it handshakes again. */
  readonly forgetHandshake: (address: Address) => void
  /** Validate received entries and store each valid one (with its valid ancestors). */
  readonly ingest: (entries: ReadonlyArray<StoredEntry>, peer?: string) => Effect.Effect<IngestReport, StorageError>
  /** Per (peer, tree): tips the peer is known to hold after our last sync with it; each sync updates it. */
  readonly frontiers: Map<string, ReadonlyArray<string>>
  /** How many (peer, tree) frontiers are kept. */
  readonly remembered: number
}

/** One sync with a peer, its read access proven by `signer`. */
export const syncAs = (
  deps: PullDeps,
  address: Address,
  treeId: string,
  signer: Signer,
  syncOptions: SyncOptions | undefined
) =>
  Effect.gen(function*() {
    const { auth, connect, frontiers, ingest, remembered, send, storage } = deps
    yield* Effect.provideService(checkSigner(signer), Auth, auth)
    const connected = yield* connect(address, syncOptions?.expectPeer)
    const peer = connected.peer
    let roundTrips = connected.roundTrips
    let received = 0
    let theirTips: ReadonlyArray<string> | undefined
    const frontierKey = frontierKeyOf(address, treeId)
    const requestFor = (tips: ReadonlyArray<string>, known: ReadonlyArray<string>) =>
      Effect.map(signRequest(auth, signer, peer.public_key, treeId, tips), (proof): SyncRequest => ({
        SyncTree: {
          tree_id: treeId,
          our_tips: tips,
          peer_pubkey: deps.deviceId,
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
    const request = (pageTips: ReadonlyArray<string>) =>
      signedAnewIfSeen(Effect.flatMap(requestFor(pageTips, known), (r) => send(address, r)))
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
    // pull, page by page; every page is verified and stored on arrival, while the next are fetched
    while (true) {
      const { chained, decoded: prefetched, response, root: prefetchedRoot } = yield* Fiber.join(queued.shift()!)
      roundTrips++
      let wire: ReadonlyArray<string>
      let next: string | undefined
      let root: StoredEntry | undefined
      if (typeof response === "object" && "Error" in response) {
        return yield* remoteError(deps, address, treeId, response.Error)
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
      const pushed = yield* push(deps, address, treeId, toSend, { signer, serverPubkey: peer.public_key })
      sent = pushed.sent
      roundTrips += pushed.roundTrips
    }
    // the peer now holds everything up to our tips as they were when we pushed
    const frontier = theirTips === undefined ? yield* storage.tips(treeId) : [...heldTips, ...pushedTips]
    remember(frontiers, frontierKey, frontier.slice(0, MAX_FRONTIER), remembered)
    return { received, sent, roundTrips } satisfies SyncResult
  }).pipe(Effect.scoped) // a prefetched page still in flight when we stop early is interrupted

/** Who proves a push: the key, and the server's device key the proof is made for. */
export interface PushProof {
  readonly signer: Signer
  readonly serverPubkey: string
}

/**
 * Send entries (parents first) with SendEntries, in pages under the message cap, each page proven
 * by `proof` when given (a database without a global grant takes only proven pushes).
 * `grants`: the push carries these grants to the proving key, which the peer has not seen, so
 * the peer would refuse its pages until the one with a grant: those are not sent (the peer may
 * hold all they carry; if not, the grant's page is refused as lacking their entries); a refused
 * page with a grant ends the push (what follows would be refused too).
 */
export const push = (
  deps: PullDeps,
  address: Address,
  treeId: string,
  ids: ReadonlyArray<string>,
  proof?: PushProof,
  grants?: ReadonlySet<string>
) =>
  Effect.gen(function*() {
    let done = 0
    let sent = 0
    let roundTrips = 0
    while (done < ids.length) {
      const page = yield* encodePage(deps.storage, ids.slice(done, done + MAX_PUSH_IDS), deps.pageBytes)
      done += Math.max(1, page.consumed)
      if (page.wire.length === 0) continue
      // before the first grant, the peer refuses every page of a key it does not know: none is sent
      if (grants !== undefined && sent === 0 && !page.sent.some((id) => grants.has(id))) continue
      const message: Effect.Effect<SyncRequest, CryptoError> = proof === undefined
        ? Effect.succeed({ SendEntries: page.wire })
        : Effect.map(signPush(deps.auth, proof, page.sent), (auth) => ({ SendEntries: page.wire, auth }))
      const response = yield* signedAnewIfSeen(Effect.flatMap(message, (m) => deps.send(address, m)))
      roundTrips++
      if (typeof response === "object" && "Error" in response) return yield* remoteError(deps, address, treeId, response.Error)
      if (response !== "Ack" && !(typeof response === "object" && "Count" in response)) {
        return yield* unexpected(address, `a ${describeResponse(response)} response to pushed entries`)
      }
      sent += page.wire.length
    }
    return { sent, roundTrips }
  })

/** The key of a (peer address, tree) pair in `PullDeps.frontiers`. */
export const frontierKeyOf = (address: Address, treeId: string): string => `${formatAddress(address)}\u0000${treeId}`

/** Keep `value` under `key` as the newest, the oldest dropped past `limit` (a node syncing with ever new addresses). */
export const remember = <V>(map: Map<string, V>, key: string, value: V, limit: number): void => {
  map.delete(key)
  map.set(key, value)
  if (map.size > limit) map.delete(map.keys().next().value!)
}

// ---------------------------------------------------------------------------------------------
// helpers

const signRequest = (auth: AuthShape, signer: Signer, serverPubkey: string, treeId: string, tips: ReadonlyArray<string>) =>
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

/**
 * Send a signed message, and once more (signed anew: `send` signs each time it runs) if the server
 * has seen its nonce: it saw this very message, resent by the transport after a lost answer.
 */
const signedAnewIfSeen = <E, R>(send: Effect.Effect<SyncResponse, E, R>): Effect.Effect<SyncResponse, E, R> =>
  Effect.flatMap(send, (response) =>
    typeof response === "object" && "Error" in response && response.Error === SyncAuth.NONCE_SPENT ? send : Effect.succeed(response))

const signPush = (auth: AuthShape, proof: PushProof, entryIds: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const nonce = yield* auth.randomBytes(32)
    const timestampMs = yield* Clock.currentTimeMillis
    const signature = yield* auth.sign(
      proof.signer.secretKey,
      SyncAuth.pushSigningBytes({ serverPubkey: proof.serverPubkey, entryIds, timestampMs, nonce })
    )
    return { key: proof.signer.publicKey, timestamp_ms: timestampMs, nonce: Array.from(nonce), signature } satisfies SyncRequestAuth
  })

const remoteError = (deps: PullDeps, address: Address, treeId: string, text: string) => {
  if (text.startsWith("Tree not found")) return new TreeNotFound({ treeId })
  if (text.startsWith("Authentication required")) {
    return new AuthenticationRequired({ detail: text.replace(/^Authentication required\s*/, "") })
  }
  if (text.startsWith("Permission denied")) {
    return new PermissionDenied({ detail: text.replace(/^Permission denied:\s*/, "") })
  }
  if (text.startsWith("Authentication failed")) {
    // The peer may have restarted with another identity: handshake again next time.
    deps.forgetHandshake(address)
    // the peer's words stay as the reference has them; the user is told what to check
    const hint = text.includes("freshness window")
      ? " (this device's clock and the peer's differ by more than 60 s: check the date and time on both)"
      : ""
    return new PermissionDenied({ detail: text + hint })
  }
  return new RemoteError({ address: formatAddress(address), detail: truncate(text, 500) })
}

/** Bound on the sample sent as `known` (it is logarithmic in the tree's height, so this is generous). */
const MAX_KNOWN = 4_096
/** Bound on the remembered frontier of a (peer, tree). */
const MAX_FRONTIER = 1_024
/** Entries considered per push message: as many as a server takes (the page budget cuts first for any realistic size). */
const MAX_PUSH_IDS = MAX_SEND_ENTRIES

const describeResponse = (response: SyncResponse): string =>
  typeof response === "string" ? response : Object.keys(response)[0] ?? "empty"

const unexpected = (address: Address, what: string) =>
  Effect.fail(new RemoteError({ address: formatAddress(address), detail: `unexpected answer: ${what}` }))
