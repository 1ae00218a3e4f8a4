/**
 * What a sync pull does with the pages it receives: decoding them, reading their continuation,
 * and the tips after a page.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { StoredEntry } from "../../core/Entry.js"
import { decodeVerifyingAhead } from "../../database/VerifyAhead.js"
import { InvalidEntry } from "../../schema/Errors.js"
import type { SyncResponse } from "../../schema/Protocol.js"
import type { AuthShape } from "../../services/Auth.js"
import { fromBase64 } from "./SyncWire.js"

/**
 * Decode received entries of `treeId`, the rest being reasons; known signers' signatures go to the
 * verifier as the page decodes (see `decodeVerifyingAhead`).
 */
export const decodeAll = (wire: ReadonlyArray<string>, treeId: string, signers: Set<string>, auth: AuthShape) =>
  Effect.map(decodeVerifyingAhead(wire.map(fromBase64), signers, auth, treeId), (results) => {
    const entries: Array<StoredEntry> = []
    const rejected: Array<InvalidEntry> = []
    for (const result of results) {
      if (Either.isLeft(result)) rejected.push(new InvalidEntry({ reason: `received entry does not decode: ${result.left}` }))
      else if (result.right.treeId !== treeId) {
        rejected.push(new InvalidEntry({ entryId: result.right.id, reason: `belongs to database ${result.right.treeId}, not ${treeId}` }))
      } else entries.push(result.right)
    }
    return { entries, rejected }
  })

/** The entries of a pull answer, if it carries any. */
export const entriesOf = (response: SyncResponse): ReadonlyArray<string> | undefined =>
  typeof response !== "object"
    ? undefined
    : "Bootstrap" in response
    ? response.Bootstrap.all_entries
    : "Incremental" in response
    ? response.Incremental.missing_entries
    : undefined

/** How many pages a pull asks for ahead of the one it is storing. */
export const PREFETCH_PAGES = 2

/** The continuation marker of a pull answer. */
export const nextOf = (response: SyncResponse): string | undefined =>
  typeof response !== "object"
    ? undefined
    : "Bootstrap" in response
    ? response.Bootstrap.next
    : "Incremental" in response
    ? response.Incremental.next
    : undefined

/** The tips after adding `page` (parents first) to a set with tips `tips`. */
export const advanceTips = (tips: ReadonlyArray<string>, page: ReadonlyArray<StoredEntry>): ReadonlyArray<string> => {
  const out = new Set(tips)
  for (const e of page) {
    for (const parent of e.entry.tree.parents) out.delete(parent)
    out.add(e.id)
  }
  return [...out].sort()
}
