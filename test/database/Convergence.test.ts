import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import fc from "fast-check"
import type { StoredEntry } from "../../src/core/Entry.js"
import * as Database from "../../src/database/Database.js"
import { ingest } from "../../src/database/Ingest.js"
import { layerCache, stateOf } from "../../src/database/StoreState.js"
import { DocStore, Table } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { Auth } from "../../src/services/Auth.js"
import { Storage } from "../../src/services/Storage.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"

const env = () => Layer.mergeAll(StorageLayers.layerMemory, AuthLayers.layerNode, layerCache, WriteEvents.layer)

/** All entries of a tree, parents first. */
const dump = (treeId: string) =>
  Effect.flatMap(Storage, (s) => Effect.flatMap(s.tips(treeId), (tips) => Effect.flatMap(s.ancestors(treeId, tips), (ids) => s.getMany(ids))))

/** Three replicas fork from one history and write concurrently (same keys too); returns the union. */
const forkedHistory = Effect.gen(function* () {
  const auth = yield* Auth
  const admin = yield* auth.generateKey
  const base = yield* Effect.provide(
    Effect.gen(function* () {
      const db = yield* Database.create({ signer: admin })
      const t = Transaction.begin(db, admin)
      yield* new DocStore(t, "data").set("seed", "0")
      yield* Transaction.commit(t)
      return { db, entries: yield* dump(db.rootId) }
    }),
    env()
  )
  const all = new Map<string, StoredEntry>(base.entries.map((e) => [e.id, e]))
  for (let r = 0; r < 3; r++) {
    const entries = yield* Effect.provide(
      Effect.gen(function* () {
        yield* ingest(base.entries, "remote")
        for (let i = 0; i < 4; i++) {
          const t = Transaction.begin(base.db, admin)
          yield* new DocStore(t, "data").set("same", `r${r}-${i}`)
          yield* new DocStore(t, "data").setPath(`by.r${r}`, i)
          if (i % 2 === 0) yield* new DocStore(t, "fresh").set(`k${r}`, i) // a store created concurrently on every fork
          if (i === 3) yield* new DocStore(t, "data").delete("seed")
          yield* new Table<{ n: number }>(t, "rows").insert({ n: r * 10 + i })
          yield* Transaction.commit(t)
        }
        return yield* dump(base.db.rootId)
      }),
      env()
    )
    for (const e of entries) all.set(e.id, e)
  }
  return { treeId: base.db.rootId, entries: [...all.values()] }
})

const stateAfter = (treeId: string, entries: ReadonlyArray<StoredEntry>, order: ReadonlyArray<number>) =>
  Effect.provide(
    Effect.gen(function* () {
      const storage = yield* Storage
      for (const i of order) yield* storage.put([entries[i]!])
      return {
        tips: yield* storage.tips(treeId),
        data: (yield* stateOf(treeId, "data")).toJSON(),
        fresh: (yield* stateOf(treeId, "fresh")).toJSON(),
        rows: (yield* stateOf(treeId, "rows")).toJSON(),
        dataTips: yield* storage.storeTips(treeId, "data")
      }
    }),
    env()
  )

describe("convergence", () => {
  it.effect("the same set of entries in any arrival order gives the same state and tips", () =>
    Effect.gen(function* () {
      const { treeId, entries } = yield* forkedHistory
      const identity = entries.map((_, i) => i)
      const expected = yield* stateAfter(treeId, entries, identity)
      expect(expected.tips.length).toBe(3)
      expect(Object.keys(expected.fresh).sort()).toEqual(["k0", "k1", "k2"]) // no merge base needed
      expect(expected.data.seed).toBeUndefined()
      expect(Object.keys(expected.rows).length).toBe(12)
      fc.assert(
        fc.property(fc.array(fc.nat(), { minLength: entries.length, maxLength: entries.length }), (keys) => {
          const order = identity.slice().sort((a, b) => keys[a]! - keys[b]! || a - b)
          const got = Effect.runSync(stateAfter(treeId, entries, order))
          expect(got).toEqual(expected)
        }),
        { numRuns: 60 }
      )
    }).pipe(Effect.provide(env())))

  it.effect("a state read between arrivals is refolded when an entry sorts inside history", () =>
    Effect.gen(function* () {
      const { treeId, entries } = yield* forkedHistory
      const identity = entries.map((_, i) => i)
      const expected = yield* stateAfter(treeId, entries, identity)
      const got = yield* Effect.provide(
        Effect.gen(function* () {
          const storage = yield* Storage
          for (const i of [...identity].reverse()) {
            yield* storage.put([entries[i]!])
            yield* stateOf(treeId, "data") // read after every arrival: cache must stay right
          }
          return (yield* stateOf(treeId, "data")).toJSON()
        }),
        env()
      )
      expect(got).toEqual(expected.data)
    }).pipe(Effect.provide(env())))
})
