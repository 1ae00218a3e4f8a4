/**
 * What a sync pull does with the pages it receives: decoding them, reading their continuation, the
 * tips after a page, and the signatures worth verifying ahead while the previous page is stored.
 */
import * as Either from "effect/Either"
import { Doc } from "../../core/Doc.js"
import type { StoredEntry } from "../../core/Entry.js"
import * as Entry from "../../core/Entry.js"
import * as Settings from "../../core/Settings.js"
import { InvalidEntry } from "../../schema/Errors.js"
import type { SyncResponse } from "../../schema/Protocol.js"
import type { VerifyItem } from "../../services/Auth.js"
import { fromBase64 } from "./SyncWire.js"

/** Decode received entries of `treeId`; the rest are reasons. */
export const decodeAll = (wire: ReadonlyArray<string>, treeId: string) => {
  const entries: Array<StoredEntry> = []
  const rejected: Array<InvalidEntry> = []
  for (const w of wire) {
    const result = Entry.decode(fromBase64(w))
    if (Either.isLeft(result)) rejected.push(new InvalidEntry({ reason: `received entry does not decode: ${result.left}` }))
    else if (result.right.treeId !== treeId) {
      rejected.push(new InvalidEntry({ entryId: result.right.id, reason: `belongs to database ${result.right.treeId}, not ${treeId}` }))
    } else entries.push(result.right)
  }
  return { entries, rejected }
}

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

/** Fewer signatures than this are not worth verifying ahead (the verifier's round trip costs more). */
export const AHEAD_MIN = 64

/** The active keys a database root's settings name. */
export const rootSigners = (root: StoredEntry): ReadonlyArray<string> => {
  const data = Entry.subtree(root.entry, Entry.SETTINGS)?.data
  if (data === undefined || !Entry.isRoot(root.entry)) return []
  try {
    const state = Settings.authOf(Doc.decode(data))
    if (state._tag !== "Present") return []
    return Object.entries(state.auth.keys).filter(([, k]) => k.status === "Active").map(([pubkey]) => pubkey)
  } catch {
    return []
  }
}

/** The public key a signed entry names as its direct signer, if it names one. */
export const hintedSigner = (e: StoredEntry): string | undefined => {
  const key = e.entry.sig.key
  return e.entry.sig.sig !== undefined && "Direct" in key ? key.Direct.hint.pubkey : undefined
}

/**
 * What ingestion will verify for received entries signed by a known signer: a Direct hint naming a
 * public key makes that key the only candidate, over the entry's signing bytes.
 */
export const aheadItems = (entries: ReadonlyArray<StoredEntry>, signers: ReadonlySet<string>): Array<VerifyItem> => {
  const items: Array<VerifyItem> = []
  if (signers.size === 0) return items
  for (const e of entries) {
    const signer = hintedSigner(e)
    if (signer !== undefined && signers.has(signer)) {
      items.push({ publicKey: signer, signature: e.entry.sig.sig!, message: Entry.signingBytesOf(e) })
    }
  }
  return items
}

/** The tips after adding `page` (parents first) to a set with tips `tips`. */
export const advanceTips = (tips: ReadonlyArray<string>, page: ReadonlyArray<StoredEntry>): ReadonlyArray<string> => {
  const out = new Set(tips)
  for (const e of page) {
    for (const parent of e.entry.tree.parents) out.delete(parent)
    out.add(e.id)
  }
  return [...out].sort()
}
