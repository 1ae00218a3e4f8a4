// Cost of each step of Entry.decode on a typical commit entry.
import * as dagCbor from "@ipld/dag-cbor"
import * as Either from "effect/Either"
import { performance } from "node:perf_hooks"
import * as Entry from "../../src/core/Entry.js"
import { blake3 } from "../../src/core/internal/blake3.js"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Database from "../../src/database/Database.js"
import { layerCache } from "../../src/database/StoreState.js"
import { DocStore } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { Auth } from "../../src/services/Auth.js"
import { Storage } from "../../src/services/Storage.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"
const bytes = await Effect.runPromise(Effect.gen(function* () {
  const key = yield* (yield* Auth).generateKey
  const db = yield* Database.create({ signer: key })
  let id = ""
  for (let i = 0; i < 3; i++) {
    const t = Transaction.begin(db, key)
    yield* new DocStore(t, "data").set(`k${i}`, "x".repeat(200))
    id = yield* Transaction.commit(t)
  }
  return (yield* (yield* Storage).getBytes([id]))[0]!.bytes
}).pipe(Effect.provide(Layer.mergeAll(StorageLayers.layerMemory, AuthLayers.layerNode, layerCache, WriteEvents.layer))))
const N = 20000
const time = (label: string, f: () => unknown) => {
  for (let i = 0; i < 2000; i++) f()
  const s = performance.now()
  for (let i = 0; i < N; i++) f()
  console.log(label.padEnd(16), (((performance.now() - s) * 1000) / N).toFixed(2), "us")
}
const e = Either.getOrThrow(Entry.decode(bytes))
console.log("bytes", bytes.length)
time("decode", () => Entry.decode(bytes))
time("cbor.decode", () => dagCbor.decode(bytes))
time("encode", () => Entry.encode(e.entry))
time("blake3", () => blake3(bytes))
time("idOfBytes", () => Entry.idOfBytes(bytes))
time("validate", () => Entry.validate(e.entry))
time("signingBytes", () => Entry.signingBytes(e.entry))
time("decodeTrusted", () => Entry.decodeTrusted(bytes, e.id))
