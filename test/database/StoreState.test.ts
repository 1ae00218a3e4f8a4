import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import fc from "fast-check"
import type { Plain } from "../../src/core/Doc.js"
import type { StoredEntry } from "../../src/core/Entry.js"
import * as Database from "../../src/database/Database.js"
import { ingest } from "../../src/database/Ingest.js"
import {
  type CheckpointPolicy,
  defaultCheckpoints,
  invalidate,
  layerCache,
  layerCacheWith,
  PERSIST_AFTER,
  StateCache,
  stateOf
} from "../../src/database/StoreState.js"
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
          const made = yield* linearHistory(key, n, (i) => [`k${i % 300}`, i])
          yield* ingest(made.entries, "remote")
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

/** A storage that counts the entries a fold reads (through `storeData`). */
const counting = (s: Storage["Type"], counter?: { fetched: number }): Storage["Type"] =>
  counter === undefined ? s : { ...s, storeData: (ids, store) => ((counter.fetched += ids.length), s.storeData(ids, store)) }

/** A process's engine over this storage (a fresh one when not given): its own state cache. */
const memoryWith = (cache: Layer.Layer<StateCache>, counter?: { fetched: number }, storage?: Storage["Type"]) =>
  Layer.mergeAll(
    storage === undefined
      ? Layer.effect(Storage, Effect.map(StorageLayers.makeMemory, (s) => counting(s, counter)))
      : Layer.succeed(Storage, counting(storage, counter)),
    AuthLayers.layerNode,
    cache,
    WriteEvents.layer
  )

/** All entries of a tree, parents first. */
const dump = (treeId: string) =>
  Effect.flatMap(Storage, (s) => Effect.flatMap(s.tips(treeId), (tips) => Effect.flatMap(s.ancestors(treeId, tips), (ids) => s.getMany(ids))))

/**
 * A history written on one replica, then continued concurrently on `forks` replicas from the same
 * point, each writing the same keys (so the fold order decides every value): the union, parents first.
 */
const concurrentHistory = (shared: number, forks: number, each: number) =>
  Effect.gen(function* () {
    const auth = yield* Auth
    const key = yield* auth.generateKey
    const base = yield* linearHistory(key, shared, (i) => [`k${i % 7}`, `shared ${i}`])
    const all = new Map(base.entries.map((e) => [e.id, e]))
    for (let f = 0; f < forks; f++) {
      const entries = yield* Effect.provide(
        Effect.gen(function* () {
          yield* ingest(base.entries, "remote")
          for (let i = 0; i < each; i++) {
            const t = Transaction.begin(base.db, key)
            yield* new DocStore(t, "data").set(`k${i % 7}`, `fork ${f} ${i}`)
            if (i % 3 === f % 3) yield* new DocStore(t, "data").delete(`k${(i + 1) % 7}`)
            yield* Transaction.commit(t)
          }
          return yield* dump(base.db.rootId)
        }),
        memoryWith(layerCache)
      )
      for (const e of entries) all.set(e.id, e)
    }
    return { treeId: base.db.rootId, entries: [...all.values()].sort((a, b) => a.height - b.height) }
  })

/**
 * `n` one-key commits to store "data" on one replica (commit i sets the key and value `write(i)`
 * gives; by default ten keys over and over): the database and its entries, parents first.
 */
const linearHistory = (
  key: Database.Signer,
  n: number,
  write: (i: number) => readonly [string, Plain] = (i) => [`k${i % 10}`, i]
) =>
  Effect.provide(
    Effect.gen(function* () {
      const db = yield* Database.create({ signer: key })
      for (let i = 0; i < n; i++) {
        const t = Transaction.begin(db, key)
        yield* new DocStore(t, "data").set(...write(i))
        yield* Transaction.commit(t)
      }
      return { db, entries: yield* dump(db.rootId) }
    }),
    memoryWith(layerCache)
  )

