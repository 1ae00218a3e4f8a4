/**
 * Write events: every batch of entries stored, local commits and entries received from peers alike.
 * The background sync engine and `db.onWrite` listen here.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/** Where stored entries came from. */
export type WriteSource = "local" | "remote"

/** One stored batch of one tree. */
export interface WriteEvent {
  readonly treeId: string
  /** The newly stored entry IDs, parents first. */
  readonly entryIds: ReadonlyArray<string>
  readonly source: WriteSource
  /** For remote entries: the peer (device key) they came from, when known. */
  readonly peer?: string | undefined
}

/** The write-event service interface. */
export interface WriteEventsShape {
  readonly publish: (event: WriteEvent) => Effect.Effect<void>
  /** A subscription that sees every event published after it was taken (scoped). */
  readonly subscribe: Effect.Effect<Stream.Stream<WriteEvent>, never, Scope.Scope>
}

/** The write-event service tag. */
export class WriteEvents extends Context.Tag("eidetica-ts/WriteEvents")<WriteEvents, WriteEventsShape>() {}

/** Build the write-event hub (an unbounded PubSub, shut down with its scope). */
export const make: Effect.Effect<WriteEventsShape, never, Scope.Scope> = Effect.gen(function* () {
  const hub = yield* Effect.acquireRelease(PubSub.unbounded<WriteEvent>(), PubSub.shutdown)
  return {
    publish: (event) => PubSub.publish(hub, event).pipe(Effect.asVoid),
    subscribe: Effect.map(PubSub.subscribe(hub), (queue) => Stream.fromQueue(queue))
  }
})

/** The write-event layer. */
export const layer: Layer.Layer<WriteEvents> = Layer.scoped(WriteEvents, make)
