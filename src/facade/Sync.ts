/**
 * The sync API of the Promise facade, over the Sync service: transports, the server, and
 * `syncWithPeer`. SEAM: bootstrap requests and approval and iroh are not in the Sync service yet;
 * `registerSyncPeer` and `flush` wait for a layer of `services/SyncEngine.ts` (the actors). Until
 * then they reject with NotImplemented.
 */
import * as Effect from "effect/Effect"
import type { User as UserService } from "../services/Instance.js"
import { Sync as SyncTag, type SyncResult } from "../services/Sync.js"
import type * as Permission from "../schema/Permission.js"
import { InvalidArgument, NotImplemented } from "./Errors.js"
import type { Runner } from "./Runner.js"

/** What one `syncWithPeer` moved. */
export type { SyncResult }

/** Options of `enableHttpTransport`. */
export interface HttpTransportOptions {
  /** How long one request may take, in milliseconds (default 30 000). */
  readonly timeoutMs?: number | undefined
}

/** Transports, the server, and syncing databases with peers. Get it from `instance.sync()`. */
export class Sync {
  /** @internal */
  constructor(private readonly runner: Runner) {}

  /** Enable the HTTP transport; calling it again keeps the first. */
  enableHttpTransport(options: HttpTransportOptions = {}): Promise<void> {
    return this.runner.run(
      Effect.flatMap(SyncTag, (sync) =>
        sync.enableHttpTransport(options.timeoutMs !== undefined ? { timeout: options.timeoutMs } : undefined)
      )
    )
  }

  /** Serve this node's databases on `host:port` (port 0 picks a free port); resolves with the bound address. */
  startServer(bind: string): Promise<string> {
    return this.runner.attempt(() =>
      this.runner.run(Effect.flatMap(SyncTag, (sync) => sync.startServer(checkString(bind, "startServer expects host:port"))))
    )
  }

  /** Stop the running server. */
  stopServer(): Promise<void> {
    return this.runner.run(Effect.flatMap(SyncTag, (sync) => sync.stopServer))
  }

  /** The address the running server is bound to, `"127.0.0.1:<port>"`. */
  getServerAddress(): Promise<string> {
    return this.runner.run(Effect.flatMap(SyncTag, (sync) => sync.getServerAddress))
  }

  /** Sync one database with a peer (bootstrap or incremental, both directions). */
  syncWithPeer(address: string, treeId: string): Promise<SyncResult> {
    return this.runner.attempt(() =>
      this.runner.run(
        Effect.flatMap(SyncTag, (sync) =>
          sync.syncWithPeer(checkString(address, "syncWithPeer expects an address"), checkString(treeId, "syncWithPeer expects a database id"))
        )
      )
    )
  }

  /** Enable the iroh transport. SEAM: not in the Sync service yet. */
  enableIrohTransport(): Promise<void> {
    return notYet("enableIrohTransport")
  }

  /** Bootstrap a database asking for a permission for a key. SEAM: not in the Sync service yet. */
  syncWithPeerForBootstrap(_address: string, _treeId: string, _keyId: string, _permission: Permission.Permission): Promise<void> {
    return notYet("syncWithPeerForBootstrap")
  }

  /** Bootstrap requests waiting for approval. SEAM: not in the Sync service yet. */
  pendingBootstrapRequests(): Promise<Array<never>> {
    return notYet("pendingBootstrapRequests")
  }

  /** Push everything queued now. SEAM: the background engine is not there yet. */
  flush(): Promise<void> {
    return notYet("flush")
  }

  /** Register a peer for background sync. SEAM: the background engine is not there yet. */
  registerSyncPeer(_info: unknown): Promise<never> {
    return notYet("registerSyncPeer")
  }

  /** @internal Approve a bootstrap request for a user. SEAM: not in the Sync service yet. */
  approveBootstrapRequest(_user: UserService, _requestId: string, _keyId: string): Promise<void> {
    return notYet("approveBootstrapRequest")
  }

  /** @internal Reject a bootstrap request for a user. SEAM: not in the Sync service yet. */
  rejectBootstrapRequest(_user: UserService, _requestId: string, _keyId: string): Promise<void> {
    return notYet("rejectBootstrapRequest")
  }
}

const notYet = <A>(what: string): Promise<A> =>
  Promise.reject(new NotImplemented(`${what} is not available in this build of eidetica-ts yet`))

const checkString = (value: unknown, message: string): string => {
  if (typeof value !== "string" || value.length === 0) throw new InvalidArgument(message)
  return value
}
