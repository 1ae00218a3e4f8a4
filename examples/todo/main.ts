/**
 * A command-line todo list on an embedded SQLite file, after the reference's todo example: a
 * passwordless user "todo-user", one database named "todo" (found with findDatabase), todos in
 * a Table store "todos".
 *
 *   npm run todo -- add "buy milk"
 *   npm run todo -- list
 *   npm run todo -- complete <id or unique prefix>
 *
 * The file is `--db <file>`, else $TODO_DB, else ./todo.db.
 */
import { pathToFileURL } from "node:url"
import { DatabaseNotFound, Doc, EideticaError, Instance, Sqlite, UserNotFound, type Database } from "../../src/promise.js"

/** One todo as stored in the "todos" table. */
export interface Todo {
  readonly title: string
  readonly completed: boolean
  readonly created_at: string
  readonly completed_at?: string | undefined
}

/** Where the program writes. */
export interface Io {
  readonly out: (line: string) => void
  readonly err: (line: string) => void
}

/** The user the example works as (passwordless, as in the reference). */
export const USERNAME = "todo-user"
/** The name of the example's database. */
export const DATABASE = "todo"
/** The table holding the todos. */
export const TABLE = "todos"
/** The file used when neither --db nor TODO_DB names one. */
export const DEFAULT_FILE = "./todo.db"

const USAGE = `usage: todo [--db <file>] <command>
  add <title>        add a todo
  complete <id>      mark a todo done (an id prefix is enough)
  list               show every todo
The file is --db <file>, else $TODO_DB, else ${DEFAULT_FILE}.`

/** Run one command; resolves with the exit code (0 ok, 1 failed, 2 bad usage). */
export const main = async (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>> = process.env,
  io: Io = { out: (l) => console.log(l), err: (l) => console.error(l) }
): Promise<number> => {
  const parsed = parseArgs(argv)
  if (parsed === HELP) {
    io.out(USAGE)
    return 0
  }
  if (typeof parsed === "string") {
    io.err(parsed)
    io.err(USAGE)
    return 2
  }
  const file = parsed.db ?? env["TODO_DB"] ?? DEFAULT_FILE
  let instance: Instance | undefined
  try {
    instance = await Instance.open(new Sqlite(file))
    const db = await openTodoDatabase(instance)
    switch (parsed.command) {
      case "add":
        return await add(db, parsed.args, io)
      case "complete":
        return await complete(db, parsed.args, io)
      case "list":
        return await list(db, io)
    }
  } catch (error) {
    io.err(error instanceof EideticaError ? `error (${error._tag}): ${error.message}` : `error: ${String(error)}`)
    return 1
  } finally {
    await instance?.close()
  }
}

/** Log in as the todo user (creating it on first run) and find the todo database (creating it too). */
export const openTodoDatabase = async (instance: Instance): Promise<Database> => {
  const user = await instance.loginUser(USERNAME).catch(async (error: unknown) => {
    if (!(error instanceof UserNotFound)) throw error
    await instance.createUser(USERNAME)
    return instance.loginUser(USERNAME)
  })
  return user.findDatabase(DATABASE).catch(async (error: unknown) => {
    if (!(error instanceof DatabaseNotFound)) throw error
    return user.createDatabase(Doc.from({ name: DATABASE }), await user.getDefaultKey())
  })
}

/** Every todo, oldest first. */
export const todos = async (db: Database): Promise<Array<[string, Todo]>> => {
  const rows = await (await db.table<Todo>(TABLE)).all()
  return rows.sort(([a, x], [b, y]) => x.created_at.localeCompare(y.created_at) || a.localeCompare(b))
}

const add = async (db: Database, args: ReadonlyArray<string>, io: Io): Promise<number> => {
  const title = args.join(" ").trim()
  if (title.length === 0) {
    io.err("add needs a title, e.g. todo add \"buy milk\"")
    return 2
  }
  const txn = await db.newTransaction()
  const id = await (await txn.table<Todo>(TABLE)).insert({ title, completed: false, created_at: new Date().toISOString() })
  await txn.commit()
  io.out(`added ${id.slice(0, 8)}: ${title}`)
  return 0
}

const complete = async (db: Database, args: ReadonlyArray<string>, io: Io): Promise<number> => {
  const prefix = args[0]
  if (prefix === undefined || args.length !== 1) {
    io.err("complete needs one todo id (or a unique prefix of one)")
    return 2
  }
  const matches = (await todos(db)).filter(([id]) => id.startsWith(prefix))
  if (matches.length !== 1) {
    io.err(matches.length === 0 ? `no todo with id ${prefix}` : `id ${prefix} matches ${matches.length} todos; give more of it`)
    return 1
  }
  const [id, todo] = matches[0]!
  if (todo.completed) {
    io.out(`already done ${id.slice(0, 8)}: ${todo.title}`)
    return 0
  }
  const txn = await db.newTransaction()
  await (await txn.table<Todo>(TABLE)).set(id, { ...todo, completed: true, completed_at: new Date().toISOString() })
  await txn.commit()
  io.out(`completed ${id.slice(0, 8)}: ${todo.title}`)
  return 0
}

const list = async (db: Database, io: Io): Promise<number> => {
  const all = await todos(db)
  if (all.length === 0) io.out("no todos yet; add one with: todo add \"buy milk\"")
  for (const [id, todo] of all) io.out(`[${todo.completed ? "x" : " "}] ${id.slice(0, 8)}  ${todo.title}`)
  return 0
}

const HELP = "help"

type Parsed = { readonly command: "add" | "complete" | "list"; readonly args: ReadonlyArray<string>; readonly db?: string | undefined }

/** Parse argv (without node and the script); a string is a usage error. */
const parseArgs = (argv: ReadonlyArray<string>): Parsed | string => {
  const rest: Array<string> = []
  let db: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--db") {
      db = argv[++i]
      if (db === undefined || db.length === 0) return "--db needs a file"
    } else if (arg.startsWith("--db=")) {
      db = arg.slice("--db=".length)
    } else if (arg === "--help" || arg === "-h") {
      return HELP
    } else rest.push(arg)
  }
  const [command, ...args] = rest
  if (command !== "add" && command !== "complete" && command !== "list")
    return command === undefined ? "no command given" : `unknown command: ${command}`
  return { command, args, db }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code
  })
}
