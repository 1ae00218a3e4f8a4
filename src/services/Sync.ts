/**
 * The Sync port: enable transports, run a server that answers peers' requests, and sync one
 * database with a peer (bootstrap or incremental, pull then push). Implemented in `layers/Sync.ts`.
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Stream from "effect/Stream"
import type { Signer } from "../database/Database.js"
import type {
  CryptoError,
  HandshakeFailed,
  InvalidEntry,
  InvalidTicket,
  MalformedMessage,
  NoTransportEnabled,
  NoTransportForAddress,
  PayloadTooLarge,
  PermissionDenied,
  ProtocolVersionMismatch,
  RemoteError,
  ServerAlreadyRunning,
  ServerNotRunning,
  StorageError,
  TransportError,
  TreeNotFound,
  AuthenticationRequired,
  BootstrapPending
} from "../schema/Errors.js"
import type { Permission } from "../schema/Permission.js"
import type { Address } from "../schema/Address.js"
import type { SyncRequest, SyncResponse } from "../schema/Protocol.js"
import type { RequestContext, TransportShape } from "./Transport.js"

/** What one `syncWithPeer` moved. */
export interface SyncResult {
  /** Entries received from the peer and newly stored here. */
  readonly received: number
  /** Entries pushed to the peer. */
  readonly sent: number
  /** Request/response round trips, handshake included when one was needed. */
  readonly roundTrips: number
}

/** Options of `syncWithPeer`. */
export interface SyncOptions {
  /** The key that signs the request's proof of read access (default: the device key). */
  readonly signer?: Signer | undefined
  /** Ask for access with the signer's key and this permission (a bootstrap request); may fail with BootstrapPending. */
  readonly request?: { readonly permission: Permission; readonly keyName?: string | undefined } | undefined
  /**
   * The device key the peer must prove in the handshake (a registered peer's `peerPubkey`): another
   * node answering at the address fails with HandshakeFailed before anything is sent to it.
   */
  readonly expectPeer?: string | undefined
}

/** Options of `pushEntries`. */
export interface PushOptions {
  /** As in SyncOptions: the device key the peer must prove before anything is sent. */
  readonly expectPeer?: string | undefined
}

/** Options of the HTTP transport as enabled through Sync. */
export interface HttpOptions {
  /** How long one request may go without progress, a response still arriving being progress (default 30 seconds). */
  readonly timeout?: Duration.DurationInput | undefined
  /** How long one request may take in all, however steadily its answer trickles in (default 10 minutes). */
  readonly totalTimeout?: Duration.DurationInput | undefined
}

/** Options of the iroh transport (`enableIrohTransport`). */
export interface IrohOptions {
  /**
   * `"disabled"` (default): no relay and no address lookup; peers are dialled at the direct
   * addresses their tickets name, and nothing reaches n0's servers. `"n0"`: n0's public relays and
   * address lookup, to reach peers behind NATs.
   */
  readonly relays?: "disabled" | "n0" | undefined
  /** How long one request may take in all, connecting included (default 30 seconds). */
  readonly timeout?: Duration.DurationInput | undefined
  /** Where the client's endpoint binds (default: `127.0.0.1:0` for peers at loopback addresses only, else `0.0.0.0:0`). */
  readonly clientBind?: string | undefined
}

/** A peer address: `"127.0.0.1:3000"` (http), `"http:127.0.0.1:3000"`, `"sim:peer-1"`, or an Address. */
export type PeerAddress = string | Address

/** The errors `syncWithPeer` may fail with. */
export type SyncError =
  | NoTransportEnabled
  | NoTransportForAddress
  | TransportError
  | HandshakeFailed
  | ProtocolVersionMismatch
  | TreeNotFound
  | AuthenticationRequired
  | PermissionDenied
  | RemoteError
  | InvalidEntry
  | StorageError
  | MalformedMessage
  | PayloadTooLarge
  | CryptoError
  | BootstrapPending