/** One write to "data" on another replica that holds the history only up to `height`: it is concurrent with the rest. */
const concurrentWrite = (
  history: { readonly db: Database.Database; readonly entries: ReadonlyArray<StoredEntry> },
  key: Database.Signer,
  height: number
) =>
  Effect.provide(
    Effect.gen(function* () {
      yield* ingest(history.entries.filter((e) => e.height <= height), "remote")
      const t = Transaction.begin(history.db, key)
      yield* new DocStore(t, "data").set("k3", "concurrent")
      const id = yield* Transaction.commit(t)
      return (yield* (yield* Storage).getMany([id]))[0]!
    }),
    memoryWith(layerCache)
  )

/** The state a fresh cache folds from scratch over these entries. */
const freshFold = (treeId: string, entries: ReadonlyArray<StoredEntry>) =>
  Effect.provide(
    Effect.gen(function* () {
      yield* (yield* Storage).put(entries)
      return (yield* stateOf(treeId, "data")).toJSON()
    }),
    memoryWith(layerCache)
  )

describe("store state checkpoints", () => {
  it.effect("reads between arrivals in any order agree with a fold from scratch (refolds start from checkpoints)", () =>
    Effect.gen(function* () {
      const { treeId, entries } = yield* concurrentHistory(12, 3, 16)
      // a small policy, so that this history exercises every path: checkpoints 2 and 7 back, one every 3 merged
      const policy = layerCacheWith({ lags: [2, 7], every: 3, max: 4 })
      fc.assert(
        fc.property(fc.array(fc.nat(), { minLength: entries.length, maxLength: entries.length }), fc.nat(4), (keys, stride) => {
          const order = entries.map((_, i) => i).sort((a, b) => keys[a]! - keys[b]! || a - b)
          Effect.runSync(
            Effect.provide(
              Effect.gen(function* () {
                const storage = yield* Storage
                for (let n = 0; n < order.length; n++) {
                  yield* storage.put([entries[order[n]!]!])
                  if (n % (stride + 1) !== 0 && n !== order.length - 1) continue
                  const read = (yield* stateOf(treeId, "data")).toJSON()
                  expect(read).toEqual(yield* freshFold(treeId, order.slice(0, n + 1).map((i) => entries[i]!)))
                }
              }),
              memoryWith(policy)
            )
          )
        }),
        { numRuns: 25 }
      )
    }).pipe(Effect.provide(AuthLayers.layerNode)))

  it.effect("a concurrent entry that sorts near the end of a long history refolds only the entries after a checkpoint", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const key = yield* auth.generateKey
      // 400 entries on one replica; another replica, holding the first 390, writes one concurrently
      const long = yield* linearHistory(key, 400)
      const concurrent = yield* concurrentWrite(long, key, 390)
      // read once after everything arrived, or once early and once after the rest arrived in one run
      // (merged on top: that merge keeps checkpoints too)
      for (const readEarly of [false, true]) {
        const counter = { fetched: 0 }
        const { first, second } = yield* Effect.provide(
          Effect.gen(function* () {
            if (readEarly) {
              yield* ingest(long.entries.filter((e) => e.height <= 100), "remote")
              yield* stateOf(long.db.rootId, "data")
            }
            yield* ingest(long.entries, "remote")
            yield* stateOf(long.db.rootId, "data")
            const first = counter.fetched
            yield* ingest([concurrent], "remote")
            counter.fetched = 0
            const state = (yield* stateOf(long.db.rootId, "data")).toJSON()
            expect(state).toEqual(yield* freshFold(long.db.rootId, [...long.entries, concurrent]))
            return { first, second: counter.fetched }
          }),
          memoryWith(layerCache, counter)
        )
        expect(concurrent.height).toBe(391)
        expect(first).toBeGreaterThanOrEqual(400) // the reads before fold everything once
        // the entries after the checkpoint 64 back (plus the new one), not the whole history
        expect(second).toBeGreaterThan(0)
        expect(second).toBeLessThanOrEqual(64 + 1)
      }
    }).pipe(Effect.provide(AuthLayers.layerNode)))

  it.effect("a large state keeps its checkpoints further apart: one per slotsPerEntry slots of state, not one per `every` entries", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const key = yield* auth.generateKey
      // 100 entries, each adding a key: the state grows by one slot an entry
      const history = yield* linearHistory(key, 100, (i) => [`k${i}`, i])
      const treeId = history.db.rootId
      const concurrent = yield* concurrentWrite(history, key, history.entries.at(-1)!.height - 2)
      const expected = yield* freshFold(treeId, [...history.entries, concurrent])
      // entries arriving one at a time, each read (merged on top); then the concurrent one: how many does its refold read?
      const refoldReads = (policy: CheckpointPolicy) =>
        Effect.gen(function* () {
          const counter = { fetched: 0 }
          const state = yield* Effect.provide(
            Effect.gen(function* () {
              for (const e of history.entries) {
                yield* ingest([e], "remote")
                yield* stateOf(treeId, "data")
              }
              yield* ingest([concurrent], "remote")
              counter.fetched = 0
              return (yield* stateOf(treeId, "data")).toJSON()
            }),
            memoryWith(layerCacheWith(policy), counter)
          )
          expect(state).toEqual(expected)
          return counter.fetched
        })
      // every 4 entries: the refold starts at most 4 entries back
      expect(yield* refoldReads({ lags: [], every: 4, max: 100 })).toBeLessThanOrEqual(4 + 2)
      // one per 2 slots: checkpoints further apart as the state grows (at 4, 8, 12, 18, 27, 40, 60, 90 entries)
      const large = yield* refoldReads({ lags: [], every: 4, max: 100, slotsPerEntry: 2 })
      expect(large).toBeGreaterThan(4 + 2)
      expect(large).toBeLessThan(100 - 4 + 1)
      // one per 1/100 slot: after the first checkpoint (4 entries in, the interval measured on the empty
      // state) the interval outgrows the history, so the refold reads every entry after those 4
      expect(yield* refoldReads({ lags: [], every: 4, max: 100, slotsPerEntry: 0.01 })).toBe(100 - 4 + 1)
    }).pipe(Effect.provide(AuthLayers.layerNode)))

  it.effect("entries merged on top keep the lag checkpoints only while copying the state costs less than the run", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const key = yield* auth.generateKey
      // a checkpoint 3 entries back from the end of a run; one slot of state per merged entry pays a copy
      const policy: CheckpointPolicy = { lags: [3], every: 10_000, max: 10, slotsPerEntry: 1 }
      const checkpointsAfter = (write: (i: number) => readonly [string, Plain]) =>
        Effect.gen(function* () {
          const history = yield* linearHistory(key, 200, write)
          const treeId = history.db.rootId
          return yield* Effect.provide(
            Effect.gen(function* () {
              const cache = yield* StateCache
              yield* ingest(history.entries.slice(0, 190), "remote")
              yield* stateOf(treeId, "data")
              const before = [...cache.states.values()][0]!.checkpoints.length
              // the last 11 entries merged on top
              yield* ingest(history.entries.slice(190), "remote")
              const state = yield* stateOf(treeId, "data")
              expect(state.toJSON()).toEqual(yield* freshFold(treeId, history.entries))
              return [...cache.states.values()][0]!.checkpoints.length - before
            }),
            memoryWith(layerCacheWith(policy))
          )
        })
      // ten keys written over and over: a state of ~10 slots, cheap to copy: the run keeps its lag checkpoint
      expect(yield* checkpointsAfter((i) => [`k${i % 10}`, i])).toBe(1)
      // a key per entry: ~190 slots, more than the 11-entry run is worth copying: none kept
      expect(yield* checkpointsAfter((i) => [`k${i}`, i])).toBe(0)
    }).pipe(Effect.provide(AuthLayers.layerNode)))

  it.effect("a state is saved again after 1,000 more entries, with a checkpoint; after a reopen a concurrent entry refolds from that checkpoint", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const key = yield* auth.generateKey
      const n = 2 * PERSIST_AFTER + 100
      const long = yield* linearHistory(key, n)
      const treeId = long.db.rootId
      const top = long.entries.at(-1)!.height
      const concurrent = yield* concurrentWrite(long, key, top - 10)
      const storage = yield* StorageLayers.makeMemory
      // the first process: a fold of the first 1,100 entries, then 1,000 more merged on top
      const saved = yield* Effect.provide(
        Effect.gen(function* () {
          yield* ingest(long.entries.filter((e) => e.height <= PERSIST_AFTER + 100), "remote")
          yield* stateOf(treeId, "data")
          const first = Option.getOrThrow(yield* storage.getCachedState(treeId, "data"))
          yield* ingest(long.entries, "remote")
          yield* stateOf(treeId, "data")
          const second = Option.getOrThrow(yield* storage.getCachedState(treeId, "data"))
          return { first, second }
        }),
        memoryWith(layerCache, undefined, storage)
      )
      expect(saved.second.seq).toBeGreaterThan(saved.first.seq) // saved again, not left at the first fold
      expect(saved.second.maxHeight).toBe(top)
      const checkpoint = Option.getOrThrow(yield* storage.getCachedState(`${treeId}#checkpoint`, "data"))
      expect(checkpoint.seq).toBe(saved.second.seq)
      expect(checkpoint.maxHeight).toBeLessThan(top)
      // a reopened instance (a new state cache over the same storage) gets an entry written
      // concurrently 10 below the top: it refolds from the saved checkpoint, not from the start
      const counter = { fetched: 0 }
      const state = yield* Effect.provide(
        Effect.gen(function* () {
          yield* ingest([concurrent], "remote")
          counter.fetched = 0
          return (yield* stateOf(treeId, "data")).toJSON()
        }),
        memoryWith(layerCache, counter, storage)
      )
      expect(state).toEqual(yield* freshFold(treeId, [...long.entries, concurrent]))
      expect(counter.fetched).toBeGreaterThan(0)
      expect(counter.fetched).toBeLessThanOrEqual(64 + 1)
    }).pipe(Effect.provide(AuthLayers.layerNode)))

  it.effect("a growing state is saved again only once its new data reach half its saved size, not every 1,000 entries", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const key = yield* auth.generateKey
      const memory = yield* StorageLayers.makeMemory
      const saves: Array<number> = []
      const storage: Storage["Type"] = {
        ...memory,
        putCachedState: (treeId, store, state) => {
          if (!treeId.endsWith("#checkpoint")) saves.push(state.state.length)
          return memory.putCachedState(treeId, store, state)
        }
      }
      yield* Effect.provide(
        Effect.gen(function* () {
          const db = yield* Database.create({ signer: key })
          let written = 0
          // each entry writes a new key: the state grows with every entry
          const write = (n: number, value: string) =>
            Effect.gen(function* () {
              for (let i = 0; i < n; i++) {
                const t = Transaction.begin(db, key)
                yield* new DocStore(t, "data").set(`k${written++}`, value)
                yield* Transaction.commit(t)
              }
            })
          // a first fold of over 1,000 entries, one of them large: saved (nothing was)
          yield* write(1, "x".repeat(100_000))
          yield* write(PERSIST_AFTER, "small")
          yield* stateOf(db.rootId, "data")
          expect(saves.length).toBe(1)
          const savedSize = saves[0]!
          expect(savedSize).toBeGreaterThan(100_000)
          // 1,100 more small entries, read as they come: many entries, little data: not saved again
          for (let i = 0; i < 11; i++) {
            yield* write(100, "small")
            yield* stateOf(db.rootId, "data")
          }
          expect(saves.length).toBe(1)
          // one more entry carrying over half the saved size: saved now
          yield* write(1, "y".repeat(savedSize / 2))
          const state = yield* stateOf(db.rootId, "data")
          expect(saves.length).toBe(2)
          expect(saves[1]).toBe(state.serialize().length)
          expect(Object.keys(state.toJSON())).toHaveLength(1 + PERSIST_AFTER + 1_100 + 1)
        }),
        Layer.mergeAll(Layer.succeed(Storage, storage), layerCache, WriteEvents.layer)
      )
    }).pipe(Effect.provide(AuthLayers.layerNode)))
})

