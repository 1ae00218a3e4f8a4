/**
 * eidetica-ts/promise: the Promise facade for plain TypeScript. One engine per `Instance`;
 * every method returns a Promise; every rejection is an `EideticaError` with a `_tag`.
 */
/** The CRDT document used for settings: `Doc.from({ name: "notes" })`. */
export { Doc } from "./core/Doc.js"
/** Plain values stored in documents and tables. */
export type { Plain } from "./core/Doc.js"
/** Permissions: `Permission.Admin(n)`, `Permission.Write(n)`, `Permission.Read`. */
export * as Permission from "./schema/Permission.js"
/** Sync settings of tracked databases. */
export type { SyncSettings, TrackedDatabase } from "./schema/SyncSettings.js"
/** Instance, backends and users. */
export { InMemory, Instance, Sqlite, User } from "./facade/Instance.js"
/** Types of the Instance API. */
export type { Backend, KeyInfo, OpenOptions, TrackOptions } from "./facade/Instance.js"
/** Databases, transactions and stores. */
export { Database, DocStore, DocStoreView, SettingsStore, Table, TableView, Transaction } from "./facade/Database.js"
/** Types of the Database API. */
export type { AuthKeyOptions, WriteEvent } from "./facade/Database.js"
/** The sync API. */
export { Sync, SyncHandle } from "./facade/Sync.js"
/** Types of the sync API. */
export type { FlushReport, HttpTransportOptions, IrohTransportOptions, PeerAddressOptions, PeerStatus, SyncPeerOptions, SyncResult } from "./facade/Sync.js"
/** EideticaError and one subclass per `_tag` (each also a type). */
export {
  EideticaError,
  errorClass,
  Defect,
  AbortError,
  InstanceClosed,
  InvalidArgument,
  NotImplemented,
  InvalidEntry,
  StorageError,
  EntryNotFound,
  TreeNotFound,
  AuthenticationRequired,
  PermissionDenied,
  CorruptedAuthConfiguration,
  CryptoError,
  DecryptionFailed,
  MalformedMessage,
  NoTransportEnabled,
  SyncNotEnabled,
  ServerAlreadyRunning,
  ServerNotRunning,
  TransportError,
  InvalidAddress,
  NoTransportForAddress,
  ProtocolVersionMismatch,
  HandshakeFailed,
  PayloadTooLarge,
  BootstrapPending,
  RemoteError,
  KeyNotFound,
  UserNotFound,
  UserExists,
  InvalidPassword,
  DatabaseNotFound,
  MailboxFull,
  InvalidRequestState,
  RequestNotFound,
  InvalidTicket
} from "./facade/Errors.js"
/** Types of the errors API. */
export type { EideticaErrorClass, EideticaErrorOptions } from "./facade/Errors.js"
