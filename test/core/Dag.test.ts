import { describe, expect, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import { vi } from "vitest"
import { DagIndex, nodeOf } from "../../src/core/Dag.js"
import * as Entry from "../../src/core/Entry.js"
import type { StoredEntry } from "../../src/core/Entry.js"
import { MissingMemo } from "../../src/core/internal/MissingMemo.js"
import { compareIds } from "../../src/schema/Ids.js"

import { child, KEY, root } from "../fixtures/Entries.js"

const text = new TextEncoder()

const indexOf = (entries: ReadonlyArray<StoredEntry>): DagIndex => {
  const index = new DagIndex()
  entries.forEach((e, i) => index.add(nodeOf(e, i + 1)))
  return index
}

const sortedIds = (...es: ReadonlyArray<StoredEntry>) => es.map((e) => e.id).sort(compareIds)
const byHeight = (...es: ReadonlyArray<StoredEntry>) =>
  [...es].sort((a, b) => a.height - b.height || compareIds(a.id, b.id)).map((e) => e.id)

describe("DagIndex examples", () => {
  const r = root("r", ["a"])
  const e1 = child(r, "e1", [r], { a: { parents: [r] } })
  const e2 = child(r, "e2", [e1], { a: { parents: [e1] } })
  const e3 = child(r, "e3", [e2], { a: { parents: [e2] } })
  const T = r.id

  it("linear chain: one tip, ancestors in order, missing after a known ID", () => {
    const index = indexOf([r, e1, e2, e3])
    expect(index.tips(T)).toEqual([e3.id])
    expect(index.storeTips(T, "a")).toEqual([e3.id])
    expect(index.ancestors(T, [e2.id])).toEqual([r.id, e1.id, e2.id])
    expect(index.missing(T, [e1.id])).toEqual([e2.id, e3.id])
    expect(index.missing(T, [])).toEqual([r.id, e1.id, e2.id, e3.id])
    expect(index.missing(T, [e3.id])).toEqual([])
    expect(index.missing(T, ["bafyunknown"])).toEqual([r.id, e1.id, e2.id, e3.id])
    expect(index.count(T)).toBe(4)
    expect(index.roots()).toEqual([T])
    expect(index.storeEntries(T, "a").map((x) => x.id)).toEqual([r.id, e1.id, e2.id, e3.id])
    expect(index.storeEntriesSince(T, "a", 2).map((x) => x.id)).toEqual([e2.id, e3.id])
    expect(index.storeAncestors(T, "a", [e2.id])).toEqual([r.id, e1.id, e2.id])
  })

  it("child-first arrival (e3, e2, e1, root) gives the same tips for the tree and each store", () => {
    const index = indexOf([e3, e2, e1, r])
    expect(index.tips(T)).toEqual([e3.id])
    expect(index.storeTips(T, "a")).toEqual([e3.id])
    expect(index.storeTips(T, "_root")).toEqual([r.id])
    expect(index.ancestors(T, [e3.id])).toEqual([r.id, e1.id, e2.id, e3.id])
    expect(index.missing(T, [e1.id])).toEqual([e2.id, e3.id])
  })

  it("gaps: a parent never seen leaves its child a tip and is skipped by walks", () => {
    const index = indexOf([r, e2, e3])
    expect(index.tips(T)).toEqual(sortedIds(r, e3))
    expect(index.ancestors(T, [e3.id])).toEqual([e2.id, e3.id])
    expect(index.missing(T, [e2.id])).toEqual([r.id, e3.id])
    index.add(nodeOf(e1, 10))
    expect(index.tips(T)).toEqual([e3.id])
    expect(index.ancestors(T, [e3.id])).toEqual([r.id, e1.id, e2.id, e3.id])
  })

  it("branching e1 → {e2a, e2b}: two tips, missing keeps the other branch", () => {
    const e2a = child(r, "e2a", [e1], { a: { parents: [e1] } })
    const e2b = child(r, "e2b", [e1], { b: { parents: [] } })
    const index = indexOf([r, e1, e2a, e2b])
    expect(index.tips(T)).toEqual(sortedIds(e2a, e2b))
    expect(index.storeTips(T, "a")).toEqual([e2a.id])
    expect(index.storeTips(T, "b")).toEqual([e2b.id])
    expect(index.missing(T, [e2a.id])).toEqual([e2b.id])
    expect(index.missing(T, [e2a.id, e2b.id])).toEqual([])
    expect(index.ancestors(T, [e2a.id, e2b.id])).toEqual(byHeight(r, e1, e2a, e2b))
    // A store reached only through main parents: walk main parents to the nearest store entries.
    expect(index.storeAncestors(T, "a", [e2b.id])).toEqual([r.id, e1.id])
    expect(index.sample(T)).toEqual([...sortedIds(e2a, e2b), e1.id, r.id])
  })

  it("diamond: the merge is the only tip; store heights order store entries", () => {
    const left = child(r, "left", [e1], { a: { parents: [e1], h: 10 } })
    const right = child(r, "right", [e1], { a: { parents: [e1], h: 5 } })
    const merge = child(r, "merge", [left, right], { a: { parents: [left, right], h: 11 } })
    for (const order of [[r, e1, left, right, merge], [merge, right, left, e1, r], [left, merge, r, right, e1]]) {
      const index = indexOf(order)
      expect(index.tips(T)).toEqual([merge.id])
      expect(index.storeTips(T, "a")).toEqual([merge.id])
      expect(index.ancestors(T, [merge.id])).toEqual(byHeight(r, e1, left, right, merge))
      expect(index.storeAncestors(T, "a", [merge.id])).toEqual([r.id, e1.id, right.id, left.id, merge.id])
      expect(index.storeEntries(T, "a").map((x) => [x.id, x.height])).toEqual([
        [r.id, 0],
        [e1.id, 1],
        [right.id, 5],
        [left.id, 10],
        [merge.id, 11]
      ])
      expect(index.missing(T, [left.id])).toEqual(byHeight(right, merge))
    }
  })

  it("sample: tips, then distances 1, 2, 4, 8, … along first parents, then the root", () => {
    const chain: Array<StoredEntry> = [r]
    for (let i = 1; i <= 20; i++) chain.push(child(r, `c${i}`, [chain[i - 1]!]))
    const index = indexOf(chain)
    expect(index.sample(T)).toEqual([20, 19, 18, 16, 12, 4, 0].map((i) => chain[i]!.id))
  })

  it("add is idempotent and trees are kept apart", () => {
    const other = root("other")
    const o1 = child(other, "o1", [other])
    const index = indexOf([r, e1, other, o1])
    expect(index.add(nodeOf(e1, 99))).toBe(false)
    expect(index.count(T)).toBe(2)
    expect(index.tips(other.id)).toEqual([o1.id])
    expect(index.roots()).toEqual(sortedIds(r, other))
    expect(index.ancestors(T, [o1.id])).toEqual([])
    expect(index.tips("nope")).toEqual([])
  })

  it("missing stays correct when heights are not increasing (scan fallback)", () => {
    // A forged child whose height is not above its parent.
    const low = Entry.stored(Entry.make({ root: r.id, parents: [e2.id], height: 1, metadata: text.encode("low"), subtrees: [], key: KEY }))
    const index = indexOf([r, e1, e2, low])
    expect(index.missing(T, [e1.id])).toEqual(byHeight(e2, low))
  })

  it("missing touches only the frontier on a long chain", () => {
    const chain: Array<StoredEntry> = [r]
    for (let i = 1; i <= 2000; i++) chain.push(child(r, `c${i}`, [chain[i - 1]!]))
    const index = indexOf(chain)
    expect(index.missing(T, [chain[1995]!.id])).toEqual(chain.slice(1996).map((e) => e.id))
  })
})

// ---------------------------------------------------------------------------------------------
// Properties: any arrival order gives the same answers, and they match a brute-force oracle.

interface Spec {
  /** For entry i ≥ 1: indices (< i) of its parents. */
  readonly parents: ReadonlyArray<ReadonlyArray<number>>
  /** For entry i ≥ 1: bit 0 touches store "a", bit 1 touches "b". */
  readonly stores: ReadonlyArray<number>
}

const specArb: fc.Arbitrary<Spec> = fc.integer({ min: 1, max: 18 }).chain((n) =>
  fc.record({
    parents: fc.tuple(
      ...Array.from({ length: n }, (_, k) =>
        fc.uniqueArray(fc.integer({ min: 0, max: k }), { minLength: 1, maxLength: 3 })
      )
    ),
    stores: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: n, maxLength: n })
  })
)

