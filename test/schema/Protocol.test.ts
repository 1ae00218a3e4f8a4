import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import * as Schema from "effect/Schema"
import * as Entry from "../../src/core/Entry.js"
import {
  BootstrapReply,
  decodeRequestEither,
  decodeResponseEither,
  IncrementalReply,
  MAX_MESSAGE_DEPTH,
  SendEntriesMessage,
  WireEntry
} from "../../src/schema/Protocol.js"

const treeId = Entry.idOfBytes(new TextEncoder().encode("a tree"))

/** A value of nested arrays `depth` deep (`[[…]]`), built as JSON.parse builds it, without recursion. */
const nested = (depth: number): unknown => JSON.parse("[".repeat(depth) + "]".repeat(depth))

const detail = (result: Either.Either<unknown, { readonly message: string }>): string =>
  Either.isLeft(result) ? result.left.message : "decoded"

describe("Protocol decoding", () => {
  it("a value nested 10,000 deep is a MalformedMessage, never a thrown RangeError", () => {
    // the schema's error formatter quotes the bad value and recurses through it: 20 KB of `[` used
    // to overflow the stack, an exception that took the HTTP server's process down
    const deep = nested(10_000)
    const cases = [
      decodeRequestEither({ SyncTree: { tree_id: deep, our_tips: [] } }),
      decodeRequestEither({ SendEntries: [deep] }),
      decodeRequestEither({ SyncTree: { tree_id: treeId, our_tips: [], metadata: deep } }),
      decodeResponseEither({ Incremental: { tree_id: deep, their_tips: [], missing_entries: [] } })
    ]
    for (const result of cases) expect(detail(result)).toMatch(/must not nest arrays and objects more than 64 deep/)
  })

  it("the depth bound counts the message itself: 64 levels decode, 65 do not", () => {
    // the message object, SyncTree's object, then `metadata` (free-form, so any depth the bound allows)
    const at = (depth: number) =>
      decodeRequestEither({ SyncTree: { tree_id: treeId, our_tips: [], metadata: nested(depth - 2) } })
    expect(Either.isRight(at(MAX_MESSAGE_DEPTH))).toBe(true)
    expect(detail(at(MAX_MESSAGE_DEPTH + 1))).toMatch(/more than 64 deep/)
  })

  it("an input that throws while read is a MalformedMessage too", () => {
    const hostile = {
      SyncTree: {
        get tree_id(): string {
          throw new Error("boom")
        },
        our_tips: []
      }
    }
    expect(detail(decodeRequestEither(hostile))).toBe("Malformed message: the request could not be decoded")
  })
})

describe("Protocol read as serde reads", () => {
  it("an optional field may be null (serde's None) and unknown fields are ignored, in requests and responses", () => {
    const request = decodeRequestEither({
      SyncTree: {
        tree_id: treeId,
        our_tips: [],
        peer_pubkey: null,
        requesting_key: null,
        requesting_key_name: null,
        requested_permission: null,
        metadata: null,
        auth: null,
        a_field_of_a_later_version: { any: 1 }
      }
    })
    expect(Either.getOrThrow(request)).toEqual({ SyncTree: { tree_id: treeId, our_tips: [] } })
    const handshake = decodeRequestEither({
      Handshake: {
        device_id: `ed25519:${"A".repeat(43)}=`,
        public_key: `ed25519:${"A".repeat(43)}=`,
        display_name: null,
        protocol_version: 0,
        challenge: Array(32).fill(1),
        listen_addresses: [],
        later: true
      }
    })
    expect(Either.isRight(handshake)).toBe(true)
    const bootstrap = decodeResponseEither({
      Bootstrap: { tree_id: treeId, root_entry: "AAAA", all_entries: [], key_approved: false, granted_permission: null, next: null }
    })
    expect(Either.getOrThrow(bootstrap)).toEqual({ Bootstrap: { tree_id: treeId, root_entry: "AAAA", all_entries: [], key_approved: false } })
    // a push's proof beside its kind may be null too
    expect(Either.getOrThrow(decodeRequestEither({ SendEntries: [], auth: null }))).toEqual({ SendEntries: [] })
    // a wrong type is still refused, naming the field
    expect(detail(decodeRequestEither({ SyncTree: { tree_id: treeId, our_tips: [], peer_pubkey: 7 } }))).toMatch(/SyncTree\.peer_pubkey/)
  })
})

