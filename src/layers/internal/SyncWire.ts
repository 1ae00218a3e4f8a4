/**
 * Helpers the sync server and client share: a message's JSON as it comes off a transport, entries
 * as base64 DAG-CBOR on the wire, paging under the message budget, and ID/key checks.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as SyncAuth from "../../core/SyncAuth.js"
import { EntryId } from "../../schema/Ids.js"
import { decodeRequestEither, type SyncRequest } from "../../schema/Protocol.js"
import type { StorageShape } from "../../services/Storage.js"

const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/** A message's bytes as JSON: strict UTF-8, then `JSON.parse`; the reason when either fails. */
export const parseJson = (bytes: Uint8Array): Either.Either<unknown, string> => {
  let text: string
  try {
    text = strictUtf8.decode(bytes)
  } catch {
    return Either.left("the body is not valid UTF-8")
  }
  try {
    return Either.right(JSON.parse(text) as unknown)
  } catch (cause) {
    return Either.left(`malformed JSON: ${cause instanceof Error ? cause.message : String(cause)}`)
  }
}

/**
 * A request's bytes as a sync request, or the reason they are not one (both servers answer it as an
 * Error). Parsing and decoding are meant to be total; the catch is the last guard, since a throw in
 * a socket or stream callback outside any fiber would take the whole process down.
 */
export const requestOfBytes = (bytes: Uint8Array): Either.Either<SyncRequest, string> => {
  if (bytes.length === 0) return Either.left("empty body; expected a JSON sync request")
  try {
    return Either.flatMap(parseJson(bytes), (json) => Either.mapLeft(decodeRequestEither(json), (e) => e.message))
  } catch {
    return Either.left("the body could not be read as a sync request")
  }
}

/** Entries read from storage at a time while filling a page. */
export const FETCH_CHUNK = 256

/**
 * Encode entries (by ID, in order) until the page budget is used; `more` when some were left,
 * `sent` the IDs of the page, `consumed` how many of `ids` it covers (IDs not held are skipped).
 */
export const encodePage = (storage: StorageShape, ids: ReadonlyArray<string>, budget: number) =>
  Effect.gen(function*() {
    const wire: Array<string> = []
    const sent: Array<string> = []
    let used = 0
    for (let offset = 0; offset < ids.length; offset += FETCH_CHUNK) {
      const asked = ids.slice(offset, offset + FETCH_CHUNK)
      const chunk = yield* storage.getBytes(asked)
      for (const e of chunk) {
        const cost = SyncAuth.wireCost(e.bytes.length)
        if (wire.length > 0 && used + cost > budget) return { wire, sent, more: true, consumed: offset + asked.indexOf(e.id) }
        wire.push(toBase64(e.bytes))
        sent.push(e.id)
        used += cost
      }
    }
    return { wire, sent, more: false, consumed: ids.length }
  })

/** Whether a string is an entry ID. */
export const isEntryId = Schema.is(EntryId)

/** Bytes as standard base64. */
export const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")

/**
 * Base64 as bytes, as `Buffer.from(text, "base64")` reads it, decoded straight into a buffer of
 * their own (so stored bytes do not pin Buffer's shared pool, and without a second copy).
 */
export const fromBase64 = (text: string): Uint8Array => {
  const out = new Uint8Array(Buffer.byteLength(text, "base64"))
  const written = Buffer.from(out.buffer, 0, out.length).write(text, "base64")
  return written === out.length ? out : out.slice(0, written)
}

/** Cut a text for an error message. */
export const truncate = (text: string, max: number): string => (text.length > max ? `${text.slice(0, max)}…` : text)
