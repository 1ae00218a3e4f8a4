import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import { CID } from "multiformats/cid"
import * as dagCbor from "@ipld/dag-cbor"
import * as cborg from "cborg"
import { Token, Type } from "cborg"
import { Doc } from "../../src/core/Doc.js"
import * as Entry from "../../src/core/Entry.js"
import { compareIds } from "../../src/schema/Ids.js"
import { directKey, globalKey } from "../../src/schema/Auth.js"
import { decodeEntryEither } from "../../src/schema/Entry.js"

const KEY = directKey(`ed25519:${"A".repeat(43)}=`)
const root = Entry.stored(
  Entry.make({
    parents: [],
    height: 0,
    metadata: Entry.encodeMetadata({ settings_tips: [], entropy: 7 }),
    subtrees: [
      { name: "_settings", parents: [], data: Doc.from({ name: "x" }).encode() },
      { name: "_root", parents: [], data: new TextEncoder().encode('""') }
    ],
    key: KEY
  })
)

const child = (parents: Array<string>, name: string, value: string, height = 1) =>
  Entry.make({
    root: root.id,
    parents,
    height,
    subtrees: [{ name, parents: [], data: Doc.from({ k: value }).encode() }],
    key: KEY
  })

describe("Entry", () => {
  it("the CID cache keeps the most recent IDs only (a busy process's heap does not grow by ~2 KB per ID)", () => {
    let parent = root.id
    for (let i = 0; i < Entry.CID_CACHE_SIZE + 1_000; i++) {
      const e = Entry.stored(child([parent], "data", `v${i}`, i + 1))
      expect(Entry.cidCacheSize()).toBeLessThanOrEqual(Entry.CID_CACHE_SIZE)
      parent = e.id
    }
    expect(Entry.cidCacheSize()).toBeGreaterThanOrEqual(Entry.CID_CACHE_SIZE / 2)
  })

  it("IDs are CIDv1 dag-cbor BLAKE3-256 in base32", () => {
    const cid = CID.parse(root.id)
    expect(root.id.startsWith("bafyr4i")).toBe(true)
    expect(cid.version).toBe(1)
    expect(cid.code).toBe(0x71)
    expect(cid.multihash.code).toBe(0x1e)
    expect(cid.multihash.size).toBe(32)
  })

  it("an ID is the string multiformats gives for the CIDv1 of the bytes' BLAKE3 digest", async () => {
    const { blake3 } = await import("hash-wasm")
    const Digest = await import("multiformats/hashes/digest")
    const hexToBytes = (hex: string) => Uint8Array.from(Buffer.from(hex, "hex"))
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), async (bytes) => {
        const expected = CID.createV1(0x71, Digest.create(0x1e, hexToBytes(await blake3(bytes, 256)))).toString()
        expect(Entry.idOfBytes(bytes)).toBe(expected)
      }),
      { numRuns: 300 }
    )
  })

  it("builds canonically: parents sorted and de-duplicated, subtrees sorted, defaults omitted", () => {
    const a = Entry.stored(child([root.id], "a", "1")).id
    const b = Entry.stored(child([root.id], "b", "1")).id
    const [lo, hi] = [a, b].sort(compareIds)
    const e = Entry.make({
      root: root.id,
      parents: [hi!, lo!, hi!],
      height: 2,
      subtrees: [
        { name: "z", parents: [], data: new Uint8Array([1]) },
        { name: "a", parents: [], data: new Uint8Array([2]) }
      ],
      key: KEY
    })
    expect(e.tree.parents).toEqual([lo, hi])
    expect(e.subtrees.map((s) => s.name)).toEqual(["a", "z"])
    expect("h" in root.entry.tree).toBe(false)
    expect("root" in root.entry.tree).toBe(false)
    expect(Entry.validate(e)).toBeUndefined()
  })

  it("ID links are tag-42 CIDs inside the CBOR", () => {
    const e = Entry.stored(child([root.id], "a", "1"))
    const raw = dagCbor.decode(e.bytes) as { tree: { parents: Array<unknown>; root: unknown } }
    expect(CID.asCID(raw.tree.parents[0])?.toString()).toBe(root.id)
    expect(CID.asCID(raw.tree.root)?.toString()).toBe(root.id)
  })

  it("signing bytes leave out sig.sig but keep the key; the ID covers the signature", () => {
    const e = child([root.id], "a", "1")
    const signed = Entry.withSignature(e, "c2ln")
    expect(Entry.signingBytes(signed)).toEqual(Entry.signingBytes(e))
    expect(Entry.id(signed)).not.toBe(Entry.id(e))
  })

  it("validation rules of the reference", () => {
    expect(Entry.validate(root.entry)).toBeUndefined()
    expect(Entry.validate({ ...root.entry, tree: { ...root.entry.tree, parents: [root.id] } })).toMatch(/_root/)
    expect(Entry.validate(child([], "a", "1"))).toMatch(/at least one parent/)
    const noRoot = child([root.id], "a", "1")
    expect(Entry.validate({ ...noRoot, tree: { parents: noRoot.tree.parents, h: 1 } })).toMatch(/name its root/)
    expect(Entry.validate({ ...noRoot, subtrees: [{ name: "", parents: [] }] })).toMatch(/empty/)
    expect(Entry.validate({ ...noRoot, subtrees: [{ name: "b", parents: [] }, { name: "a", parents: [] }] })).toMatch(/sorted/)
  })

  it("decode rejects garbage, non-canonical CBOR, wrong CID codecs and bad fields, naming the problem", () => {
    expect(Either.getLeft(Entry.decode(new Uint8Array([0xff, 0x00])))._tag).toBe("Some")
    // a raw-codec CID where an entry ID belongs
    const rawCid = CID.createV1(0x55, CID.parse(root.id).multihash)
    const bad = dagCbor.encode({ tree: { parents: [rawCid], root: rawCid, h: 1 }, subtrees: [], sig: { key: KEY } })
    expect(Either.getLeft(Entry.decode(bad)).pipe((o) => (o._tag === "Some" ? o.value : ""))).toMatch(/CIDv1 dag-cbor/)
    const wrongField = dagCbor.encode({ tree: { parents: [], h: "x" }, subtrees: [], sig: { key: KEY } })
    expect(Either.getLeft(Entry.decode(wrongField)).pipe((o) => (o._tag === "Some" ? o.value : ""))).toMatch(/h/)
    const extra = dagCbor.encode({ tree: { parents: [] }, subtrees: [], sig: { key: KEY }, evil: 1 })
    expect(Either.isLeft(Entry.decode(extra))).toBe(true)
  })

  it("decode with the ID the caller computed over the bytes gives what decode alone gives, and still refuses bad bytes", () => {
    for (const entry of signerShapes()) {
      const bytes = Entry.encode(entry)
      const alone = Either.getOrThrow(Entry.decode(bytes))
      const withId = Either.getOrThrow(Entry.decode(bytes, Entry.idOfBytes(bytes)))
      expect(withId).toEqual(alone)
      expect(withId.id).toBe(Entry.id(entry))
      expect(withId.treeId).toBe(entry.tree.root ?? withId.id)
    }
    const garbage = new Uint8Array([0xff, 0x00])
    expect(Either.isLeft(Entry.decode(garbage, Entry.idOfBytes(garbage)))).toBe(true)
  })

  /** Entries of each signer shape: the root, a direct signer, the global grant, a hint without a key. */
  const signerShapes = () => [
    root.entry,
    child([root.id], "data", "v"),
    Entry.make({ root: root.id, parents: [root.id], height: 1, subtrees: [], key: globalKey(`ed25519:${"C".repeat(43)}=`) }),
    Entry.make({ root: root.id, parents: [root.id], height: 1, subtrees: [], key: { Direct: { hint: { name: "n", pubkey: undefined } } } })
  ]

  it("encodeSigned (from the signing bytes) equals encode of the signed entry", () => {
    const entries = signerShapes()
    for (const e of entries) {
      const signed = Entry.withSignature(e, "c2ln".repeat(22))
      expect(new Uint8Array(Entry.encodeSigned(signed, Entry.signingBytes(signed)))).toEqual(new Uint8Array(Entry.encode(signed)))
    }
  })

  it("signingBytesOf (cut from the stored bytes) equals signingBytes of the entry", () => {
    const entries = signerShapes()
    for (const e of entries) {
      for (const signed of [e, Entry.withSignature(e, "c2ln".repeat(22))]) {
        const stored = Entry.stored(signed)
        expect(new Uint8Array(Entry.signingBytesOf(stored))).toEqual(new Uint8Array(Entry.signingBytes(signed)))
      }
    }
  })

  it("the sig maps kept per key never mix up two keys: splicing equals encoding for arbitrary hints and signatures", () => {
    // names built to collide with a naive join of the fields ("3:abc", separators, empty), both key
    // forms, undefined fields, and signatures of any length; the keys' encodings are kept across runs
    const text = fc.oneof(fc.constantFrom("", "-", "3:abc", "1:-", "t", "\u0000", "D-"), fc.string({ maxLength: 12 }))
    const pubkey = fc.constantFrom(`ed25519:${"A".repeat(43)}=`, `ed25519:${"B".repeat(43)}=`)
    const hint = fc.record(
      { pubkey: fc.option(pubkey, { nil: undefined }), name: fc.option(text, { nil: undefined }), is_global: fc.constantFrom(true, undefined) },
      { requiredKeys: [] }
    )
    const key = fc.oneof(
      hint.map((h) => ({ Direct: { hint: h } })),
      fc.tuple(hint, fc.array(fc.record({ tree: text, tips: fc.array(text, { maxLength: 2 }) }), { maxLength: 2 }))
        .map(([h, path]) => ({ Delegation: { path, hint: h } }))
    )
    const signature = fc.oneof(fc.constant("c2ln".repeat(22)), fc.string({ maxLength: 120 }))
    fc.assert(
      fc.property(key, signature, (k, sig) => {
        const e = Entry.make({ root: root.id, parents: [root.id], height: 1, subtrees: [], key: k as never })
        const signed = Entry.withSignature(e, sig)
        const bytes = Entry.encode(signed)
        expect(Buffer.from(Entry.encodeSigned(signed, Entry.signingBytes(signed))).equals(Buffer.from(bytes))).toBe(true)
        const signing = Buffer.from(Entry.signingBytes(signed))
        expect(Buffer.from(Entry.signingBytesOf(Entry.stored(signed, bytes))).equals(signing)).toBe(true)
        const decoded = Entry.decode(bytes)
        if (Either.isRight(decoded)) expect(Buffer.from(Entry.signingBytesOf(decoded.right)).equals(signing)).toBe(true)
      }),
      { numRuns: 600 }
    )
  })

  /** CID links to their strings, everything else as is (the shape the schema decodes). */
  const linksToText = (v: unknown): unknown => {
    const c = CID.asCID(v)
    if (c !== null) return c.toString()
    if (Array.isArray(v)) return v.map(linksToText)
    if (v !== null && typeof v === "object" && !(v instanceof Uint8Array))
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, linksToText(x)]))
    return v
  }

  it("decode builds exactly the value the Entry schema builds, for every signer shape", () => {
    const cid = (id: string) => CID.parse(id)
    const pub = `ed25519:${"B".repeat(43)}=`
    const keys = [
      KEY,
      globalKey(pub),
      { Direct: { hint: { name: "laptop" } } },
      { Direct: { hint: {} } },
      { Delegation: { path: [{ tree: root.id, tips: [root.id] }], hint: { pubkey: pub } } }
    ]
    const raws = keys.flatMap((key) => [
      { tree: { parents: [cid(root.id)], root: cid(root.id), h: 1 }, subtrees: [], sig: { key } },
      {
        tree: { root: cid(root.id), parents: [cid(root.id)], metadata: new Uint8Array([1, 2]), h: 3 },
        subtrees: [
          { name: "a", parents: [cid(root.id)], data: new Uint8Array([3]), h: 2 },
          { name: "b", parents: [] }
        ],
        sig: { sig: "c2ln", key }
      }
    ])
    for (const raw of raws) {
      const bytes = dagCbor.encode(raw)
      const viaSchema = Either.getOrThrow(decodeEntryEither(linksToText(raw)))
      const decoded = Either.getOrThrow(Entry.decode(bytes)).entry
      expect(decoded).toStrictEqual(viaSchema)
      // same key order too (it shows in JSON and in iteration)
      expect(JSON.stringify(decoded)).toBe(JSON.stringify(viaSchema))
    }
    // what the fast path refuses still fails with the schema's message
    const badPub = dagCbor.encode({ tree: { parents: [cid(root.id)], root: cid(root.id), h: 1 }, subtrees: [], sig: { key: directKey("ed25519:short") } })
    expect(Either.getLeft(Entry.decode(badPub)).pipe((o) => (o._tag === "Some" ? o.value : ""))).toMatch(/public key/)
    const emptyName = dagCbor.encode({ tree: { parents: [cid(root.id)], root: cid(root.id), h: 1 }, subtrees: [{ name: "", parents: [] }], sig: { key: KEY } })
    expect(Either.getLeft(Entry.decode(emptyName)).pipe((o) => (o._tag === "Some" ? o.value : ""))).toMatch(/subtree name must not be empty/)
    const negative = dagCbor.encode({ tree: { parents: [cid(root.id)], root: cid(root.id), h: -1 }, subtrees: [], sig: { key: KEY } })
    expect(Either.isLeft(Entry.decode(negative))).toBe(true)
    const version = dagCbor.encode({ _v: 1, tree: { parents: [cid(root.id)], root: cid(root.id), h: 1 }, subtrees: [], sig: { key: KEY } })
    expect(Either.isLeft(Entry.decode(version))).toBe(true)
  })

  it.prop(
    "encode/decode round-trips and IDs are deterministic",
    [fc.array(fc.string(), { maxLength: 5 }), fc.nat({ max: 1000 }), fc.string({ minLength: 1 })],
    ([values, h, name]) => {
      const e = Entry.make({
        root: root.id,
        parents: [root.id],
        height: h + 1,
        metadata: Entry.encodeMetadata({ settings_tips: [root.id], entropy: null }),
        subtrees: values.map((v, i) => ({ name: `${name}${i}`, parents: [], data: Doc.from({ v }).encode() })),
        key: KEY
      })
      const s = Entry.stored(e)
      const back = Either.getOrThrow(Entry.decode(s.bytes))
      expect(back.id).toBe(s.id)
      expect(back.entry).toEqual(e)
      const again = Entry.make({ root: root.id, parents: [root.id, root.id], height: h + 1, metadata: e.tree.metadata, subtrees: [...e.subtrees].reverse(), key: KEY })
      expect(Entry.id(again)).toBe(s.id)
    },
    { fastCheck: { numRuns: 100 } }
  )
})

