/**
 * Databases, transactions and stores of the Promise facade: thin shells over `database/*`, run
 * through the Instance's runtime.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { Doc, type Plain } from "../core/Doc.js"
import * as Entry from "../core/Entry.js"
import * as DatabaseOps from "../database/Database.js"
import * as PasswordStore from "../database/PasswordStore.js"
import { SettingsStore as SettingsStoreOps } from "../database/SettingsStore.js"
import { stateOf } from "../database/StoreState.js"
import * as Stores from "../database/Stores.js"
import * as TransactionOps from "../database/Transaction.js"
import type { AuthSettings } from "../schema/Auth.js"
import type * as Permission from "../schema/Permission.js"
import type { OpenDatabase } from "../services/Instance.js"
import { WriteEvents, type WriteSource } from "../services/WriteEvents.js"
import { checkPermission, checkPubKey, checkString } from "./Check.js"
import { InvalidArgument } from "./Errors.js"
import type { Runner } from "./Runner.js"

/** One stored entry of a database, as `onWrite` listeners see it. */
export interface WriteEvent {
  /** The ID of the stored entry. */
  readonly entryId: string
  /** "local" for commits made here, "remote" for entries received from a peer. */
  readonly source: WriteSource
  /** The database the entry belongs to. */
  readonly databaseId: string
}

/** A database opened by a user: read views, transactions signed with the user's key, write events. */
export class Database {
  /** @internal */
  constructor(private readonly runner: Runner, private readonly opened: OpenDatabase) {}

  /** The database ID (the ID of its root entry). */
  get rootId(): string {
    return this.opened.db.rootId
  }

  /** The public key this database's transactions are signed with. */
  get keyId(): string {
    return this.opened.signer.publicKey
  }

  /** Begin a transaction signed with the user's key. */
  newTransaction(): Promise<Transaction> {
    return this.runner.run(Effect.sync(() => new Transaction(this.runner, TransactionOps.begin(this.opened.db, this.opened.signer))))
  }

  /** A read-only view of a document store's current state. */
  docStore(name: string): Promise<DocStoreView> {
    return this.runner.attempt(() => {
      const store = storeName(name, true)
      return this.runner.run(
        Effect.as(ofType(this.opened.db, store, Stores.DOCSTORE), new DocStoreView(this.runner, new Stores.DocStoreView(this.opened.db, store)))
      )
    })
  }

  /** A read-only view of a table's current state. */
  table<T>(name: string): Promise<TableView<T>> {
    return this.runner.attempt(() => {
      const store = storeName(name, true)
      return this.runner.run(
        Effect.as(ofType(this.opened.db, store, Stores.TABLE), new TableView<T>(this.runner, new Stores.TableView<T>(this.opened.db, store)))
      )
    })
  }

  /**
   * A read-only view of a password-encrypted document store (created by a transaction's
   * `encryptedDocStore`). A wrong password rejects with DecryptionFailed; a store of another kind,
   * or none, with InvalidEntry.
   */
  encryptedDocStore(name: string, password: string): Promise<DocStoreView> {
    return this.runner.attempt(() =>
      this.runner.run(
        Effect.map(PasswordStore.docStoreView(this.opened.db, storeName(name), checkPassword(password)), (view) => new DocStoreView(this.runner, view))
      )
    )
  }

  /** A read-only view of a password-encrypted table (see `encryptedDocStore`). */
  encryptedTable<T>(name: string, password: string): Promise<TableView<T>> {
    return this.runner.attempt(() =>
      this.runner.run(
        Effect.map(PasswordStore.tableView<T>(this.opened.db, storeName(name), checkPassword(password)), (view) => new TableView<T>(this.runner, view))
      )
    )
  }

  /** The database's name from its settings, if set. */
  getName(): Promise<string | undefined> {
    return this.runner.run(DatabaseOps.name(this.opened.db))
  }

  /** The current tips (entry IDs with no children here). */
  tips(): Promise<Array<string>> {
    return this.runner.run(Effect.map(DatabaseOps.tips(this.opened.db), (tips) => [...tips]))
  }

  /**
   * Call `listener` after each entry of this database is stored, local or remote. Returns the
   * function that stops listening. A listener that throws does not stop later events.
   */
  onWrite(listener: (event: WriteEvent) => void): () => void {
    if (typeof listener !== "function") throw new InvalidArgument("onWrite expects a function")
    const databaseId = this.rootId
    return this.runner.fork(
      Effect.scoped(
        Effect.gen(function* () {
          const events = yield* WriteEvents
          const stream = yield* events.subscribe
          yield* Stream.runForEach(
            Stream.filter(stream, (e) => e.treeId === databaseId),
            (e) =>
              Effect.sync(() => {
                for (const entryId of e.entryIds) {
                  try {
                    listener({ entryId, source: e.source, databaseId })
                  } catch {
                    // a listener's own failure is its business; the next event still arrives
                  }
                }
              })
          )
        })
      )
    )
  }
}

