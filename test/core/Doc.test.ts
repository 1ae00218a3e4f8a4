import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Deleted, Doc, DocFormatError, List, type Plain, type Value } from "../../src/core/Doc.js"

// ---------------------------------------------------------------------------------------------
// Arbitraries: small key and id pools so deltas collide on keys and list positions.

const keyArb = fc.constantFrom("a", "b", "c", "10", "2", "__proto__", "constructor", "é", "x.y")

const scalarArb: fc.Arbitrary<Value> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -1000, max: 1000 }),
  fc.maxSafeInteger(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 6 }),
  fc.constant(Deleted)
)

type ListOp =
  | { readonly op: "push"; readonly value: Value; readonly id: string }
  | { readonly op: "insert"; readonly at: number; readonly value: Value; readonly id: string }
  | { readonly op: "remove"; readonly at: number }

const buildList = (ops: ReadonlyArray<ListOp>): List => {
  const list = List.empty()
  for (const o of ops) {
    if (o.op === "push") list.push(o.value, o.id)
    else if (o.op === "insert") list.insert(o.at % (list.length + 1), o.value, o.id)
    else if (list.length > 0) list.remove(o.at % list.length)
  }
  return list
}

const buildDoc = (atomic: boolean, entries: ReadonlyArray<readonly [string, Value]>): Doc => {
  const doc = Doc.empty()
  for (const [k, v] of entries) doc.set(k, v)
  doc.atomic = atomic
  return doc
}

const idArb = fc.constantFrom("p", "q", "r")

const tree = fc.letrec<{ value: Value; doc: Doc; list: List }>((tie) => ({
  value: fc.oneof({ depthSize: "small", withCrossShrink: true }, scalarArb, tie("doc"), tie("list")),
  doc: fc
    .tuple(fc.integer({ min: 0, max: 5 }), fc.array(fc.tuple(keyArb, tie("value")), { maxLength: 4 }))
    .map(([n, entries]) => buildDoc(n === 0, entries)),
  list: fc
    .array(
      fc.oneof(
        fc.record({ op: fc.constant("push" as const), value: tie("value"), id: idArb }),
        fc.record({ op: fc.constant("insert" as const), at: fc.nat(10), value: tie("value"), id: idArb }),
        fc.record({ op: fc.constant("remove" as const), at: fc.nat(10) })
      ),
      { maxLength: 4 }
    )
    .map(buildList)
}))

const docArb = tree.doc

const expectFormatError = (f: () => unknown, message: string | RegExp) => {
  let caught: unknown
  try {
    f()
  } catch (e) {
    caught = e
  }
  expect(caught).toBeInstanceOf(DocFormatError)
  if (typeof message === "string") expect((caught as Error).message).toBe(message)
  else expect((caught as Error).message).toMatch(message)
}

// ---------------------------------------------------------------------------------------------

