import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { Doc } from "../../src/core/Doc.js"
import { DocStore } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as Eidetica from "../../src/layers/Eidetica.js"
import * as SchedulerLayers from "../../src/layers/Scheduler.js"
import { Instance } from "../../src/services/Instance.js"
import { Sync } from "../../src/services/Sync.js"

/** Ticks of a 1 ms interval while `effect` runs on `runtime`. */
const ticksDuring = async <R>(runtime: ManagedRuntime.ManagedRuntime<R, never>, effect: Effect.Effect<unknown, unknown, R>) => {
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  try {
    await runtime.runPromise(effect)
    return ticks
  } finally {
    clearInterval(timer)
  }
}

/** A busy loop of ~150 ms of synchronous effects, yielding only as the scheduler decides. */
const busy = Effect.gen(function*() {
  const end = performance.now() + 150
  let n = 0
  while (performance.now() < end) n += yield* Effect.sync(() => 1)
  return n
})

describe("FairScheduler", () => {
  it("a long run of synchronous work lets timers fire; Effect's default scheduler does not", async () => {
    const fair = ManagedRuntime.make(SchedulerLayers.layer(5))
    const plain = ManagedRuntime.make(Layer.empty)
    try {
      // ~30 turns in 150 ms on a quiet machine; a loaded one (CI beside other work) gives fewer, never none
      expect(await ticksDuring(fair, busy)).toBeGreaterThan(0)
      // the contrast that motivates it: 150 ms of work is far below the default's 2,048 × 2,048 operations
      expect(await ticksDuring(plain, busy)).toBe(0)
    } finally {
      await fair.dispose()
      await plain.dispose()
    }
  })

  it("the engine runs on it: its HTTP server answers while the app commits in a tight loop", async () => {
    const runtime = ManagedRuntime.make(Eidetica.layer({ storage: "memory" }))
    try {
      const { address, db, signer } = await runtime.runPromise(
        Effect.gen(function*() {
          const sync = yield* Sync
          const instance = yield* Instance
          yield* sync.enableHttpTransport()
          const address = yield* sync.startServer("127.0.0.1:0")
          yield* instance.createUser("alice")
          const user = yield* instance.loginUser("alice")
          const { db, signer } = yield* user.createDatabase(Doc.from({ name: "busy" }), yield* user.getDefaultKey)
          return { address, db, signer }
        })
      )
      const total = 1_500
      let committed = 0
      const loop = runtime.runPromise(
        Effect.gen(function*() {
          for (let i = 0; i < total; i++) {
            const txn = Transaction.begin(db, signer)
            yield* new DocStore(txn, "data").set(`k${i}`, i)
            yield* Transaction.commit(txn)
            committed++
          }
        })
      )
      const health = await fetch(`http://${address}/health`).then((r) => r.json())
      const answeredAfter = committed
      await loop
      expect(health).toEqual({ status: "ok" })
      expect(committed).toBe(total)
      expect(answeredAfter).toBeLessThan(total)
    } finally {
      await runtime.dispose()
    }
  }, 30_000)
})
