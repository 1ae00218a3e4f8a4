/**
 * Opening a SQLite file for one storage: the connection, the claim that keeps the file for this
 * process alone (and one open in it), and errors at open that say what is wrong with the file
 * (not a database, read-only, in use) from the SQLite code found among their causes.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { StorageError } from "../../schema/Errors.js"

// WAL is switched on by `claim`, after the locking mode (see there)
export const openClient = (filename: string): Effect.Effect<SqlClient.SqlClient, StorageError, Scope.Scope> =>
  Layer.build(SqliteClient.layer({ filename, disableWAL: true })).pipe(
    Effect.map((ctx) => Context.get(ctx, SqlClient.SqlClient)),
    // better-sqlite3 throws while opening (missing directory, not a database): wrap it.
    Effect.catchAllDefect(Effect.fail),
    Effect.mapError((cause) => openFailure(filename, cause))
  )

/**
 * Take the file for this process alone: SQLite's exclusive locking mode, set before the first WAL
 * access (so the WAL index lives in this process's memory, with no shared-memory file or per-
 * transaction locks), and an exclusive transaction to take the lock now rather than at the first
 * write. This storage keeps the DAG index, sequence numbers and states in memory, so a second
 * process writing the same file would make them stale (its entries unseen, ours refused as
 * duplicate sequence numbers); it is refused at open with a clear error instead. The lock goes
 * with the connection, whether the process closes the storage or dies.
 */
export const claim = (sql: SqlClient.SqlClient, filename: string): Effect.Effect<void, StorageError> =>
  Effect.gen(function*() {
    yield* sql.unsafe("PRAGMA busy_timeout = 250")
    yield* sql.unsafe("PRAGMA locking_mode = EXCLUSIVE")
    yield* sql.unsafe("PRAGMA journal_mode = WAL")
    yield* sql.unsafe("BEGIN EXCLUSIVE")
    yield* sql.unsafe("COMMIT")
  }).pipe(Effect.mapError((cause) => openFailure(filename, cause)))

/**
 * The files this process has open, by absolute path: a second open of one in the same process is
 * refused before SQLite's lock would (whose refusal names another process). Released when the
 * storage's scope closes, after the file is.
 */
const openHere = new Set<string>()

export const holdInProcess = (filename: string): Effect.Effect<void, StorageError, Scope.Scope> => {
  if (filename === "" || filename === ":memory:") return Effect.void
  return Effect.acquireRelease(
    Effect.suspend(() => {
      const key = fileKey(filename)
      if (openHere.has(key)) {
        return Effect.fail(
          new StorageError({
            operation: "open",
            cause: new Error(`${filename} is already open in this process: close the other instance first`)
          })
        )
      }
      openHere.add(key)
      return Effect.succeed(key)
    }),
    (key) => Effect.sync(() => openHere.delete(key))
  )
}

/** A file's absolute path, through its directory's real path when that exists (so symlinked directories match). */
const fileKey = (filename: string): string => {
  const absolute = Path.resolve(filename)
  try {
    return Path.join(Fs.realpathSync(Path.dirname(absolute)), Path.basename(absolute))
  } catch {
    return absolute
  }
}

/**
 * An error at open as a StorageError saying what is wrong with the file, from the SQLite code found
 * in its causes (the original error kept as the cause of the message).
 */
export const openFailure = (filename: string, error: unknown): StorageError => {
  const code = sqliteCode(error)
  const reason = code === undefined ? undefined : reasonOf(filename, code)
  return new StorageError({ operation: "open", cause: reason === undefined ? error : new Error(reason, { cause: error }) })
}

const reasonOf = (filename: string, code: string): string | undefined => {
  if (code === "SQLITE_BUSY" || code.startsWith("SQLITE_BUSY_")) {
    return `${filename} is in use by another process (an eidetica node serving this data directory?): ` +
      "one process at a time may open it; stop that process, or talk to it over sync"
  }
  if (code === "SQLITE_NOTADB") return `${filename} is not an eidetica (SQLite) database file`
  if (
    code === "SQLITE_IOERR_LOCK" || code === "SQLITE_PERM" || code === "SQLITE_CANTOPEN" ||
    code.startsWith("SQLITE_READONLY") || code.startsWith("SQLITE_CANTOPEN_")
  ) {
    return `cannot open, lock or write ${filename} (a read-only file or directory, or not a file?)`
  }
  return undefined
}

/** The innermost SQLite error code (`SQLITE_…`) among an error and the causes it wraps. */
const sqliteCode = (error: unknown): string | undefined => {
  let found: string | undefined
  for (let e = error, depth = 0; typeof e === "object" && e !== null && depth < 8; depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === "string" && code.startsWith("SQLITE_")) found = code
    e = (e as { cause?: unknown }).cause
  }
  return found
}