describe("Doc basics", () => {
  it("get/set/has/keys/size and plain conversion", () => {
    const d = Doc.from({ b: 1, a: "x", n: null, t: true, f: 1.5, nested: { z: [1, "two", { k: false }] } })
    expect(d.get("a")).toBe("x")
    expect(d.get("missing")).toBeUndefined()
    expect(d.has("b")).toBe(true)
    expect(d.keys()).toEqual(["a", "b", "f", "n", "nested", "t"])
    expect(d.size).toBe(6)
    expect(d.get("nested")).toBeInstanceOf(Doc)
    expect(d.getPath("nested.z")).toBeInstanceOf(List)
    expect(d.toJSON()).toEqual({ b: 1, a: "x", n: null, t: true, f: 1.5, nested: { z: [1, "two", { k: false }] } })
  })

  it("from() gives arrays positions i/1 with deterministic ids", () => {
    const list = Doc.from({ l: ["a", "b", "c"] }).get("l") as List
    expect(list.rawEntries().map(([p]) => [p.numerator, p.denominator])).toEqual([
      [0, 1],
      [1, 1],
      [2, 1]
    ])
    const again = Doc.from({ l: ["a", "b", "c"] }).get("l") as List
    expect(again.equals(list)).toBe(true)
    expect(list.rawEntries()[0]![0].unique_id).toMatch(/^0000/)
  })

  it("from() and set() reject non-data with TypeError", () => {
    const bad: ReadonlyArray<unknown> = [
      undefined,
      () => 1,
      10n,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      new Date(0),
      Symbol("s")
    ]
    for (const v of bad) {
      expect(() => Doc.from({ k: v })).toThrow(TypeError)
      expect(() => Doc.from({ deep: { list: [1, v] } })).toThrow(TypeError)
    }
    const cyclic: { [k: string]: unknown } = {}
    cyclic["self"] = cyclic
    expect(() => Doc.from(cyclic)).toThrow(TypeError)
    // shared (non-cyclic) references are fine
    const shared = { x: 1 }
    expect(Doc.from({ a: shared, b: shared }).toJSON()).toEqual({ a: { x: 1 }, b: { x: 1 } })
  })

  it("remove writes a tombstone that readers hide", () => {
    const d = Doc.from({ a: 1, b: 2 }).remove("a")
    expect(d.get("a")).toBeUndefined()
    expect(d.has("a")).toBe(false)
    expect(d.keys()).toEqual(["b"])
    expect(d.size).toBe(1)
    expect(d.rawEntries().get("a")).toBe(Deleted)
    expect(d.toJSON()).toEqual({ b: 2 })
    // removing an absent key still records the deletion (deltas must carry it)
    const delta = Doc.empty().remove("zzz")
    expect(delta.isEmpty()).toBe(false)
    expect(delta.size).toBe(0)
    expect(Doc.empty().isEmpty()).toBe(true)
  })

  it("set clones Docs and Lists it is given", () => {
    const sub = Doc.from({ x: 1 })
    const d = Doc.empty().set("s", sub)
    sub.set("x", 2)
    expect(d.getPath("s.x")).toBe(1)
    // get returns the stored child, so in-place edits work
    ;(d.get("s") as Doc).set("y", 3)
    expect(d.getPath("s.y")).toBe(3)
  })

  it("clone is deep and equals is structural", () => {
    const d = Doc.from({ a: { b: [1, { c: 2 }] } })
    d.atomic = true
    const c = d.clone()
    expect(c.equals(d)).toBe(true)
    ;(c.getPath("a") as Doc).set("z", 1)
    expect(c.equals(d)).toBe(false)
    expect(d.getPath("a.z")).toBeUndefined()
    const e = d.clone()
    e.atomic = false
    expect(e.equals(d)).toBe(false)
    expect(Doc.from({ a: 1 }).remove("a").equals(Doc.empty())).toBe(false)
  })

  it("slots counts every slot a clone copies: nested Docs and List items, tombstones included", () => {
    expect(Doc.empty().slots()).toBe(0)
    // a, b; b.c, b.d; b.d's two items; the second item's x
    const d = Doc.from({ a: 1, b: { c: "long ".repeat(100), d: [1, { x: 2 }] } })
    expect(d.slots()).toBe(7)
    expect(d.remove("a").slots()).toBe(7)
    expect(d.clone().slots()).toBe(7)
  })
})

describe("dotted paths", () => {
  it("setPath creates intermediate Docs; getPath reads through them", () => {
    const d = Doc.empty().setPath("a.b.c", 1)
    expect(d.getPath("a.b.c")).toBe(1)
    expect(d.toJSON()).toEqual({ a: { b: { c: 1 } } })
    d.setPath("a.b.d", "x")
    expect(d.toJSON()).toEqual({ a: { b: { c: 1, d: "x" } } })
  })

  it("setPath replaces scalars and tombstones in the way", () => {
    const d = Doc.from({ a: 5, t: 1, l: [1] }).remove("t")
    d.setPath("a.b", 1).setPath("t.u", 2).setPath("l.m", 3)
    expect(d.toJSON()).toEqual({ a: { b: 1 }, t: { u: 2 }, l: { m: 3 } })
  })

  it("getPath returns undefined through scalars, tombstones and bad paths", () => {
    const d = Doc.from({ a: 5, b: { c: 1 } })
    d.removePath("b.c")
    expect(d.getPath("a.b")).toBeUndefined()
    expect(d.getPath("b.c")).toBeUndefined()
    expect(d.getPath("")).toBeUndefined()
    expect(d.getPath("a..b")).toBeUndefined()
    expect((d.get("b") as Doc).rawEntries().get("c")).toBe(Deleted)
  })

  it("removePath on an empty delta records the tombstone under intermediate Docs", () => {
    const delta = Doc.empty().removePath("x.y")
    expect(delta.serialize()).toBe(`{"children":{"x":{"Doc":{"children":{"y":"Deleted"}}}}}`)
    const state = Doc.from({ x: { y: 1, z: 2 } })
    expect(state.merge(delta).toJSON()).toEqual({ x: { z: 2 } })
  })

  it("rejects malformed paths when writing", () => {
    for (const p of ["", ".a", "a.", "a..b"]) {
      expect(() => Doc.empty().setPath(p, 1)).toThrow(TypeError)
      expect(() => Doc.empty().removePath(p)).toThrow(TypeError)
    }
  })
})

