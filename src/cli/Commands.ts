/**
 * The `eidetica` command: serve (a sync node on an embedded SQLite data directory), info, health,
 * db (create, list, put, get, grant), ticket and sync. Every command takes `--json` for machine output.
 */
import { Args, Command, Options } from "@effect/cli"
import { FileSystem, HttpClient, HttpClientRequest } from "@effect/platform"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Doc } from "../core/Doc.js"
import * as Ticket from "../core/Ticket.js"
import * as Database from "../database/Database.js"
import { SettingsStore } from "../database/SettingsStore.js"
import { DocStore, DocStoreView } from "../database/Stores.js"
import * as Transaction from "../database/Transaction.js"
import * as Eidetica from "../layers/Eidetica.js"
import { parseAddress } from "../layers/Sync.js"
import { isPubKey } from "../schema/Ids.js"
import * as Permission from "../schema/Permission.js"
import { Instance } from "../services/Instance.js"
import { Storage } from "../services/Storage.js"
import { Sync } from "../services/Sync.js"

/** The passwordless user the command line acts as. */
export const NODE_USER = "node"

/** How the command line tracks the databases it creates or syncs: served, pushed on commit. */
const SERVED = { syncEnabled: true, syncOnCommit: true, properties: {} }

const json = Options.boolean("json").pipe(Options.withDescription("print JSON instead of text"))
const dataDir = Options.text("data-dir").pipe(
  Options.withDescription("where the node keeps its SQLite file (default .eidetica, or env EIDETICA_DATA_DIR)"),
  Options.optional
)
// as the reference's, the environment may set them (a container, a service file); a flag wins
const host = Options.text("host").pipe(
  Options.withFallbackConfig(Config.string("EIDETICA_HOST").pipe(Config.withDefault("127.0.0.1"))),
  Options.withDescription("address to listen on (default 127.0.0.1, or env EIDETICA_HOST)")
)
const port = Options.integer("port").pipe(
  Options.withAlias("p"),
  Options.withFallbackConfig(Config.integer("EIDETICA_PORT").pipe(Config.withDefault(3000))),
  Options.withDescription("port to listen on, 0 picks a free one (default 3000, or env EIDETICA_PORT)")
)

const transport = Options.choice("transport", ["http", "iroh", "both"]).pipe(
  Options.withFallbackConfig(Config.literal("http", "iroh", "both")("EIDETICA_TRANSPORT").pipe(Config.withDefault("http" as const))),
  Options.withDescription(
    "serve over http (default), iroh (QUIC; direct addresses, no relays) or both (the same port number, TCP and UDP), or env EIDETICA_TRANSPORT"
  )
)

const dirOf = (dir: Option.Option<string>) =>
  Option.getOrElse(dir, () => process.env.EIDETICA_DATA_DIR ?? ".eidetica")

/** A command that cannot run as asked; main prints its message. */
class CommandFailed extends Data.TaggedError("CommandFailed")<{ readonly message: string }> {}

/**
 * Run an effect against the engine kept in a data directory. Commands that only read or change a
 * node's databases (`existing`) refuse a directory that does not exist: a mistyped `--data-dir`
 * would otherwise be a new, empty node that answers "no databases".
 */
const withEngine = <A, E, R>(dir: Option.Option<string>, effect: Effect.Effect<A, E, R>, existing = false) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = dirOf(dir)
    if (existing && !(yield* fs.exists(`${path}/eidetica.db`))) {
      return yield* new CommandFailed({
        message: `no eidetica node in ${path} (no eidetica.db there); check --data-dir, or create a database there first with: eidetica db create <name> --data-dir ${path}`
      })
    }
    yield* fs.makeDirectory(path, { recursive: true })
    return yield* Effect.provide(effect, Eidetica.layer({ filename: `${path}/eidetica.db` }))
  })

/** The node user, created passwordless on first use. */
const nodeUser = Effect.gen(function* () {
  const instance = yield* Instance
  const users = yield* instance.listUsers
  if (!users.includes(NODE_USER)) yield* instance.createUser(NODE_USER)
  return yield* instance.loginUser(NODE_USER)
})

const out = (asJson: boolean, value: Record<string, unknown>, text: string) =>
  Console.log(asJson ? JSON.stringify(value) : text)

