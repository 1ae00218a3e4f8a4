import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import Database from "better-sqlite3"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Doc } from "../../src/core/Doc.js"
import * as Entry from "../../src/core/Entry.js"
import { layerCache, StateCache } from "../../src/database/StoreState.js"
import type { StoredEntry } from "../../src/core/Entry.js"
import { openFailure } from "../../src/layers/internal/SqliteOpen.js"
import { recentEntriesOf } from "../../src/layers/internal/StorageSqlite.js"
import { layerMemory, layerSqlite, Storage } from "../../src/layers/Storage.js"
import type { StorageError } from "../../src/schema/Errors.js"
import { compareIds } from "../../src/schema/Ids.js"

import { child, KEY, root } from "../fixtures/Entries.js"

/** A chain of `n` entries after `r`, each touching store "a". */
const chain = (r: StoredEntry, n: number, label = "c"): Array<StoredEntry> => {
  const out: Array<StoredEntry> = []
  let prev = r
  for (let i = 0; i < n; i++) {
    prev = child(r, `${label}${i}`, [prev], { a: { parents: [prev] } })
    out.push(prev)
  }
  return out
}

/** Entries compared by value: the byte type (Buffer or Uint8Array) is not part of the contract. */
const plain = (e: StoredEntry) => ({ ...e, bytes: Array.from(e.bytes) })

/** The innermost SQLite error code among an error's causes. */
const innermostCode = (error: unknown): string | undefined => {
  let code: string | undefined
  for (let e = error; typeof e === "object" && e !== null; e = (e as { cause?: unknown }).cause) {
    const c = (e as { code?: unknown }).code
    if (typeof c === "string") code = c
  }
  return code
}

const sortedIds = (...es: ReadonlyArray<StoredEntry>) => es.map((e) => e.id).sort(compareIds)
const byHeight = (...es: ReadonlyArray<StoredEntry>) =>
  [...es].sort((a, b) => a.height - b.height || compareIds(a.id, b.id)).map((e) => e.id)

const r = root("r", ["a"])
const e1 = child(r, "e1", [r], { a: { parents: [r] } })
const e2 = child(r, "e2", [e1], { a: { parents: [e1] } })
const e3 = child(r, "e3", [e2], { a: { parents: [e2] } })
const T = r.id

/** A temporary directory, removed when the scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "eidetica-storage-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** A SQLite storage on a fresh temporary file. */
const sqliteTemp: Layer.Layer<Storage, StorageError> = Layer.unwrapScoped(
  Effect.map(tempDir, (dir) => layerSqlite({ filename: path.join(dir, "db.sqlite") }))
)

