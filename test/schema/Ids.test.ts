/**
 * The orders of IDs and names are the reference's: IDs as Rust's `Cid` Ord (their bytes), names as
 * Rust's String Ord (their UTF-8 bytes). Entry bytes, hence IDs, and the CRDT's tie-break rest on them.
 */
import * as dagCbor from "@ipld/dag-cbor"
import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import { CID } from "multiformats/cid"
import * as Entry from "../../src/core/Entry.js"
import { directKey } from "../../src/schema/Auth.js"
import { compareIds, compareNames } from "../../src/schema/Ids.js"

const byteOrder = (a: string, b: string): number => Math.sign(Buffer.compare(CID.parse(a).bytes, CID.parse(b).bytes))
const utf8Order = (a: string, b: string): number => Math.sign(Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")))
const anId = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes) => Entry.idOfBytes(dagCbor.encode({ bytes })))

describe("ID and name order", () => {
  it("IDs sort as their CID bytes do (the reference's Cid order), a total order", () => {
    fc.assert(
      fc.property(anId, anId, (a, b) => {
        expect(Math.sign(compareIds(a, b))).toBe(byteOrder(a, b))
        expect(Math.sign(compareIds(b, a))).toBe(-byteOrder(a, b))
      }),
      { numRuns: 500 }
    )
    expect(compareIds("", "bafyr4i")).toBeLessThan(0) // the empty ID sorts first
  })

  it("an entry's parents are in the reference's order, and an entry so sorted decodes", () => {
    // two IDs whose plain string order and byte order disagree (a base32 digit against a letter)
    let pair: [string, string] | undefined
    for (let i = 0; pair === undefined; i++) {
      const a = Entry.idOfBytes(dagCbor.encode({ n: i }))
      const b = Entry.idOfBytes(dagCbor.encode({ n: i + 1_000_000 }))
      if (Math.sign(a < b ? -1 : 1) !== byteOrder(a, b)) pair = [a, b]
    }
    const [a, b] = pair
    const root = Entry.idOfBytes(dagCbor.encode({ root: true }))
    const made = Entry.make({ root, parents: [a, b], height: 1, subtrees: [], key: directKey(`ed25519:${"A".repeat(43)}=`) })
    expect(made.tree.parents).toEqual([a, b].sort(byteOrder))
    expect(Either.isRight(Entry.decode(Entry.encode(made)))).toBe(true)
    const misordered = { ...made, tree: { ...made.tree, parents: [...made.tree.parents].reverse() } }
    expect(Either.getLeft(Entry.decode(Entry.encode(misordered)))._tag).toBe("Some")
  })

  it("names sort as their UTF-8 bytes do (the reference's String order), past U+FFFF too", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), fc.string({ unit: "binary" }), (a, b) => {
        expect(Math.sign(compareNames(a, b))).toBe(utf8Order(a, b))
      }),
      { numRuns: 1_000 }
    )
    expect(compareNames("\u{1F600}", "\uFF01")).toBeGreaterThan(0) // plain string order says the opposite
    expect("\u{1F600}" < "\uFF01").toBe(true)
    const made = Entry.make({
      root: Entry.idOfBytes(dagCbor.encode({ root: true })),
      parents: [Entry.idOfBytes(dagCbor.encode({ p: 1 }))],
      height: 1,
      subtrees: [{ name: "\u{1F600}", parents: [] }, { name: "\uFF01", parents: [] }],
      key: directKey(`ed25519:${"A".repeat(43)}=`)
    })
    expect(made.subtrees.map((s) => s.name)).toEqual(["\uFF01", "\u{1F600}"])
    expect(Either.isRight(Entry.decode(Entry.encode(made)))).toBe(true)
  })
})