/** A transaction: staged changes to any number of stores, committed as one signed entry. */
export class Transaction {
  /** @internal */
  constructor(private readonly runner: Runner, private readonly txn: TransactionOps.Transaction) {}

  /** A document store inside this transaction (reads see staged changes). */
  docStore(name: string): Promise<DocStore> {
    return this.runner.attempt(() => {
      const store = storeName(name)
      return this.runner.run(Effect.as(ofType(this.txn.db, store, Stores.DOCSTORE), new DocStore(this.runner, new Stores.DocStore(this.txn, store))))
    })
  }

  /** A table inside this transaction (reads see staged changes). */
  table<T>(name: string): Promise<Table<T>> {
    return this.runner.attempt(() => {
      const store = storeName(name)
      return this.runner.run(Effect.as(ofType(this.txn.db, store, Stores.TABLE), new Table<T>(this.runner, new Stores.Table<T>(this.txn, store))))
    })
  }

  /**
   * A password-encrypted document store inside this transaction, created by the first commit that
   * writes it. Entries, storage and peers hold only ciphertext (AES-256-GCM under an Argon2id key);
   * the plaintext state lives only in this process. Opening an existing one with a wrong password
   * rejects with DecryptionFailed; the password cannot be recovered or changed.
   */
  encryptedDocStore(name: string, password: string): Promise<DocStore> {
    return this.runner.attempt(() =>
      this.runner.run(
        Effect.map(PasswordStore.docStore(this.txn, storeName(name), checkPassword(password)), (store) => new DocStore(this.runner, store))
      )
    )
  }

  /** A password-encrypted table inside this transaction (see `encryptedDocStore`). */
  encryptedTable<T>(name: string, password: string): Promise<Table<T>> {
    return this.runner.attempt(() =>
      this.runner.run(
        Effect.map(PasswordStore.table<T>(this.txn, storeName(name), checkPassword(password)), (store) => new Table<T>(this.runner, store))
      )
    )
  }

  /** The database settings (name, auth); changing them needs an Admin key. */
  settings(): Promise<SettingsStore> {
    return this.runner.run(Effect.sync(() => new SettingsStore(this.runner, new SettingsStoreOps(this.txn))))
  }

  /** Sign, validate and store the entry; resolves with its ID. Nothing is stored on rejection. */
  commit(): Promise<string> {
    return this.runner.run(badValues(TransactionOps.commit(this.txn)))
  }
}

/** Reads of a document store. */
export class DocStoreView {
  /** @internal */
  constructor(protected readonly runner: Runner, protected readonly store: Stores.DocReader) {}

  /** The value at a top-level key (undefined when absent or deleted). */
  get(key: string): Promise<Plain | undefined> {
    return this.runner.run(badValues(this.store.get(key)))
  }

  /** The value at a dotted path such as "a.b.c". */
  getPath(path: string): Promise<Plain | undefined> {
    return this.runner.run(badValues(this.store.getPath(path)))
  }

  /** The whole store as a plain object. */
  getAll(): Promise<{ [k: string]: Plain }> {
    return this.runner.run(this.store.getAll())
  }
}

/** A document store inside a transaction. */
export class DocStore extends DocStoreView {
  /** @internal */
  constructor(runner: Runner, private readonly writer: Stores.DocStore) {
    super(runner, writer)
  }

  /** Set a top-level key. */
  set(key: string, value: Plain): Promise<void> {
    return this.runner.run(badValues(this.writer.set(key, value)))
  }

  /** Set a dotted path, creating intermediate maps. */
  setPath(path: string, value: Plain): Promise<void> {
    return this.runner.run(badValues(this.writer.setPath(path, value)))
  }

  /** Delete a key (a tombstone that syncs). */
  delete(key: string): Promise<void> {
    return this.runner.run(badValues(this.writer.delete(key)))
  }

  /** Delete a dotted path. */
  deletePath(path: string): Promise<void> {
    return this.runner.run(badValues(this.writer.deletePath(path)))
  }
}

/** Reads of a table. */
export class TableView<T> {
  /** @internal */
  constructor(protected readonly runner: Runner, protected readonly store: Stores.TableReader<T>) {}

  /** One row by id (undefined when absent or deleted). */
  get(id: string): Promise<T | undefined> {
    return this.runner.run(this.store.get(id))
  }

  /** Every row as [id, row]. */
  all(): Promise<Array<[string, T]>> {
    return this.runner.run(this.store.all())
  }

  /** The rows matching a predicate, as [id, row]. */
  search(predicate: (row: T) => boolean): Promise<Array<[string, T]>> {
    if (typeof predicate !== "function") return Promise.reject(new InvalidArgument("search expects a function (row) => boolean"))
    return this.runner.run(this.store.search(predicate))
  }

  /** The number of rows. */
  count(): Promise<number> {
    return this.runner.run(this.store.count())
  }
}

