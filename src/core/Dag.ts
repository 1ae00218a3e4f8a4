/**
 * The DAG index: a pure, mutable, in-memory index of the structure of entries (tree, height,
 * parents, the stores each touches with their heights and parents, insertion seq). It answers
 * tips, ancestry, missing-entry and sampling queries for every tree it holds, and stays correct
 * whatever order entries arrive in (children before parents, gaps). No Effect services, no I/O.
 */
import { compareIds, compareNames } from "../schema/Ids.js"
import type { StoredEntry } from "./Entry.js"
import { MissingMemo } from "./internal/MissingMemo.js"

/** A store an entry touches: the store name, the entry's store height and its store parents. */
export interface StoreLink {
  readonly name: string
  readonly height: number
  readonly parents: ReadonlyArray<string>
}

/** Everything the index keeps about one entry. */
export interface DagNode {
  readonly id: string
  readonly treeId: string
  readonly height: number
  readonly parents: ReadonlyArray<string>
  readonly stores: ReadonlyArray<StoreLink>
  /** Insertion sequence number given by the owner of the index. */
  readonly seq: number
}

/** An entry of a store: ID, store height and insertion seq. */
export interface StoreRef {
  readonly id: string
  readonly height: number
  readonly seq: number
}

/**
 * The index node of a stored entry, with the insertion seq the storage assigned it. Its stores are
 * pushed in a loop, not made by `map`: `map`'s array is packed from the builtin but holey once V8
 * inlines it into optimised code, and the code reading nodes (`DagIndex.add`, the SQLite row)
 * optimised on the one kind is thrown away at the first node of the other (measured: `add`
 * compiled three times in a cold bootstrap).
 */
export const nodeOf = (entry: StoredEntry, seq: number): DagNode => {
  const treeHeight = entry.height
  const stores: Array<StoreLink> = []
  for (const s of entry.entry.subtrees) stores.push({ name: s.name, height: s.h ?? treeHeight, parents: s.parents })
  return { id: entry.id, treeId: entry.treeId, height: treeHeight, parents: entry.entry.tree.parents, stores, seq }
}

/** Order nodes by (height, ID): parents first whenever every entry is higher than its parents. */
export const compareByHeight = (a: { readonly height: number; readonly id: string }, b: typeof a): number =>
  a.height - b.height || compareIds(a.id, b.id)

/**
 * In a list sorted by `compareByHeight`, the index of the first element that sorts after `key` (the
 * list's length when none does): where `key` goes in, and where the entries after it start.
 */
export const firstAfter = (sorted: ReadonlyArray<{ readonly height: number; readonly id: string }>, key: { readonly height: number; readonly id: string }): number => {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (compareByHeight(sorted[mid]!, key) > 0) hi = mid
    else lo = mid + 1
  }
  return lo
}

/** Entries placed inside a store's sorted view between two reads of it before it is dropped (sorted again on demand). */
const MAX_PLACED = 64

/** A mutable index of the DAGs of any number of trees. */
export class DagIndex {
  private readonly nodes = new Map<string, DagNode>()
  private readonly trees = new Map<string, TreeState>()

  /** Store names, one string each (a large index would otherwise hold a copy per entry). */
  private readonly names = new Map<string, string>()

  /** Forget every entry and tree (the storage holding it was closed). */
  clear(): void {
    this.nodes.clear()
    this.trees.clear()
    this.names.clear()
  }

