// CPU time per thread of this process (Linux /proc), and of another process, for telling apart the
// main thread, the verification workers and V8's own threads (GC, compilation) in a profiling run
// and in the sync benchmark's bootstrap.
import { readdirSync, readFileSync } from "node:fs"
import { performance } from "node:perf_hooks"

/** Clock ticks (utime + stime) of one /proc stat file, and the thread's name. */
const ticksOf = (path: string): { readonly name: string; readonly ticks: number } | undefined => {
  try {
    const stat = readFileSync(path, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { name: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), ticks: Number(fields[11]) + Number(fields[12]) }
  } catch {
    return undefined
  }
}

/** Ticks per thread of this process, by thread id. */
export const snapshot = (): Map<string, number> => {
  const out = new Map<string, number>()
  let tids: Array<string>
  try {
    tids = readdirSync("/proc/self/task")
  } catch {
    return out // not Linux: every figure reads 0
  }
  for (const tid of tids) {
    const t = ticksOf(`/proc/self/task/${tid}/stat`)
    if (t !== undefined) out.set(tid, t.ticks)
  }
  return out
}

/** Milliseconds of CPU since `before`: the main thread, the two busiest others (the verification workers when they ran), and the rest. */
export const since = (before: Map<string, number>): { main: number; workers: number; rest: number } => {
  const main = String(process.pid)
  const used: Array<[string, number]> = [...snapshot()].map(([tid, t]) => [tid, (t - (before.get(tid) ?? 0)) * 10])
  const others = used.filter(([tid]) => tid !== main).map(([, ms]) => ms).sort((a, b) => b - a)
  return {
    main: used.find(([tid]) => tid === main)?.[1] ?? 0,
    workers: (others[0] ?? 0) + (others[1] ?? 0),
    rest: others.slice(2).reduce((a, b) => a + b, 0)
  }
}

/** Milliseconds of CPU of a whole process so far (all its threads). */
export const processMs = (pid: number): number => (ticksOf(`/proc/${pid}/stat`)?.ticks ?? 0) * 10

/**
 * Resolves once a process has used no CPU for `quietMs` (one clock tick's resolution), or after
 * `maxMs` at most: a server that has just built its database keeps the cores busy for a moment
 * after it says it is ready (measured: 0-110 ms of CPU in the next 250 ms), which a figure of what
 * a client does must not count. Not Linux (no figures): resolves after one quiet period.
 */
export const idle = async (pid: number, quietMs = 100, maxMs = 3_000): Promise<void> => {
  const until = performance.now() + maxMs
  let before = processMs(pid)
  while (performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, quietMs))
    const now = processMs(pid)
    if (now === before) return
    before = now
  }
}