/** Build the entries of a spec; store parents are the latest store entries reachable through the parents. */
const build = (spec: Spec): ReadonlyArray<StoredEntry> => {
  const r = root("prop", ["a"])
  const out: Array<StoredEntry> = [r]
  const latest: Array<Record<string, ReadonlyArray<number>>> = [{ a: [0] }]
  spec.parents.forEach((ps, k) => {
    const i = k + 1
    const mask = spec.stores[k]!
    const reach: Record<string, Set<number>> = { a: new Set(), b: new Set() }
    for (const p of ps) for (const s of ["a", "b"]) for (const x of latest[p]![s] ?? []) reach[s]!.add(x)
    const stores: Record<string, { parents: ReadonlyArray<StoredEntry>; h?: number }> = {}
    const mine: Record<string, ReadonlyArray<number>> = {}
    for (const [bit, s] of [[1, "a"], [2, "b"]] as const) {
      const sp = [...reach[s]!]
      if ((mask & bit) !== 0) {
        stores[s] = { parents: sp.map((x) => out[x]!), ...(s === "b" ? { h: i * 3 } : {}) }
        mine[s] = [i]
      } else {
        mine[s] = sp
      }
    }
    out.push(child(r, `e${i}`, ps.map((p) => out[p]!), stores))
    latest.push(mine)
  })
  return out
}