describe("concurrent readers", () => {
  it.effect("fold new entries into a state once, one after the other, and all see the state after them", () =>
    Effect.gen(function* () {
      const auth = yield* Effect.provide(Auth, AuthLayers.layerNode)
      const key = yield* auth.generateKey
      const history = yield* linearHistory(key, 30, (i) => ["k", i])
      const counter = { fetched: 0 }
      const memory = yield* StorageLayers.makeMemory
      // a storage that yields while fetching, so two reads would interleave their folds
      const slow: Storage["Type"] = { ...memory, storeData: (ids, store) => Effect.zipLeft(memory.storeData(ids, store), Effect.yieldNow()) }
      return yield* Effect.provide(
        Effect.gen(function* () {
          yield* ingest(history.entries.slice(0, 11), "remote")
          expect((yield* stateOf(history.db.rootId, "data")).get("k")).toBe(9)
          yield* ingest(history.entries.slice(11), "remote")
          counter.fetched = 0
          const reads = yield* Effect.all(
            Array.from({ length: 3 }, () => Effect.map(stateOf(history.db.rootId, "data"), (d) => d.get("k"))),
            { concurrency: "unbounded" }
          )
          expect(reads).toEqual([29, 29, 29])
          // the 20 new entries were fetched (and merged) once, not once per reader
          expect(counter.fetched).toBe(20)
          const cache = yield* StateCache
          expect(cache.updating.size).toBe(0)
        }),
        memoryWith(layerCache, counter, slow)
      )
    }))

  it.effect("a read of a cached state with nothing new takes no lock; one with something new folds it under the lock", () =>
    Effect.gen(function* () {
      const auth = yield* Effect.provide(Auth, AuthLayers.layerNode)
      const key = yield* auth.generateKey
      const history = yield* linearHistory(key, 30, (i) => ["k", i])
      const memory = yield* StorageLayers.makeMemory
      // how many state locks were held each time the storage was asked what is new since a state
      const locksHeld: Array<number> = []
      const cacheOf: { cache?: StateCache["Type"] } = {}
      const watching: Storage["Type"] = {
        ...memory,
        storeEntriesSince: (treeId, store, seq) =>
          Effect.suspend(() => {
            locksHeld.push(cacheOf.cache!.updating.size)
            return memory.storeEntriesSince(treeId, store, seq)
          })
      }
      return yield* Effect.provide(
        Effect.gen(function* () {
          cacheOf.cache = yield* StateCache
          yield* ingest(history.entries.slice(0, 11), "remote")
          expect((yield* stateOf(history.db.rootId, "data")).get("k")).toBe(9)
          locksHeld.length = 0
          expect((yield* stateOf(history.db.rootId, "data")).get("k")).toBe(9)
          expect(locksHeld).toEqual([0])
          yield* ingest(history.entries.slice(11), "remote")
          locksHeld.length = 0
          expect((yield* stateOf(history.db.rootId, "data")).get("k")).toBe(29)
          // looked without the lock, found 19 new entries, took the lock and folded them
          expect(locksHeld).toEqual([0, 1])
          expect(cacheOf.cache.updating.size).toBe(0)
        }),
        memoryWith(layerCache, undefined, watching)
      )
    }))
})

