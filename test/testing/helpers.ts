/**
 * Shared by the testing kit's tests: a test body on a fresh virtual clock, a seeded Random and a
 * seeded simulated network.
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import { SimClock, SimNetwork } from "../../src/testing.js"

export interface Env {
  readonly clock: SimClock.SimClock
  readonly network: SimNetwork.SimNetwork
}

/** Run a test body on a fresh virtual clock, a seeded Random and a seeded network. */
export const sim = <A, E>(seed: number, body: (env: Env) => Effect.Effect<A, E, Scope.Scope>) => {
  const clock = SimClock.make()
  return Effect.flatMap(SimNetwork.make({ seed }), (network) => body({ clock, network })).pipe(
    Effect.scoped,
    Effect.withRandom(Random.make(seed)),
    SimClock.provide(clock)
  )
}