const oracleTips = (present: ReadonlyArray<StoredEntry>): ReadonlyArray<string> => {
  const ids = new Set(present.map((e) => e.id))
  const referenced = new Set(present.flatMap((e) => e.entry.tree.parents))
  return [...ids].filter((id) => !referenced.has(id)).sort(compareIds)
}

const oracleStoreTips = (present: ReadonlyArray<StoredEntry>, store: string): ReadonlyArray<string> => {
  const inStore = present.filter((e) => Entry.subtree(e.entry, store) !== undefined)
  const referenced = new Set(inStore.flatMap((e) => Entry.subtree(e.entry, store)!.parents))
  return inStore.map((e) => e.id).filter((id) => !referenced.has(id)).sort(compareIds)
}

const oracleAncestors = (present: ReadonlyArray<StoredEntry>, ids: ReadonlyArray<string>): Set<string> => {
  const byId = new Map(present.map((e) => [e.id, e]))
  const seen = new Set<string>()
  const visit = (id: string) => {
    const e = byId.get(id)
    if (e === undefined || seen.has(id)) return
    seen.add(id)
    e.entry.tree.parents.forEach(visit)
  }
  ids.forEach(visit)
  return seen
}

/** Apply a permutation given as random sort keys. */
const permute = <A>(items: ReadonlyArray<A>, keys: ReadonlyArray<number>): Array<A> =>
  items.map((x, i) => [x, keys[i % keys.length]! * 1000 + i] as const).sort((a, b) => a[1] - b[1]).map(([x]) => x)

const answers = (index: DagIndex, entries: ReadonlyArray<StoredEntry>, pick: ReadonlyArray<number>) => {
  const T = entries[0]!.id
  const chosen = pick.map((i) => entries[i % entries.length]!.id)
  return {
    tips: index.tips(T),
    a: index.storeTips(T, "a"),
    b: index.storeTips(T, "b"),
    ancestors: index.ancestors(T, chosen),
    storeAncestorsA: index.storeAncestors(T, "a", chosen),
    storeAncestorsB: index.storeAncestors(T, "b", chosen),
    missing: index.missing(T, chosen),
    sample: index.sample(T),
    storeEntriesB: index.storeEntries(T, "b").map((r) => [r.id, r.height]),
    count: index.count(T)
  }
}

