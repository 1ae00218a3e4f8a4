import { type ChildProcess, execFile, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { afterAll, describe, expect, it } from "vitest"

const exec = promisify(execFile)
const main = join(import.meta.dirname, "../../src/cli/main.ts")
const cli = async (...args: Array<string>) => (await exec("node", ["--import", "tsx", main, ...args], { timeout: 60_000 })).stdout.trim()
const cliWithEnv = async (env: Record<string, string>, ...args: Array<string>) =>
  (await exec("node", ["--import", "tsx", main, ...args], { timeout: 60_000, env: { ...process.env, ...env } })).stdout.trim()

const dirs: Array<string> = []
const children: Array<ChildProcess> = []
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "eidetica-cli-"))
  dirs.push(d)
  return d
}
afterAll(() => {
  for (const c of children) c.kill("SIGINT")
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** Start `eidetica serve --json` on a free port and wait for its first line. */
const serve = (dataDir: string, ...flags: Array<string>) =>
  new Promise<{ address: string; deviceId: string; databases: Array<string>; tickets: Record<string, string> }>((resolve, reject) => {
    const child = spawn("node", ["--import", "tsx", main, "serve", "--port", "0", "--json", "--data-dir", dataDir, ...flags], { stdio: ["ignore", "pipe", "pipe"] })
    children.push(child)
    let buffer = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      buffer += chunk.toString()
      const line = buffer.split("\n")[0]
      if (buffer.includes("\n") && line) resolve(JSON.parse(line))
    })
    child.on("exit", (code) => reject(new Error(`serve exited with ${code}`)))
  })

