/**
 * Races through the Promise facade, each found by forcing interleavings: a write landing while its
 * transaction commits, two close() calls, and register/unregister of one peer at once.
 */
import Sqlite3 from "better-sqlite3"
import * as Path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { Doc, EideticaError, Instance, Sqlite } from "../../src/promise.js"
import { cleanup, tempDir } from "./helpers.js"

describe("Promise facade: races", () => {
  let dir: string
  beforeEach(() => {
    dir = tempDir()
  })
  afterEach(() => cleanup(dir))

  it("a write made while its transaction commits is stored or rejected, never resolved and dropped", async () => {
    const instance = await Instance.open(new Sqlite(Path.join(dir, "w.db")))
    try {
      await instance.createUser("alice")
      const alice = await instance.loginUser("alice")
      const db = await alice.createDatabase(Doc.from({ name: "n" }), await alice.getDefaultKey())
      const lost: Array<number> = []
      let rejected = 0
      for (let round = 0; round < 40; round++) {
        const t = await db.newTransaction()
        const s = await t.docStore("d")
        const rows = await t.table<{ late: number }>("rows")
        await s.set(`first${round}`, 1)
        const commit = t.commit()
        // land the late write at different points of the commit
        for (let k = 0; k < round % 8; k++) await Promise.resolve()
        if (round >= 20) for (let k = 0; k < round % 5; k++) await new Promise((r) => setImmediate(r))
        const late = round % 2 === 0 ? s.set(`late${round}`, 1) : rows.insert({ late: round }).then(() => undefined)
        const [, l] = await Promise.allSettled([commit, late])
        const stored = round % 2 === 0
          ? (await (await db.docStore("d")).get(`late${round}`)) !== undefined
          : (await (await db.table<{ late: number }>("rows")).all()).some(([, r]) => r.late === round)
        if (l.status === "fulfilled" && !stored) lost.push(round)
        if (l.status === "rejected") {
          rejected++
          expect(l.reason).toBeInstanceOf(EideticaError)
          expect((l.reason as EideticaError)._tag).toBe("InvalidArgument")
          expect((l.reason as EideticaError).message).toMatch(/transaction is (being )?committed/)
        }
      }
      expect(lost).toEqual([])
      expect(rejected).toBeGreaterThan(0) // the race was reached
    } finally {
      await instance.close()
    }
  })

  it("a second close() resolves only once the instance is closed, so the file can be opened again", async () => {
    const file = Path.join(dir, "d.db")
    const instance = await Instance.open(new Sqlite(file))
    await instance.createUser("a")
    const first = instance.close()
    await instance.close() // a shutdown hook racing the app's own close
    const reopened = await Instance.open(new Sqlite(file))
    expect(await reopened.listUsers()).toEqual(["a"])
    await first
    await reopened.close()
  })

  it("unregister and register of one peer at once: the registration made last is the one saved", async () => {
    const file = Path.join(dir, "r.db")
    const instance = await Instance.open(new Sqlite(file))
    await instance.createUser("alice")
    const alice = await instance.loginUser("alice")
    const key = await alice.getDefaultKey()
    const one = await alice.createDatabase(Doc.from({ name: "one" }), key)
    const two = await alice.createDatabase(Doc.from({ name: "two" }), key)
    await instance.enableSync()
    await instance.sync().enableHttpTransport()
    const peer = "ed25519:" + Buffer.alloc(32, 9).toString("base64")
    const addresses = [{ transportType: "http", address: "127.0.0.1:1" }]
    await instance.sync().registerSyncPeer({ peerPubkey: peer, treeId: one.rootId, addresses })
    const un = instance.sync().unregisterSyncPeer(peer)
    const re = instance.sync().registerSyncPeer({ peerPubkey: peer, treeId: two.rootId, addresses })
    await Promise.all([un, re])
    await instance.close()
    const sqlite = new Sqlite3(file, { readonly: true })
    const row = sqlite.prepare("SELECT value FROM meta WHERE key = ?").get(`sync/peers/${encodeURIComponent(peer)}`) as
      | { value: string }
      | undefined
    sqlite.close()
    expect(row === undefined ? [] : Object.keys(JSON.parse(row.value).trees)).toEqual([two.rootId])
  })
})
