/**
 * The sync API of the Promise facade, over the Sync service (transports, the server,
 * `syncWithPeer`) and the background engine (`registerSyncPeer`, status handles, `flush`).
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { type Address, addressProblem } from "../schema/Address.js"
import {
  type FlushReport,
  type PeerStatus as EnginePeerStatus,
  SyncEngine,
  type SyncHandle as EngineHandle
} from "../services/SyncEngine.js"
import type { User as UserService } from "../services/Instance.js"
import { type HttpOptions, type IrohOptions, Sync as SyncTag, type SyncResult } from "../services/Sync.js"
import { Instance as InstanceTag } from "../services/Instance.js"
import * as BootstrapRequests from "../database/BootstrapRequests.js"
import { KeyNotFound } from "../schema/Errors.js"
import type * as Permission from "../schema/Permission.js"
import { checkPermission, checkPubKey, checkString } from "./Check.js"
import { InvalidArgument } from "./Errors.js"
import type { Runner } from "./Runner.js"

/** What one `syncWithPeer` moved. */
export type { SyncResult }

/** Options of `enableHttpTransport`. */
export interface HttpTransportOptions {
  /** How long one request may go without progress, a response still arriving being progress; in milliseconds (default 30 000). */
  readonly timeoutMs?: number | undefined
  /**
   * How long one request may take in all, in milliseconds (default 600 000): a peer that trickles
   * its answer slowly enough never trips `timeoutMs`, and holds a sync until this.
   */
  readonly totalTimeoutMs?: number | undefined
}

/** Options of `enableIrohTransport`. */
export interface IrohTransportOptions {
  /**
   * `"disabled"` (default): no relay and no address lookup, peers are dialled at the direct
   * addresses their tickets name. `"n0"`: n0's public relays and address lookup (peers behind NATs).
   */
  readonly relays?: "disabled" | "n0" | undefined
  /** How long one request may take in all, connecting included, in milliseconds (default 30 000). */
  readonly timeoutMs?: number | undefined
  /** Where the client's endpoint binds (default: `127.0.0.1:0` for peers at loopback addresses only, else `0.0.0.0:0`). */
  readonly clientBind?: string | undefined
}

/** Transports, the server, and syncing databases with peers. Get it from `instance.sync()`. */
export class Sync {
  /** @internal */
  constructor(private readonly runner: Runner) {}

  /** Enable the HTTP transport; calling it again keeps the first. */
  enableHttpTransport(options: HttpTransportOptions = {}): Promise<void> {
    return this.runner.attempt(() => {
      const timeouts = checkTimeouts(options)
      return this.runner.run(Effect.flatMap(SyncTag, (sync) => sync.enableHttpTransport(timeouts)))
    })
  }

  /**
   * Serve this node's databases on `host:port` (port 0 picks a free port) with the first enabled
   * transport, or the one the bind names (`"iroh:127.0.0.1:0"`, `"http:127.0.0.1:0"`); resolves with
   * the address peers dial (`"127.0.0.1:<port>"`, `"iroh:endpoint…"`). One server per transport.
   */
  startServer(bind: string): Promise<string> {
    return this.runner.attempt(() => {
      const address = checkString(bind, "startServer expects host:port")
      return this.runner.run(Effect.flatMap(SyncTag, (sync) => sync.startServer(address)))
    })
  }

  /** Stop the running servers. */
  stopServer(): Promise<void> {
    return this.runner.run(Effect.flatMap(SyncTag, (sync) => sync.stopServer))
  }

  /** The address of the running server (the first started, when several run), `"127.0.0.1:<port>"` or `"iroh:endpoint…"`. */
  getServerAddress(): Promise<string> {
    return this.runner.run(Effect.flatMap(SyncTag, (sync) => sync.getServerAddress))
  }

  /** Sync one database with a peer (bootstrap or incremental, both directions). */
  syncWithPeer(address: string, treeId: string): Promise<SyncResult> {
    return this.runner.attempt(() => {
      const peer = checkString(address, "syncWithPeer expects an address")
      const tree = checkString(treeId, "syncWithPeer expects a database id")
      return this.runner.run(Effect.flatMap(SyncTag, (sync) => sync.syncWithPeer(peer, tree)))
    })
  }

