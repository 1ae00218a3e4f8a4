/**
 * The Instance layer: device key, users, their keys and databases, over Storage, Auth and Cipher.
 * Users live in instance metadata (`users/<name>`: root key, salt, user database); a user's keys
 * are rows of the `keys` table in the user's private database, sealed with the password-derived
 * key when the user has a password. Tracking rows live in metadata (`tracking/<db>/<user>`) so
 * the sync server can combine them without logging anyone in.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import { Doc } from "../core/Doc.js"
import * as DatabaseOps from "../database/Database.js"
import type { DatabaseEnv, Signer } from "../database/Database.js"
import * as Settings from "../core/Settings.js"
import { Table, TableView } from "../database/Stores.js"
import * as Transaction from "../database/Transaction.js"
import {
  DatabaseNotFound,
  InvalidPassword,
  KeyNotFound,
  PermissionDenied,
  UserExists,
  UserNotFound
} from "../schema/Errors.js"
import * as Permission from "../schema/Permission.js"
import * as SyncSettings from "../schema/SyncSettings.js"
import { Auth } from "../services/Auth.js"
import { Cipher } from "../services/Cipher.js"
import { Instance, type InstanceShape, type OpenDatabase, type User, type UserKeyInfo } from "../services/Instance.js"
import { Storage } from "../services/Storage.js"

export { Instance } from "../services/Instance.js"

/** How a private key is kept: in the clear (passwordless users) or sealed with the password key. */
type KeyStorage =
  | { readonly type: "unencrypted"; readonly key: string }
  | { readonly type: "encrypted"; readonly algorithm: "aes-256-gcm"; readonly ciphertext: string; readonly nonce: string }

interface UserRecord {
  readonly username: string
  readonly userDatabaseId: string
  readonly rootKeyId: string
  readonly rootKey: KeyStorage
  readonly passwordSalt?: string
  readonly createdAt: number
}

interface KeyRow {
  readonly key_id: string
  readonly storage: KeyStorage
  readonly display_name: string
  readonly created_at: number
  readonly is_default: boolean
}

interface Tracking {
  readonly keyId: string
  readonly syncSettings: SyncSettings.SyncSettings
}

const DEVICE = "instance/device"
const userKey = (name: string) => `users/${name}`
const trackingKey = (db: string, user: string) => `tracking/${db}/${user}`
/** Split a tracking key after the database ID: database IDs never hold "/", usernames may ("a/b"). */
const parseTrackingKey = (key: string): { readonly db: string; readonly user: string } | undefined => {
  const rest = key.slice("tracking/".length)
  const slash = rest.indexOf("/")
  return slash < 0 ? undefined : { db: rest.slice(0, slash), user: rest.slice(slash + 1) }
}