describe("merge semantics (reference §1.5)", () => {
  it("later-applied wins for scalars (LWW in fold order)", () => {
    const a = Doc.from({ k: 1 })
    const b = Doc.from({ k: 2 })
    expect(a.merge(b).get("k")).toBe(2)
    expect(b.merge(a).get("k")).toBe(1)
  })

  it("keys unique to either side are kept", () => {
    expect(Doc.from({ a: 1 }).merge(Doc.from({ b: 2 })).toJSON()).toEqual({ a: 1, b: 2 })
  })

  it("the tombstone wins over a value", () => {
    const m = Doc.from({ k: 1 }).merge(Doc.empty().remove("k"))
    expect(m.has("k")).toBe(false)
    expect(m.rawEntries().get("k")).toBe(Deleted)
    const nested = Doc.from({ k: { a: 1 } }).merge(Doc.empty().remove("k"))
    expect(nested.rawEntries().get("k")).toBe(Deleted)
  })

  it("a value after a tombstone resurrects", () => {
    const m = Doc.empty().remove("k").merge(Doc.from({ k: 1 }))
    expect(m.get("k")).toBe(1)
    const d = Doc.empty().remove("k").merge(Doc.from({ k: { a: 1 } }))
    expect(d.toJSON()).toEqual({ k: { a: 1 } })
  })

  it("a tombstone with no prior value is kept", () => {
    const m = Doc.from({ a: 1 }).merge(Doc.empty().remove("k"))
    expect(m.rawEntries().get("k")).toBe(Deleted)
  })

  it("Docs merge recursively", () => {
    const a = Doc.from({ p: { x: 1, y: 1, deep: { q: 1 } } })
    const b = Doc.from({ p: { y: 2, z: 2, deep: { r: 2 } } })
    expect(a.merge(b).toJSON()).toEqual({ p: { x: 1, y: 2, z: 2, deep: { q: 1, r: 2 } } })
  })

  it("different kinds: other replaces self", () => {
    expect(Doc.from({ k: { a: 1 } }).merge(Doc.from({ k: 5 })).get("k")).toBe(5)
    expect(Doc.from({ k: 5 }).merge(Doc.from({ k: { a: 1 } })).toJSON()).toEqual({ k: { a: 1 } })
    expect(Doc.from({ k: [1] }).merge(Doc.from({ k: { a: 1 } })).toJSON()).toEqual({ k: { a: 1 } })
    expect(Doc.from({ k: { a: 1 } }).merge(Doc.from({ k: [1] })).toJSON()).toEqual({ k: [1] })
    expect(Doc.from({ k: "s" }).merge(Doc.from({ k: null })).get("k")).toBeNull()
  })

  it("an atomic other replaces self wholesale", () => {
    const state = Doc.from({ a: 1, b: { c: 2 } })
    const delta = Doc.from({ z: 9 })
    delta.atomic = true
    const m = state.merge(delta)
    expect(m.toJSON()).toEqual({ z: 9 })
    expect(m.atomic).toBe(true)
    expect(m.equals(delta)).toBe(true)
  })

  it("a nested atomic Doc replaces the nested value", () => {
    const state = Doc.from({ row: { a: 1, b: 2 }, other: 1 })
    const row = Doc.from({ a: 5 })
    row.atomic = true
    const m = state.merge(Doc.empty().set("row", row))
    expect(m.toJSON()).toEqual({ row: { a: 5 }, other: 1 })
    expect((m.get("row") as Doc).atomic).toBe(true)
  })

  it("the atomic flag is contagious: an atomic self stays atomic and merges per key", () => {
    const self = Doc.from({ a: 1, b: 1 })
    self.atomic = true
    const m = self.merge(Doc.from({ b: 2, c: 3 }))
    expect(m.atomic).toBe(true)
    expect(m.toJSON()).toEqual({ a: 1, b: 2, c: 3 })
  })

  it("merge is pure and mergeInPlace never aliases other", () => {
    const a = Doc.from({ shared: { x: 1 }, l: [1] })
    const b = Doc.from({ shared: { y: 2 }, fresh: { z: 3 }, l2: [{ q: 1 }] })
    const aBefore = a.serialize()
    const bBefore = b.serialize()
    const m = a.merge(b)
    expect(a.serialize()).toBe(aBefore)
    expect(b.serialize()).toBe(bBefore)
    a.mergeInPlace(b)
    expect(a.equals(m)).toBe(true)
    ;(a.get("fresh") as Doc).set("mut", 1)
    ;((a.get("l2") as List).get(0) as Doc).set("mut", 1)
    ;(a.get("l2") as List).push(5, "x")
    expect(b.serialize()).toBe(bBefore)
    const atomic = Doc.from({ k: { v: 1 } })
    atomic.atomic = true
    const target = Doc.empty()
    target.mergeInPlace(atomic)
    ;(target.get("k") as Doc).set("v", 2)
    expect(atomic.getPath("k.v")).toBe(1)
  })

  it("merging a Doc with itself is safe", () => {
    const d = Doc.from({ a: { b: [1, 2] } })
    const before = d.clone()
    d.mergeInPlace(d)
    expect(d.equals(before)).toBe(true)
  })

  it("mergeInPlace is O(size of other): 10k single-key deltas fold quickly", () => {
    const state = Doc.empty()
    const started = performance.now()
    for (let i = 0; i < 10_000; i++) {
      const delta = Doc.empty().setPath(`k${i}.v`, i)
      state.mergeInPlace(delta)
    }
    for (let i = 0; i < 10_000; i += 2) state.mergeInPlace(Doc.empty().removePath(`k${i}`))
    const elapsed = performance.now() - started
    expect(state.size).toBe(5_000)
    expect(state.getPath("k9999.v")).toBe(9999)
    expect(elapsed).toBeLessThan(2_000)
  })
})