/** The Storage contract: every implementation must pass it unchanged. */
const contract = (name: string, makeLayer: () => Layer.Layer<Storage, StorageError>) =>
  describe(`Storage contract: ${name}`, () => {
    const test = (title: string, body: Effect.Effect<void, StorageError, Storage>) =>
      it.scoped(title, () => Effect.provide(body, makeLayer()))

    test(
      "put, get, getMany, has and heights",
      Effect.gen(function*() {
        const s = yield* Storage
        expect(yield* s.put([r, e1, e2])).toEqual([r.id, e1.id, e2.id])
        expect(Option.map(yield* s.get(e1.id), plain)).toEqual(Option.some(plain(e1)))
        expect(yield* s.get(e3.id)).toEqual(Option.none())
        expect((yield* s.getMany([e2.id, e3.id, r.id])).map(plain)).toEqual([e2, r].map(plain))
        expect(yield* s.getMany([])).toEqual([])
        expect(yield* s.getBytes([e2.id, e3.id, r.id])).toEqual([{ id: e2.id, bytes: e2.bytes }, { id: r.id, bytes: r.bytes }])
        expect(yield* s.has([e1.id, e3.id, r.id])).toEqual(new Set([e1.id, r.id]))
        expect(yield* s.storeData([e2.id, e3.id, r.id], "a")).toEqual(
          [e2, r].map((e) => ({ id: e.id, data: Entry.subtree(e.entry, "a")!.data }))
        )
        expect(yield* s.storeData([e1.id], "none")).toEqual([{ id: e1.id, data: undefined }])
        expect(yield* s.heights([e2.id, e3.id, r.id])).toEqual(new Map([[e2.id, 2], [r.id, 0]]))
        expect(yield* s.count(T)).toBe(3)
        expect(yield* s.count(e1.id)).toBe(0)
        expect(yield* s.roots).toEqual([T])
        const got = yield* s.get(e2.id)
        expect(Option.map(got, (e) => Entry.idOfBytes(e.bytes))).toEqual(Option.some(e2.id))
      })
    )

    test(
      "put skips entries already stored and duplicates within a batch",
      Effect.gen(function*() {
        const s = yield* Storage
        expect(yield* s.put([r, e1])).toEqual([r.id, e1.id])
        expect(yield* s.put([e1, e2, e2, r])).toEqual([e2.id])
        expect(yield* s.put([e1, e2])).toEqual([])
        expect(yield* s.put([])).toEqual([])
        expect(yield* s.count(T)).toBe(3)
      })
    )

    test(
      "tips and store tips, with children arriving before their parents",
      Effect.gen(function*() {
        const s = yield* Storage
        expect(yield* s.tips(T)).toEqual([])
        for (const e of [e3, e2, e1]) yield* s.put([e])
        expect(yield* s.tips(T)).toEqual([e3.id])
        expect(yield* s.roots).toEqual([])
        yield* s.put([r])
        expect(yield* s.tips(T)).toEqual([e3.id])
        expect(yield* s.storeTips(T, "a")).toEqual([e3.id])
        expect(yield* s.storeTips(T, "_root")).toEqual([r.id])
        expect(yield* s.storeTips(T, "nope")).toEqual([])
        expect(yield* s.roots).toEqual([T])
      })
    )

    test(
      "branches: tips, ancestors, store ancestors, missing and sample",
      Effect.gen(function*() {
        const s = yield* Storage
        const e2a = child(r, "e2a", [e1], { a: { parents: [e1] } })
        const e2b = child(r, "e2b", [e1], { b: { parents: [] } })
        yield* s.put([r, e1, e2a, e2b])
        expect(yield* s.tips(T)).toEqual(sortedIds(e2a, e2b))
        expect(yield* s.storeTips(T, "a")).toEqual([e2a.id])
        expect(yield* s.storeTips(T, "b")).toEqual([e2b.id])
        expect(yield* s.ancestors(T, [e2a.id, e2b.id])).toEqual(byHeight(r, e1, e2a, e2b))
        expect(yield* s.ancestors(T, [e1.id, "bafyunknown"])).toEqual([r.id, e1.id])
        expect(yield* s.storeAncestors(T, "a", [e2a.id])).toEqual([r.id, e1.id, e2a.id])
        expect(yield* s.storeAncestors(T, "a", [e2b.id])).toEqual([r.id, e1.id])
        expect(yield* s.missing(T, [e2a.id])).toEqual([e2b.id])
        expect(yield* s.missing(T, ["bafyunknown"])).toEqual(byHeight(r, e1, e2a, e2b))
        expect(yield* s.missing(T, [e2a.id, e2b.id])).toEqual([])
        expect(yield* s.sample(T)).toEqual([...sortedIds(e2a, e2b), e1.id, r.id])
      })
    )

    test(
      "store entries by (store height, ID); store entries since a seq in insertion order",
      Effect.gen(function*() {
        const s = yield* Storage
        const high = child(r, "high", [r], { b: { parents: [], h: 50 } })
        const low = child(r, "low", [high], { b: { parents: [high], h: 60 } })
        const mid = child(r, "mid", [r], { b: { parents: [], h: 10 } })
        yield* s.put([r])
        yield* s.put([high])
        yield* s.put([low, mid])
        const all = yield* s.storeEntries(T, "b")
        expect(all.map((x) => [x.id, x.height])).toEqual([[mid.id, 10], [high.id, 50], [low.id, 60]])
        const seqOf = new Map(all.map((x) => [x.id, x.seq]))
        expect(seqOf.get(high.id)!).toBeLessThan(seqOf.get(low.id)!)
        expect(seqOf.get(low.id)!).toBeLessThan(seqOf.get(mid.id)!)
        const since = yield* s.storeEntriesSince(T, "b", seqOf.get(high.id)!)
        expect(since.map((x) => x.id)).toEqual([low.id, mid.id])
        expect(yield* s.storeEntriesSince(T, "b", seqOf.get(mid.id)!)).toEqual([])
        expect(yield* s.storeEntriesSince(T, "b", 0)).toHaveLength(3)
        expect(yield* s.storeEntries(T, "nope")).toEqual([])
      })
    )

    test(
      "a batch larger than one insert chunk",
      Effect.gen(function*() {
        const s = yield* Storage
        const many = chain(r, 1200)
        const added = yield* s.put([r, ...many])
        expect(added).toHaveLength(1201)
        expect(yield* s.count(T)).toBe(1201)
        expect(yield* s.tips(T)).toEqual([many[1199]!.id])
        expect(yield* s.missing(T, [many[1197]!.id])).toEqual([many[1198]!.id, many[1199]!.id])
        const got = yield* s.getMany(many.map((e) => e.id))
        expect(got.map((e) => e.id)).toEqual(many.map((e) => e.id))
        const raw = yield* s.getBytes(many.map((e) => e.id))
        expect(raw.map((e) => Buffer.from(e.bytes).equals(Buffer.from(many[raw.indexOf(e)]!.bytes)))).not.toContain(false)
        expect((yield* s.has(many.map((e) => e.id))).size).toBe(1200)
      })
    )

    test(
      "concurrent puts of the same entries store each once",
      Effect.gen(function*() {
        const s = yield* Storage
        const batch = [r, e1, e2, e3]
        const [a, b] = yield* Effect.all([s.put(batch), s.put(batch)], { concurrency: 2 })
        expect([...a, ...b].sort(compareIds)).toEqual(sortedIds(...batch))
        expect(yield* s.count(T)).toBe(4)
      })
    )

    test(
      "cached state round trip",
      Effect.gen(function*() {
        const s = yield* Storage
        expect(yield* s.getCachedState(T, "a")).toEqual(Option.none())
        const state = { state: "{\"x\":1}", seq: 7, maxHeight: 3, maxId: e3.id }
        yield* s.putCachedState(T, "a", state)
        expect(yield* s.getCachedState(T, "a")).toEqual(Option.some(state))
        expect(yield* s.getCachedState(T, "b")).toEqual(Option.none())
        const next = { state: "{\"x\":2}", seq: 9, maxHeight: 4, maxId: e2.id }
        yield* s.putCachedState(T, "a", next)
        expect(yield* s.getCachedState(T, "a")).toEqual(Option.some(next))
      })
    )

    test(
      "metadata get, set, delete and list by prefix",
      Effect.gen(function*() {
        const s = yield* Storage
        expect(yield* s.getMeta("device")).toEqual(Option.none())
        yield* s.setMeta("device", "\"k1\"")
        yield* s.setMeta("device", "\"k2\"")
        yield* s.setMeta("users/bob", "2")
        yield* s.setMeta("users/alice", "1")
        yield* s.setMeta("usersX", "3")
        yield* s.setMeta("peers/x", "4")
        expect(yield* s.getMeta("device")).toEqual(Option.some("\"k2\""))
        expect(yield* s.listMeta("users/")).toEqual([["users/alice", "1"], ["users/bob", "2"]])
        expect(yield* s.listMeta("users")).toEqual([["users/alice", "1"], ["users/bob", "2"], ["usersX", "3"]])
        expect((yield* s.listMeta("")).length).toBe(5)
        yield* s.deleteMeta("users/bob")
        yield* s.deleteMeta("never-set")
        expect(yield* s.getMeta("users/bob")).toEqual(Option.none())
        expect(yield* s.listMeta("users/")).toEqual([["users/alice", "1"]])
        // the prefix's neighbours in byte order, and prefixes ending in characters with no simple successor
        yield* s.setMeta("users0", "5")
        yield* s.setMeta("users.", "6")
        yield* s.setMeta("tag/\u00e9/a", "7")
        yield* s.setMeta("tag/\u00ea", "8")
        yield* s.setMeta("tag/\uffff/b", "9")
        yield* s.setMeta("tag/\ud83d\ude00/c", "10")
        yield* s.setMeta("tag/\ud83d\ude01", "11")
        expect(yield* s.listMeta("users/")).toEqual([["users/alice", "1"]])
        expect(yield* s.listMeta("tag/\u00e9")).toEqual([["tag/\u00e9/a", "7"]])
        expect(yield* s.listMeta("tag/\uffff")).toEqual([["tag/\uffff/b", "9"]])
        expect(yield* s.listMeta("tag/\ud83d\ude00")).toEqual([["tag/\ud83d\ude00/c", "10"]])
      })
    )

    test(
      "a batch that fails stores nothing",
      Effect.gen(function*() {
        const s = yield* Storage
        const malformed = { ...e2, bytes: "not bytes" } as unknown as StoredEntry
        const exit = yield* Effect.exit(s.put([r, e1, malformed]))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(yield* s.has([r.id, e1.id, e2.id])).toEqual(new Set())
        // a malformed store node fails the whole batch with StorageError, not half way as a defect
        for (const subtrees of [[null], [{ name: "a" }], [{ name: "a", parents: [], h: -1 }]]) {
          const bad = { ...e2, entry: { ...e2.entry, subtrees } } as unknown as StoredEntry
          const failed = yield* Effect.either(s.put([r, e1, bad]))
          expect(failed._tag === "Left" && failed.left._tag).toBe("StorageError")
          expect(yield* s.has([r.id, e1.id, e2.id])).toEqual(new Set())
        }
        expect(yield* s.tips(T)).toEqual([])
        expect(yield* s.count(T)).toBe(0)
        expect(yield* s.put([r, e1])).toEqual([r.id, e1.id])
        expect(yield* s.tips(T)).toEqual([e1.id])
      })
    )
  })

