/**
 * The SQLite storage's private connection. The storage opens its own @effect/sql-sqlite-node client
 * and nothing else uses it, so it reserves the client's one connection for its whole life and runs
 * statements on it directly: no span, no per-statement scope, no acquirer semaphore (a point query
 * costs ~20 µs instead of ~100–150 µs through the `sql` template's execute path). Statements are
 * still built with the client's `sql` template and compiled by it. A session lock serialises every
 * statement against multi-statement transactions, as the client's own semaphore did.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Statement from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"

/** A compiled statement: SQL text and its bound parameters. */
export type Compiled = readonly [sql: string, params: ReadonlyArray<unknown>]

/** A statement to run: built with the client's `sql` template, or already compiled. */
export type Query<A> = Statement.Statement<A> | Compiled

/** The reserved connection of a SQLite storage. */
export interface Session {
  /** The client, for building statements (`sql\`…\``, `sql.insert`, `sql.in`); never execute through it. */
  readonly sql: SqlClient.SqlClient
  /** Run one statement, waiting for any transaction in progress to finish. */
  readonly query: <A extends object>(q: Query<A>) => Effect.Effect<ReadonlyArray<A>, SqlError>
  /** Run one statement without taking the lock (the caller holds it). */
  readonly queryHeld: <A extends object>(q: Query<A>) => Effect.Effect<ReadonlyArray<A>, SqlError>
  /** Run `effect` holding the session lock: no other statement runs until it ends. */
  readonly locked: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Run `effect` inside BEGIN … COMMIT (ROLLBACK on failure); the caller holds the lock. */
  readonly transactionHeld: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>
}

const compile = <A>(q: Query<A>): Compiled => (Array.isArray(q) ? (q as Compiled) : (q as Statement.Statement<A>).compile())

/** Reserve the client's connection for the life of the scope. */
export const reserve = (sql: SqlClient.SqlClient): Effect.Effect<Session, SqlError, Scope.Scope> =>
  Effect.gen(function*() {
    const conn: SqlConnection.Connection = yield* sql.reserve
    const lock = yield* Effect.makeSemaphore(1)
    const locked = lock.withPermits(1)
    const queryHeld = <A extends object>(q: Query<A>): Effect.Effect<ReadonlyArray<A>, SqlError> =>
      Effect.suspend(() => {
        const [text, params] = compile(q)
        return conn.execute(text, params, undefined) as Effect.Effect<ReadonlyArray<A>, SqlError>
      })
    // a failed COMMIT can leave the transaction open: roll back either way (it fails harmlessly if none is open)
    const rollback = Effect.ignore(conn.executeRaw("ROLLBACK", []))
    const transactionHeld = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(
          conn.executeRaw("BEGIN", []),
          Effect.flatMap(Effect.exit(restore(effect)), (exit) =>
            Exit.isSuccess(exit)
              ? Effect.zipRight(Effect.tapError(conn.executeRaw("COMMIT", []), () => rollback), exit)
              : Effect.zipRight(rollback, exit))
        )
      )
    return {
      sql,
      query: (q) => locked(queryHeld(q)),
      queryHeld,
      locked,
      transactionHeld
    }
  })
