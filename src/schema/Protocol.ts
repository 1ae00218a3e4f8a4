/**
 * The sync protocol (version 0): JSON messages shaped like the reference's serde output
 * (externally tagged enums, snake_case fields). Entries travel as the standard base64 of their
 * DAG-CBOR bytes, so the receiver recomputes each ID over exactly the bytes that were sent.
 * Our additions: `known` and `cursor` on SyncTree requests, `next` on paged responses, and `auth`
 * beside `SendEntries` (the pusher's proof of membership of a database without a global grant).
 * Read as serde reads: an optional field may be absent or `null` (serde writes `None` as `null`),
 * and fields a struct does not know are ignored, so a later version may add some.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import type * as AST from "effect/SchemaAST"
import * as Schema from "effect/Schema"
import type { MalformedMessage } from "./Errors.js"
import { Address } from "./Address.js"
import { EntryId, PubKey } from "./Ids.js"
import { Permission } from "./Permission.js"
import { decoder, decodeTaggedEither, type Member } from "./ProtocolDecoding.js"

/** The protocol version spoken here. */
export const PROTOCOL_VERSION = 0

/** The largest message (request or response body) any transport accepts, in bytes: 8 MiB. */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024

/** A peer address (the messages carry them; its module also knows each transport's address form). */
export { Address }

export { MAX_MESSAGE_DEPTH } from "./ProtocolDecoding.js"

/**
 * Whether a string is standard padded base64 in form: a multiple of 4 characters from the base64
 * alphabet, then at most two `=` (the language of
 * `^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$`). Checked as the length, a
 * search for a character outside the alphabet and `=`, and where the first `=` is (only the last
 * two may be): for an entry's ~550 characters in a parsed page, 0.5-0.6 µs against 0.9-1.0 for one
 * search for any misplaced character (`=(?!=?$)` as a lookahead) and 2.8-3.1 for the anchored
 * `^[A-Za-z0-9+/]*={0,2}$` (a property test holds it to the anchored pattern).
 */
const isPaddedBase64 = (s: string): boolean => {
  const n = s.length
  if (n % 4 !== 0 || OUTSIDE_BASE64.test(s)) return false
  const pad = s.indexOf("=")
  return pad < 0 || pad === n - 1 || (pad === n - 2 && s.charCodeAt(n - 1) === EQUALS)
}
const OUTSIDE_BASE64 = /[^A-Za-z0-9+/=]/
const EQUALS = 0x3d

/** An entry on the wire: the standard padded base64 of its DAG-CBOR bytes. */
export const WireEntry = Schema.String.pipe(
  Schema.filter(isPaddedBase64, {
    message: () => "an entry must be the standard base64 of its DAG-CBOR bytes"
  }),
  Schema.minLength(1, { message: () => "an entry must not be empty" })
)
/** An entry on the wire (base64 DAG-CBOR). */
export type WireEntry = string

/** A standard base64 string (signatures). */
export const Base64 = Schema.String.pipe(
  Schema.pattern(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, {
    message: () => "expected standard padded base64"
  })
)

const isByte = (n: unknown): boolean => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= 255

// One pass over the array, about ten times cheaper than an Array of refined Numbers (every signed
// request carries a nonce), with the same messages: the first bad byte by index, else the length.
const checkBytes32 = (input: unknown, ast: AST.AST): Effect.Effect<ReadonlyArray<number>, ParseResult.ParseIssue> => {
  if (!Array.isArray(input)) return ParseResult.fail(new ParseResult.Type(ast, input, "expected an array of 32 bytes"))
  for (let i = 0; i < input.length; i++) {
    if (!isByte(input[i])) {
      return ParseResult.fail(
        new ParseResult.Pointer(i, input, new ParseResult.Type(ast, input[i], "a byte must be an integer 0-255"))
      )
    }
  }
  return input.length === 32
    ? ParseResult.succeed(input as ReadonlyArray<number>)
    : ParseResult.fail(new ParseResult.Type(ast, input, "expected exactly 32 bytes"))
}