const serve = Command.make("serve", { host, port, transport, dataDir, json }, (o) =>
  withEngine(
    o.dataDir,
    Effect.gen(function* () {
      const instance = yield* Instance
      const sync = yield* Sync
      // both transports are enabled, so this node also syncs with peers that use the other one
      yield* sync.enableHttpTransport()
      yield* sync.enableIrohTransport()
      const bind = `${o.host}:${o.port}`
      const address = yield* sync.startServer(o.transport === "iroh" ? `iroh:${bind}` : `http:${bind}`)
      const irohAddress = o.transport === "both" ? yield* sync.startServer(`iroh:${bind}`) : undefined
      const served = [...(yield* instance.trackedDatabases)].filter(([, s]) => s.syncEnabled).map(([id]) => id)
      // a database tracked but not (yet) held here has no ticket
      const tickets: Record<string, string> = {}
      for (const id of served) {
        const ticket = yield* Effect.option(sync.createTicket(id))
        if (Option.isSome(ticket)) tickets[id] = ticket.value
      }
      yield* out(
        o.json,
        { deviceId: instance.deviceId, address, ...(irohAddress === undefined ? {} : { irohAddress }), dataDir: dirOf(o.dataDir), databases: served, tickets },
        [
          `eidetica sync node`,
          `  device id: ${instance.deviceId}`,
          `  address:   ${address}   ${o.transport === "iroh" ? "(QUIC, ALPN eidetica/v0)" : "(POST /api/v0, GET /health)"}`,
          ...(irohAddress === undefined ? [] : [`  address:   ${irohAddress}   (QUIC, ALPN eidetica/v0)`]),
          `  data:      ${dirOf(o.dataDir)}/eidetica.db`,
          served.length === 0
            ? `  serving:   no databases yet (stop the node, then: eidetica db create <name>; in a checkout: npm run -s cli -- db create <name>)`
            : [`  serving:`, ...served.map((id) => `    ${tickets[id] ?? id}`)].join("\n"),
          `Press Ctrl+C to stop.`
        ].join("\n")
      )
      return yield* Effect.never
    })
  )
).pipe(Command.withDescription("run a sync node: serve the databases tracked with sync enabled"))

const info = Command.make("info", { dataDir, json }, (o) =>
  withEngine(
    o.dataDir,
    Effect.gen(function* () {
      const instance = yield* Instance
      const storage = yield* Storage
      const key = yield* (yield* nodeUser).getDefaultKey
      const users = yield* instance.listUsers
      const roots = yield* storage.roots
      const tracked = yield* instance.trackedDatabases
      yield* out(
        o.json,
        { deviceId: instance.deviceId, key, users: users.length, databases: roots.length, tracked: tracked.size },
        [
          `device id: ${instance.deviceId}   (who this node is to its peers)`,
          `key:       ${key}   (what it reads and writes with: grant this one, eidetica db grant <id> <key> [--write])`,
          `users: ${users.length}`,
          `databases: ${tracked.size} tracked, ${roots.length} stored (each user's own private database included)`
        ].join("\n")
      )
    })
  )
).pipe(Command.withDescription("show the device id, the key to grant access to, and counts of users and databases"))

const health = Command.make(
  "health",
  { address: Args.text({ name: "address" }).pipe(Args.withDescription("host:port of the node (default 127.0.0.1:3000)"), Args.withDefault("127.0.0.1:3000")), json },
  (o) =>
    Effect.gen(function* () {
      const client = yield* HttpClient.HttpClient
      // the address as sync reads it ("host:port", "http:host:port", "http://host:port/")
      const target = (yield* parseAddress(o.address)).address
      const response = yield* client.execute(HttpClientRequest.get(`http://${target}/health`)).pipe(
        Effect.timeout(Duration.seconds(5)),
        Effect.flatMap((r) => r.json),
        Effect.either
      )
      if (response._tag === "Right") yield* out(o.json, { address: target, healthy: true }, `${target}: healthy`)
      else {
        // the answer is the line printed; the exit code says unhealthy
        yield* out(o.json, { address: target, healthy: false, error: String(response.left) }, `${target}: unreachable (${String(response.left)})`)
        process.exitCode = 1
      }
    })
).pipe(Command.withDescription("check that a sync node answers"))

