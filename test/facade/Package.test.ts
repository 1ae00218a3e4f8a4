/**
 * The package as an app installs it: built by `scripts/build.mjs` (what `npm ci`/`npm install` run
 * as `prepare`), placed in an app's node_modules, and imported by a plain Node.js ES module with no
 * TypeScript loader: the README's embedding example, a sync over HTTP, the three entry points, the
 * closed internals, and the installed `eidetica` command.
 */
import { execFile, execFileSync } from "node:child_process"
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("../..", import.meta.url))
const run = promisify(execFile)

const APP = `
import { Doc, InMemory, Instance, Permission, Sqlite } from "eidetica-ts/promise"
import { Eidetica, Errors } from "eidetica-ts"
import { Simulation } from "eidetica-ts/testing"

const out = {}
// the README's embedding example
const instance = await Instance.open(new Sqlite(process.argv[2]))
if (!(await instance.listUsers()).includes("alice")) await instance.createUser("alice")
const user = await instance.loginUser("alice")
const key = await user.getDefaultKey()
const db = await user.createDatabase(Doc.from({ name: "notes" }), key)
const txn = await db.newTransaction()
await (await txn.docStore("notes")).set("title", "hello")
const todos = await txn.table("todos")
await todos.insert({ title: "write tests", done: false })
await txn.commit()
out.title = await (await db.docStore("notes")).get("title")

// 300 more entries, pulled by a second instance over HTTP (a batch for the verification workers)
const setup = await db.newTransaction()
await (await setup.settings()).setGlobalPermission(Permission.Write(10))
await setup.commit()
for (let i = 0; i < 300; i++) {
  const t = await db.newTransaction()
  await (await t.docStore("notes")).set("n" + i, i)
  await t.commit()
}
await user.trackDatabase({ databaseId: db.rootId, keyId: key,
  syncSettings: { syncEnabled: true, syncOnCommit: false, properties: {} } })
await instance.enableSync()
await instance.sync().enableHttpTransport()
const address = await instance.sync().startServer("127.0.0.1:0")
const other = await Instance.open(new InMemory())
await other.enableSync()
await other.sync().enableHttpTransport()
await other.sync().syncWithPeer(address, db.rootId)
await other.createUser("bob")
const copy = await (await other.loginUser("bob")).openDatabase(db.rootId)
out.synced = await (await copy.docStore("notes")).get("n299")
out.sameTips = JSON.stringify(await copy.tips()) === JSON.stringify(await db.tips())
await other.close()
await instance.close()

out.effectApi = typeof Eidetica.layer === "function" && typeof Errors.TreeNotFound === "function"
out.testing = typeof Simulation.run === "function"
try {
  await import("eidetica-ts/internal/layers/Storage.js")
  out.internal = "importable"
} catch (e) {
  out.internal = e.code
}
console.log(JSON.stringify(out))
`

describe("the package on plain Node.js", () => {
  let dir: string
  let pkg: string
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "eidetica-app-"))
    pkg = join(dir, "node_modules", "eidetica-ts")
    mkdirSync(pkg, { recursive: true })
    // the JavaScript as `npm run build` makes it (the declarations take ~20 s of tsc and are not run)
    execFileSync(process.execPath, [join(root, "scripts", "build.mjs"), "--out", join(pkg, "dist"), "--no-types"])
    copyFileSync(join(root, "package.json"), join(pkg, "package.json"))
    cpSync(join(root, "bin"), join(pkg, "bin"), { recursive: true })
    // the package's own dependencies, where npm would have put them
    symlinkSync(join(root, "node_modules"), join(pkg, "node_modules"), "dir")
    writeFileSync(join(dir, "app.mjs"), APP)
  }, 60_000)
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("an app imports the three entry points, runs the README example and syncs; internals stay closed", async () => {
    const { stdout } = await run(process.execPath, [join(dir, "app.mjs"), join(dir, "app.db")], { cwd: dir, timeout: 60_000 })
    expect(JSON.parse(stdout.trim().split("\n").at(-1)!)).toEqual({
      title: "hello",
      synced: 299,
      sameTips: true,
      effectApi: true,
      testing: true,
      internal: "ERR_PACKAGE_PATH_NOT_EXPORTED"
    })
    // the verification workers' script goes with the build (without it the pool falls back to one thread)
    expect(existsSync(join(pkg, "dist", "layers", "internal", "verifyWorker.mjs"))).toBe(true)
  }, 60_000)

  it("the installed eidetica command runs the compiled package", async () => {
    const data = join(dir, "node")
    const { stdout } = await run(process.execPath, [join(pkg, "bin", "eidetica.js"), "info", "--json", "--data-dir", data], {
      cwd: dir,
      timeout: 30_000
    })
    const info = JSON.parse(stdout)
    expect(info.deviceId).toMatch(/^ed25519:/)
    expect(info.key).toMatch(/^ed25519:/)
  }, 30_000)
})
