/**
 * The background sync engine (the actors of DESIGN.md §4) as a service: register peers per
 * database, watch their status, and push everything queued now. Implemented in `src/actors/`.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Stream from "effect/Stream"
import type { Address } from "../schema/Address.js"
import type { InvalidAddress, MailboxFull, StorageError } from "../schema/Errors.js"

/** A peer to keep one database in sync with. */
export interface SyncPeerInfo {
  /** The peer's device key, `ed25519:<base64>`. */
  readonly peerPubkey: string
  /** The database to keep in sync. */
  readonly treeId: string
  /** Where the peer can be reached; tried in order. */
  readonly addresses: ReadonlyArray<Address>
  /**
   * Which key proves our read access to the peer (a logged-in user's key id, or the device key's
   * id). When absent, each sync picks as `syncWithPeer` does: the logged-in user's key with the most
   * authority in the database, else the device key.
   */
  readonly auth?: { readonly keyId: string } | undefined
  readonly displayName?: string | undefined
}

/** What a peer actor is doing. */
export type PeerState = "idle" | "syncing" | "backoff" | "failed"

/** The status of one peer (for one database, as seen through a handle). */
export interface PeerStatus {
  readonly state: PeerState
  /** Whether this node holds any entry of the handle's database. */
  readonly hasLocalData: boolean
  /** When the last sync with this peer succeeded (epoch ms, from Effect's Clock). */
  readonly lastSync?: number | undefined
  readonly lastError?: string | undefined
  /** Entries queued for this peer and not yet acknowledged. */
  readonly pendingEntries: number
  /** When the next retry is due while in backoff (epoch ms). */
  readonly retryAt?: number | undefined
}

/** A registered peer, for one database; once unregistered, it reads idle and changes nothing. */
export interface SyncHandle {
  readonly peerPubkey: string
  readonly treeId: string
  /** The current status. */
  readonly status: Effect.Effect<PeerStatus>
  /**
   * Every status change, starting with the current one; it ends with the idle status when the pair
   * is unregistered or the engine closes (a later registration of the pair has changes of its own).
   */
  readonly changes: Stream.Stream<PeerStatus>
  /** Add an address to try for this peer (persisted); one its transport cannot read is refused, as InvalidAddress. */
  readonly addAddress: (address: Address) => Effect.Effect<void, StorageError | InvalidAddress>
  /** Completes once a sync of this database with this peer has succeeded; interrupted if the pair is unregistered or the engine closes first. */
  readonly waitForInitialSync: Effect.Effect<void>
}

/** What a flush did. */
export interface FlushReport {
  /** Peers whose queued work was delivered. */
  readonly delivered: number
  /** Peers whose queued work failed again (it stays queued). */
  readonly failed: number
}

/** The engine's interface. */
export interface SyncEngineShape {
  /**
   * Register (or update) a peer for a database; persisted, so it survives a restart. An address its
   * transport cannot read fails the call with InvalidAddress, and nothing is saved.
   */
  readonly registerSyncPeer: (info: SyncPeerInfo) => Effect.Effect<SyncHandle, StorageError | InvalidAddress>
  /** Stop syncing a database with a peer (every database when `treeId` is absent). */
  readonly unregisterSyncPeer: (peerPubkey: string, treeId?: string) => Effect.Effect<void, StorageError>
  /** A handle on an already registered peer and database. */
  readonly handle: (peerPubkey: string, treeId: string) => Effect.Effect<SyncHandle | undefined>
  /** Push everything queued to every peer now, ignoring backoff; also syncs every tracked pair once. */
  readonly flush: Effect.Effect<FlushReport>
  /** Queue a sync of one database with one peer (what the interval and commits do); a full mailbox is a typed error. */
  readonly requestSync: (peerPubkey: string, treeId: string) => Effect.Effect<void, MailboxFull>
}

/** The engine's tag. */
export class SyncEngine extends Context.Tag("eidetica-ts/SyncEngine")<SyncEngine, SyncEngineShape>() {}