const dbName = Args.text({ name: "name" }).pipe(Args.withDescription("the database's name (stored in its settings)"))
const dbId = Args.text({ name: "database-id" }).pipe(Args.withDescription("the database's id (its root entry id, bafy…)"))

const dbCreate = Command.make(
  "create",
  { name: dbName, dataDir, json, public: Options.boolean("public").pipe(Options.withDescription("let any key read and write (global Write(10))")) },
  (o) =>
    withEngine(
      o.dataDir,
      Effect.gen(function* () {
        const user = yield* nodeUser
        const key = yield* user.getDefaultKey
        const { db, signer } = yield* user.createDatabase(Doc.from({ name: o.name }), key)
        if (o.public) {
          const t = Transaction.begin(db, signer)
          yield* new SettingsStore(t).setGlobalPermission(Permission.Write(10))
          yield* Transaction.commit(t)
        }
        yield* user.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: SERVED })
        yield* out(o.json, { databaseId: db.rootId, name: o.name, public: o.public }, db.rootId)
      })
    )
).pipe(Command.withDescription("create a database, tracked with sync enabled"))

const dbList = Command.make("list", { dataDir, json }, (o) =>
  withEngine(
    o.dataDir,
    Effect.gen(function* () {
      const user = yield* nodeUser
      const rows: Array<{ databaseId: string; name: string | undefined; syncEnabled: boolean }> = []
      for (const t of yield* user.trackedDatabases)
        rows.push({ databaseId: t.databaseId, name: yield* Database.name({ rootId: t.databaseId }), syncEnabled: t.syncSettings.syncEnabled })
      yield* o.json
        ? Console.log(JSON.stringify(rows))
        : Console.log(rows.map((r) => `${r.databaseId}  ${r.name ?? ""}${r.syncEnabled ? "  (sync)" : ""}`).join("\n") || "no databases")
    }),
    true
  )
).pipe(Command.withDescription("list the databases this node tracks"))

const storeOpt = Options.text("store").pipe(Options.withDescription("the DocStore to use"), Options.withDefault("data"))

const dbPut = Command.make(
  "put",
  {
    id: dbId,
    key: Args.text({ name: "key" }).pipe(Args.withDescription("the key; a dotted path (a.b) writes inside nested maps")),
    value: Args.text({ name: "value" }).pipe(Args.withDescription("the value, stored as a string")),
    store: storeOpt,
    dataDir,
    json
  },
  (o) =>
    withEngine(
      o.dataDir,
      Effect.gen(function* () {
        const user = yield* nodeUser
        const { db, signer } = yield* user.openDatabase(o.id)
        const t = Transaction.begin(db, signer)
        yield* new DocStore(t, o.store).setPath(o.key, o.value)
        const entryId = yield* Transaction.commit(t)
        yield* out(o.json, { entryId }, entryId)
      }),
      true
    )
).pipe(Command.withDescription("write a value: one signed entry"))

const dbGet = Command.make(
  "get",
  {
    id: dbId,
    key: Args.text({ name: "key" }).pipe(Args.withDescription("the key or dotted path; the whole store when left out"), Args.optional),
    store: storeOpt,
    dataDir,
    json
  },
  (o) =>
    withEngine(
      o.dataDir,
      Effect.gen(function* () {
        const db = yield* Database.open(o.id)
        const view = new DocStoreView(db, o.store)
        const value = Option.isSome(o.key) ? yield* view.getPath(o.key.value) : yield* view.getAll()
        if (value === undefined && Option.isSome(o.key)) {
          return yield* new CommandFailed({ message: `no value at ${JSON.stringify(o.key.value)} in store ${o.store} of ${o.id}` })
        }
        yield* Console.log(o.json ? JSON.stringify(value) : typeof value === "string" ? value : JSON.stringify(value, null, 2))
      }),
      true
    )
).pipe(Command.withDescription("read a value, or the whole store"))

