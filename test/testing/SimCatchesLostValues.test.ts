/**
 * The simulation's power, shown by a bug it must catch: a store that keeps a wrong value for some
 * keys on every peer alike (convergence and entry counts cannot see it; comparing with what was
 * written does).
 */
import { describe, expect, it, vi } from "vitest"

vi.mock("../../src/database/Stores.js", async (importOriginal) => {
  const mod = await importOriginal<typeof import("../../src/database/Stores.js")>()
  const original = mod.DocStore.prototype.set
  mod.DocStore.prototype.set = function(this: InstanceType<typeof mod.DocStore>, key: string, value: Parameters<typeof original>[1]) {
    return original.call(this, key, key.endsWith("3") ? null : value)
  }
  return mod
})

const { Simulation } = await import("../../src/testing.js")

describe("the simulation catches written values that do not read back", () => {
  it("every seed fails `noLostEntries`, naming the key", async () => {
    for (let seed = 0; seed < 2; seed++) {
      const report = await Simulation.run({ peers: 3, seed, steps: 30 })
      expect(report.noLostEntries, `seed ${seed}`).toBe(false)
      expect(report.violations.join("\n")).toMatch(/noLostEntries: .* reads \d+ written keys wrongly, e\.g\. k\d*3=null/)
    }
  }, 120_000)
})
