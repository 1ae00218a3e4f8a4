/**
 * Simulation throughput: how many 3-peer, 60-step seeds (the background engine, every fault on)
 * run per minute on one core. `run()` prints one JSON line and returns the figure.
 */
import * as Simulation from "../src/testing/Simulation.js"

const faults: Simulation.Faults = { dropRate: 0.1, duplicateRate: 0.05, partitionRate: 0.05, crashRate: 0.02 }

/** Run seeds for about `budgetMs` (at least 3, after one warm-up) and print `{"bench":"sim.seeds_per_min",...}`. */
export const run = async (budgetMs = 20_000): Promise<number> => {
  await Simulation.run({ peers: 3, seed: 1_000_000, steps: 60, faults })
  const started = performance.now()
  let seeds = 0
  while (seeds < 3 || performance.now() - started < budgetMs) {
    const report = await Simulation.run({ peers: 3, seed: seeds, steps: 60, faults })
    if (!Simulation.passed(report)) throw new Error(`seed ${seeds} failed: ${report.violations.slice(0, 3).join("; ")}`)
    seeds++
  }
  const value = Math.round(((seeds * 60_000) / (performance.now() - started)) * 10) / 10
  console.log(JSON.stringify({ bench: "sim.seeds_per_min", value, unit: "seeds/min" }))
  return value
}

if (import.meta.url === `file://${process.argv[1]}`) await run()