const dbGrant = Command.make(
  "grant",
  {
    id: dbId,
    pubkey: Args.text({ name: "public-key" }).pipe(Args.withDescription("the key to grant, ed25519:… (the other node's `info` shows it)")),
    write: Options.boolean("write").pipe(Options.withDescription("grant Write(10) instead of Read")),
    dataDir,
    json
  },
  (o) =>
    withEngine(
      o.dataDir,
      Effect.gen(function* () {
        if (!isPubKey(o.pubkey)) {
          return yield* new CommandFailed({ message: `${JSON.stringify(o.pubkey)} is not a public key; expected ed25519:<base64 of 32 bytes>, as \`eidetica info\` shows` })
        }
        const user = yield* nodeUser
        const { db, signer } = yield* user.openDatabase(o.id)
        const t = Transaction.begin(db, signer)
        yield* new SettingsStore(t).setAuthKey(o.pubkey, { permission: o.write ? Permission.Write(10) : Permission.Read })
        const entryId = yield* Transaction.commit(t)
        yield* out(o.json, { entryId }, `granted ${o.write ? "Write(10)" : "Read"} to ${o.pubkey}`)
      }),
      true
    )
).pipe(Command.withDescription("give a key access to a database (Read, or Write with --write)"))

const ticketCmd = Command.make(
  "ticket",
  {
    id: dbId,
    host,
    port,
    dataDir,
    json
  },
  (o) =>
    withEngine(
      o.dataDir,
      Effect.gen(function* () {
        const instance = yield* Instance
        const held = yield* (yield* Storage).has([o.id])
        if (!held.has(o.id)) {
          return yield* new CommandFailed({ message: `this node holds no database ${o.id} (eidetica db list shows what it holds)` })
        }
        const ticket = Ticket.format({ databaseId: o.id, addresses: [{ transport_type: "http", address: `${o.host}:${o.port}` }] })
        const served = (yield* instance.trackedDatabases).get(o.id)?.syncEnabled === true
        yield* out(
          o.json,
          { databaseId: o.id, ticket, served },
          served ? ticket : `${ticket}\n(note: this node does not serve ${o.id}: it is not tracked with sync enabled)`
        )
      }),
      true
    )
).pipe(Command.withDescription("print a ticket for a database, to sync it from another node: eidetica sync <ticket>"))

const db = Command.make("db").pipe(
  Command.withSubcommands([dbCreate, dbList, dbPut, dbGet, dbGrant]),
  Command.withDescription("create, list, read and write databases")
)

const syncCmd = Command.make(
  "sync",
  {
    address: Args.text({ name: "address" }).pipe(Args.withDescription("the peer's host:port or iroh:<endpoint ticket>, or a ticket (eidetica:?db=…&pr=…)")),
    id: dbId.pipe(Args.withDescription("the database's id (left out with a ticket, which names it)"), Args.optional),
    dataDir,
    json
  },
  (o) =>
    withEngine(
      o.dataDir,
      Effect.gen(function* () {
        const user = yield* nodeUser
        const sync = yield* Sync
        yield* sync.enableHttpTransport()
        yield* sync.enableIrohTransport()
        const isTicket = o.address.toLowerCase().startsWith(Ticket.SCHEME)
        const id = isTicket ? (yield* Ticket.parse(o.address)).databaseId : Option.getOrUndefined(o.id)
        if (id === undefined) {
          return yield* new CommandFailed({ message: "sync needs the database id after the address (or a ticket in place of both)" })
        }
        if (isTicket && Option.isSome(o.id) && o.id.value !== id) {
          return yield* new CommandFailed({ message: `the ticket names database ${id}, not ${o.id.value}` })
        }
        const result = yield* isTicket ? sync.syncWithTicket(o.address) : sync.syncWithPeer(o.address, id)
        const key = yield* user.getDefaultKey
        // keep serving what we synced
        yield* user.trackDatabase({ databaseId: id, keyId: key, syncSettings: SERVED })
        yield* out(o.json, { ...result }, `received ${result.received}, sent ${result.sent}`)
      })
    )
).pipe(Command.withDescription("sync one database with a peer, both directions"))

/** The root command. */
export const command = Command.make("eidetica").pipe(
  Command.withSubcommands([serve, info, health, db, ticketCmd, syncCmd]),
  Command.withDescription("eidetica-ts: a local-first, peer-to-peer database and sync node")
)

/** Run the command line with these arguments (process.argv). */
export const run = Command.run(command, { name: "eidetica", version: "0.1.0" })
