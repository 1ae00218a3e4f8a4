import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Deleted, Doc, List, type Position, type Value } from "../../src/core/Doc.js"
import { comparePositions } from "../../src/core/List.js"

const positions = (l: List): string[] => l.rawEntries().map(([p]) => `${p.numerator}/${p.denominator}:${p.unique_id}`)

const listOf = (...values: ReadonlyArray<string>): List => {
  const l = List.empty()
  values.forEach((v) => l.push(v, v))
  return l
}

describe("List editing", () => {
  it("push uses last.numerator+1 over 1, starting at 0/1", () => {
    const l = List.empty().push("a", "ia").push("b", "ib").push("c", "ic")
    expect(l.toArray()).toEqual(["a", "b", "c"])
    expect(l.length).toBe(3)
    expect(positions(l)).toEqual(["0/1:ia", "1/1:ib", "2/1:ic"])
  })

  it("insert in the middle takes the midpoint, doubling the denominator when needed", () => {
    const l = listOf("a", "c")
    l.insert(1, "b", "ib")
    expect(l.toArray()).toEqual(["a", "b", "c"])
    expect(positions(l)).toEqual(["0/1:a", "1/2:ib", "1/1:c"])
    l.insert(1, "ab", "iab")
    expect(positions(l)[1]).toBe("1/4:iab")
    const wide = List.empty().push("x", "x").push("y", "y").push("z", "z")
    wide.remove(1)
    wide.insert(1, "m", "m") // between x (0/1) and the next slot (y's tombstone at 1/1)
    expect(wide.toArray()).toEqual(["x", "m", "z"])
  })

  it("insert at 0 goes before the first slot, at length appends like push", () => {
    const l = listOf("b")
    l.insert(0, "a", "ia")
    expect(positions(l)).toEqual(["-1/1:ia", "0/1:b"])
    l.insert(2, "c", "ic")
    expect(positions(l)).toEqual(["-1/1:ia", "0/1:b", "1/1:ic"])
    const empty = List.empty().insert(0, "only", "o")
    expect(positions(empty)).toEqual(["0/1:o"])
    expect(() => l.insert(4, "x", "x")).toThrow(RangeError)
    expect(() => l.insert(-1, "x", "x")).toThrow(RangeError)
    expect(() => l.insert(0.5, "x", "x")).toThrow(RangeError)
  })

  it("push after a negative fractional last position still appends", () => {
    const d = Doc.deserialize(
      `{"children":{"l":{"List":[[{"numerator":-5,"denominator":2,"unique_id":"a"},{"Int":1}]]}}}`
    )
    const l = d.get("l") as List
    l.push(2, "b")
    expect(l.toArray()).toEqual([1, 2])
    expect(positions(l)[1]).toBe("-2/1:b")
    const pos = Doc.deserialize(
      `{"children":{"l":{"List":[[{"numerator":3,"denominator":2,"unique_id":"a"},{"Int":1}]]}}}`
    ).get("l") as List
    pos.push(2, "b")
    expect(positions(pos)[1]).toBe("4/1:b")
  })

  it("repeated midpoints stay ordered and fail loudly once precision runs out", () => {
    const l = listOf("first", "last")
    let thrown: unknown
    try {
      for (let i = 0; i < 200; i++) l.insert(1, i, `id${i}`)
    } catch (e) {
      thrown = e
    }
    expect(thrown).toBeInstanceOf(RangeError)
    const entries = l.rawEntries()
    for (let i = 1; i < entries.length; i++) expect(comparePositions(entries[i - 1]![0], entries[i]![0])).toBe(-1)
    expect(l.get(0)).toBe("first")
    expect(l.get(l.length - 1)).toBe("last")
  })

  it("remove tombstones the slot; get/set/toArray skip tombstones", () => {
    const l = listOf("a", "b", "c")
    l.remove(1)
    expect(l.length).toBe(2)
    expect(l.toArray()).toEqual(["a", "c"])
    expect(l.get(1)).toBe("c")
    expect(l.get(2)).toBeUndefined()
    expect(l.rawEntries()[1]![1]).toBe(Deleted)
    l.set(1, "C")
    expect(l.toArray()).toEqual(["a", "C"])
    expect(positions(l)[2]).toBe("2/1:c")
    expect(() => l.remove(5)).toThrow(RangeError)
    expect(() => l.set(5, 1)).toThrow(RangeError)
  })

  it("converts plain values and clones Docs/Lists given to it", () => {
    const sub = Doc.from({ x: 1 })
    const l = List.empty().push({ a: [1, 2] }, "p").push(sub, "q")
    sub.set("x", 2)
    expect(l.toJSON()).toEqual([{ a: [1, 2] }, { x: 1 }])
    expect(List.from([1, "two", null]).toJSON()).toEqual([1, "two", null])
    expect(() => List.empty().push(Number.NaN, "n")).toThrow(TypeError)
  })

  it("positions order by rational value, then unique id", () => {
    const p = (numerator: number, denominator: number, unique_id: string): Position => ({
      numerator,
      denominator,
      unique_id
    })
    expect(comparePositions(p(1, 2, "z"), p(3, 4, "a"))).toBe(-1)
    expect(comparePositions(p(2, 4, "a"), p(1, 2, "b"))).toBe(-1)
    expect(comparePositions(p(1, 2, "b"), p(1, 2, "a"))).toBe(1)
    expect(comparePositions(p(1, 2, "a"), p(2, 4, "a"))).toBe(0)
    const big = Number.MAX_SAFE_INTEGER
    expect(comparePositions(p(big, big - 1, "a"), p(big - 1, big - 2, "a"))).toBe(-1)
  })
})

