/**
 * The bridge from Promises to the engine: one ManagedRuntime per Instance; every call runs with
 * its own fiber and its Exit is mapped to a value or an EideticaError. Those fibers and the
 * background ones (write listeners) are tracked so `close()` interrupts them before it disposes
 * the runtime: a call in flight (a flush, a wait for a first sync) rejects with InstanceClosed
 * instead of staying pending forever.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as ManagedRuntime from "effect/ManagedRuntime"
import type * as Eidetica from "../layers/Eidetica.js"
import { fromUnknown, InstanceClosed, settle } from "./Errors.js"

/** What facade operations may require: the services of a complete engine. */
export type Env = Eidetica.Services

/** The error of any call on a closed Instance. */
export const closedError = () => new InstanceClosed("Instance has been closed; open it again to continue")

/** Runs engine operations for one Instance. */
export class Runner {
  private closed = false
  private closing: Promise<void> | undefined
  private readonly fibers = new Set<Fiber.RuntimeFiber<unknown, unknown>>()
  private readonly running = new Set<Fiber.RuntimeFiber<unknown, unknown>>()

  constructor(private readonly runtime: ManagedRuntime.ManagedRuntime<Env, unknown>) {}

  /** Whether `close()` was called. */
  get isClosed(): boolean {
    return this.closed
  }

  /** Run an operation; resolves with its value or rejects with an EideticaError (InstanceClosed if `close()` cut it short). */
  run<A, E>(effect: Effect.Effect<A, E, Env>): Promise<A> {
    if (this.closed) return Promise.reject(closedError())
    let fiber: Fiber.RuntimeFiber<A, unknown>
    try {
      fiber = this.runtime.runFork(effect)
    } catch (thrown) {
      return Promise.reject(fromUnknown(thrown))
    }
    this.running.add(fiber)
    return new Promise<Exit.Exit<A, unknown>>((resolve) => fiber.addObserver(resolve)).then((exit) => {
      this.running.delete(fiber)
      // interrupted by close(), or by an actor stopping as the runtime is disposed
      return this.closed && Exit.isInterrupted(exit) ? Promise.reject(closedError()) : settle(exit)
    })
  }

  /** Run a synchronous step of the facade itself, so a throw becomes a rejection too. */
  attempt<A>(f: () => Promise<A>): Promise<A> {
    try {
      return f().catch((thrown: unknown) => Promise.reject(fromUnknown(thrown)))
    } catch (thrown) {
      return Promise.reject(fromUnknown(thrown))
    }
  }

  /**
   * Start a background fiber now (its first synchronous steps, such as taking a subscription, run
   * before this returns); the returned function interrupts it.
   */
  fork(effect: Effect.Effect<void, never, Env>): () => void {
    if (this.closed) throw closedError()
    const fiber = this.runtime.runFork(effect, { immediate: true })
    this.fibers.add(fiber)
    fiber.addObserver(() => this.fibers.delete(fiber))
    return () => {
      if (!this.fibers.delete(fiber)) return
      Effect.runFork(Fiber.interrupt(fiber))
    }
  }

  /** Interrupt every background fiber and call in flight, and dispose the runtime (closing storage); idempotent. */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing
    this.closed = true
    const fibers = [...this.fibers, ...this.running]
    this.fibers.clear()
    this.running.clear()
    // every caller waits for the same closing: a second close() resolves once the storage is released too
    this.closing = Effect.runPromise(Fiber.interruptAll(fibers)).then(() => this.runtime.dispose())
    return this.closing
  }
}