/** A table inside a transaction. */
export class Table<T> extends TableView<T> {
  /** @internal */
  constructor(runner: Runner, private readonly writer: Stores.Table<T>) {
    super(runner, writer)
  }

  /** Insert a row under a new id; resolves with the id. */
  insert(row: T): Promise<string> {
    return this.runner.run(badValues(this.writer.insert(row)))
  }

  /** Replace (or create) the row with this id. */
  set(id: string, row: T): Promise<void> {
    return this.runner.run(badValues(this.writer.set(id, row)))
  }

  /** Delete a row. */
  delete(id: string): Promise<void> {
    return this.runner.run(badValues(this.writer.delete(id)))
  }
}

/** Options of `setAuthKey`. */
export interface AuthKeyOptions {
  readonly permission: Permission.Permission
  readonly name?: string | undefined
}

/** The settings of a database inside a transaction; checked at commit (Admin only). */
export class SettingsStore {
  /** @internal */
  constructor(private readonly runner: Runner, private readonly store: SettingsStoreOps) {}

  /** A top-level setting. */
  get(key: string): Promise<Plain | undefined> {
    return this.runner.run(this.store.get(key))
  }

  /** Every setting as a plain object. */
  getAll(): Promise<{ [k: string]: Plain }> {
    return this.runner.run(this.store.getAll())
  }

  /** The auth section as this transaction sees it. */
  getAuth(): Promise<AuthSettings> {
    return this.runner.run(this.store.auth())
  }

  /** Set the database's name. */
  setName(name: string): Promise<void> {
    return this.runner.attempt(() => this.runner.run(badValues(this.store.setName(checkString(name, "setName expects a non-empty string")))))
  }

  /** Set the global `*` grant, so that every key may sign with this permission and anyone may read. */
  setGlobalPermission(permission: Permission.Permission): Promise<void> {
    return this.runner.attempt(() =>
      this.runner.run(this.store.setGlobalPermission(checkPermission(permission, "setGlobalPermission")))
    )
  }

  /** Remove the global grant. */
  revokeGlobalPermission(): Promise<void> {
    return this.runner.run(this.store.revokeGlobalPermission())
  }

  /** Grant (or change) a key's permission; the key becomes Active. */
  setAuthKey(pubkey: string, options: AuthKeyOptions): Promise<void> {
    return this.runner.attempt(() => {
      const key = checkPubKey(pubkey, "setAuthKey expects a public key")
      if (typeof options !== "object" || options === null) throw new InvalidArgument("setAuthKey expects { permission, name? }")
      const permission = checkPermission(options.permission, "setAuthKey")
      if (options.name !== undefined && typeof options.name !== "string") throw new InvalidArgument("setAuthKey's name must be a string")
      return this.runner.run(this.store.setAuthKey(key, { permission, name: options.name }))
    })
  }

  /** Revoke a key: it stays listed as Revoked and grants nothing to later entries. */
  revokeAuthKey(pubkey: string): Promise<void> {
    return this.runner.attempt(() => this.runner.run(this.store.revokeAuthKey(checkPubKey(pubkey, "revokeAuthKey expects a public key"))))
  }
}

/** Check a store name; reserved (`_…`) stores may be read but not written through the store API. */
const storeName = (name: unknown, readOnly = false): string => {
  if (typeof name !== "string" || name.length === 0) throw new InvalidArgument("a store name must be a non-empty string")
  if (!readOnly && name.startsWith("_"))
    throw new InvalidArgument(`store names starting with "_" are reserved (use settings() for _settings): ${name}`)
  return name
}

const checkPassword = (password: unknown): string => checkString(password, "a store's password must be a non-empty string")

/** How to open a store of each type, for the refusal of opening it as another. */
const openWith = new Map<string, string>([
  [Stores.DOCSTORE, "docStore(name)"],
  [Stores.TABLE, "table(name)"],
  [PasswordStore.TYPE_ID, "encryptedDocStore(name, password) or encryptedTable(name, password)"]
])

/**
 * Refuses to open a store as a type other than the one it is registered with: a table read as a
 * document store shows its rows' JSON text, an encrypted one its ciphertext (and a commit would be
 * refused anyway, see Transaction.commit).
 */
const ofType = (db: DatabaseOps.Database, store: string, wanted: string) =>
  Effect.flatMap(stateOf(db.rootId, Entry.INDEX), (index) => {
    const registration = index.get(store)
    const type = registration instanceof Doc ? registration.get("type_id") : undefined
    return typeof type !== "string" || type === wanted
      ? Effect.void
      : Effect.fail(new InvalidArgument(`store ${store} is a ${type} store, not a ${wanted} store: open it with ${openWith.get(type) ?? "its own store type"}`))
  })

/** Values that are not plain data (functions, class instances, bad paths) reject as InvalidArgument. */
const badValues = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchAllDefect(effect, (defect) =>
    defect instanceof TypeError || defect instanceof RangeError
      ? Effect.fail(new InvalidArgument(defect.message, { cause: defect }))
      : Effect.die(defect)
  )
