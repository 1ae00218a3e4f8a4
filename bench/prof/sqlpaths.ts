// Per-statement cost of the ways to run one query through @effect/sql-sqlite-node.
import * as SqlClient from "@effect/sql/SqlClient"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as Effect from "effect/Effect"
import { rmSync } from "node:fs"
import { performance } from "node:perf_hooks"
rmSync("/tmp/q.db", { force: true }); rmSync("/tmp/q.db-wal", { force: true })
const N = 5000
const time = function* <A, E, R>(label: string, f: (i: number) => Effect.Effect<A, E, R>) {
  for (let i = 0; i < 500; i++) yield* f(i)
  const c0 = process.cpuUsage(); const s = performance.now()
  for (let i = 0; i < N; i++) yield* f(i)
  const c = process.cpuUsage(c0)
  console.log(label.padEnd(28), (((performance.now() - s) * 1000) / N).toFixed(1), "us wall", ((c.user + c.system) / N).toFixed(1), "us cpu")
}
const prog = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`)
  yield* sql.unsafe(`INSERT INTO meta VALUES ('a', 'b')`)
  yield* time("sql template", () => sql`SELECT value FROM meta WHERE key = ${"a"}`)
  yield* time("unsafe.raw", () => sql.unsafe(`SELECT value FROM meta WHERE key = ?`, ["a"]).raw)
  yield* time("template, tracer off", () => Effect.withTracerEnabled(sql`SELECT value FROM meta WHERE key = ${"a"}`, false))
  yield* time("compile only", () => Effect.sync(() => sql`SELECT value FROM meta WHERE key = ${"a"}`.compile()))
  const conn = yield* sql.reserve
  yield* time("reserved execute", () => conn.execute(`SELECT value FROM meta WHERE key = ?`, ["a"], undefined))
  yield* time("reserved executeRaw", () => conn.executeRaw(`SELECT value FROM meta WHERE key = ?`, ["a"]))
  yield* time("reserved executeValues", () => conn.executeValues(`SELECT value FROM meta WHERE key = ?`, ["a"]))
  yield* time("reserved unprepared", () => conn.executeUnprepared(`SELECT value FROM meta WHERE key = ?`, ["a"], undefined))
  yield* time("effect void", () => Effect.void)
})
Effect.runPromise(Effect.scoped(Effect.provide(prog, SqliteClient.layer({ filename: "/tmp/q.db" }))))