  /**
   * A ticket for a database this node holds, `eidetica:?db=<ID>&pr=http:<host>:<port>`, naming every
   * running server's address (none while no server runs). Give it to another device's
   * `syncWithTicket` (a QR code, a link). `user.share(databaseId)` also enables the sync.
   */
  createTicket(databaseId: string): Promise<string> {
    return this.runner.attempt(() => {
      const tree = checkString(databaseId, "createTicket expects a database id")
      return this.runner.run(Effect.flatMap(SyncTag, (sync) => sync.createTicket(tree)))
    })
  }

  /**
   * Sync the database a ticket names with the peers it names, all at once: the first to succeed
   * wins (each has 30 s); when all fail, rejects with a node's own answer (BootstrapPending, a
   * refusal) before a hint that could not be reached, else the last failure. A ticket that cannot be
   * read or names no address rejects with InvalidTicket.
   */
  syncWithTicket(ticket: string): Promise<SyncResult> {
    return this.runner.attempt(() => {
      const text = checkString(ticket, "syncWithTicket expects a ticket, eidetica:?db=…&pr=…")
      return this.runner.run(Effect.flatMap(SyncTag, (sync) => sync.syncWithTicket(text)))
    })
  }

  /**
   * `syncWithPeerForBootstrap` with a ticket's database and addresses (the reference's
   * `bootstrap_with_ticket`): asks for access with a logged-in user's key and a permission; rejects
   * with BootstrapPending (carrying `requestId`) until an admin approves.
   */
  bootstrapWithTicket(ticket: string, keyId: string, permission: Permission.Permission): Promise<SyncResult> {
    return this.runner.attempt(() => {
      const text = checkString(ticket, "bootstrapWithTicket expects a ticket, eidetica:?db=…&pr=…")
      const key = checkString(keyId, "bootstrapWithTicket expects a key id")
      const requested = checkPermission(permission, "bootstrapWithTicket")
      return this.runner.run(
        Effect.flatMap(sessionSigner(key), (signer) =>
          Effect.flatMap(SyncTag, (sync) => sync.syncWithTicket(text, { signer, request: { permission: requested } })))
      )
    })
  }

  /**
   * Enable the iroh (QUIC) transport; calling it again keeps the first. Then `startServer("127.0.0.1:0")`
   * (or `"iroh:127.0.0.1:0"` beside HTTP) serves over iroh, and its address, `iroh:endpoint…`, is
   * what peers pass to `syncWithPeer` and what tickets name. No relays unless `relays: "n0"`.
   */
  enableIrohTransport(options: IrohTransportOptions = {}): Promise<void> {
    return this.runner.attempt(() => {
      const iroh = checkIrohOptions(options)
      return this.runner.run(Effect.flatMap(SyncTag, (sync) => sync.enableIrohTransport(iroh)))
    })
  }

  /**
   * Bootstrap (or sync) a database asking for access with one of a logged-in user's keys and a
   * permission. Rejects with BootstrapPending (carrying `requestId`) until an admin approves.
   */
  syncWithPeerForBootstrap(address: string, treeId: string, keyId: string, permission: Permission.Permission): Promise<SyncResult> {
    return this.runner.attempt(() => {
      const peer = checkString(address, "syncWithPeerForBootstrap expects an address")
      const tree = checkString(treeId, "syncWithPeerForBootstrap expects a database id")
      const key = checkString(keyId, "syncWithPeerForBootstrap expects a key id")
      const requested = checkPermission(permission, "syncWithPeerForBootstrap")
      return this.runner.run(
        Effect.flatMap(sessionSigner(key), (signer) =>
          Effect.flatMap(SyncTag, (sync) => sync.syncWithPeer(peer, tree, { signer, request: { permission: requested } })))
      )
    })
  }

  /** Bootstrap requests received by this node and waiting for an admin's decision. */
  pendingBootstrapRequests(): Promise<Array<BootstrapRequests.BootstrapRequest>> {
    return this.runner.run(Effect.map(BootstrapRequests.list("Pending"), (rows) => [...rows]))
  }

  /** Every bootstrap request received by this node, whatever its status. */
  bootstrapRequests(): Promise<Array<BootstrapRequests.BootstrapRequest>> {
    return this.runner.run(Effect.map(BootstrapRequests.list(), (rows) => [...rows]))
  }

  /**
   * Push everything queued to every registered peer now, ignoring backoff, and sync every
   * registered (peer, database) pair once; resolves when done with how many peers were reached.
   * Work that failed again stays queued (nothing is dropped).
   */
  flush(): Promise<FlushReport> {
    return this.runner.run(Effect.flatMap(SyncEngine, (engine) => engine.flush))
  }

