/**
 * Decoding knows most entries are canonical without re-encoding them (`knownCanonical`), and cuts
 * their signing bytes at the `sig` map's end it noted (`rememberSigEnd`). Both must agree with the
 * plain rules: known canonical only when re-encoding gives the same bytes, whatever the bytes.
 * ID links, found by a hash of their bytes, must each decode to their own ID. The direct reader of
 * canonical bytes (`readCanonical`), which `Entry.decode` tries first, must take only what that
 * general path takes and knows canonical, giving the same entry.
 */
import { describe, expect, it } from "@effect/vitest"
import * as dagCbor from "@ipld/dag-cbor"
import * as cborg from "cborg"
import { Token, Type } from "cborg"
import * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import { CID } from "multiformats/cid"
import * as Digest from "multiformats/hashes/digest"
import * as Entry from "../../../src/core/Entry.js"
import { readCanonical } from "../../../src/core/internal/CanonicalEntry.js"
import { decodeTrusted, fastEntry } from "../../../src/core/internal/EntryBytes.js"
import { decodeWatched, knownCanonical } from "../../../src/core/internal/EntryDecoding.js"
import type { SigKey } from "../../../src/schema/Auth.js"

const pub = (c: string) => `ed25519:${c.repeat(43)}=`
const idOf = (n: number) => Entry.idOfBytes(new Uint8Array([n & 255, n >> 8, 7]))

/** Signer shapes the fast structural check takes, hint names included (some equal to entry keys). */
const keys: ReadonlyArray<SigKey> = [
  { Direct: { hint: { pubkey: pub("A") } } },
  { Direct: { hint: { pubkey: pub("B"), is_global: true } } },
  { Direct: { hint: { name: "sig" } } },
  { Direct: { hint: { name: "tree", pubkey: pub("C") } } },
  { Direct: { hint: {} } }
]

/** Arbitrary valid entries: roots and children, heights (0 included), metadata, store heights and data, signed or not. */
const anyEntry = fc
  .record({
    isRoot: fc.boolean(),
    parents: fc.uniqueArray(fc.nat({ max: 50 }), { minLength: 1, maxLength: 3 }),
    height: fc.nat({ max: 70_000 }),
    metadata: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined }),
    stores: fc.uniqueArray(
      fc.record({
        name: fc.string({ unit: "grapheme", minLength: 1, maxLength: 6 }),
        parents: fc.uniqueArray(fc.nat({ max: 50 }), { maxLength: 2 }),
        data: fc.option(fc.uint8Array({ maxLength: 30 }), { nil: undefined }),
        h: fc.option(fc.nat({ max: 300 }), { nil: undefined })
      }),
      { selector: (s) => s.name, maxLength: 3 }
    ),
    key: fc.constantFrom(...keys),
    sig: fc.option(fc.base64String({ minLength: 4, maxLength: 88 }), { nil: undefined })
  })
  .map((r) => {
    const made = Entry.make({
      ...(r.isRoot ? {} : { root: idOf(999) }),
      parents: r.isRoot ? [] : r.parents.map(idOf),
      height: r.isRoot ? 0 : r.height,
      metadata: r.metadata,
      subtrees: [
        ...(r.isRoot ? [{ name: "_root", parents: [] }] : []),
        ...r.stores.filter((s) => s.name !== "_root").map((s) => ({ ...s, parents: s.parents.map(idOf) }))
      ],
      key: r.key
    })
    return r.sig === undefined ? made : Entry.withSignature(made, r.sig)
  })

/** What the general path (decodeWatched, fastEntry) makes of bytes it takes: the entry, whether it knows them canonical, the sig end. */
const general = (bytes: Uint8Array) => {
  let watched
  try {
    watched = decodeWatched(bytes)
  } catch {
    return undefined
  }
  const entry = fastEntry(watched.raw)
  return entry === undefined ? undefined : { entry, known: knownCanonical(watched, entry), sigEnd: watched.sigEnd }
}

/** Known canonical from decoding, checked against re-encoding; undefined when the bytes are not a fast-path entry. */
const knownAndTrue = (bytes: Uint8Array): boolean | undefined => {
  const g = general(bytes)
  if (g?.known) expect(Buffer.from(Entry.encode(g.entry)).equals(Buffer.from(bytes))).toBe(true)
  return g?.known
}

/**
 * Encode a value as DAG-CBOR would, except: each map's keys in the order `order` gives, integers
 * `asFloat` says so written as floats, and `extra` fields added to the top-level and tree maps.
 */
