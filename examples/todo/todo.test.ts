/**
 * The todo example across separate runs on one temp SQLite file: in-process runs of `main`, and
 * the real command through tsx.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Instance, Sqlite } from "../../src/promise.js"
import { main, openTodoDatabase, todos } from "./main.js"

const run = async (argv: ReadonlyArray<string>, env: Record<string, string | undefined> = {}) => {
  const out: Array<string> = []
  const err: Array<string> = []
  const code = await main(argv, env, { out: (l) => out.push(l), err: (l) => err.push(l) })
  return { code, out, err }
}

describe("todo example", () => {
  let dir: string
  let file: string
  beforeEach(() => {
    dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eidetica-todo-"))
    file = Path.join(dir, "todo.db")
  })
  afterEach(() => Fs.rmSync(dir, { recursive: true, force: true }))

  it("adds, completes and lists across separate runs", async () => {
    expect(await run(["--db", file, "list"])).toMatchObject({ code: 0, out: [expect.stringContaining("no todos yet")] })
    const milk = await run(["--db", file, "add", "buy milk"])
    expect(milk.code).toBe(0)
    expect(milk.out[0]).toMatch(/^added [0-9a-f]{8}: buy milk$/)
    const milkId = milk.out[0]!.slice("added ".length, "added ".length + 8)
    // the file can also come from TODO_DB, and a title may be several words
    expect((await run(["add", "walk", "the", "dog"], { TODO_DB: file })).code).toBe(0)

    const listed = await run(["--db", file, "list"])
    expect(listed.out).toEqual([`[ ] ${milkId}  buy milk`, expect.stringMatching(/^\[ \] [0-9a-f]{8} {2}walk the dog$/)])

    expect(await run(["--db", file, "complete", milkId.slice(0, 6)])).toMatchObject({ code: 0, out: [`completed ${milkId}: buy milk`] })
    expect((await run(["--db", file, "list"])).out[0]).toBe(`[x] ${milkId}  buy milk`)
    expect((await run(["--db", file, "complete", milkId])).out[0]).toBe(`already done ${milkId}: buy milk`)

    // the data is what the example promises: user todo-user, database "todo", table "todos"
    const instance = await Instance.open(new Sqlite(file))
    try {
      expect(await instance.listUsers()).toEqual(["todo-user"])
      const db = await openTodoDatabase(instance)
      expect(await db.getName()).toBe("todo")
      const rows = await todos(db)
      expect(rows.map(([, t]) => [t.title, t.completed])).toEqual([
        ["buy milk", true],
        ["walk the dog", false]
      ])
      expect(rows[0]![1].completed_at).toEqual(expect.any(String))
    } finally {
      await instance.close()
    }
  })

  it("reports bad usage and unknown ids", async () => {
    expect((await run(["--db", file])).code).toBe(2)
    expect((await run(["--db", file, "frobnicate"])).err[0]).toBe("unknown command: frobnicate")
    expect((await run(["--db", file, "add"])).code).toBe(2)
    expect((await run(["--db"])).code).toBe(2)
    const missing = await run(["--db", file, "complete", "deadbeef"])
    expect(missing).toMatchObject({ code: 1, err: ["no todo with id deadbeef"] })
    expect((await run(["--help"])).code).toBe(0)
    const bad = await run(["--db", Path.join(dir, "no-such-dir", "x.db"), "list"])
    expect(bad.code).toBe(1)
    expect(bad.err[0]).toMatch(/^error \(StorageError\): /)
  })

  it("runs as a command (npm run todo)", () => {
    const root = fileURLToPath(new URL("../..", import.meta.url))
    const tsx = Path.join(root, "node_modules", ".bin", "tsx")
    const cli = (...args: Array<string>) =>
      ChildProcess.spawnSync(tsx, ["examples/todo/main.ts", ...args], { cwd: root, encoding: "utf8", env: { ...process.env, TODO_DB: file } })
    const added = cli("add", "buy milk")
    expect(added.status).toBe(0)
    expect(added.stdout).toMatch(/^added [0-9a-f]{8}: buy milk\n$/)
    const listed = cli("list")
    expect(listed.status).toBe(0)
    expect(listed.stdout).toMatch(/^\[ \] [0-9a-f]{8} {2}buy milk\n$/)
  }, 60_000)
})
