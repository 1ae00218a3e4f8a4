/**
 * A virtual clock for deterministic simulation: a `Clock` whose `sleep` waits for virtual time,
 * advanced only by `advance`, which wakes sleepers one at a time in (time, order of sleeping),
 * each after every runnable fiber has gone quiet. It plays the part of `TestClock` for whole
 * simulated clusters: TestClock checks for quiet with three `setTimeout(0)` per wake-up (about
 * 6 ms each), this clock with one `setImmediate` (microseconds), which is exact when fibers run on
 * `scheduler` (microtasks only, never a timer), so a simulation of thousands of messages runs in
 * seconds and every run of a seed wakes the same fibers in the same order.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Scheduler from "effect/Scheduler"

/** Where virtual time starts: 2023-11-14T22:13:20Z, so epoch-millisecond fields look like dates. */
export const START_MILLIS = 1_700_000_000_000

/** A virtual clock and its controls. */
export interface SimClock extends Clock.Clock {
  /** Let every runnable fiber run, then wake each sleeper due within `duration`, in time order; ends at now + duration. */
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
  /** Let every runnable fiber run until all wait on time (or on each other); the time does not move. */
  readonly settle: Effect.Effect<void>
  /**
   * Run an effect that waits on virtual time (a sync over a delayed link, a flush) from the fiber
   * that drives the clock: fork it, then move time from one wake-up to the next until it is done.
   * A fiber that waits while nothing sleeps would wait forever: that is a defect.
   */
  readonly drive: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** When the earliest sleeper wakes, if any sleeps. */
  readonly nextWakeup: Effect.Effect<Option.Option<number>>
  /** How many fibers sleep. */
  readonly sleepers: Effect.Effect<number>
}

/** A scheduler that never defers to a timer, so one `setImmediate` sees every runnable fiber done. */
export const scheduler: Scheduler.Scheduler = new Scheduler.MixedScheduler(Number.MAX_SAFE_INTEGER)

/** Build a virtual clock starting at `startMillis`. */
export const make = (startMillis: number = START_MILLIS): SimClock => {
  let now = startMillis
  let order = 0
  /** Sleepers sorted by (time, order). */
  const sleeping: Array<Sleeper> = []

  const insert = (sleeper: Sleeper) => {
    let lo = 0
    let hi = sleeping.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const other = sleeping[mid]!
      if (other.time < sleeper.time || (other.time === sleeper.time && other.order < sleeper.order)) lo = mid + 1
      else hi = mid
    }
    sleeping.splice(lo, 0, sleeper)
  }

  const sleep = (duration: Duration.Duration): Effect.Effect<void> => {
    const millis = Duration.toMillis(duration)
    if (!(millis > 0)) return Effect.void
    return Effect.async<void>((resume) => {
      const sleeper: Sleeper = { time: now + millis, order: order++, wake: () => resume(Effect.void) }
      insert(sleeper)
      return Effect.sync(() => {
        const at = sleeping.indexOf(sleeper)
        if (at >= 0) sleeping.splice(at, 1)
      })
    })
  }

  const settle: Effect.Effect<void> = Effect.async<void>((resume) => {
    const handle = setImmediate(() => resume(Effect.void))
    return Effect.sync(() => clearImmediate(handle))
  })

  const advance = (duration: Duration.DurationInput): Effect.Effect<void> =>
    Effect.suspend(() => {
      const target = now + Math.max(0, Duration.toMillis(Duration.decode(duration)))
      const loop: Effect.Effect<void> = Effect.flatMap(settle, () => {
        const first = sleeping[0]
        if (first === undefined || first.time > target) {
          now = target
          return settle
        }
        sleeping.shift()
        now = Math.max(now, first.time)
        first.wake()
        return loop
      })
      return loop
    })

  const drive = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(Effect.fork(effect), (fiber) => {
      const loop: Effect.Effect<A, E> = Effect.flatMap(settle, () => {
        const exit = fiber.unsafePoll()
        if (exit !== null) return exit
        const first = sleeping.shift()
        if (first === undefined) {
          return Effect.dieMessage("SimClock.drive: the effect waits on something other than time, and nothing sleeps")
        }
        now = Math.max(now, first.time)
        first.wake()
        return loop
      })
      return loop
    })

  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => now,
    currentTimeMillis: Effect.sync(() => now),
    unsafeCurrentTimeNanos: () => BigInt(now) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => BigInt(now) * 1_000_000n),
    sleep,
    advance,
    settle,
    drive,
    nextWakeup: Effect.sync(() => Option.fromNullable(sleeping[0]?.time)),
    sleepers: Effect.sync(() => sleeping.length)
  }
}

/**
 * Run an effect (and every fiber it forks) on a virtual clock and the quiet-detecting scheduler.
 * Fibers never yield for having run many operations, only where they wait: so how fibers
 * interleave depends on the program alone, not on how many operations a warm cache saved.
 */
export const provide =
  (clock: SimClock) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    effect.pipe(
      Effect.withClock(clock),
      Effect.withScheduler(scheduler),
      Effect.locally(FiberRef.currentMaxOpsBeforeYield, Number.MAX_SAFE_INTEGER)
    )

// ---------------------------------------------------------------------------------------------
// helpers

interface Sleeper {
  readonly time: number
  readonly order: number
  readonly wake: () => void
}
