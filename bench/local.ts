/**
 * Local engine figures: commits per second to a SQLite file, verified batch ingestion, read after
 * append on a 10,000-entry store, and password login.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import * as Database from "../src/database/Database.js"
import { ingestEncoded } from "../src/database/Ingest.js"
import { layerCache } from "../src/database/StoreState.js"
import { DocStore, DocStoreView } from "../src/database/Stores.js"
import * as Transaction from "../src/database/Transaction.js"
import * as AuthLayers from "../src/layers/Auth.js"
import * as CipherLayers from "../src/layers/Cipher.js"
import * as InstanceLayers from "../src/layers/Instance.js"
import * as StorageLayers from "../src/layers/Storage.js"
import { Auth } from "../src/services/Auth.js"
import { Instance } from "../src/services/Instance.js"
import { Storage } from "../src/services/Storage.js"
import * as WriteEvents from "../src/services/WriteEvents.js"
import { median, report } from "./report.js"

const engine = (filename?: string) =>
  Layer.mergeAll(
    filename === undefined ? StorageLayers.layerMemory : StorageLayers.layerSqlite({ filename }),
    AuthLayers.layerNode,
    CipherLayers.layerNode,
    layerCache,
    WriteEvents.layer
  )

const value = "x".repeat(200)

/**
 * 5,000 single-store one-key transactions, signed and committed to a SQLite file, timed after 500
 * untimed ones that let the JIT compile the commit path (steady state, as in a running app).
 */
const commits = (dir: string) =>
  Effect.gen(function* () {
    const auth = yield* Auth
    const key = yield* auth.generateKey
    const db = yield* Database.create({ signer: key })
    for (let i = 0; i < 500; i++) {
      const t = Transaction.begin(db, key)
      yield* new DocStore(t, "data").set(`w${i % 100}`, value)
      yield* Transaction.commit(t)
    }
    const n = 5_000
    const start = performance.now()
    for (let i = 0; i < n; i++) {
      const t = Transaction.begin(db, key)
      yield* new DocStore(t, "data").set(`k${i % 100}`, value)
      yield* Transaction.commit(t)
    }
    const seconds = (performance.now() - start) / 1000
    report("local.commit_per_s", n / seconds, "commits/s")
  }).pipe(Effect.provide(engine(join(dir, "commits.db"))))

/**
 * A database of `n` one-key commits signed with `key` elsewhere (in a memory engine of its own): its
 * ID and its entries' bytes, parents first.
 */
export const signedHistory = (key: Database.Signer, n: number) =>
  Effect.provide(
    Effect.gen(function* () {
      const db = yield* Database.create({ signer: key })
      for (let i = 0; i < n; i++) {
        const t = Transaction.begin(db, key)
        yield* new DocStore(t, "data").set(`k${i}`, value)
        yield* Transaction.commit(t)
      }
      const storage = yield* Storage
      const ids = yield* storage.ancestors(db.rootId, yield* storage.tips(db.rootId))
      return { rootId: db.rootId, bytes: (yield* storage.getMany(ids)).map((e) => e.bytes) }
    }),
    engine()
  )

/** 10,000 entries signed elsewhere, decoded, verified and stored in one batch into SQLite; then read after append. */
const batch = (dir: string) =>
  Effect.gen(function* () {
    const auth = yield* Auth
    const key = yield* auth.generateKey
    const { rootId, bytes } = yield* signedHistory(key, 10_000)
    const start = performance.now()
    const stored = yield* ingestEncoded(bytes, "remote")
    const seconds = (performance.now() - start) / 1000
    report("local.batch_entries_per_s", stored.length / seconds, "entries/s")
    // read one key right after one append, on the 10,000-entry store
    const db = { rootId }
    const view = new DocStoreView(db, "data")
    yield* view.get("k1")
    const samples: Array<number> = []
    for (let i = 0; i < 50; i++) {
      const t = Transaction.begin(db, key)
      yield* new DocStore(t, "data").set(`k${i}`, `v${i}`)
      yield* Transaction.commit(t)
      const s = performance.now()
      const v = yield* view.get(`k${i}`)
      samples.push(performance.now() - s)
      if (v !== `v${i}`) throw new Error("read after append saw a stale value")
    }
    report("local.read_after_append_ms", median(samples), "ms")
  }).pipe(Effect.provide(engine(join(dir, "batch.db"))))

/** Password login, Argon2id included. */
const login = Effect.gen(function* () {
  const instance = yield* Instance
  yield* instance.createUser("alice", "correct horse battery staple")
  const samples: Array<number> = []
  for (let i = 0; i < 5; i++) {
    const s = performance.now()
    yield* instance.loginUser("alice", "correct horse battery staple")
    samples.push(performance.now() - s)
  }
  report("local.login_ms", median(samples), "ms")
}).pipe(Effect.provide(InstanceLayers.layer.pipe(Layer.provideMerge(engine()))))

/** Run the local suite. */
export const run = async (): Promise<void> => {
  const dir = mkdtempSync(join(tmpdir(), "eidetica-bench-"))
  try {
    await Effect.runPromise(Effect.scoped(commits(dir)))
    await Effect.runPromise(Effect.scoped(batch(dir)))
    await Effect.runPromise(Effect.scoped(login))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
