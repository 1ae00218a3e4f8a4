/**
 * A node in a child process for the fault tests, on the Promise facade and a SQLite file that
 * survives the process: `node --import tsx fault-node.ts --db <file> --tree <dbId>`. Opens (or
 * reopens) the file, serves on 127.0.0.1:0, tracks the database (sync on commit, 1 s interval),
 * prints `{address, deviceId}`, then answers one JSON line per stdin command:
 *   register <pubkey> <address>   registerSyncPeer (persisted: not needed again after a restart)
 *   commit <n> <tag>              n commits of keys <tag>-C-<i>; answers when all returned
 *   state                         { tips, notes, status }
 *   flush                         sync().flush()
 */
import { createInterface } from "node:readline"
import { Instance, Sqlite, type SyncHandle } from "../../src/promise.js"

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1]! : ""
}
const file = arg("db")
const tree = arg("tree")

const main = async () => {
  const instance = await Instance.open(new Sqlite(file))
  await instance.enableSync()
  await instance.sync().enableHttpTransport({ timeoutMs: 1_000 })
  const address = await instance.sync().startServer("127.0.0.1:0")
  if (!(await instance.listUsers()).includes("carol")) await instance.createUser("carol")
  const user = await instance.loginUser("carol")
  const key = await user.getDefaultKey()
  await user.trackDatabase({
    databaseId: tree,
    keyId: key,
    syncSettings: { syncEnabled: true, syncOnCommit: true, intervalSeconds: 1, properties: {} }
  })
  const handles = new Map<string, SyncHandle>()
  const reply = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n")
  reply({ address, deviceId: instance.deviceId })
  const lines = createInterface({ input: process.stdin })
  let queue: Promise<unknown> = Promise.resolve()
  lines.on("line", (line) => {
    const [command, x, y] = line.trim().split(/\s+/)
    queue = queue.then(async () => {
      switch (command) {
        case "register": {
          const h = await instance.sync().registerSyncPeer({
            peerPubkey: x!,
            treeId: tree,
            addresses: [{ transportType: "http", address: y! }]
          })
          handles.set(x!, h)
          return reply({ ok: true })
        }
        case "handle": {
          // after a restart the registration is persisted; re-registering the same is how the facade gives a handle
          const h = await instance.sync().registerSyncPeer({ peerPubkey: x!, treeId: tree, addresses: [{ transportType: "http", address: y! }] })
          handles.set(x!, h)
          return reply({ ok: true })
        }
        case "commit": {
          const db = await user.openDatabase(tree)
          const keys: Array<string> = []
          for (let i = 0; i < Number(x); i++) {
            const txn = await db.newTransaction()
            const k = `${y}-C-${i}`
            await (await txn.docStore("notes")).set(k, `C:${i}`)
            await txn.commit()
            keys.push(k)
          }
          return reply({ keys })
        }
        case "state": {
          let tips: Array<string> = []
          let notes: Record<string, unknown> = {}
          try {
            const db = await user.openDatabase(tree)
            tips = (await db.tips()).sort()
            notes = await (await db.docStore("notes")).getAll()
          } catch {
            // not bootstrapped yet
          }
          const status: Record<string, unknown> = {}
          for (const [p, h] of handles) status[p] = await h.status()
          return reply({ tips, notes, status })
        }
        case "flush":
          return reply(await instance.sync().flush())
        default:
          return reply({ error: `unknown command ${command}` })
      }
    }).catch((e: unknown) => reply({ error: String(e) }))
  })
  lines.once("close", () => {
    void instance.close().then(() => process.exit(0))
  })
}

main().catch((e: unknown) => {
  console.error(e)
  process.exit(1)
})