/** A 32-byte challenge or nonce, as a JSON array of numbers 0-255 (serde's `[u8; 32]`). */
export const Bytes32 = Schema.declare([], {
  decode: () => (input, _options, ast) => checkBytes32(input, ast),
  encode: () => (input, _options, ast) => checkBytes32(input, ast)
}, { identifier: "Bytes32", description: "an array of exactly 32 integers 0-255" })
/** 32 bytes as numbers. */
export type Bytes32 = typeof Bytes32.Type

const Count = Schema.Number.pipe(Schema.int(), Schema.nonNegative())

/** The opening of a conversation: who we are, a challenge to sign, where we listen. */
export const HandshakeRequest = Schema.Struct({
  device_id: PubKey,
  public_key: PubKey,
  display_name: Schema.optional(Schema.String),
  protocol_version: Count,
  challenge: Bytes32,
  listen_addresses: Schema.Array(Address)
})
/** A handshake request. */
export type HandshakeRequest = typeof HandshakeRequest.Type

/** A database the server offers in its handshake. */
export const TreeInfo = Schema.Struct({
  tree_id: EntryId,
  name: Schema.NullOr(Schema.String),
  entry_count: Count,
  last_modified: Count
})
/** Tree info. */
export type TreeInfo = typeof TreeInfo.Type

/** The server's side of the handshake: its identity, the signed challenge, a challenge back, its trees. */
export const HandshakeResponse = Schema.Struct({
  device_id: PubKey,
  public_key: PubKey,
  /** The reference's `Option<String>` (we always send one). */
  display_name: Schema.optional(Schema.String),
  protocol_version: Count,
  challenge_response: Base64,
  new_challenge: Bytes32,
  available_trees: Schema.Array(TreeInfo)
})
/** A handshake response. */
export type HandshakeResponse = typeof HandshakeResponse.Type

/** A signed proof that the requester holds `key`, bound to the server, tree, tips, time and a nonce. */
export const SyncRequestAuth = Schema.Struct({
  key: PubKey,
  timestamp_ms: Count,
  nonce: Bytes32,
  signature: Base64
})
/** Sync request auth. */
export type SyncRequestAuth = typeof SyncRequestAuth.Type

/** The longest key name a bootstrap request may carry (a pending request keeps it). */
export const MAX_KEY_NAME_LENGTH = 256

/** Ask for a tree: empty `our_tips` means bootstrap, otherwise incremental. */
export const SyncTreeRequest = Schema.Struct({
  tree_id: EntryId,
  our_tips: Schema.Array(EntryId),
  peer_pubkey: Schema.optional(PubKey),
  requesting_key: Schema.optional(PubKey),
  /** Kept with a pending request for an admin to read: a name, not a payload (at most MAX_KEY_NAME_LENGTH). */
  requesting_key_name: Schema.optional(Schema.String.pipe(Schema.maxLength(MAX_KEY_NAME_LENGTH))),
  requested_permission: Schema.optional(Permission),
  metadata: Schema.optional(Schema.Unknown),
  auth: Schema.optional(SyncRequestAuth),
  /** OUR ADDITION: a sparse sample of the requester's ancestors, so the server finds the common frontier. */
  known: Schema.optional(Schema.Array(EntryId)),
  /** OUR ADDITION: the `next` cursor of the previous page of a paged response. */
  cursor: Schema.optional(Schema.String)
})
/** A sync-tree request. */
export type SyncTreeRequest = typeof SyncTreeRequest.Type

/** The handshake request message. */
export const HandshakeMessage = Schema.Struct({ Handshake: HandshakeRequest })
/** The sync-tree request message. */
export const SyncTreeMessage = Schema.Struct({ SyncTree: SyncTreeRequest })
/**
 * The most entries one SendEntries may carry. A client's page (under 1 MiB) holds a few thousand;
 * the count is checked before any entry is, so a message of tiny fake entries costs nothing.
 */
export const MAX_SEND_ENTRIES = 16_384

/**
 * The push message: entries for the receiver to verify and store. OUR ADDITION: `auth`, beside the
 * kind (the reference's body is the bare array), proves the pusher holds a key of each database the
 * entries belong to (`SyncAuth.pushSigningBytes`); a database without a global grant takes pushes
 * only so proven, so a key revoked there can no longer push into it.
 */
