/**
 * The engine's fiber scheduler. Effect's default runs ready fibers in microtasks and lets the event
 * loop in only after 2,048 microtask drains in a row of one fiber (each after up to 2,048 operations),
 * then through `setTimeout`'s 1 ms floor: a run of thousands of commits starves sockets and timers
 * for seconds, so meanwhile no sync request is answered, no push leaves and no health check replies.
 *
 * `FairScheduler` runs fibers the same way, but once a busy streak (drains with no event loop turn
 * between them) has lasted `sliceMs`, the next drain waits for `setImmediate`, after the event
 * loop's pending I/O. A streak ends whenever the event loop gets a turn, so an idle process pays one
 * `setImmediate` per burst of work and never waits.
 */
import type { RuntimeFiber } from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scheduler from "effect/Scheduler"
import { performance } from "node:perf_hooks"

/** How long fibers may run before the event loop gets a turn, by default. */
export const DEFAULT_SLICE_MS = 5

/** A microtask scheduler that hands the event loop a turn every `sliceMs` of uninterrupted work. */
export class FairScheduler implements Scheduler.Scheduler {
  /** When the current busy streak began (performance clock, ms); undefined between streaks. */
  private streakStart: number | undefined = undefined
  /** Queued when a streak begins: it runs once the event loop gets a turn, which ends the streak. */
  private readonly endStreak = () => {
    this.streakStart = undefined
  }
  private readonly getRunner = Scheduler.SchedulerRunner.cached((depth, drain) => {
    const now = performance.now()
    if (this.streakStart === undefined) {
      this.streakStart = now
      setImmediate(this.endStreak)
    }
    if (now - this.streakStart >= this.sliceMs) setImmediate(() => drain(0))
    else Promise.resolve(undefined).then(() => drain(depth + 1))
  })

  constructor(readonly sliceMs: number = DEFAULT_SLICE_MS) {}

  shouldYield(fiber: RuntimeFiber<unknown, unknown>): number | false {
    return Scheduler.defaultShouldYield(fiber)
  }

  scheduleTask(task: Scheduler.Task, priority: number, fiber?: RuntimeFiber<unknown, unknown>): void {
    this.getRunner(fiber).scheduleTask(task, priority)
  }
}

/** Run the layer's fibers (and every fiber they fork) on a `FairScheduler`. */
export const layer = (sliceMs: number = DEFAULT_SLICE_MS): Layer.Layer<never> =>
  Layer.setScheduler(new FairScheduler(sliceMs))
