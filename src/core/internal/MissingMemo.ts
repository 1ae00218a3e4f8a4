/**
 * The last answer of `DagIndex.missing` for a tree, kept so the next request of a paged pull is
 * answered without walking the tree again. A peer pulling a large tree asks again after every page,
 * naming what it now holds; walking down from the tips to its frontier each time costs the whole
 * region it still lacks, so a pull of n entries in pages of k cost about n²/2k steps. From the memo
 * a request costs the page it moves past.
 *
 * Why the answer follows (tree unchanged since the memo, every edge going from a higher entry to a
 * lower one): the memo's `list` is what is missing for the IDs `held` first named, sorted by
 * (height, ID), so the tree is `list` plus the ancestors of `held`, and an entry's ancestors sit
 * before it in `list` or among those of `held`. `frontier` starts as `held`; folding in the list's
 * first entries, each replaces its parents there. Every entry of the folded prefix and every
 * ancestor of `held` is then an ancestor-or-self of some frontier ID. So when a request names every
 * frontier ID, and names nothing of `list` past the prefix, what it holds is exactly those ancestors
 * and that prefix, and what it lacks is the rest of `list`. Any other request (another peer's,
 * a peer that also holds entries from elsewhere) is left to the walk.
 */
// Dag.ts imports this module back (the memo's class): a cycle that is safe because neither module
// touches the other at load time, only inside functions.
import { type DagNode, firstAfter } from "../Dag.js"

/** The nodes of a tree a requester lacks, and the prefix of them it is known to hold since. */
export class MissingMemo {
  /** How many of `list`'s first entries are folded into `frontier`. */
  private covered = 0
  private frontier: Set<string>

  /**
   * @param list what `missing` answered for `held`, sorted by (height, ID)
   * @param held the IDs of the tree that request named (others ignored, as `missing` ignores them)
   */
  constructor(private readonly list: ReadonlyArray<DagNode>, held: Iterable<string>) {
    this.frontier = new Set(held)
  }

  /**
   * What is missing for a requester naming `held` (IDs of the tree, as nodes), sorted by (height, ID),
   * when it follows from the memo; undefined otherwise. A request it answers moves the memo on.
   */
  next(held: ReadonlyArray<DagNode>): ReadonlyArray<string> | undefined {
    const list = this.list
    // how far into the list the request reaches: past every listed ID it names
    let reach = this.covered
    for (const node of held) {
      const at = positionIn(list, node)
      if (at >= reach) reach = at + 1
    }
    let frontier = this.frontier
    if (reach > this.covered) {
      frontier = new Set(frontier)
      for (let i = this.covered; i < reach; i++) {
        const node = list[i]!
        for (const p of node.parents) frontier.delete(p)
        frontier.add(node.id)
      }
    }
    if (frontier.size > held.length) return undefined
    const named = new Set<string>()
    for (const node of held) named.add(node.id)
    for (const id of frontier) if (!named.has(id)) return undefined
    this.frontier = frontier
    this.covered = reach
    const out = new Array<string>(list.length - reach)
    for (let i = reach; i < list.length; i++) out[i - reach] = list[i]!.id
    return out
  }
}

/** The index of `node` in a list sorted by (height, ID), or -1 when it is not there. */
const positionIn = (list: ReadonlyArray<DagNode>, node: DagNode): number => {
  const at = firstAfter(list, node) - 1
  return at >= 0 && list[at] === node ? at : -1
}
