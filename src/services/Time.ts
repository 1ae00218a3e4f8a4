/**
 * Time read through Effect's Clock, for the engine's own schedules.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"

/**
 * Milliseconds of Effect's `currentTimeNanos`: monotonic with the default clock (a wall-clock jump,
 * an NTP correction or a manual change, does not move it), virtual time under a test clock.
 */
export const monotonicMillis: Effect.Effect<number> = Effect.map(Clock.currentTimeNanos, (n) => Number(n / 1_000_000n))