  /** Register a peer to keep a database in sync with in the background; persisted across restarts. */
  registerSyncPeer(info: SyncPeerOptions): Promise<SyncHandle> {
    return this.runner.attempt(async () => {
      const checked = checkPeer(info)
      const handle = await this.runner.run(Effect.flatMap(SyncEngine, (engine) => engine.registerSyncPeer(checked)))
      return new SyncHandle(this.runner, handle)
    })
  }

  /** Stop syncing a database (every database when none is given) with a peer. */
  unregisterSyncPeer(peerPubkey: string, treeId?: string): Promise<void> {
    return this.runner.attempt(() => {
      const peer = checkString(peerPubkey, "unregisterSyncPeer expects a peer public key")
      const tree = treeId === undefined ? undefined : checkString(treeId, "unregisterSyncPeer expects a database id, or none for every database")
      return this.runner.run(Effect.flatMap(SyncEngine, (engine) => engine.unregisterSyncPeer(peer, tree)))
    })
  }

  /** @internal Approve a bootstrap request with one of a user's Admin keys (adds the key to auth). */
  approveBootstrapRequest(user: UserService, requestId: string, keyId: string): Promise<void> {
    return this.resolveRequest(user, requestId, keyId, true)
  }

  /** @internal Reject a bootstrap request with one of a user's Admin keys. */
  rejectBootstrapRequest(user: UserService, requestId: string, keyId: string): Promise<void> {
    return this.resolveRequest(user, requestId, keyId, false)
  }

  private resolveRequest(user: UserService, requestId: string, keyId: string, approve: boolean): Promise<void> {
    const what = approve ? "approveBootstrapRequest" : "rejectBootstrapRequest"
    return this.runner.attempt(() => {
      const request = checkString(requestId, `${what} expects a request id`)
      const key = checkString(keyId, `${what} expects the id of an Admin key of the user`)
      return this.runner.run(
        Effect.flatMap(user.signer(key), (signer) => Effect.asVoid(BootstrapRequests.resolve(request, signer, approve)))
      )
    })
  }
}

/** A peer address as `registerSyncPeer` takes it. */
export interface PeerAddressOptions {
  /** `"http"` (or another enabled transport's type). */
  readonly transportType: string
  /** For http `host:port`. */
  readonly address: string
}

/** What `registerSyncPeer` takes. */
export interface SyncPeerOptions {
  /** The peer's device key (its `instance.deviceId`), `ed25519:<base64>`. */
  readonly peerPubkey: string
  /** The database to keep in sync. */
  readonly treeId: string
  /** Where the peer can be reached; tried in order. */
  readonly addresses: ReadonlyArray<PeerAddressOptions>
  /** Which of a logged-in user's keys proves our read access (the device key when absent). */
  readonly auth?: { readonly keyId: string } | undefined
  readonly displayName?: string | undefined
}

/**
 * The status of a registered peer for one database: the engine's (`state`, `hasLocalData`,
 * `lastError`, `pendingEntries`), with its times as Dates.
 */
export interface PeerStatus extends Omit<EnginePeerStatus, "lastSync" | "retryAt"> {
  /** When the last sync with the peer succeeded. */
  readonly lastSync?: Date | undefined
  /** When the next retry is due, while in backoff. */
  readonly retryAt?: Date | undefined
}

/** What `flush` did: peers whose queued work was delivered, and peers that failed again. */
export type { FlushReport }

/** A registered peer for one database: its status, changes, addresses. */
export class SyncHandle {
  /** @internal */
  constructor(private readonly runner: Runner, private readonly handle: EngineHandle) {}

  /** The peer's device key. */
  get peerPubkey(): string {
    return this.handle.peerPubkey
  }

  /** The database. */
  get treeId(): string {
    return this.handle.treeId
  }

  /** The current status. */
  status(): Promise<PeerStatus> {
    return this.runner.run(Effect.map(this.handle.status, toStatus))
  }

  /**
   * Call `listener` with the current status and on every change, until the pair is unregistered or the
   * instance closes (its last call then gives the idle status); returns the function that stops it.
   * A listener that throws is still called on the next change (as `onWrite`'s).
   */
  subscribe(listener: (status: PeerStatus) => void): () => void {
    if (typeof listener !== "function") throw new InvalidArgument("subscribe expects a function")
    return this.runner.fork(
      Stream.runForEach(this.handle.changes, (s) =>
        Effect.sync(() => {
          try {
            listener(toStatus(s))
          } catch {
            // a listener's own failure is its business; the next change still arrives
          }
        }))
    )
  }

