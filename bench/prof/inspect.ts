// Profile only a region: `await start()` … `await stop(name)` writes /tmp/prof/<name>.cpuprofile
// (when PROF=1), or /tmp/prof/<name>.heapprofile (when HEAP=1: every allocation sampled, the
// collected ones included, so `top.py --heap` shows where the garbage is made; HEAP=live: only
// what is still alive at the end, so it shows what the region left held).
import { mkdirSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
const session = new Session()
const cpu = process.env.PROF === "1"
const heap = process.env.HEAP === "1" || process.env.HEAP === "live"
const collected = process.env.HEAP === "1"
/** Start the profiler. */
export const start = async (): Promise<void> => {
  if (!cpu && !heap) return
  session.connect()
  if (heap) {
    await session.post("HeapProfiler.enable")
    await session.post("HeapProfiler.startSampling", {
      samplingInterval: 4096,
      includeObjectsCollectedByMajorGC: collected,
      includeObjectsCollectedByMinorGC: collected
    })
    return
  }
  await session.post("Profiler.enable")
  await session.post("Profiler.setSamplingInterval", { interval: 100 })
  await session.post("Profiler.start")
}
/** Stop it and write the profile. */
export const stop = async (name: string): Promise<void> => {
  if (!cpu && !heap) return
  mkdirSync("/tmp/prof", { recursive: true })
  if (heap) {
    const { profile } = await session.post("HeapProfiler.stopSampling")
    writeFileSync(`/tmp/prof/${name}.heapprofile`, JSON.stringify(profile))
    return
  }
  const { profile } = await session.post("Profiler.stop")
  writeFileSync(`/tmp/prof/${name}.cpuprofile`, JSON.stringify(profile))
}
