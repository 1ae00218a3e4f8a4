/**
 * Storage layers: `layerMemory` (maps and a DagIndex, for tests and embedding) and `layerSqlite`
 * (a SQLite file through @effect/sql-sqlite-node, WAL, versioned migrations; in
 * `internal/StorageSqlite.ts`). Both answer DAG queries from an in-memory DagIndex.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { DagIndex, nodeOf } from "../core/Dag.js"
import { type StoredEntry, subtree } from "../core/Entry.js"
import { StorageError } from "../schema/Errors.js"
import { compareNames } from "../schema/Ids.js"
import { type CachedState, Storage, type StorageShape } from "../services/Storage.js"
import { makeSqlite, type SqliteOptions } from "./internal/StorageSqlite.js"
import { checkBatch, dagQueries } from "./internal/StorageShared.js"

/** The Storage service tag (re-exported beside its layers). */
export { Storage } from "../services/Storage.js"

/** Build an in-memory storage: entries, states and metadata in maps, the DAG in a DagIndex. */
export const makeMemory: Effect.Effect<StorageShape> = Effect.sync(() => {
  const index = new DagIndex()
  const entries = new Map<string, StoredEntry>()
  const states = new Map<string, CachedState>()
  const meta = new Map<string, string>()
  let seq = 0

  const put: StorageShape["put"] = (batch) =>
    Effect.suspend(() => {
      const bad = checkBatch(batch)
      if (bad !== undefined) return Effect.fail(new StorageError({ operation: "put", cause: new Error(bad) }))
      // Synchronous from here on, so the batch is applied as a whole.
      const added: Array<string> = []
      for (const e of batch) {
        if (entries.has(e.id)) continue
        seq++
        entries.set(e.id, e)
        index.add(nodeOf(e, seq))
        added.push(e.id)
      }
      return Effect.succeed(added)
    })

  return Storage.of({
    put,
    get: (id) => Effect.sync(() => Option.fromNullable(entries.get(id))),
    getMany: (ids) =>
      Effect.sync(() => ids.flatMap((id) => {
        const e = entries.get(id)
        return e === undefined ? [] : [e]
      })),
    getBytes: (ids) =>
      Effect.sync(() => ids.flatMap((id) => {
        const e = entries.get(id)
        return e === undefined ? [] : [{ id, bytes: e.bytes }]
      })),
    storeData: (ids, store) =>
      Effect.sync(() => ids.flatMap((id) => {
        const e = entries.get(id)
        return e === undefined ? [] : [{ id, data: subtree(e.entry, store)?.data }]
      })),
    has: (ids) => Effect.sync(() => new Set(ids.filter((id) => entries.has(id)))),
    heights: (ids) => Effect.sync(() => heightsFromIndex(index, ids)),
    roots: Effect.sync(() => index.roots()),
    count: (treeId) => Effect.sync(() => index.count(treeId)),
    ...dagQueries((treeId, f) => Effect.sync(() => f(index, treeId))),
    getCachedState: (treeId, store) => Effect.sync(() => Option.fromNullable(states.get(stateKey(treeId, store)))),
    putCachedState: (treeId, store, state) =>
      Effect.sync(() => {
        states.set(stateKey(treeId, store), { ...state })
      }),
    getMeta: (key) => Effect.sync(() => Option.fromNullable(meta.get(key))),
    setMeta: (key, value) =>
      Effect.sync(() => {
        meta.set(key, value)
      }),
    deleteMeta: (key) =>
      Effect.sync(() => {
        meta.delete(key)
      }),
    listMeta: (prefix) =>
      Effect.sync(() =>
        [...meta.entries()]
          .filter(([k]) => k.startsWith(prefix))
          .sort((a, b) => compareNames(a[0], b[0]))
          .map(([k, v]) => [k, v] as const)
      )
  })
})

/** An in-memory Storage layer; every build is a fresh, empty storage. */
export const layerMemory: Layer.Layer<Storage> = Layer.effect(Storage, makeMemory)

/** Options of the SQLite storage, its schema migrations, and its constructor. */
export { makeSqlite, migrations, type SqliteOptions } from "./internal/StorageSqlite.js"

/** A SQLite Storage layer on a file; closing the layer's scope closes the file. */
export const layerSqlite = (options: SqliteOptions): Layer.Layer<Storage, StorageError> =>
  Layer.scoped(Storage, makeSqlite(options))

// ---------------------------------------------------------------------------------------------
// helpers

const heightsFromIndex = (index: DagIndex, ids: ReadonlyArray<string>): ReadonlyMap<string, number> => {
  const out = new Map<string, number>()
  for (const id of ids) {
    const n = index.get(id)
    if (n !== undefined) out.set(id, n.height)
  }
  return out
}

const stateKey = (treeId: string, store: string): string => `${treeId}\u0000${store}`
