/**
 * The SQLite storage: a file through @effect/sql-sqlite-node (WAL, versioned migrations, batched
 * inserts) on a reserved connection. A tree's DAG index is loaded lazily with one query and kept
 * current on every put; decoded entries recently put or read are kept in memory (RecentEntries.ts).
 * Opening and claiming the file, and the errors at open, are SqliteOpen.ts.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { type DagNode, DagIndex, nodeOf } from "../../core/Dag.js"
import { decodeTrusted, type StoredEntry, storeDataOfBytes, subtree } from "../../core/Entry.js"
import { StorageError } from "../../schema/Errors.js"
import { compareIds, compareNames } from "../../schema/Ids.js"
import { type CachedState, Storage, type StorageShape } from "../../services/Storage.js"
import { RecentEntries } from "./RecentEntries.js"
import { claim, holdInProcess, openClient } from "./SqliteOpen.js"
import * as Session from "./SqliteSession.js"
import { checkBatch, chunks, dagQueries } from "./StorageShared.js"

/** Options of the SQLite storage. */
export interface SqliteOptions {
  /** The database file (`:memory:` for a private in-memory database). */
  readonly filename: string
  /**
   * SQLite `synchronous` in WAL mode. "normal" (the default) never corrupts the file and survives
   * a process crash; only an OS crash or power loss may lose the last commits. "full" syncs every commit.
   */
  readonly synchronous?: "normal" | "full" | undefined
}

/**
 * The least string above every string starting with `prefix` (its last UTF-16 unit plus one), in
 * SQLite's binary UTF-8 order; undefined when that unit is a surrogate or U+FFFF, or the prefix is empty.
 */
export const upperBound = (prefix: string): string | undefined => {
  if (prefix.length === 0) return undefined
  const last = prefix.charCodeAt(prefix.length - 1)
  if (last >= 0xd7ff && last <= 0xdfff || last === 0xffff) return undefined
  return prefix.slice(0, -1) + String.fromCharCode(last + 1)
}