describe("eidetica command line", () => {
  it("two nodes: create and write on A, serve it, sync from B both ways, info and health", async () => {
    const a = tempDir()
    const b = tempDir()
    const id = JSON.parse(await cli("db", "create", "notes", "--public", "--json", "--data-dir", a)).databaseId as string
    await cli("db", "put", id, "title", "hello from A", "--data-dir", a)
    const node = await serve(a)
    expect(node.address).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(node.deviceId).toMatch(/^ed25519:/)
    expect(node.databases).toContain(id)
    // the data directory is the serving node's alone: another command on it is refused in one line
    const refused = await cli("db", "put", id, "late", "write", "--data-dir", a).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e
    )
    expect(refused?.code).toBe(1)
    expect(refused?.stderr.trim()).toMatch(/^eidetica: Storage failed during open: .* is in use by another process/)
    expect(JSON.parse(await cli("health", node.address, "--json"))).toEqual({ address: node.address, healthy: true })
    const pulled = JSON.parse(await cli("sync", node.address, id, "--json", "--data-dir", b))
    expect(pulled.received).toBeGreaterThan(0)
    expect(await cli("db", "get", id, "title", "--data-dir", b)).toBe("hello from A")
    await cli("db", "put", id, "reply", "hi from B", "--data-dir", b)
    const pushed = JSON.parse(await cli("sync", node.address, id, "--json", "--data-dir", b))
    expect(pushed.sent).toBe(1)
    const info = JSON.parse(await cli("info", "--json", "--data-dir", b))
    expect(info.tracked).toBe(1)
    expect(info.users).toBe(1)
  }, 120_000)

  it("serve --transport iroh (and both): the node serves over QUIC on loopback, and sync with its ticket pulls and pushes", async () => {
    const a = tempDir()
    const b = tempDir()
    const id = JSON.parse(await cli("db", "create", "notes", "--public", "--json", "--data-dir", a)).databaseId as string
    await cli("db", "put", id, "title", "hello over iroh", "--data-dir", a)
    const both = await serve(tempDir(), "--transport", "both")
    expect(both.address).toMatch(/^127\.0\.0\.1:\d+$/)
    expect((both as unknown as { irohAddress: string }).irohAddress).toMatch(/^iroh:endpoint[a-z2-7]+$/)
    const node = await serve(a, "--transport", "iroh")
    expect(node.address).toMatch(/^iroh:endpoint[a-z2-7]+$/)
    expect(node.tickets[id]).toBe(`eidetica:?db=${id}&pr=${node.address}`)
    const pulled = JSON.parse(await cli("sync", node.tickets[id]!, "--json", "--data-dir", b))
    expect(pulled.received).toBeGreaterThan(0)
    expect(await cli("db", "get", id, "title", "--data-dir", b)).toBe("hello over iroh")
    await cli("db", "put", id, "reply", "back over iroh", "--data-dir", b)
    const pushed = JSON.parse(await cli("sync", node.address, id, "--json", "--data-dir", b))
    expect(pushed.sent).toBe(1)
  }, 120_000)

  it("a private database: the key `info` shows is the one to grant, and it reads and writes", async () => {
    const a = tempDir()
    const b = tempDir()
    const id = JSON.parse(await cli("db", "create", "private", "--json", "--data-dir", a)).databaseId as string
    await cli("db", "put", id, "secret", "s3cret", "--data-dir", a)
    const bInfo = JSON.parse(await cli("info", "--json", "--data-dir", b))
    expect(bInfo.key).toMatch(/^ed25519:/)
    expect(bInfo.key).not.toBe(bInfo.deviceId)
    expect(await cli("db", "grant", id, bInfo.key, "--write", "--data-dir", a)).toBe(`granted Write(10) to ${bInfo.key}`)
    const node = await serve(a)
    // the node prints a ticket per database it serves: B syncs with it alone
    expect(node.tickets[id]).toBe(`eidetica:?db=${id}&pr=http:${node.address}`)
    // B fetches it (its key, not its device key, proves Read), writes, and pushes back
    expect(JSON.parse(await cli("sync", node.tickets[id]!, "--json", "--data-dir", b)).received).toBeGreaterThan(0)
    expect(await cli("db", "get", id, "secret", "--data-dir", b)).toBe("s3cret")
    await cli("db", "put", id, "from", "B", "--data-dir", b)
    expect(JSON.parse(await cli("sync", node.address, id, "--json", "--data-dir", b)).sent).toBe(1)
    expect(JSON.parse(await cli("health", `http://${node.address}`, "--json"))).toEqual({ address: node.address, healthy: true })
  }, 120_000)

  it("mistakes are refused in one line with exit code 1: a missing data directory, a key that is not a key, a missing value", async () => {
    const failure = (...args: Array<string>) =>
      cli(...args).then(
        (stdout) => ({ code: 0, stderr: "", stdout }),
        (e: { code: number; stderr: string; stdout: string }) => ({ code: e.code, stderr: e.stderr.trim(), stdout: e.stdout.trim() })
      )
    const a = tempDir()
    const missing = join(a, "typo")
    const listed = await failure("db", "list", "--data-dir", missing)
    expect(listed.code).toBe(1)
    expect(listed.stderr).toBe(
      `eidetica: no eidetica node in ${missing} (no eidetica.db there); check --data-dir, or create a database there first with: eidetica db create <name> --data-dir ${missing}`
    )
    const id = JSON.parse(await cli("db", "create", "notes", "--json", "--data-dir", a)).databaseId as string
    const badKey = await failure("db", "grant", id, "notakey", "--data-dir", a)
    expect(badKey.code).toBe(1)
    expect(badKey.stderr).toBe('eidetica: "notakey" is not a public key; expected ed25519:<base64 of 32 bytes>, as `eidetica info` shows')
    const absent = await failure("db", "get", id, "nokey", "--data-dir", a)
    expect(absent.code).toBe(1)
    expect(absent.stderr).toBe(`eidetica: no value at "nokey" in store data of ${id}`)
    // a ticket names the database and the address `serve` listens on (flags, or as serve, the environment)
    const env = { EIDETICA_HOST: "192.168.1.20", EIDETICA_PORT: "5000" }
    expect(JSON.parse(await cliWithEnv(env, "ticket", id, "--port", "4000", "--json", "--data-dir", a))).toEqual({
      databaseId: id,
      ticket: `eidetica:?db=${id}&pr=http:192.168.1.20:4000`,
      served: true
    })
    const badTicket = await failure("sync", "eidetica:?pr=http:127.0.0.1:1", "--data-dir", a)
    expect(badTicket.code).toBe(1)
    expect(badTicket.stderr).toBe("eidetica: Invalid ticket: it names no database (no db= parameter)")
    const down = await failure("health", "127.0.0.1:1", "--json")
    expect(down.code).toBe(1)
    expect(JSON.parse(down.stdout)).toMatchObject({ address: "127.0.0.1:1", healthy: false })
    expect(down.stderr).toBe("")
  }, 120_000)

  it("no arguments at all serve, configured by the environment (as the reference's command)", async () => {
    const dataDir = tempDir()
    const child = spawn("node", ["--import", "tsx", main], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, EIDETICA_PORT: "0", EIDETICA_DATA_DIR: dataDir }
    })
    children.push(child)
    const address = await new Promise<string>((resolve, reject) => {
      let buffer = ""
      child.stdout!.on("data", (chunk: Buffer) => {
        buffer += chunk.toString()
        const found = /address:\s+(127\.0\.0\.1:\d+)/.exec(buffer)
        if (found !== null) resolve(found[1]!)
      })
      child.on("exit", (code) => reject(new Error(`eidetica exited with ${code}: ${buffer}`)))
    })
    expect(await (await fetch(`http://${address}/health`)).ok).toBe(true)
    expect(existsSync(join(dataDir, "eidetica.db"))).toBe(true)
  }, 60_000)

  it("health of a closed port fails", async () => {
    await expect(cli("health", "127.0.0.1:1", "--json")).rejects.toThrow()
  }, 60_000)
})
