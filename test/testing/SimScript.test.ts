/**
 * The `npm run sim` script (scripts/sim.ts) over a stubbed runner: a seed whose run throws is
 * reported with its replay command and counted failed, and the sweep goes on to the end.
 */
import { afterEach, expect, it, vi } from "vitest"

vi.mock("../../src/testing/Simulation.js", () => ({
  run: async (options: { readonly seed: number }) => {
    if (options.seed === 1) throw new Error("a defect inside the run")
    return { converged: true, noLostEntries: true, allSigned: true, noUnauthorizedEntries: true, stats: {}, violations: [], trace: [] }
  },
  passed: (report: { readonly converged: boolean }) => report.converged
}))

afterEach(() => {
  vi.restoreAllMocks()
})

/**
 * Capture the script's output and exits, then run it with `args` (a fresh import each time): how it
 * ended ("exit N", or "no exit") and what it printed.
 */
const capture = () => {
  const lines: Array<string> = []
  vi.spyOn(console, "log").mockImplementation((...args) => void lines.push(args.join(" ")))
  vi.spyOn(console, "error").mockImplementation((...args) => void lines.push(args.join(" ")))
  vi.spyOn(process, "exit").mockImplementation(((code: number) => {
    throw new Error(`exit ${code}`)
  }) as never)
  const run = async (...args: Array<string>) => {
    const argv = process.argv
    process.argv = ["node", "sim.ts", ...args]
    vi.resetModules()
    return import("../../scripts/sim.js").then(
      () => "no exit",
      (e: Error) => e.message
    ).finally(() => {
      process.argv = argv
    })
  }
  return { lines, run }
}

it("a seed whose run throws is printed as CRASH with its replay command; the others still run; exit code 1", async () => {
  const { lines, run } = capture()
  expect(await run("--seeds", "3", "--peers", "3", "--steps", "5")).toBe("exit 1")
  const output = lines.join("\n")
  expect(output).toContain("CRASH seed 1, 3 peers, 5 steps: Error: a defect inside the run")
  expect(output).toContain("replay: npm run sim -- --seed 1 --peers 3 --steps 5")
  expect(lines.at(-1)).toContain("3 seeds (0..2)")
  expect(lines.at(-1)).toContain("2 passed, 1 failed")
  expect(lines.at(-1)).toContain("failing seeds: 1")
})

it("an unknown flag is named with the usage, exit code 2; --help prints the usage, exit code 0", async () => {
  const { lines, run } = capture()
  expect(await run("--bogus")).toBe("exit 2")
  expect(lines[0]).toMatch(/^Unknown option '--bogus'\n/)
  expect(lines.join("\n")).toContain("usage:\n  npm run sim -- --seeds N")
  lines.length = 0
  expect(await run("--help")).toBe("exit 0")
  expect(lines.join("\n")).toMatch(/^usage:\n {2}npm run sim -- --seeds N/)
})
