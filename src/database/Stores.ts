/**
 * DocStore and Table<T>: writers bound to a transaction and read-only views of the current state.
 * A DocStore is a nested map with dotted paths; a Table keeps rows as JSON text under generated
 * UUIDv4 keys, so concurrent edits of one row resolve whole-row, last writer wins.
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import { checkPlain, Deleted, Doc, List, type Plain, type Value } from "../core/Doc.js"
import type { InvalidEntry, StorageError } from "../schema/Errors.js"
import type { Database, DatabaseEnv } from "./Database.js"
import { type DeltaCodec, plainCodec, stateOf } from "./StoreState.js"
import * as Transaction from "./Transaction.js"

/** The type id recorded in `_index` for document stores. */
export const DOCSTORE = "docstore:v0"
/** The type id recorded in `_index` for tables. */
export const TABLE = "table:v0"

type ReadError = StorageError | InvalidEntry
type Read<A> = Effect.Effect<A, ReadError, DatabaseEnv>

/** A CRDT value as plain JavaScript (nested Docs as objects, Lists as arrays, tombstones as undefined). */
export const toPlain = (value: Value | undefined): Plain | undefined => {
  if (value === undefined || value === Deleted) return undefined
  if (value instanceof Doc || value instanceof List) return value.toJSON()
  return value
}

/** Reads of a document store, from some source of its state. */
export class DocReader {
  constructor(protected readonly state: () => Read<Doc>) {}
  /** The value at a top-level key. */
  get(key: string): Read<Plain | undefined> {
    return Effect.map(this.state(), (d) => toPlain(d.get(key)))
  }
  /** The value at a dotted path. */
  getPath(path: string): Read<Plain | undefined> {
    return Effect.map(this.state(), (d) => toPlain(d.getPath(path)))
  }
  /** The whole store as a plain object. */
  getAll(): Read<{ [k: string]: Plain }> {
    return Effect.map(this.state(), (d) => d.toJSON())
  }
}

/** A read-only view of a document store's current state. */
export class DocStoreView extends DocReader {
  constructor(readonly db: Database, readonly name: string, codec: DeltaCodec = plainCodec) {
    super(() => stateOf(db.rootId, name, codec))
  }
}

/** A document store inside a transaction: reads see staged changes; writes are staged until commit. */
export class DocStore extends DocReader {
  constructor(readonly txn: Transaction.Transaction, readonly name: string, codec: DeltaCodec = plainCodec) {
    super(() => Transaction.read(txn, name, codec))
  }
  private get delta() {
    return Transaction.stage(this.txn, this.name, DOCSTORE)
  }
  /** Set a top-level key. */
  set(key: string, value: Plain): Effect.Effect<void> {
    return Effect.sync(() => void this.delta.set(key, value))
  }
  /** Set a dotted path, creating intermediate maps. */
  setPath(path: string, value: Plain): Effect.Effect<void> {
    return Effect.sync(() => void this.delta.setPath(path, value))
  }
  /** Delete a key (a tombstone that syncs). */
  delete(key: string): Effect.Effect<void> {
    return Effect.sync(() => void this.delta.remove(key))
  }
  /** Delete a dotted path. */
  deletePath(path: string): Effect.Effect<void> {
    return Effect.sync(() => void this.delta.removePath(path))
  }
}

/** Reads of a table. */
export class TableReader<T> {
  constructor(protected readonly state: () => Read<Doc>) {}
  /** One row by id. */
  get(id: string): Read<T | undefined> {
    return Effect.map(this.state(), (d) => parseRow<T>(d.get(id)))
  }
  /** Every row as [id, row], ordered by id. */
  all(): Read<Array<[string, T]>> {
    return Effect.map(this.state(), (d) => rowsOf<T>(d))
  }
  /** Rows matching a predicate, as [id, row]. */
  search(predicate: (row: T) => boolean): Read<Array<[string, T]>> {
    return Effect.map(this.all(), (rows) => rows.filter(([, row]) => predicate(row)))
  }
  /** The number of rows. */
  count(): Read<number> {
    return Effect.map(this.state(), (d) => d.size)
  }
}

/** A read-only view of a table's current state. */
export class TableView<T> extends TableReader<T> {
  constructor(readonly db: Database, readonly name: string, codec: DeltaCodec = plainCodec) {
    super(() => stateOf(db.rootId, name, codec))
  }
}

/** A table inside a transaction. */
export class Table<T> extends TableReader<T> {
  constructor(readonly txn: Transaction.Transaction, readonly name: string, codec: DeltaCodec = plainCodec) {
    super(() => Transaction.read(txn, name, codec))
  }
  private get delta() {
    return Transaction.stage(this.txn, this.name, TABLE)
  }
  /** Insert a row under a new UUIDv4 id (drawn from Effect's Random); returns the id. */
  insert(row: T): Effect.Effect<string> {
    return Effect.flatMap(Effect.sync(() => rowJson(row)), (json) =>
      Effect.map(uuidV4, (id) => {
        this.delta.set(id, json)
        return id
      }))
  }
  /** Replace the row with this id (or create it). */
  set(id: string, row: T): Effect.Effect<void> {
    return Effect.sync(() => void this.delta.set(id, rowJson(row)))
  }
  /** Delete a row. */
  delete(id: string): Effect.Effect<void> {
    return Effect.sync(() => void this.delta.remove(id))
  }
}

/** A row as stored: its JSON, once it is known to be plain data (JSON.stringify would quietly rewrite a Date, a Map, NaN…). */
const rowJson = (row: unknown): string => {
  checkPlain(row, "row")
  return JSON.stringify(row)
}

/** A UUIDv4 string from Effect's Random (deterministic under a seeded Random). */
export const uuidV4: Effect.Effect<string> = Effect.gen(function* () {
  const bytes = new Uint8Array(16)
  for (let i = 0; i < 16; i++) bytes[i] = yield* Random.nextIntBetween(0, 256)
  bytes[6] = (bytes[6]! & 0x0f) | 0x40
  bytes[8] = (bytes[8]! & 0x3f) | 0x80
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
})

const parseRow = <T>(value: Value | undefined): T | undefined => {
  if (typeof value !== "string") return undefined
  try {
    return JSON.parse(value) as T
  } catch {
    return undefined
  }
}

const rowsOf = <T>(doc: Doc): Array<[string, T]> => {
  const out: Array<[string, T]> = []
  for (const id of doc.keys()) {
    const row = parseRow<T>(doc.get(id))
    if (row !== undefined) out.push([id, row])
  }
  return out
}
