/**
 * The Instance and User of the Promise facade. `Instance.open(backend)` builds one engine
 * (`Eidetica.layer`) in its own ManagedRuntime; `close()` disposes it, releasing the storage.
 */
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { Doc } from "../core/Doc.js"
import * as Eidetica from "../layers/Eidetica.js"
import * as Errors from "../schema/Errors.js"
import type { SyncSettings, TrackedDatabase } from "../schema/SyncSettings.js"
import { Instance as InstanceTag, type InstanceShape, type User as UserService, type UserKeyInfo } from "../services/Instance.js"
import { Sync as SyncTag } from "../services/Sync.js"
import { checkString } from "./Check.js"
import { Database } from "./Database.js"
import { fromFailure, InvalidArgument } from "./Errors.js"
import { closedError, Runner } from "./Runner.js"
import { Sync } from "./Sync.js"

/** A backend keeping everything in memory; nothing survives `close()`. */
export class InMemory {
  /** Discriminates backends. */
  readonly kind = "memory" as const
}

/** A backend on an embedded SQLite file: created if absent, reopened if present. */
export class Sqlite {
  /** Discriminates backends. */
  readonly kind = "sqlite" as const
  constructor(readonly path: string) {
    if (typeof path !== "string" || path.length === 0) throw new InvalidArgument("Sqlite expects a file path")
  }
}

/** Where an Instance keeps its data. */
export type Backend = InMemory | Sqlite

/** Options of `Instance.open`. */
export interface OpenOptions {
  /**
   * The most keys and list items of folded store states kept in memory (checkpoints counted); past
   * it the states read least recently are dropped and reloaded when read again. 1,000,000 by default.
   */
  readonly stateCacheSlots?: number | undefined
}

/** A key of a user as `listKeys` gives it. */
export type KeyInfo = UserKeyInfo

/** What `trackDatabase` takes: a database, the user's key for it, and how to sync it. */
export interface TrackOptions {
  readonly databaseId: string
  readonly keyId: string
  readonly syncSettings: SyncSettings
}

/** One local-first database engine: the device key, users and their databases. */
export class Instance {
  private syncHandle: Sync | undefined

  private constructor(private readonly runner: Runner, private readonly service: InstanceShape) {}

  /** Open an instance on a backend (an embedded SQLite file at `./eidetica.db` when none is given). */
  static open(backend: Backend = new Sqlite(Eidetica.defaultFilename), options: OpenOptions = {}): Promise<Instance> {
    if (!(backend instanceof InMemory) && !(backend instanceof Sqlite))
      return Promise.reject(new InvalidArgument("Instance.open expects new InMemory() or new Sqlite(path)"))
    if (typeof options !== "object" || options === null)
      return Promise.reject(new InvalidArgument("Instance.open's options are { stateCacheSlots? } or nothing"))
    const slots = options.stateCacheSlots
    if (slots !== undefined && (!Number.isSafeInteger(slots) || slots < 1))
      return Promise.reject(new InvalidArgument("stateCacheSlots must be a positive integer"))
    const layer = Eidetica.layer(
      backend instanceof InMemory
        ? { storage: "memory", stateCacheSlots: slots }
        : { storage: "sqlite", filename: backend.path, stateCacheSlots: slots }
    )
    const runner = new Runner(ManagedRuntime.make(layer))
    return runner.run(InstanceTag).then(
      (service) => new Instance(runner, service),
      async (error: unknown) => {
        await runner.close().catch(() => undefined)
        throw error
      }
    )
  }

  /** The device public key, `ed25519:<base64>`; the same after a reopen. */
  get deviceId(): string {
    return this.service.deviceId
  }

  /** Enable sync on this instance; calling it again does nothing. */
  enableSync(): Promise<void> {
    return this.runner.run(
      Effect.sync(() => {
        this.syncHandle ??= new Sync(this.runner)
      })
    )
  }

  /** The sync API; throws SyncNotEnabled until `enableSync()` was called, InstanceClosed after `close()`. */
  sync(): Sync {
    if (this.runner.isClosed) throw closedError()
    if (this.syncHandle === undefined) throw fromFailure(new Errors.SyncNotEnabled())
    return this.syncHandle
  }

