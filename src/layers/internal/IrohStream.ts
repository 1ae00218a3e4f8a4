/**
 * One request on an iroh server, on its own bidirectional stream: read the request whole, run the
 * handler, write the response. Both directions are bounded in time, as a hostile or broken peer
 * would otherwise hold a stream slot forever: a request never idle for `idle` and whole within
 * `whole`, and the same for the response being taken. A stalled request is reset and its
 * connection closed (the binding's pending read would hold the stream and its buffer until then);
 * a response the peer stops taking cannot be reset (the pending write holds the stream), so its
 * connection is closed too. Bytes cross the binding as plain number arrays, converted here with loops.
 */
import type * as Iroh from "@number0/iroh/index.js"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import { isPubKey } from "../../schema/Ids.js"
import type { SyncResponse } from "../../schema/Protocol.js"
import type { Handler } from "../../services/Transport.js"
import { requestOfBytes } from "./SyncWire.js"

/** How long a message may go without a byte moving, and take in all (each direction). */
export interface Timeouts {
  readonly idle: Duration.Duration
  readonly whole: Duration.Duration
}

/** Bytes asked of, or given to, the binding per call. */
const CHUNK = 64 * 1024

/**
 * Answer one stream. `close` closes the stream's connection (with a reason): the one way to free
 * a response write the peer never takes, or a read it never finishes.
 */
export const serveStream = (
  stream: Iroh.BiStream,
  remote: string,
  handler: Handler,
  limit: number,
  timeouts: Timeouts,
  close: (why: string) => void
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const reset = Effect.promise(() => stream.send.reset(1n).catch(() => undefined))
    const reply = (response: SyncResponse) =>
      writeResponse(stream.send, Buffer.from(JSON.stringify(response), "utf8"), timeouts).pipe(
        Effect.flatMap((written) => written ? Effect.void : Effect.sync(() => close("response not taken")))
      )
    const body = yield* readBody(stream.recv, limit, timeouts)
    switch (body._tag) {
      case "TooLarge":
        // no read is pending now, so the peer can be told to stop sending (a pending read holds the stream)
        yield* Effect.promise(() => stream.recv.stop(0n).catch(() => undefined))
        return yield* reply({ Error: `request body exceeds the limit of ${limit} bytes` })
      case "Stalled":
        // the read still pending holds the stream (and the binding's 64 KiB buffer) until the
        // connection closes: reset to tell the peer, then close
        yield* reset
        return yield* Effect.sync(() => close("request stalled"))
      case "Failed":
        // the read still pending keeps the receiving half; resetting ours tells the peer and frees us
        return yield* reset
      case "Body":
        break
    }
    const { peer, rest } = splitPeerLine(body.bytes)
    const request = requestOfBytes(rest)
    if (Either.isLeft(request)) return yield* reply({ Error: request.left })
    const exit = yield* Effect.exit(handler(request.right, { remoteAddress: remote, peer }))
    if (Exit.isFailure(exit)) return yield* reset
    yield* reply(exit.value)
  })

/**
 * The line a client may write before its request, announcing its device key (as HTTP's
 * `x-eidetica-peer` header): `eidetica-peer: ed25519:…` and a newline. A request is JSON, so it
 * starts with `{` and cannot be taken for one.
 */
const PEER_LINE = Buffer.from("eidetica-peer: ", "ascii")
/** A device key's length, with room to spare: a line longer than this before its newline is not one. */
const PEER_LINE_MAX = PEER_LINE.length + 128
const NEWLINE = 0x0a

/** A request's bytes with our device key's line before them (none when there is no key to announce). */
export const withPeerLine = (announce: string | undefined, request: Uint8Array): Uint8Array =>
  announce === undefined ? request : Buffer.concat([PEER_LINE, Buffer.from(`${announce}\n`, "ascii"), request])

/**
 * The announced device key (undefined when there is no such line, or it does not name a key) and the
 * bytes after the line. Bytes that begin like the line but do not end it in time are left whole, for
 * the request decoder to refuse.
 */
