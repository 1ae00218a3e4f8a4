/**
 * Run seeded simulations from the command line:
 *
 *   npm run sim -- --seeds 100 --peers 3-7 [--steps 60] [--start 0] [--mode engine|manual] [--topology mesh|line|star]
 *   npm run sim -- --seed 1234 --peers 5 --steps 60 [--trace trace.json]
 *
 * Peer counts cycle through the range, one seed after another. Every failing seed (a broken
 * invariant, or a run that threw: CRASH) is printed with the command that replays it; the sweep
 * goes on, and the exit code is 1 when any seed failed.
 */
import { writeFileSync } from "node:fs"
import { parseArgs } from "node:util"
import * as Simulation from "../src/testing/Simulation.js"

/** The faults every seed runs with. */
export const faults: Simulation.Faults = { dropRate: 0.1, duplicateRate: 0.05, partitionRate: 0.05, crashRate: 0.02 }

const usage = `usage:
  npm run sim -- --seeds N [--peers 3-7] [--steps 60] [--start 0] [--mode engine|manual] [--topology mesh|line|star]
  npm run sim -- --seed S [--peers 5] [--steps 60] [--mode engine|manual] [--topology mesh|line|star] [--trace trace.json]`

const parsed = (() => {
  try {
    return parseArgs({
      options: {
        seeds: { type: "string" },
        seed: { type: "string" },
        start: { type: "string", default: "0" },
        peers: { type: "string", default: "3" },
        steps: { type: "string", default: "60" },
        mode: { type: "string", default: "engine" },
        topology: { type: "string", default: "mesh" },
        trace: { type: "string" },
        help: { type: "boolean", short: "h" }
      }
    })
  } catch (error) {
    // an unknown or malformed flag: say which, and how it is used
    console.error(`${error instanceof Error ? error.message : String(error)}\n${usage}`)
    process.exit(2)
  }
})()
const { values } = parsed
if (values.help === true) {
  console.log(usage)
  process.exit(0)
}

const int = (name: string, text: string | undefined): number => {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${name} must be a non-negative integer, got ${JSON.stringify(text)}`)
    process.exit(2)
  }
  return n
}

const range = /^(\d+)(?:-(\d+))?$/.exec(values.peers ?? "3")
if (range === null) {
  console.error(`--peers must be N or MIN-MAX, got ${JSON.stringify(values.peers)}`)
  process.exit(2)
}
const minPeers = Math.max(2, Number(range[1]))
const maxPeers = Math.max(minPeers, Number(range[2] ?? range[1]))
const steps = int("steps", values.steps)
const mode = values.mode === "manual" ? "manual" : "engine"
const topologies = ["mesh", "line", "star"] as const
const topology = topologies.find((t) => t === values.topology)
if (topology === undefined) {
  console.error(`--topology must be mesh, line or star, got ${JSON.stringify(values.topology)}`)
  process.exit(2)
}
const single = values.seed !== undefined
const first = single ? int("seed", values.seed) : int("start", values.start)
const count = single ? 1 : int("seeds", values.seeds ?? "10")

const started = performance.now()
const failed: Array<number> = []
for (let i = 0; i < count; i++) {
  const seed = first + i
  const peers = single ? minPeers : minPeers + (i % (maxPeers - minPeers + 1))
  const t0 = performance.now()
  const replay = `npm run sim -- --seed ${seed} --peers ${peers} --steps ${steps}${mode === "manual" ? " --mode manual" : ""}${topology === "mesh" ? "" : ` --topology ${topology}`}`
  let report: Simulation.Report
  try {
    report = await Simulation.run({ peers, seed, steps, faults, mode, topology })
  } catch (error) {
    // a run that throws (a defect in the engine or the kit) is a failed seed, not the end of the sweep
    console.log(`CRASH seed ${seed}, ${peers} peers, ${steps} steps: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
    console.log(`  replay: ${replay}`)
    failed.push(seed)
    continue
  }
  const ms = Math.round(performance.now() - t0)
  if (single || !Simulation.passed(report)) {
    console.log(
      `${Simulation.passed(report) ? "PASS" : "FAIL"} seed ${seed}, ${peers} peers, ${steps} steps, ${ms} ms: ${JSON.stringify(report.stats)}`
    )
    for (const v of report.violations.slice(0, 10)) console.log(`  ${v}`)
    if (!Simulation.passed(report)) console.log(`  replay: ${replay}`)
  }
  if (values.trace !== undefined && single) {
    writeFileSync(values.trace, JSON.stringify(report.trace, null, 1))
    console.log(`  trace (${report.trace.length} events) written to ${values.trace}`)
  }
  if (!Simulation.passed(report)) failed.push(seed)
}
const seconds = (performance.now() - started) / 1000
console.log(
  `${count} seeds (${first}..${first + count - 1}), peers ${minPeers}-${maxPeers}, ${steps} steps, ${mode}${topology === "mesh" ? "" : `, ${topology}`}: ` +
    `${count - failed.length} passed, ${failed.length} failed in ${seconds.toFixed(1)} s (${((count / seconds) * 60).toFixed(1)} seeds/min)` +
    (failed.length > 0 ? `; failing seeds: ${failed.join(", ")}` : "")
)
process.exit(failed.length > 0 ? 1 : 0)
