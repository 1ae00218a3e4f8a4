// Profile only a region: `await start()` … `await stop(name)` writes /tmp/prof/<name>.cpuprofile (when PROF=1).
import { mkdirSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
const session = new Session()
const on = process.env.PROF === "1"
/** Start the CPU profiler. */
export const start = async (): Promise<void> => {
  if (!on) return
  session.connect()
  await session.post("Profiler.enable")
  await session.post("Profiler.setSamplingInterval", { interval: 100 })
  await session.post("Profiler.start")
}
/** Stop it and write the profile. */
export const stop = async (name: string): Promise<void> => {
  if (!on) return
  const { profile } = await session.post("Profiler.stop")
  mkdirSync("/tmp/prof", { recursive: true })
  writeFileSync(`/tmp/prof/${name}.cpuprofile`, JSON.stringify(profile))
}
