/**
 * The iroh native binding, as the iroh transport uses it: loading it on first use, binding
 * endpoints (loopback kept loopback, a closed server's own port bound again), closing them, and
 * reading its tickets and errors.
 */
import type * as Iroh from "@number0/iroh/index.js"
import { networkInterfaces } from "node:os"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { irohTicketText } from "../../schema/Address.js"
import { TransportError } from "../../schema/Errors.js"

/** The binding's module. */
export type IrohModule = typeof Iroh

let loading: Promise<IrohModule> | undefined

/** The native binding, loaded once on first use (again after a failed load). */
export const loadIroh = (address: string): Effect.Effect<IrohModule, TransportError> =>
  Effect.tryPromise({
    try: () => {
      if (loading === undefined) {
        // a CommonJS module: its exports are the namespace's default
        const pending = import("@number0/iroh/index.js").then((m) => (m as unknown as { readonly default: IrohModule }).default)
        pending.catch(() => (loading = undefined))
        loading = pending
      }
      return loading
    },
    catch: (cause) =>
      new TransportError({
        address,
        reason: `the iroh transport cannot load on this platform (${cause instanceof Error ? cause.message : String(cause)})`,
        cause
      })
  })

/**
 * Bind an endpoint at `bind`. Unless told otherwise iroh binds the other address family too, on
 * all interfaces: a server asked for 127.0.0.1 would listen on every IPv6 interface. So beside one
 * specific address the other family's loopback is bound (beside an unspecified one, `0.0.0.0` or
 * `[::]`, iroh's default is what was asked for). A host without that family refuses its loopback:
 * the endpoint is bound without it then, where iroh's default for the family binds nothing either;
 * a host with it that refuses its loopback fails the bind rather than listen everywhere.
 */
export const bindEndpoint = async (
  iroh: IrohModule,
  relays: "disabled" | "n0" | undefined,
  bind: string,
  secret: Array<number>,
  alpns: Array<Array<number>>
): Promise<Iroh.Endpoint> => {
  const build = (binds: ReadonlyArray<string>) => {
    const builder = iroh.Endpoint.builder()
    if (relays === "n0") {
      iroh.presetN0(builder)
      builder.relayMode(iroh.RelayMode.defaultMode())
    } else {
      iroh.presetMinimal(builder)
      builder.relayMode(iroh.RelayMode.disabled())
    }
    for (const b of binds) builder.bindAddr(b)
    builder.secretKey(secret)
    builder.alpns(alpns)
    return builder.bind()
  }
  const companion = companionOf(bind)
  if (companion === undefined) return build([bind])
  try {
    return await build([bind, companion])
  } catch (cause) {
    // without the companion iroh binds that family on every interface: only where it has none
    if (isInUse(cause) || hasInterfaces(companion.startsWith("[") ? "IPv6" : "IPv4")) throw cause
    return build([bind])
  }
}

/** Whether this host has a non-loopback address of `family`. */
const hasInterfaces = (family: "IPv4" | "IPv6"): boolean =>
  Object.values(networkInterfaces()).some((list) => list?.some((i) => !i.internal && i.family === family) ?? false)

/** The other family's loopback to bind beside `bind` (`host:port` or `[v6]:port`), or none beside an unspecified host. */
const companionOf = (bind: string): string | undefined => {
  const v6 = bind.startsWith("[")
  const host = v6 ? bind.slice(1, bind.indexOf("]")) : bind.slice(0, bind.lastIndexOf(":"))
  if (host === "0.0.0.0" || host === "::" || host === "") return undefined
  return v6 ? "127.0.0.1:0" : "[::1]:0"
}

/**
 * Bind a server's endpoint for the scope: an address a closed server of this process still holds
 * is collected for and retried (`REBIND`), and the addresses are remembered when it closes.
 */