describe("serialization (reference §1.3)", () => {
  it("golden strings", () => {
    expect(Doc.empty().serialize()).toBe(`{"children":{}}`)
    const atomic = Doc.empty()
    atomic.atomic = true
    expect(atomic.serialize()).toBe(`{"_a":true,"children":{}}`)
    expect(Doc.from({ b: 1, a: "x", c: null, d: true, e: 1.5, f: { g: false } }).serialize()).toBe(
      `{"children":{"a":{"Text":"x"},"b":{"Int":1},"c":"Null","d":{"Bool":true},"e":{"Float":1.5},` +
        `"f":{"Doc":{"children":{"g":{"Bool":false}}}}}}`
    )
    expect(Doc.empty().remove("k").serialize()).toBe(`{"children":{"k":"Deleted"}}`)
    expect(Doc.from({ l: [1, "a"] }).serialize()).toBe(
      `{"children":{"l":{"List":[` +
        `[{"numerator":0,"denominator":1,"unique_id":"00000000-0000-0000-0000-000000000000"},{"Int":1}],` +
        `[{"numerator":1,"denominator":1,"unique_id":"00000000-0000-0000-0000-000000000001"},{"Text":"a"}]]}}}`
    )
    expect(Doc.from({ big: 2 ** 60, neg: -3, f: -0.25 }).serialize()).toBe(
      `{"children":{"big":{"Float":1152921504606847000},"f":{"Float":-0.25},"neg":{"Int":-3}}}`
    )
  })

  it("writes children keys in sorted order regardless of insertion order (integer-like keys too)", () => {
    const a = Doc.empty().set("b", 1).set("10", 1).set("2", 1).set("a", 1)
    const b = Doc.empty().set("a", 1).set("2", 1).set("b", 1).set("10", 1)
    expect(a.serialize()).toBe(`{"children":{"10":{"Int":1},"2":{"Int":1},"a":{"Int":1},"b":{"Int":1}}}`)
    expect(b.serialize()).toBe(a.serialize())
  })

  it("escapes text and keys as JSON", () => {
    const d = Doc.from({ 'q"\n': 'v"\\\u0000\ud800' })
    expect(Doc.deserialize(d.serialize()).equals(d)).toBe(true)
  })

  it("encode/decode are UTF-8 of serialize", () => {
    const d = Doc.from({ é: "ünïcødé ✓", n: [1, 2] })
    expect(new TextDecoder().decode(d.encode())).toBe(d.serialize())
    expect(Doc.decode(d.encode()).equals(d)).toBe(true)
  })

  it("accepts list pairs out of order and a reference _v field", () => {
    const d = Doc.deserialize(
      `{"_v":1,"children":{"l":{"List":[` +
        `[{"numerator":2,"denominator":1,"unique_id":"b"},{"Int":2}],` +
        `[{"numerator":2,"denominator":4,"unique_id":"a"},{"Int":1}]]}}}`
    )
    expect((d.get("l") as List).toArray()).toEqual([1, 2])
    expect(d.serialize()).toBe(
      `{"children":{"l":{"List":[` +
        `[{"numerator":1,"denominator":2,"unique_id":"a"},{"Int":1}],` +
        `[{"numerator":2,"denominator":1,"unique_id":"b"},{"Int":2}]]}}}`
    )
  })

  it("deserialize errors name the bad path", () => {
    const cases: ReadonlyArray<readonly [string, string | RegExp]> = [
      ["not json", /^\(root\): invalid JSON/],
      ["[]", "(root): expected a Doc object"],
      ["{}", "(root): missing field children"],
      [`{"children":[]}`, "children: expected an object"],
      [`{"children":{},"x":1}`, "x: unknown field"],
      [`{"_a":1,"children":{}}`, "_a: expected a boolean"],
      [`{"children":{"a":{"Doc":{"children":{"b":5}}}}}`, "children.a.Doc.children.b: expected a tagged value"],
      [`{"children":{"a":{"Int":1.5}}}`, "children.a.Int: expected a safe integer"],
      [`{"children":{"a":{"Int":9007199254740993}}}`, "children.a.Int: expected a safe integer"],
      [`{"children":{"a":{"Float":"1"}}}`, "children.a.Float: expected a finite number"],
      [`{"children":{"a":{"Text":1}}}`, "children.a.Text: expected a string"],
      [`{"children":{"a":{"Bool":"true"}}}`, "children.a.Bool: expected a boolean"],
      [`{"children":{"a":"Nope"}}`, `children.a: unknown tag "Nope"`],
      [`{"children":{"a":{"Nope":1}}}`, `children.a: unknown tag "Nope"`],
      [`{"children":{"a":{"Bool":true,"Int":1}}}`, "children.a: expected a tagged value"],
      [`{"children":{"a":null}}`, "children.a: expected a tagged value"],
      [`{"children":{"l":{"List":{}}}}`, "children.l.List: expected an array of [position, value] pairs"],
      [`{"children":{"l":{"List":[[1]]}}}`, "children.l.List.0: expected a [position, value] pair"],
      [
        `{"children":{"l":{"List":[[{"numerator":0,"denominator":0,"unique_id":"x"},"Null"]]}}}`,
        "children.l.List.0.0.denominator: expected a positive safe integer"
      ],
      [
        `{"children":{"l":{"List":[[{"numerator":0.5,"denominator":1,"unique_id":"x"},"Null"]]}}}`,
        "children.l.List.0.0.numerator: expected a safe integer"
      ],
      [
        `{"children":{"l":{"List":[[{"numerator":0,"denominator":1},"Null"]]}}}`,
        "children.l.List.0.0.unique_id: expected a string"
      ],
      [
        `{"children":{"l":{"List":[[{"numerator":0,"denominator":1,"unique_id":"x","z":1},"Null"]]}}}`,
        "children.l.List.0.0.z: unknown field"
      ],
      [
        `{"children":{"l":{"List":[[{"numerator":0,"denominator":1,"unique_id":"x"},5]]}}}`,
        "children.l.List.0.1: expected a tagged value"
      ]
    ]
    for (const [json, message] of cases) expectFormatError(() => Doc.deserialize(json), message)
  })

  it("decode rejects invalid UTF-8 and pathological nesting with DocFormatError only", () => {
    expectFormatError(() => Doc.decode(new Uint8Array([0xff, 0xfe])), "(root): invalid UTF-8")
    // the decoder is shared: a failure (even one cut mid-character) leaves nothing behind for the next decode
    expectFormatError(() => Doc.decode(new TextEncoder().encode('{"children":{}}é').subarray(0, 16)), "(root): invalid UTF-8")
    expect(Doc.decode(new TextEncoder().encode('{"children":{"é":"Null"}}')).get("é")).toBe(null)
    const depth = 20_000
    const deep = `{"children":{"a":{"Doc":`.repeat(depth) + `{"children":{}}` + `}}}`.repeat(depth)
    expectFormatError(() => Doc.deserialize(deep), /^children\.a\.Doc\.children\.a\..*: nested deeper than 127 arrays and objects$/)
  })

  // `k` maps nested in one another, the innermost holding `leaf`
  const nested = (k: number, leaf = "") =>
    `{"children":{"a":{"Doc":`.repeat(k) + `{"children":{${leaf}}}` + `}}}`.repeat(k)
  /** How many arrays and objects the deepest value of a JSON text sits in (itself included). */
  const jsonDepth = (u: unknown): number =>
    typeof u === "object" && u !== null ? 1 + Math.max(0, ...Object.values(u).map(jsonDepth)) : 0

  it("nesting is limited as the reference's serde_json reads it: 127 arrays and objects, whatever the call stack", () => {
    const deepest = nested(41, `"l":{"List":[]}`)
    const tooDeep = nested(42)
    expect(jsonDepth(JSON.parse(deepest))).toBe(127)
    expect(jsonDepth(JSON.parse(tooDeep))).toBe(128)
    expect(Doc.deserialize(deepest).serialize()).toBe(deepest)
    const message = /^children\.a(\.Doc\.children\.a){41}\.Doc\.children: nested deeper than 127 arrays and objects$/
    expectFormatError(() => Doc.deserialize(tooDeep), message)
    // a list's array and pairs count too
    const inList = nested(41, `"l":{"List":[[{"numerator":1,"denominator":1,"unique_id":""},{"Text":"x"}]]}`)
    expect(jsonDepth(JSON.parse(inList))).toBe(129)
    expectFormatError(() => Doc.deserialize(inList), /^children(\.a\.Doc\.children){41}\.l\.List\.0: nested deeper/)
    expect(Doc.deserialize(nested(41, `"l":{"List":[]}`)).get("a")).toBeInstanceOf(Doc)
    // the same verdicts thousands of frames down: validity never depends on the stack left
    const down = (n: number): [boolean, string] => {
      if (n > 0) return down(n - 1)
      let message = ""
      try {
        Doc.deserialize(tooDeep)
      } catch (e) {
        message = (e as Error).message
      }
      return [Doc.deserialize(deepest).serialize() === deepest, message]
    }
    expect(down(5_000)).toEqual([true, expect.stringMatching(message)])
  })

  it("a Doc nested deeper than others can read is refused when written, naming where", () => {
    let plain: Plain = "leaf"
    for (let i = 0; i < 43; i++) plain = { a: plain } // a root and 42 maps in it, as nested(42) reads
    const doc = Doc.from(plain as { [k: string]: Plain })
    expectFormatError(() => doc.serialize(), /^children\.a(\.Doc\.children\.a){41}\.Doc\.children: nested deeper than 127 arrays and objects$/)
    expectFormatError(() => doc.encode(), /nested deeper/)
    // one level less is written and read back
    const ok = Doc.from((plain as { a: { [k: string]: Plain } }).a)
    expect(Doc.decode(ok.encode()).equals(ok)).toBe(true)
    // in a list: the pair and position count
    const wrapped = (list: List) => {
      let d = Doc.empty().set("l", list)
      for (let i = 0; i < 41; i++) d = Doc.empty().set("a", d)
      return d
    }
    const empty = wrapped(new List())
    expect(Doc.deserialize(empty.serialize()).equals(empty)).toBe(true)
    expectFormatError(() => wrapped(new List().push("x", "u")).serialize(), /^children(\.a\.Doc\.children){41}\.l\.List\.0: nested deeper/)
  })

  it("a list in any order is read in one sort: positions ascending, a repeated position keeps the later value", () => {
    const pair = (n: number, v: string) => `[{"numerator":${n},"denominator":1,"unique_id":""},{"Text":"${v}"}]`
    const d = Doc.deserialize(`{"children":{"l":{"List":[${pair(3, "c")},${pair(1, "a")},${pair(2, "b")},${pair(1, "a2")}]}}}`)
    expect(d.toJSON()).toEqual({ l: ["a2", "b", "c"] })
    // 150,000 items written in reverse: placing each in turn (quadratic) took ~20 s here, one sort a fraction of one
    const n = 150_000
    const items: Array<string> = []
    for (let i = n; i > 0; i--) items.push(pair(i, String(i)))
    const big = Doc.deserialize(`{"children":{"l":{"List":[${items.join(",")}]}}}`).get("l") as List
    expect(big.length).toBe(n)
    expect([big.get(0), big.get(n - 1)]).toEqual(["1", String(n)])
  }, 5_000)

  it("is safe against prototype-pollution keys", () => {
    const json =
      `{"children":{"__proto__":{"Doc":{"children":{"polluted":{"Bool":true}}}},` +
      `"constructor":{"Text":"c"},"hasOwnProperty":{"Int":1}}}`
    const d = Doc.deserialize(json)
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined()
    expect(d.keys()).toEqual(["__proto__", "constructor", "hasOwnProperty"])
    expect(d.getPath("__proto__.polluted")).toBe(true)
    const plain = d.toJSON()
    expect(Object.getPrototypeOf(plain)).toBe(Object.prototype)
    expect(Object.prototype.hasOwnProperty.call(plain, "__proto__")).toBe(true)
    expect(Object.getOwnPropertyDescriptor(plain, "__proto__")?.value).toEqual({ polluted: true })
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined()
    expect(d.serialize()).toBe(json)
    // from() of JSON.parse output keeps "__proto__" as an ordinary key
    const fromParsed = Doc.from(JSON.parse(`{"__proto__":{"x":1}}`) as { [k: string]: unknown })
    expect(fromParsed.getPath("__proto__.x")).toBe(1)
    // and set/setPath with such keys touch nothing global
    const e = Doc.empty().setPath("__proto__.polluted", 1).set("constructor", 2)
    expect(e.toJSON()).toEqual(JSON.parse(`{"__proto__":{"polluted":1},"constructor":2}`))
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined()
  })
})

