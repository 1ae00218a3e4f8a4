/**
 * How a protocol message is decoded: on its one key first (an unknown kind or a bad field gets a
 * short, precise message, not a union's report of every member), its body's `null` fields read as
 * absent (serde's `None`), nesting bounded before anything recurses through it, and a refusal
 * worded in one line per problem (`Kind.field[index]: what was wrong`). Total: nothing a peer sends
 * makes it throw. The messages themselves are `Protocol.ts`.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { MalformedMessage } from "./Errors.js"

/**
 * How deeply a message may nest arrays and objects. The protocol's own messages nest four deep; a
 * far deeper value (20 KB of `[` is 10,000 levels) would overflow the stack of anything that
 * recurses through it, the schema's error formatter first, so it is refused before decoding.
 */
export const MAX_MESSAGE_DEPTH = 64

/** How one kind of message is decoded. */
export type Member = (input: unknown) => Either.Either<unknown, ParseResult.ParseError>

/** A kind's decoder from its schema: fields a struct does not know are dropped, as serde ignores them (a later protocol version may add some). */
export const decoder = <A, I>(schema: Schema.Schema<A, I>): Member =>
  Schema.decodeUnknownEither(schema, { onExcessProperty: "ignore", errors: "first" })

/**
 * Decode a message of one of the kinds of `members` (a request's or a response's). Total: whatever
 * throws below (the formatter on a pathological value, a getter of an in-process object) makes a
 * malformed message too, never an exception in the caller (a socket callback).
 */
export const decodeTaggedEither = <A>(
  input: unknown,
  what: "request" | "response",
  members: Record<string, Member>
): Either.Either<A, MalformedMessage> => {
  try {
    return dispatch<A>(input, what, members)
  } catch {
    return Either.left(new MalformedMessage({ detail: `the ${what} could not be decoded` }))
  }
}

/**
 * The message with the `null` fields of its body left out: serde writes an absent `Option` as
 * `null`, which reads here as an absent optional field. (Done before decoding rather than with a
 * nullable schema, whose refusals would quote the whole value back.)
 */
const withoutNulls = (input: object, kind: string): unknown => {
  const message = input as Record<string, unknown>
  // a push's proof, beside its kind, is an optional field too
  if (kind === "SendEntries" && message["auth"] === null) return { SendEntries: message["SendEntries"] }
  const body = message[kind]
  if (typeof body !== "object" || body === null || Array.isArray(body)) return input
  const values = body as Record<string, unknown>
  if (!Object.keys(values).some((k) => values[k] === null)) return input
  const kept: Record<string, unknown> = {}
  for (const k of Object.keys(values)) if (values[k] !== null) kept[k] = values[k]
  return { ...message, [kind]: kept }
}

// Dispatch on the single key first, so an unknown kind or a bad field gets a short, precise
// message instead of the union's report of every member that did not match.
const dispatch = <A>(
  input: unknown,
  what: "request" | "response",
  members: Record<string, Member>
): Either.Either<A, MalformedMessage> => {
  const kinds = Object.keys(members)
  if (what === "response" && input === "Ack") return Either.right("Ack" as A)
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    return Either.left(
      new MalformedMessage({
        detail: `a ${what} must be a JSON object with exactly one of ${list(kinds, what)}, got ${describe(input)}`
      })
    )
  }
  // a push's proof sits beside its kind (see SendEntriesMessage)
  const keys = Object.keys(input).filter((k) => !(k === "auth" && what === "request" && "SendEntries" in input))
  if (keys.length !== 1) {
    return Either.left(
      new MalformedMessage({
        detail: `a ${what} must have exactly one key (${list(kinds, what)}), got ${
          keys.length === 0 ? "none" : keys.map((k) => JSON.stringify(k)).join(", ")
        }`
      })
    )
  }
  const kind = keys[0]!
  const member = Object.prototype.hasOwnProperty.call(members, kind) ? members[kind] : undefined
  if (member === undefined) {
    return Either.left(
      new MalformedMessage({
        detail: `unknown ${what} kind ${JSON.stringify(kind.slice(0, 64))} (expected ${list(kinds, what)})`
      })
    )
  }
  if (nestsDeeper(input, MAX_MESSAGE_DEPTH)) {
    return Either.left(
      new MalformedMessage({ detail: `a ${what} must not nest arrays and objects more than ${MAX_MESSAGE_DEPTH} deep` })
    )
  }
  return Either.mapBoth(member(withoutNulls(input, kind)), {
    onLeft: (error) => new MalformedMessage({ detail: formatIssues(error) }),
    onRight: (value) => value as A
  })
}

// One line per problem, `Kind.field[index]: what was wrong`, rather than the tree formatter's
// multi-line dump of every schema on the path (it can run to kilobytes for a SyncTree request).
const formatIssues = (error: ParseResult.ParseError): string => {
  try {
    return describeIssues(error)
  } catch {
    // The formatter recurses through the offending value to quote it; whatever makes it throw
    // (a value too deep for the stack), the path alone still says where the problem is.
    return `${formatPath(firstPath(error.issue))}: malformed value`
  }
}

const describeIssues = (error: ParseResult.ParseError): string => {
  const all = ParseResult.ArrayFormatter.formatErrorSync(error)
  // An optional field's union also reports "Expected undefined"; that only repeats the real problem.
  const relevant = all.filter((issue) => !issue.message.startsWith("Expected undefined"))
  const issues = relevant.length > 0 ? relevant : all
  const shown = issues.slice(0, 3).map((issue) => `${formatPath(issue.path)}: ${issue.message}`)
  const text = issues.length > 3 ? `${shown.join("; ")}; and ${issues.length - 3} more` : shown.join("; ")
  // The formatter quotes the offending value, which a hostile peer controls in size.
  return text.length > MAX_DETAIL ? `${text.slice(0, MAX_DETAIL)}…` : text
}

const MAX_DETAIL = 400

// The path to the first problem, read off the issue tree without looking at any value.
const firstPath = (issue: ParseResult.ParseIssue): Array<PropertyKey> => {
  const path: Array<PropertyKey> = []
  let current: ParseResult.ParseIssue | undefined = issue
  while (current !== undefined) {
    switch (current._tag) {
      case "Pointer":
        if (typeof current.path === "object") path.push(...current.path)
        else path.push(current.path)
        current = current.issue
        break
      case "Refinement":
      case "Transformation":
        current = current.issue
        break
      case "Composite":
        current = "_tag" in current.issues ? current.issues : current.issues[0]
        break
      default:
        current = undefined
    }
  }
  return path
}

// Whether arrays and objects nest more than `depth` deep; it stops descending at `depth`, so its
// own recursion is bounded whatever the input.
const nestsDeeper = (value: unknown, depth: number): boolean => {
  if (typeof value !== "object" || value === null) return false
  if (depth === 0) return true
  for (const child of Array.isArray(value) ? value : Object.values(value)) {
    if (nestsDeeper(child, depth - 1)) return true
  }
  return false
}

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path
    .map((key, i) =>
      typeof key === "number" ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`
    )
    .join("")

const list = (kinds: ReadonlyArray<string>, what: "request" | "response"): string =>
  (what === "response" ? [...kinds, "\"Ack\""] : kinds).join(", ")

const describe = (input: unknown): string =>
  input === null ? "null" : Array.isArray(input) ? "an array" : `a ${typeof input}`