describe("Protocol permissions", () => {
  it("a requested priority is a u32: 2^32-1 decodes, 2^32 and fractions are MalformedMessage naming the field", () => {
    const ask = (priority: number) =>
      decodeRequestEither({
        SyncTree: { tree_id: treeId, our_tips: [], requesting_key: "ed25519:" + "A".repeat(43) + "=", requested_permission: { type: "Write", priority } }
      })
    expect(Either.isRight(ask(2 ** 32 - 1))).toBe(true)
    for (const bad of [2 ** 32, 2 ** 53, 1.5, -1]) expect(detail(ask(bad))).toMatch(/requested_permission/)
  })
})

describe("wire entries", () => {
  it("are exactly the non-empty strings of standard padded base64 form", () => {
    // the anchored definition, which the faster search for a misplaced character must agree with
    const byRegExp = (s: string) => s.length > 0 && s.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(s)
    const isWire = Schema.is(WireEntry)
    const unit = fc.constantFrom(..."AZaz09+/=-_ \n\u00e9\u0100\u0141\u{1F600}".split(""), "A", "b", "=", "==")
    fc.assert(
      fc.property(fc.array(unit, { maxLength: 14 }).map((cs) => cs.join("")), (s) => {
        expect(isWire(s)).toBe(byRegExp(s))
      }),
      { numRuns: 5_000 }
    )
    for (const s of ["", "====", "A===", "AA==", "AAA=", "AAAA", "AA=A", "A\u0000==", "QUJD"]) expect(isWire(s)).toBe(byRegExp(s))
  })
})

describe("messages carrying entries", () => {
  // what the schemas alone make of a message (the decoders check the entries apart first)
  const plain = <A, I>(schema: Schema.Schema<A, I>) => Schema.decodeUnknownEither(schema, { onExcessProperty: "ignore", errors: "first" })
  const entryArb = fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.from(b).toString("base64")),
    fc.constantFrom("", "A", "AB=", "AA==", "QUJD", "not base64!", "QUJD\n"),
    fc.integer(),
    fc.constant(null)
  )
  const messages = fc.tuple(fc.array(entryArb, { maxLength: 30 }), fc.boolean()).map(([entries, extra]) => ({
    Bootstrap: { tree_id: treeId, root_entry: "QUJD", all_entries: entries, key_approved: true, ...(extra ? { next: "more", later: 1 } : {}) }
  }))

  it.prop("decode to what the schema alone gives, the same entries in the same order, or fail as it fails", [messages], ([message]) => {
    const ours = decodeResponseEither(message)
    const schema = plain(BootstrapReply)(message)
    expect(Either.isRight(ours)).toBe(Either.isRight(schema))
    if (Either.isRight(ours) && Either.isRight(schema)) expect(ours.right).toStrictEqual(schema.right)
    const incremental = { Incremental: { tree_id: treeId, their_tips: [treeId], missing_entries: message.Bootstrap.all_entries } }
    const oursI = decodeResponseEither(incremental)
    const schemaI = plain(IncrementalReply)(incremental)
    expect(Either.isRight(oursI)).toBe(Either.isRight(schemaI))
    if (Either.isRight(oursI) && Either.isRight(schemaI)) expect(oursI.right).toStrictEqual(schemaI.right)
    const push = { SendEntries: message.Bootstrap.all_entries }
    const oursP = decodeRequestEither(push)
    const schemaP = plain(SendEntriesMessage)(push)
    expect(Either.isRight(oursP)).toBe(Either.isRight(schemaP))
    if (Either.isRight(oursP) && Either.isRight(schemaP)) expect(oursP.right).toStrictEqual(schemaP.right)
  }, { fastCheck: { numRuns: 500 } })

  it("one bad entry among many is named by its position", () => {
    const entries = Array.from({ length: 1_000 }, (_, i) => Buffer.from(`entry ${i}`).toString("base64"))
    entries[700] = "QUJD="
    expect(detail(decodeResponseEither({ Incremental: { tree_id: treeId, their_tips: [], missing_entries: entries } }))).toMatch(
      /Incremental\.missing_entries\[700\]: an entry must be the standard base64 of its DAG-CBOR bytes/
    )
    expect(detail(decodeRequestEither({ SendEntries: entries }))).toMatch(/SendEntries\[700\]: an entry must be/)
  })
})
