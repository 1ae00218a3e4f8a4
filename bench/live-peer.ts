/**
 * One peer of the live benchmark in its own process: a complete engine (`Eidetica.layer`, memory
 * storage, the background sync engine) serving HTTP on 127.0.0.1:0. It prints
 * `{"ready": address, "deviceId": …}` first, then answers commands written to its stdin, one JSON
 * object a line:
 *
 *   {"cmd":"create"}                               create a database (global Write(10)), track it → {"treeId"}
 *   {"cmd":"join","treeId","peer","address"}       track it, register the peer, wait for the first sync → {"joined":true}
 *   {"cmd":"register","treeId","peer","address"}  register a peer → {"registered":true}
 *   {"cmd":"commit","treeId","n"}                  commit n entries one after another → {"committed":n}
 *   {"cmd":"await","treeId","count"}               → {"reached":count} once the database holds `count` entries
 *
 * While joined it prints `{"arrived":[ids]}` for every batch received from a peer. It exits when
 * stdin closes, so it never outlives its parent.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Stream from "effect/Stream"
import { createInterface } from "node:readline"
import { Doc } from "../src/core/Doc.js"
import type { Signer } from "../src/database/Database.js"
import { SettingsStore } from "../src/database/SettingsStore.js"
import { DocStore } from "../src/database/Stores.js"
import * as Transaction from "../src/database/Transaction.js"
import * as Eidetica from "../src/layers/Eidetica.js"
import * as Permission from "../src/schema/Permission.js"
import { Instance } from "../src/services/Instance.js"
import { Storage } from "../src/services/Storage.js"
import { Sync } from "../src/services/Sync.js"
import { SyncEngine } from "../src/services/SyncEngine.js"
import { WriteEvents } from "../src/services/WriteEvents.js"

const ONLINE = { syncEnabled: true, syncOnCommit: true, properties: {} }

const runtime = ManagedRuntime.make(Eidetica.layer({ storage: "memory" }))
const say = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`)

/** Waiters for a database reaching a count. */
const awaiting: Array<{ treeId: string; count: number }> = []

const setup = Effect.gen(function*() {
  const sync = yield* Sync
  const instance = yield* Instance
  yield* sync.enableHttpTransport()
  const address = yield* sync.startServer("127.0.0.1:0")
  yield* instance.createUser("bench")
  const user = yield* instance.loginUser("bench")
  const key = yield* user.getDefaultKey
  const storage = yield* Storage
  const events = yield* WriteEvents
  // one listener for arrivals and counts, subscribed before any sync can store anything
  const subscribed = yield* Deferred.make<void>()
  yield* Effect.forkDaemon(Effect.scoped(Effect.gen(function*() {
    const stream = yield* events.subscribe
    yield* Deferred.succeed(subscribed, undefined)
    yield* Stream.runForEach(stream, (e) =>
      Effect.gen(function*() {
        if (e.source === "remote") say({ arrived: e.entryIds })
        for (let i = awaiting.length - 1; i >= 0; i--) {
          const w = awaiting[i]!
          if (w.treeId !== e.treeId) continue
          if ((yield* storage.count(w.treeId)) >= w.count) {
            awaiting.splice(i, 1)
            say({ reached: w.count })
          }
        }
      })
    )
  })))
  yield* Deferred.await(subscribed)
  return { address, deviceId: instance.deviceId, user, key }
})

const main = async () => {
  const { address, deviceId, user, key } = await runtime.runPromise(setup)
  const signers = new Map<string, Signer>()
  const signerOf = (treeId: string) =>
    Effect.gen(function*() {
      const known = signers.get(treeId)
      if (known !== undefined) return known
      const { signer } = yield* user.openDatabase(treeId)
      signers.set(treeId, signer)
      return signer
    })
  const register = (treeId: string, peer: string, peerAddress: string) =>
    Effect.flatMap(SyncEngine, (engine) =>
      engine.registerSyncPeer({ peerPubkey: peer, treeId, addresses: [{ transport_type: "http", address: peerAddress }] }))

  type Command = { cmd: string; treeId: string; peer: string; address: string; n: number; count: number }
  const handle = (c: Command): Effect.Effect<unknown, unknown, Eidetica.Services> => {
    switch (c.cmd) {
      case "create":
        return Effect.gen(function*() {
          const { db, signer } = yield* user.createDatabase(Doc.from({ name: "live" }), key)
          const txn = Transaction.begin(db, signer)
          yield* new SettingsStore(txn).setGlobalPermission(Permission.Write(10))
          yield* Transaction.commit(txn)
          yield* user.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: ONLINE })
          signers.set(db.rootId, signer)
          return { treeId: db.rootId }
        })
      case "join":
        return Effect.gen(function*() {
          yield* user.trackDatabase({ databaseId: c.treeId, keyId: key, syncSettings: ONLINE })
          const handle = yield* register(c.treeId, c.peer, c.address)
          yield* handle.waitForInitialSync
          return { joined: true }
        })
      case "register":
        return Effect.as(register(c.treeId, c.peer, c.address), { registered: true })
      case "commit":
        return Effect.gen(function*() {
          const signer = yield* signerOf(c.treeId)
          for (let i = 0; i < c.n; i++) {
            const txn = Transaction.begin({ rootId: c.treeId }, signer)
            yield* new DocStore(txn, "data").set(`${deviceId.slice(8, 16)}-${i}`, i)
            yield* Transaction.commit(txn)
          }
          return { committed: c.n }
        })
      case "await":
        return Effect.gen(function*() {
          const storage = yield* Storage
          if ((yield* storage.count(c.treeId)) >= c.count) return { reached: c.count }
          awaiting.push({ treeId: c.treeId, count: c.count })
          return undefined
        })
      default:
        return Effect.succeed({ error: `unknown command ${c.cmd}` })
    }
  }

  say({ ready: address, deviceId })
  const lines = createInterface({ input: process.stdin })
  lines.on("line", (line) => {
    const command = JSON.parse(line) as Command
    runtime.runPromise(handle(command)).then(
      (answer) => answer !== undefined && say(answer),
      (error: unknown) => say({ error: String(error) })
    )
  })
  lines.on("close", () => {
    void runtime.dispose().then(() => process.exit(0))
  })
}

void main()
