import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Doc } from "../../src/core/Doc.js"
import * as Entry from "../../src/core/Entry.js"
import * as Database from "../../src/database/Database.js"
import { ingestEncoded } from "../../src/database/Ingest.js"
import { layerCache } from "../../src/database/StoreState.js"
import { DocStore } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import { AHEAD_MIN, decodeVerifyingAhead } from "../../src/database/VerifyAhead.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { directKey } from "../../src/schema/Auth.js"
import { Auth, type VerifyItem } from "../../src/services/Auth.js"
import { Storage } from "../../src/services/Storage.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"

/** The node Auth layer, recording what is handed to its background verifier. */
const spied = (ahead: Array<VerifyItem>) =>
  Layer.effect(
    Auth,
    Effect.map(Auth, (auth) => ({
      ...auth,
      verifyAhead: (items: ReadonlyArray<VerifyItem>) => {
        ahead.push(...items)
        return auth.verifyAhead!(items)
      }
    }))
  ).pipe(Layer.provide(AuthLayers.layerNode))

const env = (ahead: Array<VerifyItem>) => Layer.mergeAll(StorageLayers.layerMemory, spied(ahead), layerCache, WriteEvents.layer)
const source = () => Layer.mergeAll(StorageLayers.layerMemory, AuthLayers.layerNode, layerCache, WriteEvents.layer)

/** A database of `n` commits written elsewhere, as encoded entries parents first, with its admin and a stranger key. */
const history = (n: number) =>
  Effect.gen(function*() {
    const auth = yield* Auth
    const admin = yield* auth.generateKey
    const stranger = yield* auth.generateKey
    const db = yield* Database.create({ signer: admin })
    for (let i = 0; i < n; i++) {
      const txn = Transaction.begin(db, admin)
      yield* new DocStore(txn, "data").set(`k${i}`, i)
      yield* Transaction.commit(txn)
    }
    const storage = yield* Storage
    const ids = yield* storage.ancestors(db.rootId, yield* storage.tips(db.rootId))
    const entries = yield* storage.getMany(ids)
    return { admin, stranger, db, entries, bytes: entries.map((e) => e.bytes) }
  }).pipe(Effect.provide(source()))

/** An entry on top of `tip`, signed by `signer` (the signature over its own bytes, or another message's when `forged`). */
const entryOn = (tip: Entry.StoredEntry, signer: { publicKey: string; secretKey: string }, forged = false) =>
  Effect.gen(function*() {
    const auth = yield* Auth
    const unsigned = Entry.make({
      root: tip.treeId,
      parents: [tip.id],
      height: tip.height + 1,
      metadata: Entry.encodeMetadata({ settings_tips: [tip.treeId], entropy: null }),
      subtrees: [{ name: "extra", parents: [], data: Doc.from({ last: true }).encode() }],
      key: directKey(signer.publicKey)
    })
    const message = forged ? new TextEncoder().encode("something else") : Entry.signingBytes(unsigned)
    return Entry.stored(Entry.withSignature(unsigned, yield* auth.sign(signer.secretKey, message)))
  }).pipe(Effect.provide(AuthLayers.layerNode))

describe("ingestEncoded: decoding with verification ahead", () => {
  it.effect("stores a batch of encoded entries, handing the root's signer's signatures to the verifier while decoding", () => {
    const ahead: Array<VerifyItem> = []
    return Effect.gen(function*() {
      const { admin, db, bytes } = yield* history(400)
      const stored = yield* ingestEncoded(bytes, "remote")
      expect(stored).toHaveLength(401)
      expect(yield* Database.tips(db)).toHaveLength(1)
      // the root comes first, so its Admin key is known from then on: every signature went ahead
      // (ingestion then sends its own first slice too, found verified)
      const decoded = bytes.map((b) => Entry.decode(b))
      const signatures = new Set(ahead.map((i) => i.signature))
      expect(signatures.size).toBe(401)
      for (const d of decoded) expect(d._tag === "Right" && signatures.has(d.right.entry.sig.sig!)).toBe(true)
      expect(new Set(ahead.map((i) => i.publicKey))).toEqual(new Set([admin.publicKey]))
    }).pipe(Effect.provide(env(ahead)))
  })

  it.effect("a signature verified ahead as false still fails the batch, and nothing is stored", () => {
    const ahead: Array<VerifyItem> = []
    return Effect.gen(function*() {
      // 402 entries: the last slice, forged entry included, is large enough to go ahead
      const { admin, db, entries, bytes } = yield* history(400)
      expect(402 % 256).toBeGreaterThanOrEqual(AHEAD_MIN)
      const forged = yield* entryOn(entries.at(-1)!, admin, true)
      const err = yield* Effect.flip(ingestEncoded([...bytes, forged.bytes], "remote"))
      expect(err._tag).toBe("InvalidEntry")
      expect(err.message).toMatch(/signature does not verify/)
      expect(ahead.some((i) => i.signature === forged.entry.sig.sig)).toBe(true)
      expect(yield* (yield* Storage).count(db.rootId)).toBe(0)
    }).pipe(Effect.provide(env(ahead)))
  })

  it.effect("an unknown signer's signatures are not verified ahead; its entry is refused by the checks", () => {
    const ahead: Array<VerifyItem> = []
    return Effect.gen(function*() {
      const { db, entries, bytes, stranger } = yield* history(300)
      const intruder = yield* entryOn(entries.at(-1)!, stranger)
      const err = yield* Effect.flip(ingestEncoded([...bytes, intruder.bytes], "remote"))
      expect(err.message).toMatch(/not an active key/)
      expect(ahead.length).toBeGreaterThan(0)
      expect(ahead.some((i) => i.publicKey === stranger.publicKey)).toBe(false)
      expect(yield* (yield* Storage).count(db.rootId)).toBe(0)
    }).pipe(Effect.provide(env(ahead)))
  })

  it.effect("bytes that do not decode fail the batch, naming their position, and nothing is stored", () => {
    const ahead: Array<VerifyItem> = []
    return Effect.gen(function*() {
      const { db, bytes } = yield* history(10)
      const broken = [...bytes.slice(0, 5), new Uint8Array([0xa3, 1, 2]), ...bytes.slice(5)]
      const err = yield* Effect.flip(ingestEncoded(broken, "remote"))
      expect(err._tag).toBe("InvalidEntry")
      expect(err.message).toMatch(/entry 5 does not decode/)
      expect(yield* (yield* Storage).count(db.rootId)).toBe(0)
    }).pipe(Effect.provide(env(ahead)))
  })

  it.effect("a page for one database does not make the keys of another database's root known", () => {
    const ahead: Array<VerifyItem> = []
    return Effect.gen(function*() {
      const auth = yield* Auth
      const { db, bytes } = yield* history(100)
      const other = yield* history(1)
      // a peer answering for `other` slips in a root it made up, with entries its key signed
      const decoded = yield* decodeVerifyingAhead(bytes, new Set(), auth, other.db.rootId)
      expect(decoded.every((d) => d._tag === "Right")).toBe(true)
      expect(ahead).toHaveLength(0)
      // the same page for the database it belongs to is verified ahead
      yield* decodeVerifyingAhead(bytes, new Set(), auth, db.rootId)
      expect(ahead).toHaveLength(101)
    }).pipe(Effect.provide(env(ahead)))
  })
})