describe("List merge", () => {
  it("is a union by position", () => {
    const base = listOf("a", "c")
    const r1 = base.clone().insert(1, "x", "x")
    const r2 = base.clone().insert(1, "y", "y")
    expect(r1.merge(r2).toArray()).toEqual(["a", "x", "y", "c"])
    expect(r2.merge(r1).toArray()).toEqual(["a", "x", "y", "c"])
    expect(r1.merge(r2).equals(r2.merge(r1))).toBe(true)
  })

  it("merges values at the same position (LWW, tombstone wins, resurrection, nested Docs)", () => {
    const a = List.empty().push(1, "p")
    const b = List.empty().push(2, "p")
    expect(a.merge(b).toArray()).toEqual([2])
    expect(b.merge(a).toArray()).toEqual([1])
    const gone = List.empty().push(1, "p").remove(0)
    expect(a.merge(gone).toArray()).toEqual([])
    expect(gone.merge(a).toArray()).toEqual([1])
    const d1 = List.empty().push({ x: 1 }, "p")
    const d2 = List.empty().push({ y: 2 }, "p")
    expect(d1.merge(d2).toJSON()).toEqual([{ x: 1, y: 2 }])
  })

  it("lists inside Docs merge by position", () => {
    const state = Doc.empty().set("l", listOf("a", "b"))
    const delta = Doc.empty().set("l", List.empty().push("z", "zz"))
    const merged = state.merge(delta)
    expect(merged.toJSON()).toEqual({ l: ["a", "z", "b"] })
  })

  it("merge is pure and mergeInPlace never aliases other (both code paths)", () => {
    for (const size of [2, 20]) {
      const a = List.empty()
      const b = List.empty()
      for (let i = 0; i < size; i++) {
        a.push({ v: i }, `a${i}`)
        b.push({ w: i }, `b${i}`)
      }
      const before = [a.clone(), b.clone()] as const
      const m = a.merge(b)
      expect(a.equals(before[0])).toBe(true)
      expect(b.equals(before[1])).toBe(true)
      a.mergeInPlace(b)
      expect(a.equals(m)).toBe(true)
      for (let i = 0; i < a.length; i++) (a.get(i) as Doc).set("mut", 1)
      expect(b.equals(before[1])).toBe(true)
    }
  })
})

describe("List properties", () => {
  type Op =
    | { readonly op: "push"; readonly value: Value; readonly id: string }
    | { readonly op: "insert"; readonly at: number; readonly value: Value; readonly id: string }
    | { readonly op: "remove"; readonly at: number }
    | { readonly op: "set"; readonly at: number; readonly value: Value }
  const valueArb: fc.Arbitrary<Value> = fc.oneof(
    fc.integer({ min: -9, max: 9 }),
    fc.string({ maxLength: 3 }),
    fc.constant(null),
    fc.constant(Deleted)
  )
  const idArb = fc.constantFrom("p", "q", "r", "s")
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ op: fc.constant("push" as const), value: valueArb, id: idArb }),
    fc.record({ op: fc.constant("insert" as const), at: fc.nat(20), value: valueArb, id: idArb }),
    fc.record({ op: fc.constant("remove" as const), at: fc.nat(20) }),
    fc.record({ op: fc.constant("set" as const), at: fc.nat(20), value: valueArb })
  )
  const listArb = fc.array(opArb, { maxLength: 12 }).map((ops) => {
    const l = List.empty()
    for (const o of ops) {
      if (o.op === "push") l.push(o.value, o.id)
      else if (o.op === "insert") l.insert(o.at % (l.length + 1), o.value, o.id)
      else if (l.length > 0 && o.op === "remove") l.remove(o.at % l.length)
      else if (l.length > 0 && o.op === "set") l.set(o.at % l.length, o.value)
    }
    return l
  })

  it("slots stay strictly sorted and round trip through a Doc", () => {
    fc.assert(
      fc.property(listArb, (l) => {
        const e = l.rawEntries()
        for (let i = 1; i < e.length; i++) expect(comparePositions(e[i - 1]![0], e[i]![0])).toBe(-1)
        const d = Doc.empty().set("l", l)
        expect((Doc.deserialize(d.serialize()).get("l") as List).equals(l)).toBe(true)
      }),
      { numRuns: 300 }
    )
  })

  it("fold with merge equals fold with mergeInPlace; merge with empty is identity", () => {
    fc.assert(
      fc.property(fc.array(listArb, { maxLength: 6 }), (lists) => {
        const pure = lists.reduce((acc, l) => acc.merge(l), List.empty())
        const inPlace = List.empty()
        for (const l of lists) inPlace.mergeInPlace(l)
        expect(inPlace.equals(pure)).toBe(true)
        for (const l of lists) {
          expect(l.merge(List.empty()).equals(l)).toBe(true)
          expect(List.empty().merge(l).equals(l)).toBe(true)
        }
      }),
      { numRuns: 300 }
    )
  })

  it("the set of positions after merging is the union, independent of order", () => {
    fc.assert(
      fc.property(listArb, listArb, (a, b) => {
        expect(positions(a.merge(b))).toEqual(positions(b.merge(a)))
      }),
      { numRuns: 300 }
    )
  })
})
