/**
 * Databases: create (the signed genesis entry), open, tips, and read views of stores. A database is
 * all entries sharing one root; the root's ID is the database ID.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Doc } from "../core/Doc.js"
import * as Entry from "../core/Entry.js"
import * as Settings from "../core/Settings.js"
import { directKey, globalKey, type SigKey } from "../schema/Auth.js"
import { isPubKey } from "../schema/Ids.js"
import { CorruptedAuthConfiguration, CryptoError as CryptoErrorClass, type CryptoError, type InvalidEntry, type StorageError, TreeNotFound } from "../schema/Errors.js"
import * as Permission from "../schema/Permission.js"
import { Auth } from "../services/Auth.js"
import { Storage } from "../services/Storage.js"
import { type IngestEnv, ingestSignedHere } from "./Ingest.js"
import { StateCache } from "./StateCache.js"
import { encodeDelta, stateOf } from "./StoreState.js"

/** A key that signs entries: its key pair, and whether it signs under the global `*` grant. */
export interface Signer {
  readonly publicKey: string
  readonly secretKey: string
  /** Sign with a global hint (the key is not in auth itself; the `*` grant authorises it). */
  readonly global?: boolean | undefined
}

/**
 * Check once per key that a signer's public key is well formed and its secret key belongs to it
 * (entries and requests signed here are not verified again).
 */
export const checkSigner = (signer: Signer): Effect.Effect<void, CryptoError, Auth> =>
  checkedSigners.get(signer.secretKey) === signer.publicKey
    ? Effect.void
    : !isPubKey(signer.publicKey)
    ? Effect.fail(
        new CryptoErrorClass({
          detail: `invalid public key ${JSON.stringify(clip(signer.publicKey, 80))}: expected ed25519:<base64 of 32 bytes>`
        })
      )
    : Effect.flatMap(Auth, (auth) =>
        Effect.flatMap(auth.publicKeyOf(signer.secretKey), (publicKey) => {
          if (publicKey !== signer.publicKey)
            return Effect.fail(new CryptoErrorClass({ detail: `the secret key does not belong to ${signer.publicKey}` }))
          if (checkedSigners.size > 1_000) checkedSigners.clear()
          checkedSigners.set(signer.secretKey, publicKey)
          return Effect.void
        })
      )

const checkedSigners = new Map<string, string>()
const clip = (text: string, max: number): string => (text.length > max ? `${text.slice(0, max)}…` : text)

/** A handle on one database. */
export interface Database {
  readonly rootId: string
}

/** The signature key an entry names for a signer. */
export const sigKeyOf = (signer: Signer): SigKey =>
  signer.global === true ? globalKey(signer.publicKey) : directKey(signer.publicKey)

/** Options for creating a database. */
export interface CreateOptions {
  /** The creator's key; it becomes Admin(0). */
  readonly signer: Signer
  /** Initial settings (for example `{ name }`); must not contain `auth`. */
  readonly settings?: Doc | undefined
  /** Extra stores written in the genesis entry, by name, as Doc deltas. */
  readonly stores?: ReadonlyMap<string, Doc> | undefined
}

/** Create a database: one signed genesis entry with `_root`, `_settings` (creator Admin(0)) and entropy. */
export const create = (
  options: CreateOptions
): Effect.Effect<Database, CorruptedAuthConfiguration | InvalidEntry | StorageError | CryptoError, IngestEnv> =>
  Effect.gen(function* () {
    const auth = yield* Auth
    yield* checkSigner(options.signer)
    const settings = options.settings?.clone() ?? Doc.empty()
    if (settings.rawEntries().has("auth"))
      return yield* new CorruptedAuthConfiguration({ detail: "initial settings must not contain auth; the creator's key is added as Admin(0)" })
    const keys = Doc.empty()
    keys.set(options.signer.publicKey, Settings.authKeyDoc({ permissions: Permission.Admin(0), status: "Active" }))
    const authDoc = Doc.empty()
    authDoc.set("keys", keys)
    settings.set("auth", authDoc)
    const random = yield* auth.randomBytes(6)
    const entropy = random.reduce((acc, b) => acc * 256 + b, 0)
    const subtrees = [
      { name: Entry.ROOT, parents: [], data: new TextEncoder().encode('""') },
      { name: Entry.SETTINGS, parents: [], data: yield* encodeDelta(Entry.SETTINGS, settings) }
    ]
    for (const [name, doc] of options.stores ?? new Map<string, Doc>()) {
      subtrees.push({ name, parents: [], data: yield* encodeDelta(name, doc) })
    }
    const unsigned = Entry.make({
      parents: [],
      height: 0,
      metadata: Entry.encodeMetadata({ settings_tips: [], entropy }),
      subtrees,
      key: sigKeyOf({ publicKey: options.signer.publicKey, secretKey: options.signer.secretKey })
    })
    const sig = yield* auth.sign(options.signer.secretKey, Entry.signingBytes(unsigned))
    const stored = Entry.stored(Entry.withSignature(unsigned, sig))
    yield* ingestSignedHere([stored])
    return { rootId: stored.id }
  })

/** Open a database held here; TreeNotFound when no root with this ID is stored. */
export const open = (rootId: string): Effect.Effect<Database, TreeNotFound | StorageError, Storage> =>
  Effect.gen(function* () {
    const storage = yield* Storage
    const root = yield* storage.get(rootId)
    if (Option.isNone(root) || !Entry.isRoot(root.value.entry)) return yield* new TreeNotFound({ treeId: rootId })
    return { rootId }
  })

/** The current tips of the database. */
export const tips = (db: Database) => Effect.flatMap(Storage, (s) => s.tips(db.rootId))

/** The current state of a store (shared with the cache: do not mutate). */
export const storeState = (db: Database, store: string) => stateOf(db.rootId, store)

/** The current settings as a Doc (a copy). */
export const settings = (db: Database) => Effect.map(stateOf(db.rootId, Entry.SETTINGS), (d) => d.clone())

/** The current auth settings. */
export const authSettings = (db: Database) =>
  Effect.map(stateOf(db.rootId, Entry.SETTINGS), (d) => Settings.authOf(d))

/** The database's name from its settings, if set. */
export const name = (db: Database) =>
  Effect.map(stateOf(db.rootId, Entry.SETTINGS), (d) => {
    const n = d.get("name")
    return typeof n === "string" ? n : undefined
  })

/** Services a database's operations need. */
export type DatabaseEnv = IngestEnv | StateCache
