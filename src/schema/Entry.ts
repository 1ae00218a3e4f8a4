/**
 * The Entry schema: the signed, content-addressed unit of the DAG, in the reference's shape.
 * IDs are strings here; the DAG-CBOR encoding (core/Entry) turns them into tag-42 CID links.
 */
import * as Schema from "effect/Schema"
import { SigKey } from "./Auth.js"
import { EntryId } from "./Ids.js"

const Height = Schema.Number.pipe(Schema.int(), Schema.nonNegative())

/** The main-tree node: root (absent on the root entry), parents, metadata bytes, height (absent when 0). */
export const TreeNode = Schema.Struct({
  root: Schema.optional(EntryId),
  parents: Schema.Array(EntryId),
  metadata: Schema.optional(Schema.Uint8ArrayFromSelf),
  h: Schema.optional(Height)
})
/** A tree node. */
export type TreeNode = typeof TreeNode.Type

/** A store ("subtree") touched by an entry: its name, its store parents, its data (CRDT delta JSON bytes). */
export const SubTreeNode = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1, { message: () => "a subtree name must not be empty" })),
  parents: Schema.Array(EntryId),
  data: Schema.optional(Schema.Uint8ArrayFromSelf),
  h: Schema.optional(Height)
})
/** A subtree node. */
export type SubTreeNode = typeof SubTreeNode.Type

/** The signature: standard padded base64 over the signing bytes, and the signer's key. */
export const SigInfo = Schema.Struct({
  sig: Schema.optional(Schema.String),
  key: SigKey
})
/** Signature info. */
export type SigInfo = typeof SigInfo.Type

/** An entry. `_v` is absent for version 0, the only version accepted. */
export const Entry = Schema.Struct({
  _v: Schema.optional(Schema.Literal(0)),
  tree: TreeNode,
  subtrees: Schema.Array(SubTreeNode),
  sig: SigInfo
})
/** An entry. */
export type Entry = typeof Entry.Type

/** The JSON carried in `tree.metadata`: the pinned `_settings` tips and the root's entropy. */
export const EntryMetadata = Schema.Struct({
  settings_tips: Schema.Array(EntryId),
  entropy: Schema.optionalWith(Schema.NullOr(Schema.Number), { default: () => null })
})
/** Entry metadata. */
export type EntryMetadata = typeof EntryMetadata.Type

/** Decode foreign data into an Entry; a failure names the bad field. */
export const decodeEntry = Schema.decodeUnknown(Entry, { onExcessProperty: "error" })
/** Decode foreign data into an Entry synchronously (Either). */
export const decodeEntryEither = Schema.decodeUnknownEither(Entry, { onExcessProperty: "error" })