  /** Add an address to try for this peer (persisted); failed work is tried again at once. */
  addAddress(address: PeerAddressOptions): Promise<void> {
    return this.runner.attempt(() => this.runner.run(this.handle.addAddress(checkAddress(address))))
  }

  /** Resolves once a sync of the database with this peer has succeeded. */
  waitForInitialSync(): Promise<void> {
    return this.runner.run(this.handle.waitForInitialSync)
  }
}

/** The engine's status with its epoch-ms times as Dates (every other field as it is). */
const toStatus = ({ lastSync, retryAt, ...rest }: EnginePeerStatus): PeerStatus => ({
  ...rest,
  ...(lastSync !== undefined ? { lastSync: new Date(lastSync) } : {}),
  ...(retryAt !== undefined ? { retryAt: new Date(retryAt) } : {})
})

const checkAddress = (a: PeerAddressOptions): Address => {
  if (typeof a !== "object" || a === null) throw new InvalidArgument("an address is { transportType, address }")
  const transport_type = checkString(a.transportType, "an address needs a transportType such as \"http\"")
  const address = checkString(a.address, "an address needs an address such as \"127.0.0.1:3000\"")
  // an address its transport cannot read (an http one not host:port, an iroh one without a ticket's
  // form) would only ever show as the peer's lastError; the engine refuses it too, as InvalidAddress,
  // and here it is the facade's InvalidArgument
  const problem = addressProblem({ transport_type, address })
  if (problem !== undefined) throw new InvalidArgument(problem)
  return { transport_type, address }
}

const checkPeer = (info: SyncPeerOptions) => {
  if (typeof info !== "object" || info === null)
    throw new InvalidArgument("registerSyncPeer expects { peerPubkey, treeId, addresses, auth?, displayName? }")
  if (!Array.isArray(info.addresses)) throw new InvalidArgument("registerSyncPeer expects addresses: [{ transportType, address }]")
  if (info.auth !== undefined && info.auth !== null && typeof info.auth.keyId !== "string")
    throw new InvalidArgument("registerSyncPeer auth is { keyId } or undefined")
  return {
    // a peer is synced with only if it proves this key, so anything else could never sync
    peerPubkey: checkPubKey(info.peerPubkey, "registerSyncPeer expects the peer's device key (its instance.deviceId) as peerPubkey"),
    treeId: checkString(info.treeId, "registerSyncPeer expects a treeId"),
    addresses: info.addresses.map(checkAddress),
    auth: info.auth === undefined || info.auth === null ? undefined : { keyId: info.auth.keyId },
    displayName: typeof info.displayName === "string" ? info.displayName : undefined
  }
}

/** The signer of a logged-in user's key, by its id. */
const sessionSigner = (keyId: string) =>
  Effect.flatMap(InstanceTag, (instance) =>
    Effect.flatMap(instance.sessionSigner(keyId), (signer) =>
      signer === undefined ? Effect.fail(new KeyNotFound({ key: keyId })) : Effect.succeed(signer)))

const checkIrohOptions = (options: unknown): IrohOptions => {
  const usage = "enableIrohTransport expects { relays?: \"disabled\" | \"n0\", timeoutMs?, clientBind? } or nothing"
  if (typeof options !== "object" || options === null) throw new InvalidArgument(usage)
  const { relays, timeoutMs, clientBind } = options as IrohTransportOptions
  if (relays !== undefined && relays !== "disabled" && relays !== "n0") throw new InvalidArgument(usage)
  if (timeoutMs !== undefined && (typeof timeoutMs !== "number" || !(timeoutMs > 0))) {
    throw new InvalidArgument("enableIrohTransport timeoutMs must be a positive number of milliseconds")
  }
  if (clientBind !== undefined && typeof clientBind !== "string") throw new InvalidArgument(usage)
  return { relays, timeout: timeoutMs, clientBind }
}

const checkTimeouts = (options: unknown): HttpOptions => {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgument("enableHttpTransport expects { timeoutMs?, totalTimeoutMs? } or nothing")
  }
  const milliseconds = (name: "timeoutMs" | "totalTimeoutMs"): number | undefined => {
    const value: unknown = (options as HttpTransportOptions)[name]
    if (value === undefined) return undefined
    if (typeof value !== "number" || !(value > 0)) throw new InvalidArgument(`enableHttpTransport ${name} must be a positive number of milliseconds`)
    return value
  }
  return { timeout: milliseconds("timeoutMs"), totalTimeout: milliseconds("totalTimeoutMs") }
}
