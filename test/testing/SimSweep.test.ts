/**
 * The seed sweep: 200 seeded simulations of 3 complete peers with every kind of fault (loss,
 * duplication, partitions, crashes, forgeries), each checked for convergence, nothing lost, every
 * entry signed and no unauthorized entry accepted. A failing seed is reported with the command
 * that replays it. Steps are kept small so the file runs in about a minute on two cores; the
 * `npm run sim` script runs longer schedules.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { Simulation } from "../../src/testing.js"

const SEEDS = 200
const BATCH = 50
const PEERS = 3
const STEPS = 10
const faults: Simulation.Faults = { dropRate: 0.1, duplicateRate: 0.05, partitionRate: 0.1, crashRate: 0.05 }

describe("Simulation sweep", () => {
  for (let start = 0; start < SEEDS; start += BATCH) {
    it.live(`seeds ${start}..${start + BATCH - 1}: ${PEERS} peers × ${STEPS} steps hold every invariant`, () =>
      Effect.gen(function* () {
        const failures: Array<string> = []
        let writes = 0
        for (let seed = start; seed < start + BATCH; seed++) {
          const report = yield* Simulation.runEffect({ peers: PEERS, seed, steps: STEPS, faults })
          writes += report.stats.writes
          if (!Simulation.passed(report)) {
            failures.push(
              `seed ${seed} failed (${report.violations.slice(0, 3).join("; ")}); replay: npm run sim -- --seed ${seed} --peers ${PEERS} --steps ${STEPS}`
            )
          }
        }
        expect(failures).toEqual([])
        expect(writes).toBeGreaterThan(BATCH * 3)
      }), 120_000)
  }
})
