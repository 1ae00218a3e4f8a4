/**
 * The simulation's power, shown by a bug it must catch: an engine that never hands a commit to its
 * peers (no sync-on-commit, no relay). The settle phase used to flush every pair before the engine
 * had time of its own, so such an engine passed every seed.
 */
import { describe, expect, it, vi } from "vitest"

vi.mock("../../src/actors/DatabaseActor.js", async (importOriginal) => {
  const mod = await importOriginal<typeof import("../../src/actors/DatabaseActor.js")>()
  const Effect = await import("effect/Effect")
  return {
    ...mod,
    make: (options: Parameters<typeof mod.make>[0]) =>
      Effect.map(mod.make(options), (actor) => ({ ...actor, value: { ...actor.value, onWrite: () => Effect.void } }))
  }
})

const { Simulation } = await import("../../src/testing.js")

describe("the simulation catches an engine that never pushes commits", () => {
  it("every seed fails `converged`", async () => {
    for (let seed = 0; seed < 3; seed++) {
      const report = await Simulation.run({ peers: 3, seed, steps: 30, faults: { dropRate: 0.1, partitionRate: 0.05 } })
      expect(report.converged, `seed ${seed}`).toBe(false)
      expect(report.violations.join("\n")).toMatch(/converged: (the engine did not converge on its own|a write on healthy links did not reach every peer)/)
    }
  }, 120_000)
})
