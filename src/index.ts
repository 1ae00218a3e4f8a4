/**
 * eidetica-ts: the Effect API. Services as namespaces with their Tags and layers, the schemas,
 * the errors, and the Database/Transaction/store modules.
 */
/** Storage: the Tag, `layerMemory` and `layerSqlite({ filename })`. */
export * as Storage from "./layers/Storage.js"
/** Auth: the Tag, `layerNode` (native: libsodium, else node:crypto), `layerNodeCrypto` (node:crypto alone) and `layerNoble` (@noble/ed25519). */
export * as Auth from "./layers/Auth.js"
/** Cipher: the Tag and `layerNode` (Argon2id + AES-256-GCM). */
export * as Cipher from "./layers/Cipher.js"
/** Transport: the Tag, the router, `layerHttp` and `layerIroh`. */
export * as Transport from "./layers/Transport.js"
/** Instance: the Tag and `layer` (users, keys, databases). */
export * as Instance from "./layers/Instance.js"
/** Sync: the Tag and `layer` (transports, the server, syncWithPeer). */
export * as Sync from "./layers/Sync.js"
/** SyncEngine: the Tag and `layer` (the background engine: peer and database actors). */
export * as SyncEngine from "./actors/SyncEngine.js"
/** WriteEvents: the Tag and `layer` (a stream of stored entries). */
export * as WriteEvents from "./services/WriteEvents.js"
/** Eidetica: `layer(options)`, one complete engine. */
export * as Eidetica from "./layers/Eidetica.js"
/** Types of the Instance service (users, keys, opened databases). */
export type { InstanceShape, OpenDatabase, User, UserKeyInfo, UserWriteError } from "./services/Instance.js"
/** Types of the Sync service. */
export type { HttpOptions, PeerAddress, SyncError, SyncOptions, SyncResult, SyncShape } from "./services/Sync.js"

/** Entries: encoding, IDs, signing bytes. */
export * as Entry from "./core/Entry.js"
/** Database tickets: `eidetica:?db=<ID>&pr=<transport>:<address>…`. */
export * as Ticket from "./core/Ticket.js"
/** The Doc/List CRDT: `Doc.from({...})`, `Doc.empty()`. */
export { Deleted, Doc, List } from "./core/Doc.js"
/** Plain values and CRDT values. */
export type { Plain, Value } from "./core/Doc.js"
/** Permissions: `Admin(n)`, `Write(n)`, `Read`. */
export * as Permission from "./schema/Permission.js"
/** Every tagged error. */
export * as Errors from "./schema/Errors.js"
/** Per-user sync settings of tracked databases. */
export * as SyncSettings from "./schema/SyncSettings.js"
/** The sync protocol's messages. */
export * as Protocol from "./schema/Protocol.js"

/** Databases: create, open, tips, settings. */
export * as Database from "./database/Database.js"
/** Transactions: begin and commit one signed entry. */
export * as Transaction from "./database/Transaction.js"
/** DocStore and Table writers and their read views. */
export * as Stores from "./database/Stores.js"
/** The settings view inside a transaction. */
export * as SettingsStore from "./database/SettingsStore.js"
/** Store states: `stateOf`, and the state cache's layers (`layerCache`, `layerCacheWith`) and bound. */
export * as StoreState from "./database/StoreState.js"
/** PasswordStore: DocStore or Table sealed with a password (AES-256-GCM, Argon2id). */
export * as PasswordStore from "./database/PasswordStore.js"
/** Bootstrap requests: list, approve, reject. */
export * as BootstrapRequests from "./database/BootstrapRequests.js"
