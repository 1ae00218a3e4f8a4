/**
 * What the memory and SQLite storages share: DAG queries answered from a DagIndex, batch checks,
 * and small helpers.
 */
import * as Effect from "effect/Effect"
import type { DagIndex } from "../../core/Dag.js"
import type { StoredEntry } from "../../core/Entry.js"
import type { StorageError } from "../../schema/Errors.js"
import type { StorageShape } from "../../services/Storage.js"

/** The DAG queries both layers answer from a DagIndex, given how each reaches its index. */
export const dagQueries = (
  withIndex: <A>(treeId: string, f: (index: DagIndex, treeId: string) => A) => Effect.Effect<A, StorageError>
): Pick<
  StorageShape,
  "tips" | "storeTips" | "ancestors" | "storeAncestors" | "missing" | "sample" | "storeEntries" | "storeEntriesSince"
> => ({
  tips: (treeId) => withIndex(treeId, (i, t) => i.tips(t)),
  storeTips: (treeId, store) => withIndex(treeId, (i, t) => i.storeTips(t, store)),
  ancestors: (treeId, ids) => withIndex(treeId, (i, t) => i.ancestors(t, ids)),
  storeAncestors: (treeId, store, ids) => withIndex(treeId, (i, t) => i.storeAncestors(t, store, ids)),
  missing: (treeId, known) => withIndex(treeId, (i, t) => i.missing(t, known)),
  sample: (treeId) => withIndex(treeId, (i, t) => i.sample(t)),
  storeEntries: (treeId, store) => withIndex(treeId, (i, t) => i.storeEntries(t, store)),
  storeEntriesSince: (treeId, store, seq) => withIndex(treeId, (i, t) => i.storeEntriesSince(t, store, seq))
})



/** Reject a batch that is not made of well-formed StoredEntry values before anything is written. */
export const checkBatch = (batch: ReadonlyArray<StoredEntry>): string | undefined => {
  for (let i = 0; i < batch.length; i++) {
    const e: unknown = batch[i]
    if (typeof e !== "object" || e === null) return `item ${i} is not an entry`
    const s = e as Partial<StoredEntry>
    if (typeof s.id !== "string" || s.id.length === 0) return `item ${i} has no ID`
    if (typeof s.treeId !== "string" || s.treeId.length === 0) return `item ${i} (${s.id}) has no tree ID`
    if (!(s.bytes instanceof Uint8Array)) return `item ${i} (${s.id}) has no bytes`
    if (typeof s.height !== "number" || !Number.isSafeInteger(s.height) || s.height < 0)
      return `item ${i} (${s.id}) has a bad height`
    const entry = s.entry
    if (typeof entry !== "object" || entry === null || !Array.isArray(entry.tree?.parents) || !Array.isArray(entry.subtrees))
      return `item ${i} (${s.id}) has no entry`
    // what the DAG index reads of each store node, so a put never fails half applied
    for (const node of entry.subtrees as ReadonlyArray<unknown>) {
      const n = node as { name?: unknown; parents?: unknown; h?: unknown } | null
      if (typeof n !== "object" || n === null || typeof n.name !== "string" || !Array.isArray(n.parents))
        return `item ${i} (${s.id}) has a malformed store node`
      if (n.h !== undefined && (typeof n.h !== "number" || !Number.isSafeInteger(n.h) || n.h < 0))
        return `item ${i} (${s.id}) has a bad store height`
    }
  }
  return undefined
}

export const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}