/** The Sync service interface. */
export interface SyncShape {
  /** Enable the HTTP transport (idempotent: a second call keeps the first transport and its options). */
  readonly enableHttpTransport: (options?: HttpOptions) => Effect.Effect<void>
  /**
   * Enable the iroh (QUIC) transport (idempotent: a second call keeps the first). Its server's
   * identity, so the address in its tickets, is kept in storage: the same across restarts. Fails
   * with TransportError where the native binding cannot load.
   */
  readonly enableIrohTransport: (options?: IrohOptions) => Effect.Effect<void, TransportError | StorageError>
  /**
   * Enable another transport (the simulated network, a custom one), tried after those already enabled.
   * Enabling any transport also tells Auth that entries may come (`verifyAhead([])`): the node layer
   * starts its verification workers then, not within the first bootstrap.
   */
  readonly enableTransport: (transport: TransportShape) => Effect.Effect<void>
  /**
   * How many transports are enabled: the current count, then every change. The background engine
   * retries at once the work that failed for want of one (peers reloaded before a transport was
   * enabled), instead of waiting out its backoff.
   */
  readonly transportCount: Stream.Stream<number>
  /**
   * Serve this node's databases on `bind` (`host:port`, port 0 picks one) with the first enabled
   * transport, or the one `bind` names (`iroh:127.0.0.1:0`); returns the address peers dial:
   * `host:port` for http, `<type>:<address>` for another (`iroh:<endpoint ticket>`). One server per
   * transport: HTTP and iroh may serve side by side (handshakes and tickets name both);
   * ServerAlreadyRunning when that transport's runs.
   */
  readonly startServer: (bind: string) => Effect.Effect<string, NoTransportEnabled | ServerAlreadyRunning | TransportError>
  /** Stop the running servers (every transport's). */
  readonly stopServer: Effect.Effect<void, ServerNotRunning>
  /** The address of the running server (the first started, when several run), as `startServer` returned it (`"127.0.0.1:<port>"`, `"iroh:endpoint…"`). */
  readonly getServerAddress: Effect.Effect<string, ServerNotRunning>
  /** Sync one database with a peer: handshake (cached), pull (bootstrap or incremental, paged), then push what the peer lacks. */
  readonly syncWithPeer: (address: PeerAddress, treeId: string, options?: SyncOptions) => Effect.Effect<SyncResult, SyncError>
  /**
   * Push given entries of one database to a peer (handshake cached, then SendEntries pages, parents
   * first), without asking what it holds: one round trip for a fresh commit. A peer lacking their
   * parents refuses them (a RemoteError); `syncWithPeer` then repairs the gap.
   */
  readonly pushEntries: (
    address: PeerAddress,
    treeId: string,
    entryIds: ReadonlyArray<string>,
    options?: PushOptions
  ) => Effect.Effect<SyncResult, SyncError>
  /**
   * A ticket for a database this node holds, `eidetica:?db=<ID>&pr=<transport>:<address>`, naming
   * every running server's address (none while no server runs, as the reference's). Give it to
   * another device's `syncWithTicket`. A server bound to all interfaces (`0.0.0.0`) is named so:
   * bind the address other devices dial to give a ticket they can use.
   */
  readonly createTicket: (treeId: string) => Effect.Effect<string, TreeNotFound | StorageError>
  /**
   * Sync the ticket's database with the peers it names (bootstrap or incremental, both directions),
   * all at once, each within 30 seconds: the first to succeed wins and the others are stopped;
   * when all fail, a node's own answer (BootstrapPending, a refusal, TreeNotFound) is the answer
   * before a hint that could not be reached, else the last failure. Options as `syncWithPeer`'s (a `request` makes
   * it the reference's `bootstrap_with_ticket`). A ticket that cannot be read, or names no
   * address, fails with InvalidTicket.
   */
  readonly syncWithTicket: (ticket: string, options?: SyncOptions) => Effect.Effect<SyncResult, SyncError | InvalidTicket>
  /** The server's handler: answers one request; problems become `{"Error": …}` responses, never failures. */
  readonly handle: (request: SyncRequest, context: RequestContext) => Effect.Effect<SyncResponse>
}

/** The Sync service tag. */
export class Sync extends Context.Tag("eidetica-ts/Sync")<Sync, SyncShape>() {}