export const splitPeerLine = (bytes: Uint8Array): { readonly peer: string | undefined; readonly rest: Uint8Array } => {
  if (bytes.length < PEER_LINE.length || !PEER_LINE.equals(bytes.subarray(0, PEER_LINE.length))) return { peer: undefined, rest: bytes }
  const end = bytes.subarray(0, PEER_LINE_MAX).indexOf(NEWLINE)
  if (end < 0) return { peer: undefined, rest: bytes }
  const key = Buffer.from(bytes.buffer, bytes.byteOffset + PEER_LINE.length, end - PEER_LINE.length).toString("latin1")
  return { peer: isPubKey(key) ? key : undefined, rest: bytes.subarray(end + 1) }
}

type Body =
  | { readonly _tag: "Body"; readonly bytes: Uint8Array }
  | { readonly _tag: "TooLarge" }
  | { readonly _tag: "Stalled" }
  | { readonly _tag: "Failed" }

/** Read a stream to its end in chunks: over `limit` bytes, no chunk for `idle`, or not whole in `whole`, ends it early. */
const readBody = (recv: Iroh.RecvStream, limit: number, timeouts: Timeouts): Effect.Effect<Body> =>
  readChunks(recv, limit, timeouts.idle).pipe(
    // a peer trickling a byte now and then never goes idle: the whole request has a cap too
    Effect.timeoutTo({ duration: timeouts.whole, onTimeout: (): Body => ({ _tag: "Stalled" }), onSuccess: (body) => body })
  )

const readChunks = (recv: Iroh.RecvStream, limit: number, idle: Duration.Duration): Effect.Effect<Body> =>
  Effect.gen(function*() {
    // each chunk is made bytes at once: a number array takes ~8 bytes of heap a byte, so 64
    // unfinished 8 MiB requests held as arrays would exhaust the heap (measured: 64 MB each)
    const chunks: Array<Uint8Array> = []
    let total = 0
    while (true) {
      const chunk = yield* Effect.tryPromise(() => recv.read(CHUNK)).pipe(Effect.timeout(idle), Effect.either)
      if (Either.isLeft(chunk)) return chunk.left._tag === "TimeoutException" ? { _tag: "Stalled" } : { _tag: "Failed" }
      if (chunk.right.length === 0) break
      total += chunk.right.length
      if (total > limit) return { _tag: "TooLarge" }
      chunks.push(toBytes(chunk.right))
    }
    return { _tag: "Body", bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total) }
  })

/**
 * Write a response in chunks and finish the stream. False when the peer stopped taking it (no
 * chunk taken for `idle`, or not all in `whole`): that write stays pending until the connection
 * closes. A write the peer refused (it stopped or reset the stream) needs nothing more: true.
 */
const writeResponse = (send: Iroh.SendStream, bytes: Uint8Array, timeouts: Timeouts): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    for (let at = 0; at < bytes.length; at += CHUNK) {
      const chunk = toNumbers(bytes.subarray(at, at + CHUNK))
      yield* Effect.tryPromise(() => send.writeAll(chunk)).pipe(Effect.timeout(timeouts.idle))
    }
    yield* Effect.tryPromise(() => send.finish()).pipe(Effect.timeout(timeouts.idle))
  }).pipe(
    Effect.timeout(timeouts.whole),
    Effect.as(true),
    Effect.catchAll((error) => Effect.succeed(error._tag !== "TimeoutException"))
  )

/** Bytes as the binding takes them: a plain number array (a loop; `Array.from` is several times slower). */
export function toNumbers(bytes: Uint8Array): Array<number> {
  const out = new Array<number>(bytes.length)
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]!
  return out
}

/** A text's UTF-8 bytes as the binding takes them. */
export const textNumbers = (text: string): Array<number> => toNumbers(Buffer.from(text, "utf8"))

/** The binding's number array as bytes. */
export const toBytes = (numbers: ReadonlyArray<number>): Uint8Array => {
  const out = new Uint8Array(numbers.length)
  for (let i = 0; i < numbers.length; i++) out[i] = numbers[i]!
  return out
}
