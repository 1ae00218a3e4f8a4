/**
 * A commit interrupted (a timeout, a cancel) while its entry is being stored: the entry is stored,
 * and the transaction is committed, so a retry cannot sign the same changes into a second entry.
 */
import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import { Doc } from "../../src/core/Doc.js"
import * as Database from "../../src/database/Database.js"
import { layerCache } from "../../src/database/StoreState.js"
import { Table } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { Auth } from "../../src/services/Auth.js"
import { Storage } from "../../src/services/Storage.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"

// a storage whose writes take a while (a slow disk): the commit's store step suspends in put
const slowStorage = Layer.effect(
  Storage,
  Effect.map(StorageLayers.makeMemory, (s) => ({ ...s, put: (batch: Parameters<typeof s.put>[0]) => Effect.zipRight(Effect.sleep("30 millis"), s.put(batch)) }))
)
const env = Layer.mergeAll(slowStorage, AuthLayers.layerNode, layerCache, WriteEvents.layer)

it.live("a commit interrupted while its entry is stored leaves the transaction committed: no second entry", () =>
  Effect.gen(function*() {
    const auth = yield* Auth
    const storage = yield* Storage
    const key = yield* auth.generateKey
    const db = yield* Database.create({ signer: key, settings: Doc.from({ name: "n" }) })
    const txn = Transaction.begin(db, key)
    yield* new Table<{ amount: number }>(txn, "payments").insert({ amount: 100 })
    const before = yield* storage.count(db.rootId)
    const first = yield* Effect.exit(Effect.timeout(Transaction.commit(txn), "10 millis"))
    expect(Exit.isFailure(first)).toBe(true) // the caller gave up
    expect(yield* storage.count(db.rootId)).toBe(before + 1) // but the entry was stored
    expect(txn.committed).toBe(true)
    const retry = yield* Effect.exit(Transaction.commit(txn))
    expect(Exit.isFailure(retry)).toBe(true) // misuse: the transaction is committed
    expect(yield* storage.count(db.rootId)).toBe(before + 1)
  }).pipe(Effect.provide(env)))