export const SendEntriesMessage = Schema.Struct({
  SendEntries: Schema.Array(WireEntry).pipe(Schema.maxItems(MAX_SEND_ENTRIES)),
  auth: Schema.optional(SyncRequestAuth)
})

/** Every request a peer may send. */
export const SyncRequest = Schema.Union(HandshakeMessage, SyncTreeMessage, SendEntriesMessage)
/** A sync request. */
export type SyncRequest = typeof SyncRequest.Type
/** A sync request as plain JSON. */
export type SyncRequestJson = typeof SyncRequest.Encoded

/** A whole tree (or one page of it), parents first, the root sent apart. */
export const BootstrapResponse = Schema.Struct({
  tree_id: EntryId,
  root_entry: WireEntry,
  all_entries: Schema.Array(WireEntry),
  key_approved: Schema.Boolean,
  granted_permission: Schema.optional(Permission),
  /** OUR ADDITION: present when more pages follow; send it back as `cursor`. */
  next: Schema.optional(Schema.String)
})
/** A bootstrap response. */
export type BootstrapResponse = typeof BootstrapResponse.Type

/** What the requester lacks (or one page of it), parents first, and the server's tips. */
export const IncrementalResponse = Schema.Struct({
  tree_id: EntryId,
  their_tips: Schema.Array(EntryId),
  missing_entries: Schema.Array(WireEntry),
  /** OUR ADDITION: present when more pages follow; send it back as `cursor`. */
  next: Schema.optional(Schema.String)
})
/** An incremental response. */
export type IncrementalResponse = typeof IncrementalResponse.Type

/** The bootstrap request waits for an administrator's approval. */
export const BootstrapPendingResponse = Schema.Struct({
  request_id: Schema.String,
  message: Schema.String
})
/** A bootstrap-pending response. */
export type BootstrapPendingResponse = typeof BootstrapPendingResponse.Type

/** The handshake response message. */
export const HandshakeReply = Schema.Struct({ Handshake: HandshakeResponse })
/** The bootstrap response message. */
export const BootstrapReply = Schema.Struct({ Bootstrap: BootstrapResponse })
/** The incremental response message. */
export const IncrementalReply = Schema.Struct({ Incremental: IncrementalResponse })
/** The bootstrap-pending response message. */
export const BootstrapPendingReply = Schema.Struct({ BootstrapPending: BootstrapPendingResponse })
/** The bare acknowledgement (`"Ack"`). */
export const AckReply = Schema.Literal("Ack")
/** How many pushed entries were stored. */
export const CountReply = Schema.Struct({ Count: Count })
/** The request was refused or failed; the text says why. */
export const ErrorReply = Schema.Struct({ Error: Schema.String })

/** Every response a peer may send. */
export const SyncResponse = Schema.Union(
  HandshakeReply,
  BootstrapReply,
  IncrementalReply,
  BootstrapPendingReply,
  AckReply,
  CountReply,
  ErrorReply
)
/** A sync response. */
export type SyncResponse = typeof SyncResponse.Type
/** A sync response as plain JSON. */
export type SyncResponseJson = typeof SyncResponse.Encoded

/** The request kinds, in the order of the reference's enum. */
export const requestKinds = ["Handshake", "SyncTree", "SendEntries"] as const
/** The response kinds, in the order of the reference's enum. */
export const responseKinds = [
  "Handshake",
  "Bootstrap",
  "Incremental",
  "BootstrapPending",
  "Ack",
  "Count",
  "Error"
] as const

/** The kind of a request (its tag). */
export const requestKind = (request: SyncRequest): (typeof requestKinds)[number] =>
  "Handshake" in request ? "Handshake" : "SyncTree" in request ? "SyncTree" : "SendEntries"

/** The kind of a response (its tag). */
export const responseKind = (response: SyncResponse): (typeof responseKinds)[number] =>
  typeof response === "string" ? "Ack" : (Object.keys(response)[0] as (typeof responseKinds)[number])

/** Decode foreign JSON into a request; the failure names the bad field. */
export const decodeRequest = (input: unknown): Effect.Effect<SyncRequest, MalformedMessage> =>
  decodeTagged(input, "request", requestMembers)

/** Decode foreign JSON into a request synchronously (Either). */
export const decodeRequestEither = (input: unknown): Either.Either<SyncRequest, MalformedMessage> =>
  decodeTaggedEither(input, "request", requestMembers)