export const serverEndpoint = (
  iroh: IrohModule,
  relays: "disabled" | "n0" | undefined,
  bind: string,
  secret: Array<number>,
  alpns: Array<Array<number>>
): Effect.Effect<Iroh.Endpoint, unknown, Scope.Scope> => {
  /** The bind failed on a socket a closed server of this process still holds. */
  const leftover = (cause: unknown) => isInUse(cause) && closedBinds.has(bind)
  return Effect.acquireRelease(
    Effect.tryPromise({ try: () => bindEndpoint(iroh, relays, bind, secret, alpns), catch: (cause) => cause }).pipe(
      Effect.tapError((cause) => leftover(cause) ? Effect.sync(collectGarbage) : Effect.void),
      Effect.retry({ schedule: REBIND, while: leftover }),
      Effect.ensuring(Effect.sync(() => closedBinds.delete(bind)))
    ),
    (endpoint) =>
      Effect.suspend(() => {
        for (const socket of endpoint.boundSockets()) closedBinds.add(socket)
        return closeEndpoint(Promise.resolve(endpoint))
      })
  )
}

/** Whether binding failed for an address in use. */
const isInUse = (cause: unknown): boolean => describeIrohError(cause).includes("Address already in use")

/**
 * The addresses this process's servers were bound to and closed at. iroh frees a closed
 * endpoint's sockets only when the binding's objects are collected, so binding one of these again
 * collects and waits for that, where any other address in use fails at once.
 */
const closedBinds = new Set<string>()

/**
 * A full garbage collection, so closed endpoints' sockets go now (what jest's leak detector does:
 * the collector exposed for this process).
 */
const collectGarbage = (): void => {
  try {
    if (collector === undefined) {
      setFlagsFromString("--expose-gc")
      collector = runInNewContext("gc") as () => void
    }
    collector()
  } catch {
    // a runtime that does not expose its collector: the retries wait for it to run on its own
  }
}
let collector: (() => void) | undefined

/**
 * How long a server waits for an address a closed server of this process held (2 s): left to itself
 * the collector took 5-20 s (and, idle, longer than 30); with a collection before each try, ~0.3 s.
 * Another process holding it now fails the bind after that wait.
 */
const REBIND = Schedule.intersect(Schedule.spaced(Duration.millis(250)), Schedule.recurs(8))

/** The addresses a peer can dial: the endpoint's own, without unspecified ones (`0.0.0.0`, `[::]`). */
export const dialable = (endpoint: Iroh.Endpoint): Array<string> => {
  const unspecified = (a: string) => a.startsWith("0.0.0.0:") || a.startsWith("[::]:")
  const own = endpoint.addr().directAddresses().filter((a) => !unspecified(a))
  return own.length > 0 ? own : endpoint.boundSockets().filter((a) => !unspecified(a))
}

/** How long closing waits for an endpoint: iroh waits ~3 s for a connection attempt still pending. */
const CLOSE_WAIT = Duration.seconds(1)

/** Close an endpoint, waiting at most `CLOSE_WAIT` (it finishes closing in the background). */
export const closeEndpoint = (endpoint: Promise<Iroh.Endpoint>): Effect.Effect<void> =>
  Effect.promise(() => endpoint.then((ep) => ep.close(), () => undefined).catch(() => undefined)).pipe(
    // finalizers run uninterruptible, where the timeout could not cut the wait short
    Effect.interruptible,
    Effect.timeout(CLOSE_WAIT),
    Effect.ignore
  )

/** The endpoint address an iroh ticket names, or undefined for text that is not one. */
export const ticketAddress = (iroh: IrohModule, text: string): Iroh.EndpointAddr | undefined => {
  try {
    return iroh.EndpointTicket.fromString(irohTicketText(text)).endpointAddr()
  } catch {
    return undefined
  }
}

/** Whether a read failed for a message over its limit. */
export const isTooLong = (cause: unknown): boolean => describeIrohError(cause).startsWith("TooLong")

/**
 * A readable reason from the binding's error: its message without the Rust backtrace and source
 * paths, the causes joined (`ConnectError::Connecting: ConnectingError::ConnectionError: timed out`).
 */
export const describeIrohError = (cause: unknown): string => {
  const text = cause instanceof Error ? cause.message : String(cause)
  const lines: Array<string> = []
  for (const line of text.split("\n")) {
    if (line.startsWith("Stack backtrace")) break
    const clean = line.replace(/\s*\((?:\/|[A-Za-z]:\\)[^)]*\)/g, "").trim()
    if (clean.length > 0 && clean !== "Caused by:") lines.push(clean)
  }
  return lines.length === 0 ? "unknown iroh error" : lines.join(": ")
}