  /** Add an entry. Returns false (and changes nothing) when the ID is already indexed. */
  add(added: DagNode): boolean {
    if (this.nodes.has(added.id)) return false
    const tree = this.treeState(added.treeId)
    const node = this.compact(added, tree.id)
    this.nodes.set(node.id, node)
    tree.nodes.push(node)
    tree.sample = undefined
    tree.missingMemo = undefined
    if (node.id === node.treeId) tree.rootPresent = true

    // Tree tips: a child that arrived first left this ID in `pending`.
    const minChildHeight = tree.pending.get(node.id)
    if (minChildHeight === undefined) {
      tree.tips.add(node.id)
    } else {
      tree.pending.delete(node.id)
      if (minChildHeight <= node.height) tree.heightsOk = false
    }
    for (const p of node.parents) {
      if (p === node.id) continue
      const parent = this.inTree(node.treeId, p)
      if (parent !== undefined) {
        tree.tips.delete(p)
        if (parent.height >= node.height) tree.heightsOk = false
      } else {
        const known = tree.pending.get(p)
        if (known === undefined || node.height < known) tree.pending.set(p, node.height)
      }
    }

    // Store tips and membership.
    for (const link of node.stores) {
      const store = storeState(tree, link.name)
      const ref: StoreRef = { id: node.id, height: link.height, seq: node.seq }
      const last = store.refs[store.refs.length - 1]
      if (last !== undefined && last.seq >= ref.seq) store.seqOrdered = false
      store.refs.push(ref)
      // Keep the sorted view: a new, higher entry (the usual case) goes last; a few concurrent ones
      // are placed by binary search (a long run of them is cheaper to sort again when next asked).
      const sorted = store.sorted
      const lastSorted = sorted?.[sorted.length - 1]
      if (sorted === undefined || lastSorted === undefined) store.sorted = undefined
      else if (compareByHeight(lastSorted, ref) < 0) sorted.push(ref)
      else if (store.placed >= MAX_PLACED) store.sorted = undefined
      else {
        sorted.splice(firstAfter(sorted, ref), 0, ref)
        store.placed++
      }
      if (store.pending.has(node.id)) store.pending.delete(node.id)
      else store.tips.add(node.id)
      for (const p of link.parents) {
        if (p === node.id) continue
        const parent = this.inTree(node.treeId, p)
        if (parent === undefined) store.pending.add(p)
        else if (findStore(parent, link.name) !== undefined) store.tips.delete(p)
      }
    }
    return true
  }

  /**
   * The node as the index keeps it, in arrays of its own (not the entry's): its tree ID and each
   * indexed parent ID are the tree's and the parent node's own strings, each store name one shared
   * string. IDs read back from storage or decoded from a peer are new strings every time; shared,
   * a tree loaded from SQLite takes 472 instead of 632 bytes of heap per entry (measured at 100,000).
   */
  private compact(node: DagNode, treeId: string): DagNode {
    const stores = new Array<StoreLink>(node.stores.length)
    for (let i = 0; i < stores.length; i++) {
      const link = node.stores[i]!
      let name = this.names.get(link.name)
      if (name === undefined) {
        name = link.name
        this.names.set(name, name)
      }
      stores[i] = { name, height: link.height, parents: this.shared(link.parents) }
    }
    return { id: node.id, treeId, height: node.height, parents: this.shared(node.parents), stores, seq: node.seq }
  }

  private shared(ids: ReadonlyArray<string>): ReadonlyArray<string> {
    const out = new Array<string>(ids.length)
    for (let i = 0; i < ids.length; i++) out[i] = this.nodes.get(ids[i]!)?.id ?? ids[i]!
    return out
  }

  /** Whether this ID is indexed. */
  has(id: string): boolean {
    return this.nodes.has(id)
  }

  /** The indexed node of an ID. */
  get(id: string): DagNode | undefined {
    return this.nodes.get(id)
  }

  /** The number of entries indexed, over all trees. */
  get size(): number {
    return this.nodes.size
  }

  /** The number of entries of a tree. */
  count(treeId: string): number {
    return this.trees.get(treeId)?.nodes.length ?? 0
  }

  /** IDs of every tree whose root entry is indexed, sorted. */
  roots(): ReadonlyArray<string> {
    const out: Array<string> = []
    for (const t of this.trees.values()) if (t.rootPresent) out.push(t.id)
    return out.sort(compareIds)
  }

  /** Tips of a tree (entries with no known child), sorted. */
  tips(treeId: string): ReadonlyArray<string> {
    const t = this.trees.get(treeId)
    return t === undefined ? [] : [...t.tips].sort(compareIds)
  }

  /** Tips of a store of a tree (store entries with no known store child), sorted. */
  storeTips(treeId: string, store: string): ReadonlyArray<string> {
    const s = this.trees.get(treeId)?.stores.get(store)
    return s === undefined ? [] : [...s.tips].sort(compareIds)
  }