  /** Create a user; with a password its private keys are stored encrypted. */
  createUser(username: string, password?: string): Promise<void> {
    return this.runner.attempt(() => this.runner.run(this.service.createUser(checkName(username), checkPassword(password))))
  }

  /** Log a user in; a wrong, missing or unexpected password rejects with InvalidPassword. */
  loginUser(username: string, password?: string): Promise<User> {
    return this.runner.attempt(() =>
      this.runner.run(this.service.loginUser(checkName(username), checkPassword(password))).then((user) => new User(this.runner, user))
    )
  }

  /** The names of every user on this instance. */
  listUsers(): Promise<Array<string>> {
    return this.runner.run(Effect.map(this.service.listUsers, (names) => [...names]))
  }

  /** Stop everything and release the storage; reopen the same Sqlite file to continue. */
  close(): Promise<void> {
    this.syncHandle = undefined
    return this.runner.close()
  }
}

/** A logged-in user: keys, and the databases the user creates, opens and tracks. */
export class User {
  /** @internal */
  constructor(private readonly runner: Runner, private readonly service: UserService) {}

  /** The user's name. */
  get username(): string {
    return this.service.username
  }

  /** The default (root) key's public key, `ed25519:<base64>`. */
  getDefaultKey(): Promise<string> {
    return this.runner.run(this.service.getDefaultKey)
  }

  /** Every key of the user, the default first. */
  listKeys(): Promise<Array<KeyInfo>> {
    return this.runner.run(Effect.map(this.service.listKeys, (keys) => [...keys]))
  }

  /** Make a new key with a display name; resolves with its public key. */
  addKey(displayName: string): Promise<string> {
    return this.runner.attempt(() => this.runner.run(this.service.addKey(checkString(displayName, "addKey expects a display name"))))
  }

  /** Create a database with one of this user's keys as Admin(0), e.g. `createDatabase(Doc.from({ name }), key)`. */
  createDatabase(settings: Doc, keyId: string): Promise<Database> {
    return this.runner.attempt(async () => {
      if (!(settings instanceof Doc)) throw new InvalidArgument("createDatabase expects settings made with Doc.from({...})")
      const opened = await this.runner.run(this.service.createDatabase(settings, checkString(keyId, "createDatabase expects a key id")))
      return new Database(this.runner, opened)
    })
  }

  /** Open a database held here with one of this user's keys (or under its global grant). */
  openDatabase(databaseId: string): Promise<Database> {
    return this.runner.attempt(async () => {
      const opened = await this.runner.run(this.service.openDatabase(checkString(databaseId, "openDatabase expects a database id")))
      return new Database(this.runner, opened)
    })
  }

  /** Find one of this user's databases by its name. */
  findDatabase(name: string): Promise<Database> {
    return this.runner.attempt(async () => {
      const opened = await this.runner.run(this.service.findDatabase(checkString(name, "findDatabase expects a name")))
      return new Database(this.runner, opened)
    })
  }

  /** Track a database (or update its tracking) with one of this user's keys and sync settings. */
  trackDatabase(options: TrackOptions): Promise<void> {
    return this.runner.attempt(() => this.runner.run(this.service.trackDatabase(checkTracked(options))))
  }

  /**
   * Share a database (the reference's `share`): enable its sync for this user (tracking it with the
   * default key, synced on commit, when the user does not track it yet) and resolve with a ticket
   * naming it and this node's running servers, for another device's `sync.syncWithTicket`.
   */
  share(databaseId: string): Promise<string> {
    return this.runner.attempt(() => {
      const id = checkString(databaseId, "share expects a database id")
      const service = this.service
      return this.runner.run(
        Effect.gen(function*() {
          const ticket = yield* Effect.flatMap(SyncTag, (sync) => sync.createTicket(id))
          const tracked = (yield* service.trackedDatabases).find((t) => t.databaseId === id)
          const keyId = tracked?.keyId ?? (yield* service.getDefaultKey)
          const syncSettings = tracked?.syncSettings ?? { syncEnabled: true, syncOnCommit: true, properties: {} }
          if (tracked?.syncSettings.syncEnabled !== true) {
            yield* service.trackDatabase({ databaseId: id, keyId, syncSettings: { ...syncSettings, syncEnabled: true } })
          }
          return ticket
        })
      )
    })
  }