/** Build the Instance service. */
export const make = Effect.gen(function* () {
  const storage = yield* Storage
  const auth = yield* Auth
  const cipher = yield* Cipher
  const context = yield* Effect.context<DatabaseEnv>()
  const run = <A, E>(effect: Effect.Effect<A, E, DatabaseEnv>) => Effect.provide(effect, context)

  const device: Signer = yield* Effect.gen(function* () {
    const saved = yield* storage.getMeta(DEVICE)
    if (Option.isSome(saved)) {
      const secretKey = (JSON.parse(saved.value) as { secretKey: string }).secretKey
      return { secretKey, publicKey: yield* Effect.orDie(auth.publicKeyOf(secretKey)) }
    }
    const pair = yield* auth.generateKey
    yield* storage.setMeta(DEVICE, JSON.stringify({ secretKey: pair.secretKey }))
    return pair
  })

  /** Keys of the users logged in now (the sync engine and `Sync` sign with them). */
  const session = new Map<string, Signer>()
  /** How many live logins each user has: its keys leave the session when the last logs out. */
  const logins = new Map<string, number>()

  const readUser = (username: string) =>
    Effect.flatMap(storage.getMeta(userKey(username)), (o) =>
      Option.isNone(o) ? Effect.fail(new UserNotFound({ username })) : Effect.succeed(JSON.parse(o.value) as UserRecord)
    )

  const seal = (secretKey: string, sealKey: Uint8Array | undefined) =>
    sealKey === undefined
      ? Effect.succeed<KeyStorage>({ type: "unencrypted", key: secretKey })
      : Effect.map(cipher.encrypt(sealKey, new TextEncoder().encode(secretKey)), (s): KeyStorage => ({
          type: "encrypted",
          algorithm: "aes-256-gcm",
          ...s
        }))

  const unseal = (username: string, stored: KeyStorage, sealKey: Uint8Array | undefined) =>
    stored.type === "unencrypted"
      ? Effect.succeed(stored.key)
      : sealKey === undefined
        ? Effect.fail(new InvalidPassword({ username, detail: "this user's keys are encrypted; a password is needed" }))
        : cipher.decrypt(sealKey, stored).pipe(
            Effect.map((bytes) => new TextDecoder().decode(bytes)),
            Effect.catchTag("DecryptionFailed", () => Effect.fail(new InvalidPassword({ username, detail: "wrong password" })))
          )

  /** Usernames being created: a second creation of one while the first runs is UserExists too. */
  const creating = new Set<string>()

  // The check and the claim happen in one synchronous step, so two creations of one name at once
  // (a double click) cannot both pass the check and the second overwrite the first's keys.
  const createUser: InstanceShape["createUser"] = (username, password) =>
    Effect.suspend(() => {
      if (creating.has(username)) return Effect.fail(new UserExists({ username }))
      creating.add(username)
      return Effect.ensuring(createUserNow(username, password), Effect.sync(() => creating.delete(username)))
    })

  const createUserNow: InstanceShape["createUser"] = (username, password) =>
    Effect.gen(function* () {
      if (Option.isSome(yield* storage.getMeta(userKey(username)))) return yield* new UserExists({ username })
      const salt = password === undefined ? undefined : yield* cipher.newSalt
      const sealKey = salt === undefined ? undefined : yield* cipher.deriveKey(password!, salt)
      const root = yield* auth.generateKey
      const userDb = yield* run(DatabaseOps.create({ signer: root, settings: Doc.from({ name: `_user_${username}`, type: "user" }) }))
      const rootKey = yield* seal(root.secretKey, sealKey)
      const createdAt = yield* Clock.currentTimeMillis
      const txn = Transaction.begin(userDb, root)
      yield* new Table<KeyRow>(txn, "keys").set(root.publicKey, {
        key_id: root.publicKey,
        storage: rootKey,
        display_name: "default",
        created_at: createdAt,
        is_default: true
      })
      yield* run(Transaction.commit(txn))
      const record: UserRecord = {
        username,
        userDatabaseId: userDb.rootId,
        rootKeyId: root.publicKey,
        rootKey,
        ...(salt !== undefined ? { passwordSalt: Buffer.from(salt).toString("base64") } : {}),
        createdAt
      }
      // the record is written last: a user half-created by a crash does not exist
      yield* storage.setMeta(userKey(username), JSON.stringify(record))
    })

  const loginUser: InstanceShape["loginUser"] = (username, password) =>
    Effect.gen(function* () {
      const record = yield* readUser(username)
      if (record.passwordSalt === undefined && password !== undefined)
        return yield* new InvalidPassword({ username, detail: "this user has no password; log in without one" })
      if (record.passwordSalt !== undefined && password === undefined)
        return yield* new InvalidPassword({ username, detail: "this user has a password; pass it to loginUser" })
      const sealKey =
        record.passwordSalt === undefined ? undefined : yield* cipher.deriveKey(password!, Buffer.from(record.passwordSalt, "base64"))
      const rootSecret = yield* unseal(username, record.rootKey, sealKey)
      const rootSigner: Signer = { publicKey: record.rootKeyId, secretKey: rootSecret }
      const userDb = { rootId: record.userDatabaseId }
      const rows = yield* run(new TableView<KeyRow>(userDb, "keys").all())
      const keys = new Map<string, { signer: Signer; info: UserKeyInfo }>()
      for (const [, row] of rows) {
        const secretKey = row.key_id === record.rootKeyId ? rootSecret : yield* unseal(username, row.storage, sealKey)
        keys.set(row.key_id, {
          signer: { publicKey: row.key_id, secretKey },
          info: { keyId: row.key_id, displayName: row.display_name, isDefault: row.is_default, createdAt: row.created_at }
        })
      }
      for (const [keyId, k] of keys) session.set(keyId, k.signer)
      logins.set(username, (logins.get(username) ?? 0) + 1)
      const keysRef = yield* Ref.make(keys)
      return makeUser(record, rootSigner, sealKey, keysRef)
    })

  const makeUser = (
    record: UserRecord,
    rootSigner: Signer,
    sealKey: Uint8Array | undefined,
    keysRef: Ref.Ref<Map<string, { signer: Signer; info: UserKeyInfo }>>
  ): User => {
    const username = record.username
    const userDb = { rootId: record.userDatabaseId }
    let loggedOut = false
    /** What a user does with its keys, refused once it has logged out. */
    const active = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | PermissionDenied, R> =>
      Effect.suspend((): Effect.Effect<A, E | PermissionDenied, R> =>
        loggedOut ? Effect.fail(new PermissionDenied({ detail: `user ${username} has logged out; log in again` })) : effect
      )
    const signer = (keyId: string) =>
      Effect.flatMap(Ref.get(keysRef), (keys) => {
        const k = keys.get(keyId)
        return k === undefined ? Effect.fail(new KeyNotFound({ key: keyId })) : Effect.succeed(k.signer)
      })
    const openWith = (databaseId: string) =>
      Effect.gen(function* () {
        const db = yield* DatabaseOps.open(databaseId)
        const state = yield* run(DatabaseOps.authSettings(db))
        const keys = yield* Ref.get(keysRef)
        if (state._tag === "Present") {
          // the user's active key with the most authority (the first in key order could be a Read
          // key beside an unused Write key), or the default key under the global grant when that
          // gives more (as the reference's key discovery ranks them)
          const best = Settings.strongest(state.auth, [...keys.values()].map((k) => k.signer))
          const global = Settings.activeGlobal(state.auth)
          if (global !== undefined && (best === undefined || Permission.compare(global.permissions, best.permission) > 0))
            return { db, signer: { ...rootSigner, global: true } }
          if (best !== undefined) return { db, signer: best.signer }
        }
        return yield* new PermissionDenied({
          detail: `none of ${username}'s keys may access database ${databaseId}; an admin must add one of them (for example ${rootSigner.publicKey})`
        })
      }).pipe(Effect.provide(context))
    const user: User = {
      username,
      userDatabaseId: record.userDatabaseId,
      getDefaultKey: Effect.succeed(record.rootKeyId),
      listKeys: Effect.map(Ref.get(keysRef), (keys) =>
        [...keys.values()].map((k) => k.info).sort((a, b) => Number(b.isDefault) - Number(a.isDefault) || a.createdAt - b.createdAt)
      ),
      addKey: (displayName) =>
        active(Effect.gen(function* () {
          const pair = yield* auth.generateKey
          const createdAt = yield* Clock.currentTimeMillis
          const info: UserKeyInfo = { keyId: pair.publicKey, displayName, isDefault: false, createdAt }
          const txn = Transaction.begin(userDb, rootSigner)
          yield* new Table<KeyRow>(txn, "keys").set(pair.publicKey, {
            key_id: pair.publicKey,
            storage: yield* seal(pair.secretKey, sealKey),
            display_name: displayName,
            created_at: createdAt,
            is_default: false
          })
          yield* run(Transaction.commit(txn))
          yield* Ref.update(keysRef, (keys) => new Map(keys).set(pair.publicKey, { signer: pair, info }))
          session.set(pair.publicKey, pair)
          return pair.publicKey
        })),
      signer,
      createDatabase: (settings, keyId) =>
        active(Effect.gen(function* () {
          const s = yield* signer(keyId)
          const db = yield* run(DatabaseOps.create({ signer: s, settings }))
          yield* storage.setMeta(trackingKey(db.rootId, username), JSON.stringify({ keyId, syncSettings: SyncSettings.disabled } satisfies Tracking))
          return { db, signer: s } satisfies OpenDatabase
        })),
      openDatabase: (databaseId) => active(openWith(databaseId)),
      findDatabase: (name) =>
        active(Effect.gen(function* () {
          const tracked = yield* user.trackedDatabases
          for (const t of tracked) {
            const found = yield* run(DatabaseOps.name({ rootId: t.databaseId })).pipe(Effect.orElseSucceed(() => undefined))
            if (found === name) return yield* openWith(t.databaseId)
          }
          return yield* new DatabaseNotFound({ name })
        })),
      trackDatabase: (tracked) =>
        active(Effect.gen(function* () {
          yield* signer(tracked.keyId)
          yield* storage.setMeta(
            trackingKey(tracked.databaseId, username),
            JSON.stringify({ keyId: tracked.keyId, syncSettings: tracked.syncSettings } satisfies Tracking)
          )
        })),
      untrackDatabase: (databaseId) => active(storage.deleteMeta(trackingKey(databaseId, username))),
      trackedDatabases: Effect.map(storage.listMeta("tracking/"), (rows) =>
        rows.flatMap(([key, value]) => {
          const parsed = parseTrackingKey(key)
          if (parsed === undefined || parsed.user !== username) return []
          const t = JSON.parse(value) as Tracking
          return [{ databaseId: parsed.db, keyId: t.keyId, syncSettings: t.syncSettings }]
        })
      ),
      logout: Effect.gen(function* () {
        if (loggedOut) return
        loggedOut = true
        const keys = yield* Ref.getAndSet(keysRef, new Map())
        const left = (logins.get(username) ?? 1) - 1
        if (left > 0) {
          logins.set(username, left)
          return
        }
        logins.delete(username)
        for (const keyId of keys.keys()) session.delete(keyId)
      })
    }
    return user
  }

  const trackedDatabases = Effect.map(storage.listMeta("tracking/"), (rows) => {
    const byDb = new Map<string, Array<SyncSettings.SyncSettings>>()
    for (const [key, value] of rows) {
      const db = key.split("/")[1]!
      const list = byDb.get(db) ?? []
      list.push((JSON.parse(value) as Tracking).syncSettings)
      byDb.set(db, list)
    }
    return new Map([...byDb].map(([db, all]) => [db, SyncSettings.combine(all)] as const))
  })

  const service: InstanceShape = {
    deviceId: device.publicKey,
    device,
    createUser,
    loginUser,
    listUsers: Effect.map(storage.listMeta("users/"), (rows) => rows.map(([k]) => k.slice("users/".length))),
    sessionSigner: (keyId) => Effect.sync(() => session.get(keyId)),
    sessionSigners: Effect.sync(() => [...session.values()]),
    combinedSyncSettings: (databaseId) =>
      Effect.map(storage.listMeta(`tracking/${databaseId}/`), (rows) =>
        rows.length === 0 ? undefined : SyncSettings.combine(rows.map(([, v]) => (JSON.parse(v) as Tracking).syncSettings))
      ),
    trackedDatabases
  }
  return service
})

/** The Instance layer over Storage, Auth, Cipher, the state cache and write events. */
export const layer = Layer.effect(Instance, make)