describe("DagIndex properties", () => {
  it.prop(
    "any arrival order gives the same tips, store tips, ancestors, missing and sample",
    [specArb, fc.array(fc.nat(1000), { minLength: 1, maxLength: 40 }), fc.array(fc.nat(100), { maxLength: 4 })],
    ([spec, keys, pick]) => {
      const entries = build(spec)
      const inOrder = answers(indexOf(entries), entries, pick)
      const shuffled = answers(indexOf(permute(entries, keys)), entries, pick)
      expect(shuffled).toEqual(inOrder)
      const reversed = answers(indexOf([...entries].reverse()), entries, pick)
      expect(reversed).toEqual(inOrder)
    },
    { fastCheck: { numRuns: 150 } }
  )

  it.prop(
    "sample read between additions (in any order) equals the sample of a fresh index",
    [specArb, fc.array(fc.nat(1000), { minLength: 1, maxLength: 40 })],
    ([spec, keys]) => {
      const entries = permute(build(spec), keys)
      const T = build(spec)[0]!.id
      const index = new DagIndex()
      entries.forEach((e, i) => {
        index.add(nodeOf(e, i + 1))
        expect(index.sample(T)).toEqual(indexOf(entries.slice(0, i + 1)).sample(T))
      })
    },
    { fastCheck: { numRuns: 100 } }
  )

  it.prop(
    "store entries stay sorted by (store height, ID) when read between additions",
    [specArb, fc.array(fc.nat(1000), { minLength: 1, maxLength: 40 })],
    ([spec, keys]) => {
      const entries = permute(build(spec), keys)
      const T = entries.find((e) => e.treeId === e.id)!.id
      const index = new DagIndex()
      entries.forEach((e, i) => {
        index.add(nodeOf(e, i + 1))
        for (const store of ["a", "b"]) {
          const got = index.storeEntries(T, store)
          expect(got).toEqual([...got].sort((x, y) => x.height - y.height || compareIds(x.id, y.id)))
          expect(got).toHaveLength(entries.slice(0, i + 1).filter((x) => Entry.subtree(x.entry, store)).length)
        }
      })
    },
    { fastCheck: { numRuns: 100 } }
  )

  it.prop(
    "store entries placed by binary search between sparse reads stay sorted and complete",
    [specArb, fc.array(fc.nat(1000), { minLength: 1, maxLength: 40 }), fc.array(fc.boolean(), { minLength: 40, maxLength: 40 })],
    ([spec, keys, reads]) => {
      const entries = permute(build(spec), keys)
      const T = entries.find((e) => e.treeId === e.id)!.id
      const index = new DagIndex()
      entries.forEach((e, i) => {
        index.add(nodeOf(e, i + 1))
        if (!reads[i] && i !== entries.length - 1) return
        for (const store of ["a", "b"]) {
          const expected = entries.slice(0, i + 1).filter((x) => Entry.subtree(x.entry, store))
            .map((x) => ({ id: x.id, height: Entry.storeHeight(x.entry, store) }))
            .sort((x, y) => x.height - y.height || compareIds(x.id, y.id))
          expect(index.storeEntries(T, store).map((r) => ({ id: r.id, height: r.height }))).toEqual(expected)
        }
      })
    },
    { fastCheck: { numRuns: 200 } }
  )

  it.prop(
    "tips, store tips and missing match a brute-force oracle, with gaps",
    [specArb, fc.array(fc.nat(1000), { minLength: 1, maxLength: 40 }), fc.nat(100), fc.array(fc.nat(100), { maxLength: 4 })],
    ([spec, keys, keep, pick]) => {
      const entries = build(spec)
      const present = permute(entries, keys).slice(0, 1 + (keep % entries.length))
      const index = indexOf(present)
      const T = entries[0]!.id
      expect(index.tips(T)).toEqual(oracleTips(present))
      expect(index.storeTips(T, "a")).toEqual(oracleStoreTips(present, "a"))
      expect(index.storeTips(T, "b")).toEqual(oracleStoreTips(present, "b"))
      const known = pick.map((i) => present[i % present.length]!.id)
      const have = oracleAncestors(present, known)
      const expected = present
        .filter((e) => !have.has(e.id))
        .sort((x, y) => x.height - y.height || compareIds(x.id, y.id))
        .map((e) => e.id)
      expect(index.missing(T, known)).toEqual(expected)
      expect(new Set(index.ancestors(T, known))).toEqual(have)
      // Parents first: every ancestor list is topologically ordered.
      const position = new Map(index.ancestors(T, known).map((id, i) => [id, i]))
      for (const e of present) {
        const at = position.get(e.id)
        if (at === undefined) continue
        for (const p of e.entry.tree.parents) if (position.has(p)) expect(position.get(p)!).toBeLessThan(at)
      }
    },
    { fastCheck: { numRuns: 150 } }
  )
})