const encodeOdd = (
  value: unknown,
  order: (keys: Array<string>) => Array<string>,
  asFloat: (n: number) => boolean
): Uint8Array =>
  cborg.encode(value, {
    float64: true,
    typeEncoders: {
      Object: (obj: unknown, _typ: string, options: cborg.EncodeOptions) => {
        const cid = CID.asCID(obj)
        if (cid !== null) {
          const bytes = new Uint8Array(cid.bytes.byteLength + 1)
          bytes.set(cid.bytes, 1)
          return [new Token(Type.tag, 42), new Token(Type.bytes, bytes)]
        }
        if (obj instanceof Uint8Array) return null
        const record = obj as Record<string, unknown>
        const ks = order(Object.keys(record))
        return [new Token(Type.map, ks.length), ...ks.map((k) => [new Token(Type.string, k), cborg.objectToTokens(record[k], options)])]
      },
      number: (n: unknown) => (typeof n === "number" && asFloat(n) ? [new Token(Type.float, n)] : null)
    }
  })

/** The decoded CBOR of an entry (CID links and all), to re-encode oddly. */
const rawOf = (entry: Parameters<typeof Entry.encode>[0]) => dagCbor.decode(Entry.encode(entry)) as Record<string, unknown>

/** Ways of encoding an entry that DAG-CBOR's encoder never takes (`seed` shuffles the keys). */
const oddWays = fc.constantFrom("order", "float", "version", "height0")

/** An entry encoded one odd way: its maps' keys shuffled, its integers as floats, `_v: 0` or a tree height of 0 written out. */
const oddly = (entry: Parameters<typeof Entry.encode>[0], seed: number, how: string): Uint8Array => {
  const raw = rawOf(entry)
  if (how === "version") raw._v = 0
  if (how === "height0") (raw.tree as Record<string, unknown>).h = 0
  const order = how === "order"
    ? (ks: Array<string>) => (ks.length > 1 ? [...ks].sort().sort(() => ((seed = (seed * 1103515245 + 12345) | 0) & 1 ? 1 : -1)) : ks)
    : (ks: Array<string>) => [...ks].sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0))
  return encodeOdd(raw, order, (n) => how === "float" && n > 0)
}

describe("canonical form known from decoding", () => {
  it.prop("every canonical entry is known canonical, decodes, and its cut signing bytes are its signing bytes", [anyEntry], ([entry]) => {
    const bytes = Entry.encode(entry)
    // a text holding U+FFFD (a store name may) is a doubt the check leaves to re-encoding, not an error
    const doubtful = entry.subtrees.some((s) => s.name.includes("\uFFFD"))
    expect(knownAndTrue(bytes)).toBe(!doubtful)
    const decoded = Either.getOrThrow(Entry.decode(bytes))
    expect(Buffer.from(Entry.signingBytesOf(decoded)).equals(Buffer.from(Entry.signingBytes(entry)))).toBe(true)
  }, { fastCheck: { numRuns: 300 } })

  it.prop(
    "a changed byte is never taken as canonical unless re-encoding gives those very bytes",
    [anyEntry, fc.nat(), fc.integer({ min: 0, max: 255 })],
    ([entry, at, byte]) => {
      const bytes = new Uint8Array(Entry.encode(entry))
      bytes[at % bytes.length] = byte
      knownAndTrue(bytes)
      // and decode agrees with the plain rule (decoding, then re-encoding to compare)
      const decoded = Entry.decode(bytes)
      if (Either.isRight(decoded)) expect(Buffer.from(Entry.encode(decoded.right.entry)).equals(Buffer.from(bytes))).toBe(true)
    },
    { fastCheck: { numRuns: 2_000 } }
  )

  it.prop(
    "keys out of order, integers written as floats, defaults written out: refused, never known canonical nor read directly",
    [anyEntry, fc.integer(), oddWays],
    ([entry, seed, how]) => {
      const bytes = oddly(entry, seed, how)
      const canonical = Buffer.from(bytes).equals(Buffer.from(Entry.encode(entry)))
      const known = knownAndTrue(bytes)
      if (!canonical) {
        // nor read by the direct reader
        expect(readCanonical(bytes)).toBeUndefined()
        expect(known).not.toBe(true)
        expect(Either.isLeft(Entry.decode(bytes))).toBe(true)
      }
    },
    { fastCheck: { numRuns: 600 } }
  )

  it("text that is not UTF-8 is not taken as canonical (it decodes to U+FFFD, which re-encodes otherwise)", () => {
    const entry = Entry.make({ root: idOf(1), parents: [idOf(2)], height: 1, subtrees: [{ name: "ab", parents: [] }], key: keys[0]! })
    const bytes = new Uint8Array(Entry.encode(entry))
    const at = Buffer.from(bytes).indexOf(Buffer.from("ab"))
    bytes[at] = 0xff // "\xffb": invalid UTF-8 of the same length
    expect(knownAndTrue(bytes)).toBe(false)
    const decoded = Entry.decode(bytes)
    expect(Either.isLeft(decoded) && decoded.left).toMatch(/canonical/)
  })

  it("a store name that holds U+FFFD itself is left to re-encoding, which finds the bytes canonical", () => {
    const entry = Entry.make({ root: idOf(1), parents: [idOf(2)], height: 1, subtrees: [{ name: "\uFFFD ", parents: [] }], key: keys[0]! })
    const bytes = Entry.encode(entry)
    expect(knownAndTrue(bytes)).toBe(false)
    expect(Either.getOrThrow(Entry.decode(bytes)).entry.subtrees[0]!.name).toBe("\uFFFD ")
  })
})