describe("the state cache's bound", () => {
  /**
   * Stores "a", "b" and "c" of 40 keys each (one entry each), and "d" of 100 keys (one entry per key),
   * written into `storage` through another cache: the tree, and how to write more keys to a store.
   */
  const fourStores = (storage: Storage["Type"]) =>
    Effect.provide(
      Effect.gen(function* () {
        const key = yield* (yield* Auth).generateKey
        const db = yield* Database.create({ signer: key })
        const write = (store: string, from: number, to: number) =>
          Effect.gen(function* () {
            const t = Transaction.begin(db, key)
            for (let i = from; i < to; i++) yield* new DocStore(t, store).set(`${store}${i}`, i)
            yield* Transaction.commit(t)
          }).pipe(Effect.provide(memoryWith(layerCache, undefined, storage)))
        for (const store of ["a", "b", "c"]) yield* write(store, 0, 40)
        for (let i = 0; i < 100; i++) yield* write("d", i, i + 1)
        return { treeId: db.rootId, write }
      }),
      memoryWith(layerCache, undefined, storage)
    )
  const cachedStores = (cache: StateCache["Type"]) => [...cache.states.keys()].map((k) => k.split("\u0000")[1])
  const expected = (store: string, n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${store}${i}`, i]))

  it.effect("past its slots, the states read least recently are dropped; read again, they are folded again, the same", () =>
    Effect.gen(function* () {
      const storage = yield* StorageLayers.makeMemory
      const { treeId, write } = yield* fourStores(storage)
      const counter = { fetched: 0 }
      yield* Effect.provide(
        Effect.gen(function* () {
          const cache = yield* StateCache
          expect((yield* stateOf(treeId, "a")).toJSON()).toEqual(expected("a", 40))
          expect((yield* stateOf(treeId, "b")).toJSON()).toEqual(expected("b", 40))
          expect(cachedStores(cache)).toEqual(["a", "b"])
          expect(cache.held.slots).toBe(80)
          // a third state of 40 slots: 120 > 100, so the one read least recently goes
          yield* stateOf(treeId, "c")
          expect(cachedStores(cache)).toEqual(["b", "c"])
          expect(cache.held.slots).toBe(80)
          // reading b makes c the least recently read: reading a again drops c, and refolds a (one entry)
          yield* stateOf(treeId, "b")
          counter.fetched = 0
          expect((yield* stateOf(treeId, "a")).toJSON()).toEqual(expected("a", 40))
          expect(counter.fetched).toBe(1)
          expect(cachedStores(cache)).toEqual(["b", "a"])
          expect(cache.held.slots).toBe(80)
          // a cached state is read without folding anything
          counter.fetched = 0
          yield* stateOf(treeId, "b")
          expect(counter.fetched).toBe(0)
          // a state that grows by merges is counted at its new size: b 50 + a 40 fit...
          yield* write("b", 40, 50)
          expect((yield* stateOf(treeId, "b")).toJSON()).toEqual(expected("b", 50))
          expect(cachedStores(cache)).toEqual(["a", "b"])
          expect(cache.held.slots).toBe(90)
          // ...a 60 + b 50 do not
          yield* write("a", 40, 60)
          expect((yield* stateOf(treeId, "a")).toJSON()).toEqual(expected("a", 60))
          expect(cachedStores(cache)).toEqual(["a"])
          expect(cache.held.slots).toBe(60)
        }),
        memoryWith(layerCacheWith(defaultCheckpoints, 100), counter, storage)
      )
    }).pipe(Effect.provide(AuthLayers.layerNode)))

  it.effect("a state's checkpoints count, the state just read is kept even when it alone is over the bound, and invalidate gives slots back", () =>
    Effect.gen(function* () {
      const storage = yield* StorageLayers.makeMemory
      const { treeId } = yield* fourStores(storage)
      yield* Effect.provide(
        Effect.gen(function* () {
          const cache = yield* StateCache
          yield* stateOf(treeId, "a")
          expect(cache.held.slots).toBe(40)
          // 100 entries: the fold keeps the state 64 entries before its end as a checkpoint, a copy
          // of the state, counted at the state's size: 100 x 2
          expect((yield* stateOf(treeId, "d")).toJSON()).toEqual(expected("d", 100))
          expect(cachedStores(cache)).toEqual(["d"])
          expect(cache.held.slots).toBe(200)
          yield* stateOf(treeId, "b")
          expect(cachedStores(cache)).toEqual(["b"])
          expect(cache.held.slots).toBe(40)
          // forgetting a tree's states gives their slots back
          yield* invalidate(treeId)
          expect(cache.states.size).toBe(0)
          expect(cache.held.slots).toBe(0)
        }),
        memoryWith(layerCacheWith(defaultCheckpoints, 30), undefined, storage)
      )
    }).pipe(Effect.provide(AuthLayers.layerNode)))
})