describe("metadata", () => {
  it.prop(
    "each read gives what its own bytes say, however reads of the same and other bytes follow one another",
    [fc.array(fc.tuple(fc.subarray(["a", "b", "c"].map((c) => Entry.idOfBytes(new TextEncoder().encode(c)))), fc.option(fc.integer(), { nil: null }), fc.boolean()), { maxLength: 12 })],
    ([reads]) => {
      for (const [tips, entropy, copied] of reads) {
        const bytes = Entry.encodeMetadata({ settings_tips: tips, entropy })
        // equal bytes in another array, or the same array again
        const entry = Entry.make({ root: root.id, parents: [root.id], height: 1, metadata: copied ? bytes.slice() : bytes, subtrees: [], key: KEY })
        expect(Entry.metadata(entry)).toEqual({ settings_tips: [...tips].sort(compareIds), entropy })
      }
      const none = Entry.make({ root: root.id, parents: [root.id], height: 1, subtrees: [], key: KEY })
      expect(Entry.metadata(none)).toBeUndefined()
      const malformed = Entry.make({ root: root.id, parents: [root.id], height: 1, metadata: new TextEncoder().encode("{"), subtrees: [], key: KEY })
      expect(Entry.metadata(malformed)).toBeUndefined()
    }
  )
})

describe("canonical bytes", () => {
  it("bytes that decode to a valid entry but are not its canonical encoding are refused (no second ID for one entry)", () => {
    const e = Entry.stored(child([root.id], "a", "1"))
    // re-encode the same content with the top-level map keys in another order (cborg without sorting)
    const raw = dagCbor.decode(e.bytes) as Record<string, unknown>
    const reordered = cborg.encode(new Map([["subtrees", raw.subtrees], ["tree", raw.tree], ["sig", raw.sig]]), {
      typeEncoders: { Object: cidEncoder },
      mapSorter: () => 0
    })
    expect(Buffer.from(reordered).equals(Buffer.from(e.bytes))).toBe(false)
    const decoded = Entry.decode(reordered)
    expect(Either.isLeft(decoded) && decoded.left).toMatch(/canonical/)
    expect(Either.isRight(Entry.decode(e.bytes))).toBe(true)
    // the version written out as 0 (it is left out when 0)
    const withVersion = dagCbor.encode({ ...raw, _v: 0 })
    expect(Either.isLeft(Entry.decode(withVersion))).toBe(true)
  })
})

/** Encode CIDs as tag 42 (as dag-cbor does) while leaving map order alone. */
function cidEncoder(obj: unknown): Array<Token> | null {
  const cid = CID.asCID(obj)
  if (cid === null) return null
  const bytes = new Uint8Array(cid.bytes.byteLength + 1)
  bytes.set(cid.bytes, 1)
  return [new Token(Type.tag, 42), new Token(Type.bytes, bytes)]
}
