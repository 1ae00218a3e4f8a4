/**
 * PasswordStore: a DocStore or Table whose deltas are sealed with AES-256-GCM under an
 * Argon2id key derived from a password. Entries and storage hold only ciphertext; the wrapped
 * store's type is itself sealed in `_index`, so a relay can forward the store without learning
 * even what kind of store it is. The plaintext state lives only in this process's cache.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import { Doc } from "../core/Doc.js"
import * as Entry from "../core/Entry.js"
import { type CryptoError, DecryptionFailed, InvalidEntry, type StorageError } from "../schema/Errors.js"
import { Cipher, type CipherShape } from "../services/Cipher.js"
import type { Database, DatabaseEnv } from "./Database.js"
import { encodeDelta, stateOf } from "./StoreState.js"
import { DocStore, DocStoreView, Table, TableView } from "./Stores.js"
import * as Transaction from "./Transaction.js"

/** The type id recorded in `_index` for password-encrypted stores. */
export const TYPE_ID = "encrypted:password:v0"

/** What a PasswordStore wraps. */
export type Wrapped = "docstore:v0" | "table:v0"

/** Errors of opening a PasswordStore: a wrong password is DecryptionFailed. */
export type OpenError = DecryptionFailed | CryptoError | StorageError | InvalidEntry

interface Opened {
  readonly codec: Transaction.StoreCodec
  /** `_index` config to record when the store is new. */
  readonly config?: Doc | undefined
}

/** Open (or create, on first write) an encrypted document store inside a transaction. */
export const docStore = (txn: Transaction.Transaction, name: string, password: string) =>
  Effect.map(openIn(txn, name, password, "docstore:v0"), (codec) => new DocStore(txn, name, codec))

/** Open (or create, on first write) an encrypted table inside a transaction. */
export const table = <T>(txn: Transaction.Transaction, name: string, password: string) =>
  Effect.map(openIn(txn, name, password, "table:v0"), (codec) => new Table<T>(txn, name, codec))

/** A read-only view of an encrypted document store. */
export const docStoreView = (db: Database, name: string, password: string) =>
  Effect.map(openExisting(db, name, password, "docstore:v0"), (o) => new DocStoreView(db, name, o.codec))

/** A read-only view of an encrypted table. */
export const tableView = <T>(db: Database, name: string, password: string) =>
  Effect.map(openExisting(db, name, password, "table:v0"), (o) => new TableView<T>(db, name, o.codec))

const openIn = (
  txn: Transaction.Transaction,
  name: string,
  password: string,
  wrapped: Wrapped
): Effect.Effect<Transaction.StoreCodec, OpenError, DatabaseEnv | Cipher> =>
  Effect.map(open(txn.db, name, password, wrapped), (o) => {
    Transaction.setCodec(txn, name, TYPE_ID, o.codec, o.config)
    return o.codec
  })

const openExisting = (db: Database, name: string, password: string, wrapped: Wrapped) =>
  Effect.flatMap(open(db, name, password, wrapped), (o) =>
    o.config !== undefined ? Effect.fail(new InvalidEntry({ reason: `there is no encrypted store named ${name}` })) : Effect.succeed(o)
  )

