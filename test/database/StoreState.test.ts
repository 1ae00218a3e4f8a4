import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Database from "../../src/database/Database.js"
import { ingest } from "../../src/database/Ingest.js"
import { layerCache, PERSIST_AFTER, stateOf } from "../../src/database/StoreState.js"
import { DocStore } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { Auth } from "../../src/services/Auth.js"
import { Storage } from "../../src/services/Storage.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"

const sqlite = (filename: string) =>
  Layer.mergeAll(StorageLayers.layerSqlite({ filename }), AuthLayers.layerNode, layerCache, WriteEvents.layer)

describe("persisted store states", () => {
  it.live("a large fold is saved, and a reopened SQLite instance starts from it", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "eidetica-state-"))
      const filename = join(dir, "s.db")
      const n = PERSIST_AFTER + 50
      const { rootId, key, expected } = yield* Effect.provide(
        Effect.gen(function* () {
          const auth = yield* Auth
          const key = yield* auth.generateKey
          // history written elsewhere, then ingested here in one batch (so the first read folds it all)
          const made = yield* Effect.provide(
            Effect.gen(function* () {
              const db = yield* Database.create({ signer: key })
              for (let i = 0; i < n; i++) {
                const t = Transaction.begin(db, key)
                yield* new DocStore(t, "data").set(`k${i % 300}`, i)
                yield* Transaction.commit(t)
              }
              const s = yield* Storage
              return { db, all: yield* s.getMany(yield* s.ancestors(db.rootId, yield* s.tips(db.rootId))) }
            }),
            Layer.mergeAll(StorageLayers.layerMemory, AuthLayers.layerNode, layerCache, WriteEvents.layer)
          )
          yield* ingest(made.all, "remote")
          const state = yield* stateOf(made.db.rootId, "data")
          const storage = yield* Storage
          const saved = Option.getOrThrow(yield* storage.getCachedState(made.db.rootId, "data"))
          // mark the saved state, to see below that a reopened instance starts from it instead of refolding
          const marked = state.clone().set("marker", "from-cache")
          yield* storage.putCachedState(made.db.rootId, "data", { ...saved, state: marked.serialize() })
          return { rootId: made.db.rootId, key, expected: state.toJSON() }
        }).pipe(Effect.scoped),
        sqlite(filename)
      )
      const after = yield* Effect.provide(
        Effect.gen(function* () {
          const db = yield* Database.open(rootId)
          const before = (yield* stateOf(rootId, "data")).toJSON()
          const t = Transaction.begin(db, key)
          yield* new DocStore(t, "data").set("new", "yes")
          yield* Transaction.commit(t)
          return { before, now: (yield* stateOf(rootId, "data")).toJSON() }
        }).pipe(Effect.scoped),
        sqlite(filename)
      )
      rmSync(dir, { recursive: true, force: true })
      expect(after.before).toEqual({ ...expected, marker: "from-cache" })
      expect(after.now).toEqual({ ...expected, marker: "from-cache", new: "yes" })
    }))
})