describe("ID links", () => {
  /** A CIDv1 dag-cbor BLAKE3 ID over a digest made from `i` (bytes 0-3 and 28-31). */
  const idFrom = (i: number) => {
    const digest = new Uint8Array(32)
    const view = new DataView(digest.buffer)
    view.setUint32(0, i)
    view.setUint32(28, Math.imul(i, 2654435761))
    return CID.createV1(0x71, Digest.create(0x1e, digest)).toString()
  }
  const naming = (parent: string) =>
    Entry.encode(Entry.make({ root: parent, parents: [parent], height: 1, subtrees: [], key: keys[0]! }))

  it("links decode to their own ID, first seen or remembered, even when two share the cache's hash", () => {
    // 381 and 29,897 give CIDs whose bytes collide under the link cache's 32-bit FNV-1a hash
    const a = idFrom(381)
    const b = idFrom(29_897)
    expect(a).not.toBe(b)
    for (const id of [a, b, a, b, idFrom(5), a]) {
      const decoded = Either.getOrThrow(Entry.decode(naming(id)))
      expect(decoded.entry.tree.parents).toEqual([id])
      expect(decoded.entry.tree.root).toBe(id)
    }
  })
})

/** The general path's entry and sig end, when it knows the bytes canonical. */
const generalKnown = (bytes: Uint8Array) => {
  const g = general(bytes)
  return g?.known ? g : undefined
}

/** The reader agrees with the general path: whatever it reads, the general path reads the same and knows canonical. */
const agrees = (bytes: Uint8Array) => {
  const direct = readCanonical(bytes)
  if (direct === undefined) return undefined
  const plain = generalKnown(bytes)
  expect(plain).toBeDefined()
  expect(direct.entry).toStrictEqual(plain!.entry)
  expect(direct.sigEnd).toBe(plain!.sigEnd)
  expect(Buffer.from(Entry.encode(direct.entry)).equals(Buffer.from(bytes))).toBe(true)
  return direct
}