  /** Ancestors-or-self of `ids` within the tree (unknown IDs ignored), sorted by (height, ID). */
  ancestors(treeId: string, ids: ReadonlyArray<string>): ReadonlyArray<string> {
    const seen = new Set<string>()
    const stack: Array<DagNode> = []
    for (const id of ids) {
      const n = this.inTree(treeId, id)
      if (n !== undefined && !seen.has(id)) {
        seen.add(id)
        stack.push(n)
      }
    }
    const out: Array<DagNode> = []
    for (let n = stack.pop(); n !== undefined; n = stack.pop()) {
      out.push(n)
      for (const p of n.parents) {
        if (seen.has(p)) continue
        const pn = this.inTree(treeId, p)
        if (pn === undefined) continue
        seen.add(p)
        stack.push(pn)
      }
    }
    return out.sort(compareByHeight).map((n) => n.id)
  }

  /**
   * Ancestors-or-self of `ids` following store parents, sorted by (store height, ID). An ID that
   * does not touch the store starts from the nearest entries along main parents that do.
   */
  storeAncestors(treeId: string, store: string, ids: ReadonlyArray<string>): ReadonlyArray<string> {
    const seen = new Set<string>()
    const stack: Array<readonly [DagNode, StoreLink]> = []
    const push = (n: DagNode, link: StoreLink) => {
      if (seen.has(n.id)) return
      seen.add(n.id)
      stack.push([n, link])
    }
    // Entries outside the store: walk main parents until the store is reached.
    const mainSeen = new Set<string>()
    const mainStack: Array<DagNode> = []
    for (const id of ids) {
      const n = this.inTree(treeId, id)
      if (n === undefined) continue
      const link = findStore(n, store)
      if (link !== undefined) push(n, link)
      else if (!mainSeen.has(id)) {
        mainSeen.add(id)
        mainStack.push(n)
      }
    }
    for (let n = mainStack.pop(); n !== undefined; n = mainStack.pop()) {
      for (const p of n.parents) {
        if (mainSeen.has(p)) continue
        mainSeen.add(p)
        const pn = this.inTree(treeId, p)
        if (pn === undefined) continue
        const link = findStore(pn, store)
        if (link !== undefined) push(pn, link)
        else mainStack.push(pn)
      }
    }
    const out: Array<StoreRef> = []
    for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
      const [n, link] = item
      out.push({ id: n.id, height: link.height, seq: n.seq })
      for (const p of link.parents) {
        if (seen.has(p)) continue
        const pn = this.inTree(treeId, p)
        if (pn === undefined) continue
        const plink = findStore(pn, store)
        if (plink !== undefined) push(pn, plink)
      }
    }
    return out.sort(compareByHeight).map((r) => r.id)
  }

  /**
   * Entries of the tree that are not ancestors-or-self of any known ID (unknown IDs ignored),
   * sorted by (height, ID). Walks down from the tips and the known IDs together, highest first,
   * and stops as soon as nothing unknown is left to explore, so the cost is the region between
   * the peer's frontier and ours, not the whole history.
   */
  missing(treeId: string, known: ReadonlyArray<string>): ReadonlyArray<string> {
    const tree = this.trees.get(treeId)
    if (tree === undefined) return []
    if (!tree.heightsOk) return this.missingByScan(tree, known)
    // the next page of a paged pull follows from the last answer (see MissingMemo)
    const held: Array<DagNode> = []
    for (const id of known) {
      const n = this.inTree(treeId, id)
      if (n !== undefined) held.push(n)
    }
    const followed = tree.missingMemo?.next(held)
    if (followed !== undefined) return followed
    // holding nothing of the tree (a bootstrap), every entry is missing: every one reaches a tip
    // along children, so the walk would visit them all; the tree's own list, nearly sorted already
    // (entries are added parents first), sorts in about linear time
    const out = held.length === 0 ? tree.nodes.slice().sort(compareByHeight) : this.missingByWalk(tree, held)
    tree.missingMemo = new MissingMemo(out, held.map((n) => n.id))
    return out.map((n) => n.id)
  }

  /** `missing` by walking down from the tips and the known entries `held` (heights in order), as nodes sorted by (height, ID). */
  private missingByWalk(tree: TreeState, held: ReadonlyArray<DagNode>): Array<DagNode> {
    const treeId = tree.id
    const KNOWN = 1
    const CANDIDATE = 2
    const state = new Map<string, number>()
    const heap = new NodeHeap()
    let candidates = 0
    for (const n of held) {
      if (state.has(n.id)) continue
      state.set(n.id, KNOWN)
      heap.push(n)
    }
    for (const id of tree.tips) {
      if (state.has(id)) continue
      state.set(id, CANDIDATE)
      candidates++
      heap.push(this.nodes.get(id)!)
    }
    const out: Array<DagNode> = []
    while (candidates > 0) {
      const n = heap.pop()
      if (n === undefined) break
      const mark = state.get(n.id)!
      if (mark === CANDIDATE) {
        candidates--
        out.push(n)
      }
      for (const p of n.parents) {
        const pm = state.get(p)
        if (mark === KNOWN) {
          if (pm === KNOWN) continue
          if (pm === CANDIDATE) {
            state.set(p, KNOWN)
            candidates--
            continue
          }
          const pn = this.inTree(treeId, p)
          if (pn === undefined) continue
          state.set(p, KNOWN)
          heap.push(pn)
        } else {
          if (pm !== undefined) continue
          const pn = this.inTree(treeId, p)
          if (pn === undefined) continue
          state.set(p, CANDIDATE)
          candidates++
          heap.push(pn)
        }
      }
    }
    return out.sort(compareByHeight)
  }

  /**
   * A sparse sample of the tree: the tips, then for each tip the entries at distance 1, 2, 4, 8, …
   * along first parents, and the last entry that walk reaches (the root when nothing is missing).
   */
  sample(treeId: string): ReadonlyArray<string> {
    const tree = this.trees.get(treeId)
    if (tree === undefined) return []
    // The walk is as long as the tree is high: keep the answer until the tree changes.
    if (tree.sample === undefined) tree.sample = this.computeSample(treeId)
    return tree.sample.slice()
  }

  /** Every entry of a store, sorted by (store height, ID). */
  storeEntries(treeId: string, store: string): ReadonlyArray<StoreRef> {
    const s = this.trees.get(treeId)?.stores.get(store)
    if (s === undefined) return []
    if (s.sorted === undefined) s.sorted = [...s.refs].sort(compareByHeight)
    s.placed = 0
    return s.sorted.slice()
  }

  /** Entries of a store added with an insertion seq greater than `seq`, in insertion order. */
  storeEntriesSince(treeId: string, store: string, seq: number): ReadonlyArray<StoreRef> {
    const s = this.trees.get(treeId)?.stores.get(store)
    if (s === undefined) return []
    if (!s.seqOrdered) return s.refs.filter((r) => r.seq > seq).sort((a, b) => a.seq - b.seq)
    let lo = 0
    let hi = s.refs.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (s.refs[mid]!.seq > seq) hi = mid
      else lo = mid + 1
    }
    return s.refs.slice(lo)
  }

  /** Names of the stores of a tree, sorted. */
  stores(treeId: string): ReadonlyArray<string> {
    const t = this.trees.get(treeId)
    return t === undefined ? [] : [...t.stores.keys()].sort(compareNames)
  }

  private inTree(treeId: string, id: string): DagNode | undefined {
    const n = this.nodes.get(id)
    return n !== undefined && n.treeId === treeId ? n : undefined
  }

  private treeState(treeId: string): TreeState {
    let t = this.trees.get(treeId)
    if (t === undefined) {
      t = {
        id: treeId,
        nodes: [],
        tips: new Set(),
        pending: new Map(),
        stores: new Map(),
        heightsOk: true,
        rootPresent: false,
        sample: undefined,
        walk: undefined,
        missingMemo: undefined
      }
      this.trees.set(treeId, t)
    }
    return t
  }

  /** Tips, then exponentially spaced first-parent ancestors of each tip, then where each walk ends. */
  private computeSample(treeId: string): Array<string> {
    const tips = this.tips(treeId)
    const seen = new Set<string>()
    const out: Array<string> = []
    const add = (id: string) => {
      if (seen.has(id)) return
      seen.add(id)
      out.push(id)
    }
    for (const t of tips) add(t)
    for (const t of tips) {
      const path = this.firstParentPath(treeId, t)
      // path[0] is where the walk ends, path[last] is the tip itself
      const last = path.length - 1
      for (let distance = 1; distance <= last; distance *= 2) add(path[last - distance]!.id)
      add(path[0]!.id)
    }
    return out
  }

  /**
   * The first-parent walk from `tip` down to where it ends, end first. The last walk is kept, so a
   * tip that grew from it walks only the new part (a commit extends a chain by one).
   */
  private firstParentPath(treeId: string, tip: string): Array<DagNode> {
    const tree = this.treeState(treeId)
    let memo = tree.walk
    // the walk's end gained its first parent since: the memo no longer ends where a walk would
    const end = memo?.path[0]
    const endParent = end?.parents[0]
    if (memo !== undefined && endParent !== undefined && this.inTree(treeId, endParent) !== undefined) memo = undefined
    const fresh: Array<DagNode> = []
    let n: DagNode | undefined = this.nodes.get(tip)!
    let joined = -1
    while (n !== undefined) {
      const at = memo?.positions.get(n.id)
      if (at !== undefined) {
        joined = at
        break
      }
      fresh.push(n)
      const first: string | undefined = n.parents[0]
      n = first === undefined ? undefined : this.inTree(treeId, first)
    }
    if (memo === undefined || joined < 0) memo = { path: [], positions: new Map() }
    else {
      for (let i = joined + 1; i < memo.path.length; i++) memo.positions.delete(memo.path[i]!.id)
      memo.path.length = joined + 1
    }
    for (let i = fresh.length - 1; i >= 0; i--) {
      memo.positions.set(fresh[i]!.id, memo.path.length)
      memo.path.push(fresh[i]!)
    }
    tree.walk = memo
    return memo.path
  }

  /** The exact fallback when some entry is not higher than a parent: complement of the known ancestors. */
  private missingByScan(tree: TreeState, known: ReadonlyArray<string>): ReadonlyArray<string> {
    const have = new Set(this.ancestors(tree.id, known))
    return tree.nodes
      .filter((n) => !have.has(n.id))
      .sort(compareByHeight)
      .map((n) => n.id)
  }
}