/** Decode foreign JSON into a response; the failure names the bad field. */
export const decodeResponse = (input: unknown): Effect.Effect<SyncResponse, MalformedMessage> =>
  decodeTagged(input, "response", responseMembers)

/** Decode foreign JSON into a response synchronously (Either). */
export const decodeResponseEither = (input: unknown): Either.Either<SyncResponse, MalformedMessage> =>
  decodeTaggedEither(input, "response", responseMembers)

/** A request as a plain JSON object (unknown fields stripped). A value that breaks the schema is a defect. */
export const encodeRequest = (request: SyncRequest): SyncRequestJson => Schema.encodeSync(SyncRequest)(request)

/** A response as a plain JSON object (unknown fields stripped). A value that breaks the schema is a defect. */
export const encodeResponse = (response: SyncResponse): SyncResponseJson => Schema.encodeSync(SyncResponse)(response)

/** An `Error` response. */
export const errorResponse = (message: string): SyncResponse => ({ Error: message })

// ---------------------------------------------------------------------------------------------
// each kind's decoder (how a message is decoded is ProtocolDecoding.ts)

/** Whether a value is an array of wire entries (what `Schema.Array(WireEntry)` takes). */
const allWireEntries = (value: unknown): value is ReadonlyArray<string> => {
  if (!Array.isArray(value)) return false
  for (const s of value) if (typeof s !== "string" || s.length === 0 || !isPaddedBase64(s)) return false
  return true
}

/**
 * A message carrying entries under `kind` (its body's `field`, or the body itself): when each has
 * the wire form, as nearly always, the schema decodes the message without them and they are put
 * back, so a page's thousands do not each go through the schema's machinery; otherwise the schema
 * decodes it all and words the problem.
 */
const withEntries = (full: Member, kind: string, field?: string): Member => (input) => {
  const message = input as Record<string, unknown>
  const body = message[kind]
  const holder = field === undefined ? message : body
  if (typeof holder !== "object" || holder === null || Array.isArray(holder)) return full(input)
  const key = field ?? kind
  const entries = (holder as Record<string, unknown>)[key]
  if (!allWireEntries(entries)) return full(input)
  const without = field === undefined
    ? { ...message, [kind]: [] }
    : { ...message, [kind]: { ...(body as Record<string, unknown>), [field]: [] } }
  return Either.map(full(without), (decoded) => {
    const out = decoded as Record<string, unknown>
    return field === undefined
      ? { ...out, [kind]: entries }
      : { ...out, [kind]: { ...(out[kind] as Record<string, unknown>), [field]: entries } }
  })
}

const decodeSendEntries = withEntries(decoder(SendEntriesMessage), "SendEntries")

// The schema checks the count only after every element: a message of a million tiny fakes is
// refused on its length first.
const sendEntries: Member = (input) => {
  const entries = (input as { readonly SendEntries?: unknown }).SendEntries
  if (!Array.isArray(entries) || entries.length <= MAX_SEND_ENTRIES) return decodeSendEntries(input)
  const issue = new ParseResult.Type(SendEntriesMessage.fields.SendEntries.ast, entries, `at most ${MAX_SEND_ENTRIES} entries in one message, got ${entries.length}`)
  return Either.left(new ParseResult.ParseError({ issue: new ParseResult.Pointer("SendEntries", input, issue) }))
}

const requestMembers: Record<string, Member> = {
  Handshake: decoder(HandshakeMessage),
  SyncTree: decoder(SyncTreeMessage),
  SendEntries: sendEntries
}

const responseMembers: Record<string, Member> = {
  Handshake: decoder(HandshakeReply),
  Bootstrap: withEntries(decoder(BootstrapReply), "Bootstrap", "all_entries"),
  Incremental: withEntries(decoder(IncrementalReply), "Incremental", "missing_entries"),
  BootstrapPending: decoder(BootstrapPendingReply),
  Count: decoder(CountReply),
  Error: decoder(ErrorReply)
}

const decodeTagged = <A>(
  input: unknown,
  what: "request" | "response",
  members: Record<string, Member>
): Effect.Effect<A, MalformedMessage> => decodeTaggedEither<A>(input, what, members)

