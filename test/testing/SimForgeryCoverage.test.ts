/**
 * Every kind of forgery reaches a peer able to judge it in a passing run: one lost to a drop or
 * a crash is offered again after healing, and the non-member forgery counts only when the owner of
 * the private database answered it (another peer does not hold that database).
 */
import { describe, expect, it } from "vitest"
import { Simulation } from "../../src/testing.js"

const faults = { dropRate: 0.1, duplicateRate: 0.05, partitionRate: 0.05, crashRate: 0.02 }

const judged = (report: Simulation.Report) =>
  new Set(
    report.trace.flatMap((e) =>
      e.type === "forge" && e.response !== "TransportError" && (e.kind !== "non-member" || e.peer === "sim-peer-0") ? [e.kind] : []
    )
  )

describe("forgery coverage", () => {
  // seed 2: the bad-signature forgery was lost and never offered again; seed 5: the non-member one went to a peer without the database
  it.each([2, 5])("seed %i, 5 peers: every kind judged", async (seed) => {
    const report = await Simulation.run({ peers: 5, seed, steps: 60, faults })
    expect(Simulation.passed(report)).toBe(true)
    expect([...judged(report)].sort()).toEqual(["bad-signature", "escalation", "non-member"])
  }, 60_000)
})