const open = (
  db: Database,
  name: string,
  password: string,
  wrapped: Wrapped
): Effect.Effect<Opened, OpenError, DatabaseEnv | Cipher> =>
  Effect.gen(function* () {
    const cipher = yield* Cipher
    const index = yield* stateOf(db.rootId, Entry.INDEX)
    const registration = index.get(name)
    if (registration instanceof Doc && registration.get("type_id") === TYPE_ID) {
      const config = registration.get("config")
      const salt = config instanceof Doc ? config.get("salt") : undefined
      const sealedType = config instanceof Doc ? config.get("sealed_type") : undefined
      if (typeof salt !== "string" || !(sealedType instanceof Doc))
        return yield* new InvalidEntry({ reason: `the _index entry of encrypted store ${name} is malformed` })
      const saltBytes = Encoding.decodeBase64(salt)
      if (Either.isLeft(saltBytes))
        return yield* new InvalidEntry({ reason: `the salt of encrypted store ${name} is not base64` })
      const key = yield* cipher.deriveKey(password, saltBytes.right)
      // a wrong password fails here, before any data is read
      const typeBytes = yield* cipher.decrypt(key, sealedOf(sealedType))
      const inner = new TextDecoder().decode(typeBytes)
      if (inner !== wrapped)
        return yield* new InvalidEntry({ reason: `encrypted store ${name} wraps ${inner}, not ${wrapped}` })
      return { codec: codecOf(cipher, password, salt, key) }
    }
    if (registration !== undefined)
      return yield* new InvalidEntry({ reason: `store ${name} exists and is not a password-encrypted store` })
    const saltBytes = yield* cipher.newSalt
    const salt = Encoding.encodeBase64(saltBytes)
    const key = yield* cipher.deriveKey(password, saltBytes)
    const sealed = yield* cipher.encrypt(key, new TextEncoder().encode(wrapped))
    const config = Doc.from({ algorithm: "aes-256-gcm", kdf: "argon2id", m: 19456, t: 2, p: 1, salt, sealed_type: { ...sealed } })
    return { codec: codecOf(cipher, password, salt, key), config }
  })

const sealedOf = (doc: Doc) => {
  const ciphertext = doc.get("ciphertext")
  const nonce = doc.get("nonce")
  return { ciphertext: typeof ciphertext === "string" ? ciphertext : "", nonce: typeof nonce === "string" ? nonce : "" }
}

/**
 * The codec of a store registered with `salt` (whose key is `key`). Each sealed delta names the salt
 * its key came from: two writers that create the store before seeing each other's registration
 * (two transactions in flight, two devices offline) each seal under their own salt, and `_index`
 * keeps only one; the other's deltas stay readable with the same password, their key derived once
 * per salt. A delta naming no salt was sealed under the registered one.
 */
const codecOf = (cipher: CipherShape, password: string, salt: string, key: Uint8Array): Transaction.StoreCodec => {
  const keys = new Map<string, Uint8Array>([[salt, key]])
  const keyFor = (named: unknown) =>
    Effect.gen(function* () {
      const s = typeof named === "string" ? named : salt
      const known = keys.get(s)
      if (known !== undefined) return known
      const bytes = Encoding.decodeBase64(s)
      if (Either.isLeft(bytes)) return yield* new InvalidEntry({ reason: "the salt of an encrypted delta is not base64" })
      const derived = yield* Effect.mapError(
        cipher.deriveKey(password, bytes.right),
        (e) => new InvalidEntry({ reason: `cannot derive the key of a delta: ${e.message}` })
      )
      keys.set(s, derived)
      return derived
    })
  return {
    id: `password:${salt}`,
    encode: (store, delta) =>
      Effect.flatMap(encodeDelta(store, delta), (plain) =>
        Effect.map(cipher.encrypt(key, plain), (sealed) => Doc.from({ ...sealed, salt }).encode())),
    decode: (data) =>
      Effect.gen(function* () {
        const outer = yield* Effect.try({
          try: () => Doc.decode(data),
          catch: (e) => new InvalidEntry({ reason: `encrypted store data is malformed: ${String(e)}` })
        })
        const plain = yield* cipher.decrypt(yield* keyFor(outer.get("salt")), sealedOf(outer)).pipe(
          Effect.mapError((e) => new InvalidEntry({ reason: `cannot decrypt a delta: ${e.message}` }))
        )
        return yield* Effect.try({
          try: () => Doc.decode(plain),
          catch: (e) => new InvalidEntry({ reason: `decrypted delta is malformed: ${String(e)}` })
        })
      })
  }
}

export { DecryptionFailed }
