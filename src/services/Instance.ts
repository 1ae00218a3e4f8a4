/**
 * The Instance service: the device key, users (with optional passwords), their keys and their
 * databases. Implemented in `layers/Instance.ts` over Storage, Auth and Cipher.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { Doc } from "../core/Doc.js"
import type { Database, Signer } from "../database/Database.js"
import type {
  CorruptedAuthConfiguration,
  CryptoError,
  DatabaseNotFound,
  InvalidEntry,
  InvalidPassword,
  KeyNotFound,
  PermissionDenied,
  StorageError,
  TreeNotFound,
  UserExists,
  UserNotFound
} from "../schema/Errors.js"
import type { SyncSettings, TrackedDatabase } from "../schema/SyncSettings.js"

/** A key of a user as listed: its public key, display name and whether it is the default. */
export interface UserKeyInfo {
  readonly keyId: string
  readonly displayName: string
  readonly isDefault: boolean
  readonly createdAt: number
}

/** A database opened by a user: the database and the signer the user writes with. */
export interface OpenDatabase {
  readonly db: Database
  readonly signer: Signer
}

/** Errors of user operations that write. */
export type UserWriteError = StorageError | InvalidEntry | CryptoError | CorruptedAuthConfiguration | PermissionDenied

/** A logged-in user. */
export interface User {
  readonly username: string
  /** The user's private database (keys and tracked databases). */
  readonly userDatabaseId: string
  /** The default (root) key's public key. */
  readonly getDefaultKey: Effect.Effect<string>
  /** Every key of the user. */
  readonly listKeys: Effect.Effect<ReadonlyArray<UserKeyInfo>>
  /** Make a new key with a display name; returns its public key. */
  readonly addKey: (displayName: string) => Effect.Effect<string, UserWriteError>
  /** The signer of one of the user's keys (never another user's). */
  readonly signer: (keyId: string) => Effect.Effect<Signer, KeyNotFound>
  /** Create a database with this key as Admin(0); it is tracked with sync off. */
  readonly createDatabase: (settings: Doc, keyId: string) => Effect.Effect<OpenDatabase, UserWriteError | KeyNotFound>
  /** Open a database held here with the user's key that is in its auth, or under the global grant. */
  readonly openDatabase: (databaseId: string) => Effect.Effect<OpenDatabase, TreeNotFound | PermissionDenied | StorageError | InvalidEntry>
  /** Find one of the user's tracked databases by its settings name. */
  readonly findDatabase: (name: string) => Effect.Effect<OpenDatabase, DatabaseNotFound | TreeNotFound | PermissionDenied | StorageError | InvalidEntry>
  /** Track a database (or update its tracking) with a key and sync settings. */
  readonly trackDatabase: (tracked: TrackedDatabase) => Effect.Effect<void, UserWriteError | KeyNotFound>
  /** Stop tracking a database. */
  readonly untrackDatabase: (databaseId: string) => Effect.Effect<void, UserWriteError>
  /** The databases this user tracks. */
  readonly trackedDatabases: Effect.Effect<ReadonlyArray<TrackedDatabase>, StorageError | InvalidEntry>
  /**
   * End this login: its keys leave this object (what needs one then fails: PermissionDenied, or
   * KeyNotFound for a key id) and, once the user's last login on the instance has ended, the
   * instance's session, so neither the sync engine nor `Sync` signs with them any more. Databases
   * opened before keep the key they were opened with: drop them too. Logging in again starts anew.
   */
  readonly logout: Effect.Effect<void>
}

/** The Instance service interface. */
export interface InstanceShape {
  /** The device public key, `ed25519:<base64>`; stable across reopen. */
  readonly deviceId: string
  /** The device signer (signs handshakes and sync requests). */
  readonly device: Signer
  /** Create a user; with a password its private keys are stored encrypted. */
  readonly createUser: (username: string, password?: string) => Effect.Effect<void, UserExists | UserWriteError>
  /** Log a user in; a wrong, missing or unexpected password fails with InvalidPassword. */
  readonly loginUser: (username: string, password?: string) => Effect.Effect<User, UserNotFound | InvalidPassword | StorageError | CryptoError | InvalidEntry>
  /** Names of every user. */
  readonly listUsers: Effect.Effect<ReadonlyArray<string>, StorageError>
  /** Sync settings of a database combined across every user tracking it (OR, OR, MIN, union). */
  readonly combinedSyncSettings: (databaseId: string) => Effect.Effect<SyncSettings | undefined, StorageError>
  /** The signer of a key of a user logged in on this instance (the sync engine signs requests with it). */
  readonly sessionSigner: (keyId: string) => Effect.Effect<Signer | undefined>
  /** Every key of every user logged in on this instance. */
  readonly sessionSigners: Effect.Effect<ReadonlyArray<Signer>>
  /** Every database some user tracks, with its combined settings. */
  readonly trackedDatabases: Effect.Effect<ReadonlyMap<string, SyncSettings>, StorageError>
}

/** The Instance service tag. */
export class Instance extends Context.Tag("eidetica-ts/Instance")<Instance, InstanceShape>() {}
