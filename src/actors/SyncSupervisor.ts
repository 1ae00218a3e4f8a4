/**
 * The supervisor of the sync engine's actors (DESIGN.md §4): one scope per actor key, actors
 * started lazily on first use, an actor's loop restarted on a defect under a capped exponential
 * schedule (back to its first delay after a run that lasted), and every actor closed when the
 * supervisor's scope closes. An actor whose loop ends (it finished, or was interrupted) is
 * removed, so the next `get` starts a fresh one: no message ever goes to a dead mailbox.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"

/** What an actor's builder returns: the actor's interface and the loop the supervisor runs and restarts. */
export interface Actor<A> {
  /** The actor's interface (its mailbox, status, …); it lives as long as the actor's scope. */
  readonly value: A
  /** The actor's loop; restarted on a defect, and the actor is removed when it ends. */
  readonly run: Effect.Effect<void>
}

/** Options of a supervisor. */
export interface Options {
  /** A name for logs (`"peer"`, `"database"`). */
  readonly name: string
  /** First restart delay after a defect (default 100 ms); doubles on each consecutive defect. */
  readonly restartBase?: Duration.DurationInput | undefined
  /** Longest restart delay (default 5 s). */
  readonly restartCap?: Duration.DurationInput | undefined
  /** A run at least this long before its defect was healthy: the next delay is `restartBase` again (default 1 min). */
  readonly restartResetAfter?: Duration.DurationInput | undefined
}

/** A supervisor of actors of one kind, by key. */
export interface Supervisor<A, E = never, R = never> {
  /** The running actor of a key, started (in its own scope) when there is none. */
  readonly get: (key: string) => Effect.Effect<A, E, R>
  /** The running actor of a key, if there is one. */
  readonly find: (key: string) => Effect.Effect<Option.Option<A>>
  /** Every running actor by key. */
  readonly all: Effect.Effect<ReadonlyArray<readonly [string, A]>>
  /** Stop one actor and close its scope (its finalizers run). */
  readonly stop: (key: string) => Effect.Effect<void>
  /** How many times actor loops were restarted after a defect (for tests and health). */
  readonly restarts: Effect.Effect<number>
}

/** The restart schedule: exponential from `base`, capped at `cap`, forever. */
export const restartSchedule = (base: Duration.DurationInput, cap: Duration.DurationInput) =>
  Schedule.exponential(base).pipe(Schedule.union(Schedule.spaced(cap)))

/** Build a supervisor in the current scope; closing that scope closes every actor. */
export const make = <A, E, R>(
  build: (key: string) => Effect.Effect<Actor<A>, E, R | Scope.Scope>,
  options: Options
): Effect.Effect<Supervisor<A, E, Exclude<R, Scope.Scope>>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const parent = yield* Effect.scope
    const lock = yield* Effect.makeSemaphore(1)
    const entries = new Map<string, { readonly scope: Scope.CloseableScope; readonly value: A }>()
    let restarts = 0
    let closing = false
    const healthy = Duration.toMillis(options.restartResetAfter ?? "1 minute")
    // Effect.retry keeps one schedule state for the actor's whole life: without the reset, a few
    // defects days apart would leave every later restart at the cap.
    const schedule = restartSchedule(options.restartBase ?? "100 millis", options.restartCap ?? "5 seconds").pipe(
      Schedule.intersect(Schedule.identity<Crash>()),
      Schedule.resetWhen(([, crash]) => crash.ranFor >= healthy)
    )

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closing = true
        const all = [...entries.values()]
        entries.clear()
        return Effect.forEach(all, (e) => Scope.close(e.scope, Exit.void), { discard: true, concurrency: "unbounded" })
      })
    )

    const remove = (key: string, scope: Scope.CloseableScope) =>
      Effect.suspend(() => {
        const current = entries.get(key)
        if (current === undefined || current.scope !== scope) return Effect.void
        entries.delete(key)
        return Scope.close(scope, Exit.void)
      })

    /** One run of the loop; a defect ends it as a Crash that says how long the run lasted. */
    const once = (run: Effect.Effect<void>) =>
      Effect.flatMap(Clock.currentTimeMillis, (started) =>
        Effect.sandbox(run).pipe(
          Effect.catchAll((cause) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.fail<Crash>({ cause, ranFor: now - started }))
          )
        ))

    const supervised = (key: string, run: Effect.Effect<void>) =>
      once(run).pipe(
        Effect.tapError((crash) =>
          Effect.suspend(() => {
            restarts++
            return Effect.logError(`${options.name} actor ${key} crashed; restarting`, crash.cause)
          })
        ),
        Effect.retry({ schedule, while: (crash) => !Cause.isInterruptedOnly(crash.cause) }),
        Effect.ignore
      )

    const start = (key: string) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
        const actor = yield* build(key).pipe(
          Scope.extend(scope),
          Effect.onError(() => Scope.close(scope, Exit.void))
        )
        entries.set(key, { scope, value: actor.value })
        // When the loop ends on its own, drop the actor; forked outside the actor's scope, since
        // closing that scope interrupts the loop's fiber, which must not wait on itself.
        yield* supervised(key, actor.run).pipe(
          Effect.onExit((exit) =>
            closing || Exit.isInterrupted(exit) ? Effect.void : Effect.forkIn(remove(key, scope), parent)
          ),
          Effect.forkIn(scope)
        )
        return actor.value
      })

    const get = (key: string) =>
      Effect.suspend(() => {
        const found = entries.get(key)
        if (found !== undefined) return Effect.succeed(found.value)
        return lock.withPermits(1)(
          Effect.suspend(() => {
            const again = entries.get(key)
            return again !== undefined ? Effect.succeed(again.value) : start(key)
          })
        )
      })

    const supervisor: Supervisor<A, E, Exclude<R, Scope.Scope>> = {
      get: get as (key: string) => Effect.Effect<A, E, Exclude<R, Scope.Scope>>,
      find: (key) => Effect.sync(() => Option.fromNullable(entries.get(key)?.value)),
      all: Effect.sync(() => [...entries].map(([k, e]) => [k, e.value] as const)),
      stop: (key) => Effect.suspend(() => {
        const e = entries.get(key)
        return e === undefined ? Effect.void : remove(key, e.scope)
      }),
      restarts: Effect.sync(() => restarts)
    }
    return supervisor
  })

// ---------------------------------------------------------------------------------------------
// helpers

/** How a run of an actor's loop ended on a defect, and how long it had run (ms). */
interface Crash {
  readonly cause: Cause.Cause<never>
  readonly ranFor: number
}