/** The schema migrations, in order; migration N brings the schema to version N. */
export const migrations: ReadonlyArray<ReadonlyArray<string>> = [
  [
    // seq is the rowid, so max(seq) and ordered scans are free; id is unique.
    `CREATE TABLE entries (
      seq INTEGER PRIMARY KEY,
      id TEXT NOT NULL UNIQUE,
      tree_id TEXT NOT NULL,
      height INTEGER NOT NULL,
      is_root INTEGER NOT NULL,
      parents TEXT NOT NULL,
      stores TEXT NOT NULL,
      bytes BLOB NOT NULL
    )`,
    `CREATE INDEX entries_tree ON entries (tree_id, seq)`,
    `CREATE INDEX entries_roots ON entries (id) WHERE is_root = 1`,
    `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
    `CREATE TABLE state_cache (
      tree_id TEXT NOT NULL,
      store TEXT NOT NULL,
      state TEXT NOT NULL,
      seq INTEGER NOT NULL,
      max_height INTEGER NOT NULL,
      max_id TEXT NOT NULL,
      PRIMARY KEY (tree_id, store)
    )`
  ]
]

/** Open (creating or migrating) a SQLite storage; the file is closed when the scope closes. */
export const makeSqlite = (options: SqliteOptions): Effect.Effect<StorageShape, StorageError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* holdInProcess(options.filename)
    const client = yield* openClient(options.filename)
    yield* claim(client, options.filename)
    yield* fromSql("open", client.unsafe(`PRAGMA synchronous = ${options.synchronous === "full" ? "FULL" : "NORMAL"}`))
    // checkpoint the WAL every ~40 MB instead of every ~4 MB: each checkpoint costs one disk sync
    // (~17 ms here), which the default spread over ~250 commits
    yield* fromSql("open", client.unsafe(`PRAGMA wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`))
    yield* migrate(client)
    // from here on every statement runs on the reserved connection (see SqliteSession)
    const db = yield* fromSql("open", Session.reserve(client))
    const sql = db.sql

    const index = new DagIndex()
    const loaded = new Set<string>()
    const maxSeq = yield* fromSql("open", db.query(sql<{ s: number | null }>`SELECT max(seq) AS s FROM entries`))
    let seq = maxSeq[0]?.s ?? 0
    // Every tree with entries here: once all are loaded, the index holds every stored entry and an
    // ID it lacks is not stored (a fresh commit's duplicate check then needs no query).
    const trees = new Set(
      (yield* fromSql("open", db.query(sql<{ tree_id: string }>`SELECT DISTINCT tree_id FROM entries`))).map((r) => r.tree_id)
    )
    const complete = () => loaded.size >= trees.size
    // Recently put or read entries, decoded: sync serves fresh entries again soon after they land.
    const recent = new RecentEntries(RECENT_ENTRIES, RECENT_BYTES)
    const remember = (e: StoredEntry) => recent.remember(e)

    /** Load a tree's DAG into the index (caller holds the lock). */
    const ensureLoaded = (treeId: string): Effect.Effect<void, StorageError> =>
      Effect.suspend(() => {
        if (loaded.has(treeId)) return Effect.void
        return fromSql(
          "load tree",
          db.queryHeld(sql<IndexRow>`SELECT id, height, seq, parents, stores FROM entries WHERE tree_id = ${treeId} ORDER BY seq`)
        ).pipe(
          Effect.flatMap((rows) =>
            Effect.try({
              try: () => {
                for (const row of rows) index.add(nodeOfRow(treeId, row))
                loaded.add(treeId)
                trees.add(treeId)
              },
              catch: (cause) => new StorageError({ operation: "load tree", cause })
            })
          )
        )
      })

    const loadTree = (treeId: string): Effect.Effect<void, StorageError> =>
      Effect.suspend(() => (loaded.has(treeId) ? Effect.void : db.locked(ensureLoaded(treeId))))

    const put: StorageShape["put"] = (batch) =>
      Effect.suspend(() => {
        const bad = checkBatch(batch)
        if (bad !== undefined) return Effect.fail(new StorageError({ operation: "put", cause: new Error(bad) }))
        if (batch.length === 0) return Effect.succeed([])
        // (the loops are in plain functions: a generator's optimised code carries its resume points,
        // and compiling this one with its loops inside took ~50 ms of a cold bootstrap)
        return db.locked(
          Effect.gen(function*() {
            for (const treeId of new Set(batch.map((e) => e.treeId))) yield* ensureLoaded(treeId)
            const fresh = freshOf(batch)
            if (fresh.length === 0) return []
            const nodes = fresh.map((e, i) => nodeOf(e, seq + 1 + i))
            yield* fromSql("put", writeRows(fresh.map((e, i) => rowOf(e, nodes[i]!))))
            return committed(fresh, nodes)
          }).pipe(Effect.uninterruptible)
        )
      })

    /** The entries of a batch not stored yet, each once. */
    const freshOf = (batch: ReadonlyArray<StoredEntry>): Array<StoredEntry> => {
      const fresh: Array<StoredEntry> = []
      const inBatch = new Set<string>()
      for (const e of batch) {
        if (index.has(e.id) || inBatch.has(e.id)) continue
        inBatch.add(e.id)
        fresh.push(e)
      }
      return fresh
    }

    /**
     * The INSERT of these rows: statements written out here, not built by the client's `sql.insert`
     * (which compiled a chunk's text and parameters anew each time); one row is a local commit.
     */
    const writeRows = (rows: ReadonlyArray<Row>) =>
      rows.length === 1
        ? db.queryHeld([insertRows(1), rows[0]!])
        : db.transactionHeld(
          Effect.forEach(chunks(rows, INSERT_CHUNK), (chunk) => db.queryHeld([insertRows(chunk.length), chunk.flat()]), {
            discard: true
          })
        )

    /** Committed: the index, the counter and the recent entries follow, with no suspension in between; the IDs stored. */
    const committed = (fresh: ReadonlyArray<StoredEntry>, nodes: ReadonlyArray<DagNode>): Array<string> => {
      for (const n of nodes) index.add(n)
      seq += nodes.length
      const ids: Array<string> = [] // not `map` (see `nodeOf`): the ingest reading them is hot
      for (const e of fresh) {
        remember(e)
        ids.push(e.id)
      }
      return ids
    }

    /** The stored bytes of these IDs not in the recent cache, read in chunked `IN` queries. */
    const selectBytes = (ids: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const out: Array<{ readonly id: string; readonly bytes: Uint8Array }> = []
        for (const chunk of chunks(ids, SELECT_CHUNK)) {
          const rows = yield* fromSql(
            "get",
            db.query(sql<{ id: string; bytes: Uint8Array }>`SELECT id, bytes FROM entries WHERE ${sql.in("id", chunk)}`)
          )
          for (const row of rows) out.push({ id: row.id, bytes: asBytes(row.bytes) })
        }
        return out
      })

    /** Split IDs into those the recent cache holds (mapped by `hit`) and the rest. */
    const fromRecent = <A>(ids: ReadonlyArray<string>, hit: (e: StoredEntry) => A) => {
      const found = new Map<string, A>()
      const rest: Array<string> = []
      for (const id of new Set(ids)) {
        const e = recent.get(id)
        if (e !== undefined) found.set(id, hit(e))
        else rest.push(id)
      }
      return { found, rest }
    }

    const getMany: StorageShape["getMany"] = (ids) =>
      Effect.gen(function*() {
        const { found, rest } = fromRecent(ids, (e) => e)
        for (const row of yield* selectBytes(rest)) {
          const decoded = decodeTrusted(row.bytes, row.id)
          if (Either.isLeft(decoded)) {
            return yield* new StorageError({ operation: "get", cause: new Error(`entry ${row.id}: ${decoded.left}`) })
          }
          found.set(row.id, decoded.right)
          remember(decoded.right)
        }
        return ids.flatMap((id) => {
          const e = found.get(id)
          return e === undefined ? [] : [e]
        })
      })

    const getBytes: StorageShape["getBytes"] = (ids) =>
      Effect.gen(function*() {
        const { found, rest } = fromRecent(ids, (e) => e.bytes)
        for (const row of yield* selectBytes(rest)) found.set(row.id, row.bytes)
        return ids.flatMap((id) => {
          const bytes = found.get(id)
          return bytes === undefined ? [] : [{ id, bytes }]
        })
      })

    // a fold reads a store's data from every entry once: entries not in the recent cache are not
    // decoded whole, and do not push the recent ones out of it
    const storeData: StorageShape["storeData"] = (ids, store) =>
      Effect.gen(function*() {
        const { found, rest } = fromRecent(ids, (e) => subtree(e.entry, store)?.data)
        for (const row of yield* selectBytes(rest)) {
          const data = storeDataOfBytes(row.bytes, store)
          if (Either.isLeft(data)) {
            return yield* new StorageError({ operation: "get", cause: new Error(`entry ${row.id}: ${data.left}`) })
          }
          found.set(row.id, data.right)
        }
        return ids.flatMap((id) => (found.has(id) ? [{ id, data: found.get(id) }] : []))
      })

    const heights: StorageShape["heights"] = (ids) =>
      Effect.gen(function*() {
        const out = new Map<string, number>()
        const rest: Array<string> = []
        for (const id of new Set(ids)) {
          const n = index.get(id)
          if (n !== undefined) out.set(id, n.height)
          else rest.push(id)
        }
        if (complete()) return out
        for (const chunk of chunks(rest, SELECT_CHUNK)) {
          const rows = yield* fromSql(
            "heights",
            db.query(sql<{ id: string; height: number }>`SELECT id, height FROM entries WHERE ${sql.in("id", chunk)}`)
          )
          for (const row of rows) out.set(row.id, row.height)
        }
        return out
      })

    const withIndex = <A>(treeId: string, f: (index: DagIndex, treeId: string) => A): Effect.Effect<A, StorageError> =>
      Effect.zipRight(loadTree(treeId), Effect.sync(() => f(index, treeId)))

    const storage = Storage.of({
      put,
      get: (id) => Effect.map(getMany([id]), (es) => Option.fromNullable(es[0])),
      getMany,
      getBytes,
      storeData,
      has: (ids) => Effect.map(heights(ids), (m) => new Set(m.keys())),
      heights,
      roots: fromSql("roots", db.query(sql<{ id: string }>`SELECT id FROM entries WHERE is_root = 1`)).pipe(
        Effect.map((rows) => rows.map((r) => r.id).sort(compareIds))
      ),
      count: (treeId) =>
        Effect.suspend(() =>
          loaded.has(treeId)
            ? Effect.succeed(index.count(treeId))
            : fromSql("count", db.query(sql<{ n: number }>`SELECT count(*) AS n FROM entries WHERE tree_id = ${treeId}`)).pipe(
              Effect.map((rows) => rows[0]?.n ?? 0)
            )
        ),
      ...dagQueries(withIndex),
      getCachedState: (treeId, store) =>
        fromSql(
          "get cached state",
          db.query(sql<{ state: string; seq: number; max_height: number; max_id: string }>`
            SELECT state, seq, max_height, max_id FROM state_cache WHERE tree_id = ${treeId} AND store = ${store}`)
        ).pipe(
          Effect.map((rows) =>
            Option.map(Option.fromNullable(rows[0]), (r): CachedState => ({
              state: r.state,
              seq: r.seq,
              maxHeight: r.max_height,
              maxId: r.max_id
            }))
          )
        ),
      putCachedState: (treeId, store, state) =>
        fromSql(
          "put cached state",
          db.query(sql`INSERT INTO state_cache ${
            sql.insert({
              tree_id: treeId,
              store,
              state: state.state,
              seq: state.seq,
              max_height: state.maxHeight,
              max_id: state.maxId
            })
          } ON CONFLICT (tree_id, store) DO UPDATE SET state = excluded.state, seq = excluded.seq,
            max_height = excluded.max_height, max_id = excluded.max_id`)
        ).pipe(Effect.asVoid),
      getMeta: (key) =>
        fromSql("get meta", db.query(sql<{ value: string }>`SELECT value FROM meta WHERE key = ${key}`)).pipe(
          Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r) => r.value))
        ),
      setMeta: (key, value) =>
        fromSql(
          "set meta",
          db.query(sql`INSERT INTO meta ${sql.insert({ key, value })} ON CONFLICT (key) DO UPDATE SET value = excluded.value`)
        ).pipe(Effect.asVoid),
      deleteMeta: (key) => fromSql("delete meta", db.query(sql`DELETE FROM meta WHERE key = ${key}`)).pipe(Effect.asVoid),
      listMeta: (prefix) =>
        fromSql(
          "list meta",
          db.query(
            upperBound(prefix) === undefined
              ? sql<{ key: string; value: string }>`SELECT key, value FROM meta WHERE substr(key, 1, length(${prefix})) = ${prefix}`
              // a range on the primary key: an index seek, not a scan of every meta row
              : sql<{ key: string; value: string }>`SELECT key, value FROM meta WHERE key >= ${prefix} AND key < ${upperBound(prefix)!}`
          )
        ).pipe(
          Effect.map((rows) =>
            rows
              .filter((r) => r.key.startsWith(prefix))
              .sort((a, b) => compareNames(a.key, b.key))
              .map((r) => [r.key, r.value] as const)
          )
        )
    })
    recentOf.set(storage, recent)
    // a closed storage holds no entries: an app that keeps its Instance after close() keeps nothing
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        recent.clear()
        index.clear()
        loaded.clear()
      })
    )
    return storage
  })

/** Rows per multi-row INSERT: 8 columns × 500 stays far below SQLite's 32766 bound parameters. */
const INSERT_CHUNK = 500

/** IDs per `IN (…)` lookup. */
const SELECT_CHUNK = 500

/** Decoded entries kept in memory by the SQLite layer, at most. */
const RECENT_ENTRIES = 4096

/**
 * Memory the kept entries may hold, at most: an entry counts twice its encoded size (its bytes, and
 * the decoded entry's copy of its data). 4,096 small entries (up to 4 KiB) fit; large ones are
 * kept fewer, and one over an eighth of it (an entry over 2 MiB) is not kept at all.
 */
const RECENT_BYTES = 32 * 1024 * 1024

const recentOf = new WeakMap<StorageShape, RecentEntries>()

/** The recent-entry cache of a SQLite storage (undefined for another storage): for tests and diagnostics. */
export const recentEntriesOf = (storage: StorageShape): Pick<RecentEntries, "size" | "bytes" | "maxEntries" | "maxBytes"> | undefined =>
  recentOf.get(storage)

interface IndexRow {
  readonly id: string
  readonly height: number
  readonly seq: number
  readonly parents: string
  readonly stores: string
}

const fromSql = <A, R>(operation: string, effect: Effect.Effect<A, SqlError, R>): Effect.Effect<A, StorageError, R> =>
  Effect.mapError(effect, (cause) => new StorageError({ operation, cause }))

const migrate = (sql: SqlClient.SqlClient): Effect.Effect<void, StorageError> =>
  Effect.gen(function*() {
    yield* sql`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)`
    const rows = yield* sql<{ v: number | null }>`SELECT max(version) AS v FROM schema_version`
    const current = rows[0]?.v ?? 0
    if (current > migrations.length) {
      return yield* new StorageError({
        operation: "open",
        cause: new Error(`the database has schema version ${current}; this build knows up to ${migrations.length}`)
      })
    }
    for (let version = current + 1; version <= migrations.length; version++) {
      yield* sql.withTransaction(
        Effect.zipRight(
          Effect.forEach(migrations[version - 1]!, (statement) => sql.unsafe(statement), { discard: true }),
          sql`INSERT INTO schema_version ${sql.insert({ version })}`
        )
      )
    }
  }).pipe(Effect.mapError((cause) => cause instanceof StorageError ? cause : new StorageError({ operation: "migrate", cause })))

/** WAL pages between automatic checkpoints (SQLite's default is 1,000). */
const WAL_CHECKPOINT_PAGES = 10_000

/** The INSERT of `n` entry rows (the client prepares each text once and keeps it); a commit's one row and a full chunk's are written once. */
const insertRows = (n: number): string => n === 1 ? INSERT_ONE : n === INSERT_CHUNK ? INSERT_FULL_CHUNK : insertText(n)
const insertText = (n: number): string =>
  `INSERT INTO entries (seq, id, tree_id, height, is_root, parents, stores, bytes) VALUES ${new Array<string>(n).fill("(?, ?, ?, ?, ?, ?, ?, ?)").join(", ")}`
const INSERT_ONE = insertText(1)
const INSERT_FULL_CHUNK = insertText(INSERT_CHUNK)

/** An entry's row: the parameters of one `(?, ?, ?, ?, ?, ?, ?, ?)` of the INSERT, in its column order. */
type Row = readonly [
  seq: number,
  id: string,
  treeId: string,
  height: number,
  isRoot: number,
  parents: string,
  stores: string,
  bytes: Uint8Array
]

const rowOf = (e: StoredEntry, n: DagNode): Row => [
  n.seq,
  e.id,
  e.treeId,
  e.height,
  e.id === e.treeId ? 1 : 0,
  JSON.stringify(n.parents),
  JSON.stringify(n.stores.map((s) => [s.name, s.height, s.parents])),
  e.bytes
]

const nodeOfRow = (treeId: string, row: IndexRow): DagNode => {
  const parents = JSON.parse(row.parents) as Array<string>
  const stores = JSON.parse(row.stores) as Array<[string, number, Array<string>]>
  return {
    id: row.id,
    treeId,
    height: row.height,
    parents,
    stores: stores.map(([name, height, ps]) => ({ name, height, parents: ps })),
    seq: row.seq
  }
}

/** better-sqlite3 returns Buffers; hand out plain Uint8Array views of the same memory. */
const asBytes = (b: Uint8Array): Uint8Array =>
  b.constructor === Uint8Array ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