interface TreeState {
  readonly id: string
  /** Every node of the tree in insertion order. */
  readonly nodes: Array<DagNode>
  readonly tips: Set<string>
  /** IDs named as parents but not (yet) indexed, with the lowest height of a child naming them. */
  readonly pending: Map<string, number>
  readonly stores: Map<string, StoreState>
  /** Whether every indexed edge goes from a higher child to a lower parent (the walk in `missing` relies on it). */
  heightsOk: boolean
  rootPresent: boolean
  /** The last `sample` answer, dropped when an entry is added to the tree. */
  sample: Array<string> | undefined
  /** The last first-parent walk of `sample` (end first) and each node's position on it. */
  walk: { readonly path: Array<DagNode>; readonly positions: Map<string, number> } | undefined
  /** The last `missing` answer, to answer the next page of a pull from (dropped when an entry is added to the tree). */
  missingMemo: MissingMemo | undefined
}

interface StoreState {
  /** Store entries in insertion order. */
  readonly refs: Array<StoreRef>
  /** Whether `refs` is in increasing seq order (it is when seqs are handed out increasing). */
  seqOrdered: boolean
  /** `refs` sorted by (store height, ID), computed on demand. */
  sorted: Array<StoreRef> | undefined
  /** Entries placed inside `sorted` by binary search since it was last read. */
  placed: number
  readonly tips: Set<string>
  /** Store parents named but not (yet) indexed. */
  readonly pending: Set<string>
}

const storeState = (tree: TreeState, name: string): StoreState => {
  let s = tree.stores.get(name)
  if (s === undefined) {
    s = { refs: [], seqOrdered: true, sorted: undefined, placed: 0, tips: new Set(), pending: new Set() }
    tree.stores.set(name, s)
  }
  return s
}

const findStore = (n: DagNode, store: string): StoreLink | undefined => {
  for (const s of n.stores) if (s.name === store) return s
  return undefined
}

/** A binary max-heap of nodes by (height, ID): the highest comes out first. */
class NodeHeap {
  private readonly items: Array<DagNode> = []

  push(n: DagNode): void {
    const items = this.items
    items.push(n)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (compareByHeight(items[parent]!, items[i]!) >= 0) break
      const tmp = items[parent]!
      items[parent] = items[i]!
      items[i] = tmp
      i = parent
    }
  }

  pop(): DagNode | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    items[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < items.length && compareByHeight(items[l]!, items[m]!) > 0) m = l
      if (r < items.length && compareByHeight(items[r]!, items[m]!) > 0) m = r
      if (m === i) break
      const tmp = items[m]!
      items[m] = items[i]!
      items[i] = tmp
      i = m
    }
    return top
  }
}