describe("properties", () => {
  const fold = (deltas: ReadonlyArray<Doc>): Doc => {
    const state = Doc.empty()
    for (const d of deltas) state.mergeInPlace(d)
    return state
  }

  it("serialize/deserialize (and encode/decode) round trip", () => {
    fc.assert(
      fc.property(docArb, (d) => {
        const s = d.serialize()
        const back = Doc.deserialize(s)
        expect(back.equals(d)).toBe(true)
        expect(back.serialize()).toBe(s)
        expect(Doc.decode(d.encode()).equals(d)).toBe(true)
      }),
      { numRuns: 300 }
    )
  })

  it("folding deltas with merge equals folding with mergeInPlace, and leaves the deltas untouched", () => {
    fc.assert(
      fc.property(fc.array(docArb, { maxLength: 8 }), (deltas) => {
        const before = deltas.map((d) => d.serialize())
        const pure = deltas.reduce((acc, d) => acc.merge(d), Doc.empty())
        const inPlace = fold(deltas)
        expect(inPlace.equals(pure)).toBe(true)
        expect(deltas.map((d) => d.serialize())).toEqual(before)
      }),
      { numRuns: 300 }
    )
  })

  it("mergeSharing gives merge's result, changes neither input, and shares what the delta leaves alone", () => {
    fc.assert(
      fc.property(fc.array(docArb, { maxLength: 6 }), docArb, (history, delta) => {
        const state = fold(history)
        const stateBefore = state.serialize()
        const deltaBefore = delta.serialize()
        const copied = { slots: 0 }
        const shared = state.mergeSharing(delta, copied)
        expect(shared.equals(state.merge(delta))).toBe(true)
        expect(state.serialize()).toBe(stateBefore)
        expect(delta.serialize()).toBe(deltaBefore)
        expect(copied.slots).toBeLessThanOrEqual(shared.slots() + state.slots())
        // a stack of sharing merges still folds as the history does, and leaves every level intact
        const levels = [Doc.empty()]
        for (const d of [...history, delta]) levels.push(levels.at(-1)!.mergeSharing(d))
        expect(levels.at(-1)!.equals(fold([...history, delta]))).toBe(true)
        expect(levels.at(-2)!.serialize()).toBe(stateBefore)
      }),
      { numRuns: 300 }
    )
    // untouched children are the state's own objects; the touched path is new
    const state = Doc.from({ keys: { a: { v: 1 }, b: { v: 2 } }, name: "x" })
    const next = state.mergeSharing(Doc.empty().setPath("keys.b.v", 3))
    expect((next.get("keys") as Doc).get("a")).toBe((state.get("keys") as Doc).get("a"))
    expect(next.get("keys")).not.toBe(state.get("keys"))
    expect(next.getPath("keys.b.v")).toBe(3)
    expect(state.getPath("keys.b.v")).toBe(2)
  })

  it("folding the same deltas always gives equal results, even after mutating an earlier result", () => {
    fc.assert(
      fc.property(fc.array(docArb, { maxLength: 8 }), (deltas) => {
        const first = fold(deltas)
        const snapshot = first.serialize()
        // mutate every nested Doc of the first result; the deltas must not see it
        const scribble = (d: Doc): void => {
          for (const v of d.rawEntries().values()) if (v instanceof Doc) scribble(v)
          d.set("__scribble", 1)
        }
        scribble(first)
        const second = fold(deltas)
        expect(second.serialize()).toBe(snapshot)
        expect(fold(deltas.map((d) => Doc.deserialize(d.serialize()))).serialize()).toBe(snapshot)
      }),
      { numRuns: 300 }
    )
  })

  it("merge with empty is identity on both sides", () => {
    fc.assert(
      fc.property(docArb, (d) => {
        expect(d.merge(Doc.empty()).equals(d)).toBe(true)
        expect(Doc.empty().merge(d).equals(d)).toBe(true)
      }),
      { numRuns: 300 }
    )
  })

  it("merge is idempotent for the latest delta (state ⊔ d ⊔ d = state ⊔ d)", () => {
    fc.assert(
      fc.property(docArb, docArb, (s, d) => {
        const once = s.merge(d)
        expect(once.merge(d).equals(once)).toBe(true)
      }),
      { numRuns: 300 }
    )
  })

  it("deserialize/decode of arbitrary input throws only DocFormatError", () => {
    const onlyFormatErrors = (f: () => unknown) => {
      try {
        f()
      } catch (e) {
        expect(e).toBeInstanceOf(DocFormatError)
      }
    }
    fc.assert(
      fc.property(fc.oneof(fc.json(), fc.string()), (s) => onlyFormatErrors(() => Doc.deserialize(s))),
      { numRuns: 500 }
    )
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => onlyFormatErrors(() => Doc.decode(b))),
      { numRuns: 300 }
    )
    // mutations of valid encodings
    fc.assert(
      fc.property(docArb, fc.nat(), fc.integer({ min: 0, max: 255 }), (d, at, byte) => {
        const bytes = d.encode()
        bytes[at % bytes.length] = byte
        onlyFormatErrors(() => Doc.decode(bytes))
      }),
      { numRuns: 300 }
    )
  })
})
