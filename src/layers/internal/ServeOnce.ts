/**
 * What every transport's `serve` shares: one server at a time (a second `serve` fails with
 * ServerAlreadyRunning, naming the running or starting address, until the first one's scope
 * closes), and each server in a child scope of the caller's, so a failed start releases what it
 * acquired at once rather than when the caller's scope eventually closes.
 */
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import { ServerAlreadyRunning, type TransportError } from "../../schema/Errors.js"
import type { Address } from "../../schema/Address.js"

/** Where a transport's one server is: none, binding, or serving at an address. */
type ServerState =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Starting"; readonly bind: string }
  | { readonly _tag: "Running"; readonly address: string }

/** A transport's `serve`, one server at a time, around `start` (which binds and serves in the scope it is given). */
export const makeServeOnce = Effect.map(
  Ref.make<ServerState>({ _tag: "Idle" }),
  (running) =>
  (
    bind: string,
    start: Effect.Effect<Address, TransportError, Scope.Scope>
  ): Effect.Effect<Address, TransportError | ServerAlreadyRunning, Scope.Scope> =>
    Effect.gen(function*() {
      const claimed = yield* Ref.modify(running, (state): [ServerState, ServerState] =>
        state._tag === "Idle" ? [state, { _tag: "Starting", bind }] : [state, state]
      )
      if (claimed._tag !== "Idle") {
        return yield* new ServerAlreadyRunning({ address: claimed._tag === "Running" ? claimed.address : claimed.bind })
      }
      const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
      yield* Scope.addFinalizer(scope, Ref.set(running, { _tag: "Idle" }))
      return yield* start.pipe(
        Effect.tap((address) => Ref.set(running, { _tag: "Running", address: address.address })),
        Scope.extend(scope),
        Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void))
      )
    }).pipe(Effect.uninterruptible)
)
