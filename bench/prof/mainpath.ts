// The batch-ingest figure's main-thread work alone: 10,000 entries decoded, checked and stored into
// memory with signature verification answered at once (an Auth whose verifyBatch says yes without
// verifying), so what is timed is the CPU the main thread spends per entry, steadier than the figure
// itself on a busy two-core machine. Best of five rounds, each into a fresh storage.
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { performance } from "node:perf_hooks"
import { ingestEncoded } from "../../src/database/Ingest.js"
import { layerCache } from "../../src/database/StoreState.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { Auth } from "../../src/services/Auth.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"
import { signedHistory } from "../local.js"
import * as Prof from "./inspect.js"

const noVerify = Layer.effect(Auth, Effect.map(AuthLayers.makeNoble, (auth) => ({
  ...auth,
  verifyBatch: (items: ReadonlyArray<unknown>) => Effect.succeed(items.map(() => true))
})))
/** The round profiled with PROF=1 (PROF_ROUND, default the last: warm; 0 is the cold one the figure sees). */
const profRound = Number(process.env.PROF_ROUND ?? 4)
const engine = () => Layer.mergeAll(StorageLayers.layerMemory, noVerify, layerCache, WriteEvents.layer)

Effect.runPromise(Effect.scoped(Effect.gen(function* () {
  const auth = yield* Effect.provide(Auth, AuthLayers.layerNode)
  const key = yield* auth.generateKey
  const { bytes } = yield* signedHistory(key, 10_000)
  let best = Infinity
  for (let round = 0; round < 5; round++) {
    if (round === profRound) yield* Effect.promise(() => Prof.start())
    const s = performance.now()
    yield* Effect.provide(ingestEncoded(bytes, "remote"), engine())
    best = Math.min(best, performance.now() - s)
    if (process.env.ALL) console.log("round", round, (performance.now() - s).toFixed(0))
    if (round === profRound) yield* Effect.promise(() => Prof.stop("mainpath"))
  }
  console.log("main-thread ms for 10,000 (best of 5)", best.toFixed(0), "us/entry", (best / 10).toFixed(1))
}).pipe(Effect.provide(AuthLayers.layerNode))))