// ---------------------------------------------------------------------------------------------
// A paged pull: each request names what the requester holds after the last page. The index answers
// such a request from its last answer (MissingMemo) instead of walking the tree again; every answer
// must still be the brute-force one, whatever other requests and additions come in between.

/** The tips of an ancestor-closed set of entries. */
const tipsOf = (held: ReadonlyArray<StoredEntry>): Array<string> => {
  const referenced = new Set(held.flatMap((e) => e.entry.tree.parents))
  return held.map((e) => e.id).filter((id) => !referenced.has(id))
}

type PullStep =
  | { readonly kind: "page"; readonly size: number }
  | { readonly kind: "other"; readonly pick: ReadonlyArray<number> }
  | { readonly kind: "add" }

const stepArb: fc.Arbitrary<PullStep> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 6 }).map((size) => ({ kind: "page" as const, size })) },
  { weight: 1, arbitrary: fc.array(fc.nat(100), { maxLength: 3 }).map((pick) => ({ kind: "other" as const, pick })) },
  { weight: 1, arbitrary: fc.constant({ kind: "add" as const }) }
)

describe("DagIndex.missing across the pages of a pull", () => {
  it.prop(
    "each page's answer is the brute-force one, with other requests and new entries in between",
    [specArb, fc.array(fc.nat(1000), { minLength: 1, maxLength: 40 }), fc.nat(100), fc.array(fc.nat(100), { maxLength: 3 }), fc.array(stepArb, { maxLength: 14 })],
    ([spec, keys, keep, samplePick, steps]) => {
      const entries = build(spec)
      const order = permute(entries, keys)
      let count = 1 + (keep % entries.length)
      const index = indexOf(order.slice(0, count))
      const T = entries[0]!.id
      const oracle = (known: ReadonlyArray<string>) => {
        const present = order.slice(0, count)
        const have = oracleAncestors(present, known)
        return present.filter((e) => !have.has(e.id)).sort((x, y) => x.height - y.height || compareIds(x.id, y.id))
      }
      // the requester: what it holds (ancestor-closed), and a fixed sample it names every time
      const sample = samplePick.map((i) => entries[i % entries.length]!.id)
      let held: Array<StoredEntry> = [...oracleAncestors(entries, sample)].map((id) => entries.find((e) => e.id === id)!)
      const request = () => [...tipsOf(held), ...sample]
      for (const step of steps) {
        if (step.kind === "add") {
          if (count < order.length) index.add(nodeOf(order[count]!, ++count))
          continue
        }
        const known = step.kind === "page" ? request() : step.pick.map((i) => entries[i % entries.length]!.id)
        const answer = index.missing(T, known)
        const expected = oracle(known)
        expect(answer).toEqual(expected.map((e) => e.id))
        // the requester stores a page (parents first, so what it holds stays ancestor-closed)
        if (step.kind === "page") held = [...held, ...expected.slice(0, step.size)]
      }
    },
    { fastCheck: { numRuns: 400 } }
  )

  it("a pull page by page is answered from the last answer after its first page, not by walking again", () => {
    const r = root("paged", ["a"])
    const chain: Array<StoredEntry> = [r]
    for (let i = 1; i <= 300; i++) {
      // two branches merging every tenth entry, so pages end on several tips
      const parents = i % 10 === 0 && i > 10 ? [chain[i - 1]!, chain[i - 5]!] : [chain[i - 1]!]
      chain.push(child(r, `p${i}`, parents))
    }
    const index = indexOf(chain)
    const next = vi.spyOn(MissingMemo.prototype, "next")
    try {
      let held: Array<StoredEntry> = []
      const sample = [r.id]
      let pages = 0
      for (;;) {
        const answer = index.missing(r.id, [...tipsOf(held), ...sample])
        if (answer.length === 0) break
        const page = answer.slice(0, 25).map((id) => chain.find((e) => e.id === id)!)
        held = [...held, ...page]
        pages++
      }
      expect(pages).toBe(300 / 25)
      // every request but the first (pages, then the last one answering nothing) was answered from the memo
      const answered = next.mock.results.filter((x) => x.value !== undefined).length
      expect(answered).toBe(pages)
    } finally {
      next.mockRestore()
    }
  })
})