describe("the direct reader of canonical bytes", () => {
  it.prop("reads every canonical entry the general path knows canonical, to the same entry and sig end", [anyEntry], ([entry]) => {
    const bytes = Entry.encode(entry)
    const direct = agrees(bytes)
    // it leaves to the general path exactly the texts holding U+FFFD and the written-out tree height 0
    const doubtful = entry.subtrees.some((s) => s.name.includes("\uFFFD")) || entry.tree.h === 0
    expect(direct === undefined).toBe(doubtful)
    expect(generalKnown(bytes) === undefined).toBe(doubtful)
    // decoding trusted bytes reads them the same way
    const trusted = Either.getOrThrow(decodeTrusted(bytes, "x"))
    expect(trusted.entry).toStrictEqual(Either.getOrThrow(Entry.decode(bytes)).entry)
  }, { fastCheck: { numRuns: 400 } })

  it.prop(
    "bytes changed, cut or grown: what it reads, the general path reads the same and knows canonical",
    [anyEntry, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom("change", "cut", "insert", "append")],
    ([entry, at, byte, how]) => {
      const good = Entry.encode(entry)
      const i = at % good.length
      const bytes = how === "change"
        ? Uint8Array.from(good, (b, j) => (j === i ? byte : b))
        : how === "cut"
        ? good.slice(0, i)
        : how === "insert"
        ? Uint8Array.from([...good.subarray(0, i), byte, ...good.subarray(i)])
        : Uint8Array.from([...good, byte])
      agrees(bytes)
    },
    { fastCheck: { numRuns: 3_000 } }
  )

  const one = (over: Partial<Parameters<typeof Entry.make>[0]> = {}) =>
    Entry.withSignature(Entry.make({ root: idOf(1), parents: [idOf(2)], height: 3, subtrees: [{ name: "ab", parents: [], data: new Uint8Array([1, 2]) }], key: keys[1]!, ...over }), "c2ln")

  it("reads wide heads: 24 and more parents, heights past 2^32, long texts and data", () => {
    const parents = Array.from({ length: 30 }, (_, i) => idOf(100 + i)).sort()
    const entry = one({
      parents,
      height: 2 ** 40 + 7,
      subtrees: [{ name: "é".repeat(200), parents: [], data: new Uint8Array(70_000).fill(9), h: 300 }],
      key: { Direct: { hint: { name: "n".repeat(300), pubkey: pub("D"), is_global: true } } }
    })
    const direct = agrees(Entry.encode(entry))
    expect(direct?.entry).toStrictEqual(entry)
  })

  it("leaves to the general path: a non-minimal width, a trailing byte, a CID that is not an entry's, invalid UTF-8", () => {
    const bytes = Entry.encode(one())
    expect(agrees(bytes)).toBeDefined()
    // the top-level map's head written in two bytes
    expect(readCanonical(Uint8Array.from([0xb8, 3, ...bytes.subarray(1)]))).toBeUndefined()
    expect(Either.isLeft(Entry.decode(Uint8Array.from([0xb8, 3, ...bytes.subarray(1)])))).toBe(true)
    expect(readCanonical(Uint8Array.from([...bytes, 0]))).toBeUndefined()
    expect(Either.isLeft(Entry.decode(Uint8Array.from([...bytes, 0])))).toBe(true)
    // a raw-codec CID as the root
    const raw = CID.createV1(0x55, Digest.create(0x1e, new Uint8Array(32).fill(3)))
    const rawEntry = rawOf(one())
    ;(rawEntry.tree as Record<string, unknown>).root = raw
    const rawBytes = dagCbor.encode(rawEntry)
    expect(readCanonical(rawBytes)).toBeUndefined()
    expect(Either.isLeft(Entry.decode(rawBytes))).toBe(true)
    // "ab" as "\xffb"
    const bad = new Uint8Array(bytes)
    bad[Buffer.from(bad).indexOf(Buffer.from("ab"))] = 0xff
    expect(readCanonical(bad)).toBeUndefined()
    expect(Either.isLeft(Entry.decode(bad))).toBe(true)
  })

  it("an array claiming more items than bytes (up to 2^53 - 1) is refused, nothing allocated for it, never thrown", () => {
    const bytes = Entry.encode(one())
    for (const key of ["subtrees", "parents"]) {
      const at = Buffer.from(bytes).indexOf(Buffer.from(key)) + key.length
      for (const head of [[0x9b, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], [0x9b, 0, 0, 1, 0, 0, 0, 0, 0], [0x9a, 0xff, 0xff, 0xff, 0xff], [0x99, 0x10, 0]]) {
        const claimed = Uint8Array.from([...bytes.subarray(0, at), ...head, ...bytes.subarray(at + 1)])
        expect(readCanonical(claimed)).toBeUndefined()
        expect(Either.isLeft(Entry.decode(claimed))).toBe(true)
      }
    }
  })

  it("keeps a leading byte order mark in a text, as the general path now does (cborg alone drops it)", () => {
    const entry = one({ subtrees: [{ name: "\uFEFFstore", parents: [] }], key: { Direct: { hint: { name: "\uFEFF" } } } })
    const bytes = Entry.encode(entry)
    expect(agrees(bytes)?.entry).toStrictEqual(entry)
    expect(generalKnown(bytes)?.entry).toStrictEqual(entry)
    // what cborg gives alone, for the record: the mark dropped, so re-encoding would give other bytes
    expect((dagCbor.decode(bytes) as { subtrees: Array<{ name: string }> }).subtrees[0]!.name).toBe("store")
    expect(Either.getOrThrow(Entry.decode(bytes)).entry).toStrictEqual(entry)
  })

  it("reading stored bytes keeps the mark too, where the direct reader does not take them (a delegated signer)", () => {
    const delegated: SigKey = { Delegation: { path: [{ tree: "\uFEFFtree", tips: [] }], hint: { name: "\uFEFFn" } } }
    const entry = one({
      subtrees: [
        { name: "\uFEFFa", parents: [], data: new Uint8Array([1]) },
        { name: "a", parents: [], data: new Uint8Array([2]) }
      ],
      key: delegated
    })
    const bytes = Entry.encode(entry)
    expect(readCanonical(bytes)).toBeUndefined()
    expect(Either.getOrThrow(decodeTrusted(bytes, "x")).entry).toStrictEqual(Either.getOrThrow(Entry.decode(bytes)).entry)
    expect(Either.getOrThrow(decodeTrusted(bytes, "x")).entry).toStrictEqual(entry)
    // one store's data read from the bytes: each name its own, the mark told apart
    expect(Either.getOrThrow(Entry.storeDataOfBytes(bytes, "\uFEFFa"))).toEqual(new Uint8Array([1]))
    expect(Either.getOrThrow(Entry.storeDataOfBytes(bytes, "a"))).toEqual(new Uint8Array([2]))
    expect(Either.getOrThrow(Entry.storeDataOfBytes(bytes, "\uFEFF"))).toBeUndefined()
  })
})
