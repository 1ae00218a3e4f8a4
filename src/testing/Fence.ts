/**
 * The crash of a simulated peer (see Cluster.ts): its incarnation fenced off its persisted storage
 * and the network at the crash instant, so nothing its finalizers or leftover fibers do after it
 * is persisted or sent.
 */
import * as Effect from "effect/Effect"
import { type StorageError, TransportError } from "../schema/Errors.js"
import type { StorageShape } from "../services/Storage.js"
import { formatAddress, type TransportShape } from "../services/Transport.js"

/**
 * One incarnation's view of the peer's persisted storage and its transport, until `kill`. After
 * it, every write (each mutating Storage method) is a no-op and reads still work. A real crash runs
 * no code at all, so all that matters is that nothing reaches the disk; failing the writes instead
 * would drive the dead incarnation's finalizers and leftover fibers into error paths a real crash
 * never reaches (the engine logs a warning for every pending-work save that fails). `put` reports
 * nothing newly stored, which is true of the persisted storage. Sends fail like a refused
 * connection, requests to its server go unanswered (as if nothing served there), and an answer it
 * computes after the crash is lost.
 */
export const fence = (storage: StorageShape, transport: TransportShape) => {
  let alive = true
  const write =
    <Args extends ReadonlyArray<unknown>, A>(f: (...args: Args) => Effect.Effect<A, StorageError>, ignored: A) =>
    (...args: Args): Effect.Effect<A, StorageError> =>
      Effect.suspend(() => (alive ? f(...args) : Effect.succeed(ignored)))
  // every mutating method of StorageShape: a new one must be fenced here too
  const fenced: StorageShape = {
    ...storage,
    put: write(storage.put, []),
    putCachedState: write(storage.putCachedState, undefined),
    setMeta: write(storage.setMeta, undefined),
    deleteMeta: write(storage.deleteMeta, undefined)
  }
  const cutOff: TransportShape = {
    ...transport,
    send: (address, request) =>
      Effect.suspend(() =>
        alive
          ? transport.send(address, request)
          : Effect.fail(new TransportError({ address: formatAddress(address), reason: "the sending peer crashed" }))
      ),
    serve: (bind, handler) =>
      transport.serve(bind, (request, context) =>
        Effect.suspend(() => (alive ? handler(request, context) : Effect.interrupt)).pipe(
          Effect.flatMap((response) => (alive ? Effect.succeed(response) : Effect.interrupt))
        )
      )
  }
  return {
    storage: fenced,
    transport: cutOff,
    kill: () => {
      alive = false
    }
  }
}