  /** Stop tracking a database. */
  untrackDatabase(databaseId: string): Promise<void> {
    return this.runner.attempt(() => this.runner.run(this.service.untrackDatabase(checkString(databaseId, "untrackDatabase expects a database id"))))
  }

  /** The databases this user tracks, with their keys and sync settings. */
  trackedDatabases(): Promise<Array<TrackedDatabase>> {
    return this.runner.run(Effect.map(this.service.trackedDatabases, (all) => [...all]))
  }

  /**
   * End this login: the user's keys leave this object and, once its last login on the instance has
   * ended, the instance (the background sync and `sync()` no longer sign with them). Later calls
   * needing a key reject (PermissionDenied, or KeyNotFound for a key id); databases opened before
   * keep their key, so drop them too. `loginUser` again to continue.
   */
  logout(): Promise<void> {
    return this.runner.run(this.service.logout)
  }

  /** Approve a pending bootstrap request with one of this user's Admin keys. */
  approveBootstrapRequest(sync: Sync, requestId: string, approvingKeyId: string): Promise<void> {
    if (!(sync instanceof Sync)) return Promise.reject(new InvalidArgument("approveBootstrapRequest expects instance.sync() first"))
    return sync.approveBootstrapRequest(this.service, requestId, approvingKeyId)
  }

  /** Reject a pending bootstrap request with one of this user's Admin keys. */
  rejectBootstrapRequest(sync: Sync, requestId: string, approvingKeyId: string): Promise<void> {
    if (!(sync instanceof Sync)) return Promise.reject(new InvalidArgument("rejectBootstrapRequest expects instance.sync() first"))
    return sync.rejectBootstrapRequest(this.service, requestId, approvingKeyId)
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

const checkName = (username: unknown): string => checkString(username, "a username must be a non-empty string")

/** Only `undefined` means "no password"; an empty string is a password. */
const checkPassword = (password: unknown): string | undefined => {
  if (password === undefined) return undefined
  if (typeof password !== "string") throw new InvalidArgument("a password must be a string, or omitted for a passwordless user")
  return password
}

const checkTracked = (options: TrackOptions): TrackedDatabase => {
  if (typeof options !== "object" || options === null) throw new InvalidArgument("trackDatabase expects { databaseId, keyId, syncSettings }")
  const s: unknown = options.syncSettings
  if (typeof s !== "object" || s === null) throw new InvalidArgument("trackDatabase expects syncSettings")
  const settings = s as SyncSettings
  if (typeof settings.syncEnabled !== "boolean" || typeof settings.syncOnCommit !== "boolean")
    throw new InvalidArgument("syncSettings needs syncEnabled and syncOnCommit booleans")
  if (settings.intervalSeconds !== undefined && !(Number.isInteger(settings.intervalSeconds) && settings.intervalSeconds > 0))
    throw new InvalidArgument("syncSettings.intervalSeconds must be a positive integer")
  const properties: unknown = settings.properties
  if (
    properties !== undefined &&
    (typeof properties !== "object" || properties === null || Array.isArray(properties) ||
      !Object.values(properties).every((v) => typeof v === "string"))
  ) throw new InvalidArgument("syncSettings.properties must be an object of strings")
  return {
    databaseId: checkString(options.databaseId, "trackDatabase expects a databaseId"),
    keyId: checkString(options.keyId, "trackDatabase expects a keyId"),
    syncSettings: {
      syncEnabled: settings.syncEnabled,
      syncOnCommit: settings.syncOnCommit,
      ...(settings.intervalSeconds !== undefined ? { intervalSeconds: settings.intervalSeconds } : {}),
      properties: { ...(settings.properties ?? {}) }
    }
  }
}