contract("memory", () => layerMemory)
contract("sqlite", () => sqliteTemp)

describe("Storage: sqlite only", () => {
  /** Run SQL on the file directly, beside (or between) storage layers. */
  const rawSql = (filename: string, statement: string) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(
      Effect.provide(SqliteClient.layer({ filename }))
    )

  it.scoped("bytes damaged in the file fail a read with StorageError naming the entry", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = path.join(dir, "damaged.sqlite")
      const layer = layerSqlite({ filename })
      yield* Effect.provide(Effect.flatMap(Storage, (s) => s.put([r, e1, e2])), layer)
      yield* rawSql(filename, `UPDATE entries SET bytes = x'ff00' WHERE id = '${e2.id}'`)
      const failures = yield* Effect.gen(function*() {
        const s = yield* Storage
        return [yield* Effect.flip(s.storeData([e1.id, e2.id], "a")), yield* Effect.flip(s.getMany([e2.id]))]
      }).pipe(Effect.provide(layer))
      for (const failure of failures) {
        expect(failure._tag).toBe("StorageError")
        expect(String((failure.cause as Error).message)).toContain(e2.id)
      }
    }))

  it.scoped("a reopened file finds entries, tips, metadata, cached states; seq keeps increasing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = path.join(dir, "reopen.sqlite")
      const layer = layerSqlite({ filename })
      const before = yield* Effect.gen(function*() {
        const s = yield* Storage
        yield* s.put([r, e1])
        yield* s.put([e2])
        yield* s.setMeta("device", "\"key\"")
        yield* s.putCachedState(T, "a", { state: "{}", seq: 3, maxHeight: 2, maxId: e2.id })
        return yield* s.storeEntries(T, "a")
      }).pipe(Effect.provide(layer))
      const maxSeq = Math.max(...before.map((x) => x.seq))
      // Closing the layer closed the file: SQLite folds the WAL back in and removes it.
      expect(fs.existsSync(`${filename}-wal`)).toBe(false)

      yield* Effect.gen(function*() {
        const s = yield* Storage
        expect(yield* s.count(T)).toBe(3)
        expect(yield* s.roots).toEqual([T])
        expect(Option.map(yield* s.get(e2.id), plain)).toEqual(Option.some(plain(e2)))
        expect((yield* s.getMany([e1.id, r.id, e3.id])).map(plain)).toEqual([e1, r].map(plain))
        // read from the file's bytes (nothing is in the recent cache of a fresh open)
        expect(yield* s.storeData([e2.id, e3.id, r.id], "a")).toEqual(
          [e2, r].map((e) => ({ id: e.id, data: Entry.subtree(e.entry, "a")!.data }))
        )
        expect(yield* s.tips(T)).toEqual([e2.id])
        expect(yield* s.storeTips(T, "a")).toEqual([e2.id])
        expect(yield* s.storeEntries(T, "a")).toEqual(before)
        expect(yield* s.getMeta("device")).toEqual(Option.some("\"key\""))
        expect(yield* s.getCachedState(T, "a")).toEqual(
          Option.some({ state: "{}", seq: 3, maxHeight: 2, maxId: e2.id })
        )
        expect(yield* s.put([e1, e2, e3])).toEqual([e3.id])
        const since = yield* s.storeEntriesSince(T, "a", maxSeq)
        expect(since.map((x) => x.id)).toEqual([e3.id])
        expect(since[0]!.seq).toBeGreaterThan(maxSeq)
        expect(yield* s.tips(T)).toEqual([e3.id])
      }).pipe(Effect.provide(layer))

      // A third open sees the entry put by the second.
      yield* Effect.gen(function*() {
        const s = yield* Storage
        expect(yield* s.tips(T)).toEqual([e3.id])
        expect(yield* s.missing(T, [e1.id])).toEqual([e2.id, e3.id])
      }).pipe(Effect.provide(layer))
    }))

  it.scoped("a reopened file reads each store's data by its exact name, a leading U+FEFF included", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const layer = layerSqlite({ filename: path.join(dir, "mark.sqlite") })
      const marked = Entry.stored(Entry.make({
        parents: [],
        height: 0,
        subtrees: [
          { name: "_root", parents: [], data: new TextEncoder().encode("\"\"") },
          { name: "\uFEFFa", parents: [], data: Uint8Array.of(1) },
          { name: "a", parents: [], data: Uint8Array.of(2) }
        ],
        key: KEY
      }))
      yield* Effect.provide(Effect.flatMap(Storage, (s) => s.put([marked])), layer)
      yield* Effect.gen(function*() {
        const s = yield* Storage
        // a fresh open: read from the file's bytes, not from decoded entries
        for (const store of ["\uFEFFa", "a"]) {
          expect(yield* s.storeData([marked.id], store)).toEqual([{ id: marked.id, data: Entry.subtree(marked.entry, store)!.data }])
        }
        expect(yield* s.storeData([marked.id], "\uFEFF")).toEqual([{ id: marked.id, data: undefined }])
      }).pipe(Effect.provide(layer))
    }))

  it.scoped("a SQL failure in a later chunk rolls the whole batch back and leaves the index alone", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = path.join(dir, "rollback.sqlite")
      const many = chain(r, 700)
      const layer = layerSqlite({ filename })
      yield* Effect.provide(Effect.flatMap(Storage, (s) => s.put([r])), layer)
      // the storage holds the file alone while open: the trigger goes in between two opens
      yield* rawSql(
        filename,
        `CREATE TRIGGER boom BEFORE INSERT ON entries WHEN NEW.id = '${many[650]!.id}' BEGIN SELECT RAISE(ABORT, 'boom'); END`
      )
      yield* Effect.gen(function*() {
        const s = yield* Storage
        const exit = yield* Effect.exit(s.put(many))
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("StorageError")
        expect(yield* s.count(T)).toBe(1)
        expect(yield* s.tips(T)).toEqual([r.id])
        expect((yield* s.has(many.map((e) => e.id))).size).toBe(0)
      }).pipe(Effect.provide(layer))
      yield* rawSql(filename, "DROP TRIGGER boom")
      yield* Effect.gen(function*() {
        const s = yield* Storage
        expect(yield* s.put(many)).toHaveLength(700)
        expect(yield* s.tips(T)).toEqual([many[699]!.id])
      }).pipe(Effect.provide(layer))
    }))

  it.scoped("one open at a time: a second open of the file is refused with a clear StorageError until the first closes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = path.join(dir, "alone.sqlite")
      const layer = layerSqlite({ filename })
      yield* Effect.gen(function*() {
        const s = yield* Storage
        yield* s.put([r, e1])
        // another opener (another process, the CLI beside a serving node) would make this one's
        // in-memory index and sequence numbers stale: it is refused, and this one goes on
        const second = yield* Effect.flip(Effect.scoped(Layer.build(layer)))
        expect(second._tag).toBe("StorageError")
        expect(second.message).toContain(`${filename} is already open in this process: close the other instance first`)
        // the same file by another path (relative, through a `..`) is the same file
        const relative = path.relative(process.cwd(), path.join(dir, "sub", "..", "alone.sqlite"))
        const third = yield* Effect.flip(Effect.scoped(Layer.build(layerSqlite({ filename: relative }))))
        expect(third.message).toContain("is already open in this process")
        expect(yield* s.put([e2])).toEqual([e2.id])
        expect(yield* s.tips(T)).toEqual([e2.id])
      }).pipe(Effect.provide(layer))
      // closed: the next open has it, and finds everything
      yield* Effect.gen(function*() {
        const s = yield* Storage
        expect(yield* s.tips(T)).toEqual([e2.id])
        expect(yield* s.put([e3])).toEqual([e3.id])
      }).pipe(Effect.provide(layer))
    }))

  it.scoped("a file another connection holds locked is refused as in use by another process, and opens once it lets go", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = path.join(dir, "held.sqlite")
      yield* Effect.provide(Effect.flatMap(Storage, (s) => s.put([r])), layerSqlite({ filename }))
      // what another process's storage does: an exclusive lock, held
      const other = new Database(filename)
      other.pragma("locking_mode = EXCLUSIVE")
      other.exec("BEGIN EXCLUSIVE")
      other.exec("COMMIT")
      const refused = yield* Effect.flip(Effect.scoped(Layer.build(layerSqlite({ filename }))))
      expect(refused._tag).toBe("StorageError")
      expect(refused.message).toContain(`${filename} is in use by another process`)
      other.close()
      // the refused open released the file: this process may open it now
      yield* Effect.provide(Effect.flatMap(Storage, (s) => Effect.map(s.count(T), (n) => expect(n).toBe(1))), layerSqlite({ filename }))
    }))

  it.scoped("a file that is not a database, or a directory, is refused saying so, with SQLite's error as the cause", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const garbage = path.join(dir, "garbage.sqlite")
      fs.writeFileSync(garbage, "not a database ".repeat(200))
      // twice: a failed open lets go of the file
      for (let i = 0; i < 2; i++) {
        const failure = yield* Effect.flip(Effect.scoped(Layer.build(layerSqlite({ filename: garbage }))))
        expect(failure.message).toBe(`Storage failed during open: ${garbage} is not an eidetica (SQLite) database file`)
        expect(innermostCode(failure)).toBe("SQLITE_NOTADB")
      }
      const failure = yield* Effect.flip(Effect.scoped(Layer.build(layerSqlite({ filename: dir }))))
      expect(failure.message).toBe(`Storage failed during open: cannot open, lock or write ${dir} (a read-only file or directory, or not a file?)`)
      expect(innermostCode(failure)).toBe("SQLITE_CANTOPEN")
    }))

  it("the SQLite codes of a read-only file or directory name the file (as root, permissions cannot be tested on a file)", () => {
    for (const code of ["SQLITE_IOERR_LOCK", "SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN"]) {
      const sqlite = Object.assign(new Error("disk I/O error"), { code })
      const failure = openFailure("/data/x.db", new Error("Failed to prepare statement", { cause: sqlite }))
      expect(failure.message).toBe("Storage failed during open: cannot open, lock or write /data/x.db (a read-only file or directory, or not a file?)")
      expect(innermostCode(failure)).toBe(code)
    }
    // an error with no SQLite code is kept as it is
    const plainError = new Error("Cannot open database because the directory does not exist")
    expect(openFailure("/data/x.db", plainError).cause).toBe(plainError)
  })

  it.scoped("the recent-entry cache is bounded by memory as well as count; an entry too large for it is not kept", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const s = Context.get(yield* Layer.build(layerSqlite({ filename: path.join(dir, "big.sqlite") })), Storage)
      const cache = recentEntriesOf(s)!
      expect(cache.maxBytes).toBe(32 * 1024 * 1024)
      // ~100 KB entries: without the memory bound, all 400 would be kept (~80 MB counted)
      const big = (label: string) => `${label}:${"x".repeat(50_000)}`
      let prev = r
      yield* s.put([r])
      for (let i = 0; i < 400; i++) {
        prev = child(r, big(`b${i}`), [prev], { a: { parents: [prev] } })
        yield* s.put([prev])
      }
      expect(cache.bytes).toBeLessThanOrEqual(cache.maxBytes)
      expect(cache.bytes).toBeGreaterThan(cache.maxBytes * 0.9)
      expect(cache.size).toBeLessThan(200)
      // the newest are the ones kept: reading them back from the file does not change what is held
      const held = { size: cache.size, bytes: cache.bytes }
      expect((yield* s.getMany([prev.id])).map((e) => e.id)).toEqual([prev.id])
      expect({ size: cache.size, bytes: cache.bytes }).toEqual(held)
      // one entry over an eighth of the budget is stored and read, never kept
      const huge = child(r, `huge:${"y".repeat(1_500_000)}`, [prev], { a: { parents: [prev] } })
      expect(huge.bytes.length).toBeGreaterThan(cache.maxBytes / 16)
      yield* s.put([huge])
      expect((yield* s.getMany([huge.id])).map((e) => e.id)).toEqual([huge.id])
      expect({ size: cache.size, bytes: cache.bytes }).toEqual(held)
      // small entries are kept up to the count, as before
      const small = chain(r, cache.maxEntries + 100, "s")
      for (const e of small) yield* s.put([e])
      expect(cache.size).toBe(cache.maxEntries)
      expect(cache.bytes).toBe(2 * small.slice(-cache.maxEntries).reduce((n, e) => n + e.bytes.length, 0))
    }), 60_000)

  it.scoped("a closed SQLite storage and state cache hold nothing (an app may keep its Instance after close)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const scope = yield* Scope.make()
      const context = yield* Scope.extend(Layer.build(Layer.merge(layerSqlite({ filename: path.join(dir, "closed.sqlite") }), layerCache)), scope)
      const s = Context.get(context, Storage)
      const cache = Context.get(context, StateCache)
      yield* s.put([r])
      for (const e of chain(r, 50, "c")) yield* s.put([e])
      cache.states.set("k", { doc: Doc.empty() } as never)
      expect(recentEntriesOf(s)!.size).toBeGreaterThan(0)
      yield* Scope.close(scope, Exit.void)
      expect(recentEntriesOf(s)!.size).toBe(0)
      expect(recentEntriesOf(s)!.bytes).toBe(0)
      expect(cache.states.size).toBe(0)
    }))

  it.effect("opening a file in a missing directory fails with StorageError", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.scoped(Layer.build(layerSqlite({ filename: path.join(os.tmpdir(), "no-such-dir-eidetica", "x", "db.sqlite") })))
      )
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("StorageError")
    }))
})
