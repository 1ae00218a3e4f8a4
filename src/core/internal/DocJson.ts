/**
 * The reference's externally tagged serde JSON for Doc and List (reference §1.3): a deterministic
 * writer (children keys sorted) and a strict reader that names the path of anything malformed, both
 * bounded by the depth serde_json reads. Separate from `Doc.ts` so the CRDT module holds only the
 * CRDT; the Doc methods (`serialize`, `deserialize`, `encode`, `decode`) call these functions.
 *
 * Imports `Doc.ts` back (to build Docs and Lists and to reach their private parts as `doc["children"]`
 * and `list["items"]`): a cycle that is safe because neither module touches the other at load time,
 * only inside functions.
 */
import { Deleted, Doc, DocFormatError, List, type Value } from "../Doc.js"
import { compareNames } from "../../schema/Ids.js"
import { comparePositions, makePosition, type Position } from "./Position.js"

/**
 * The most arrays and objects a Doc's JSON may nest, as the reference's serde_json reads it (its
 * recursion limit of 128): about 40 levels of nested maps. Deeper data is malformed, however it
 * arrives, and a commit refuses to write it, so every replica agrees on which entries are valid
 * whatever its call stack.
 */
export const MAX_JSON_DEPTH = 127

/** The reference's serde JSON with children keys sorted as its BTreeMap sorts them (UTF-8 bytes): deterministic. */
export const serialize = (doc: Doc): string => {
  const parts: string[] = []
  try {
    writeDoc(doc, parts, 1)
  } catch (e) {
    if (e instanceof TooDeep) {
      const segments = e.keys.reverse()
      throw new DocFormatError(segments.join("."), tooDeep, dataPathOf(segments))
    }
    throw e
  }
  return parts.join("")
}

/** Parses the serde JSON; throws DocFormatError naming the bad path on anything malformed. */
export const deserialize = (json: string): Doc =>
  guard(() => {
    if (typeof json !== "string") throw new DocFormatError("", "expected a JSON string")
    let parsed: unknown
    try {
      parsed = JSON.parse(json)
    } catch (e) {
      throw new DocFormatError("", `invalid JSON: ${e instanceof Error ? e.message : String(e)}`)
    }
    return readDoc(parsed, undefined, 1)
  })

/** UTF-8 bytes of `serialize(doc)`. */
export const encode = (doc: Doc): Uint8Array => textEncoder.encode(serialize(doc))

/** Decodes UTF-8 serde JSON bytes; throws DocFormatError (only) on malformed input. */
export const decode = (bytes: Uint8Array): Doc =>
  guard(() => {
    if (!(bytes instanceof Uint8Array)) throw new DocFormatError("", "expected bytes")
    let text: string
    try {
      text = strictUtf8.decode(bytes)
    } catch {
      throw new DocFormatError("", "invalid UTF-8")
    }
    return deserialize(text)
  })

/** One strict decoder for every delta (one-shot decodes keep no state; making one each time cost as much as decoding). */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

// ---------------------------------------------------------------------------------------------
// Writer

const textEncoder = new TextEncoder()

/**
 * Thrown by the writer past MAX_JSON_DEPTH, with the path the reader would name: innermost key first,
 * each level on the way out adding its own.
 */
/**
 * The path an app wrote (`a.b[3].c`) from the serde path's segments (`children.a.Doc.children.b.
 * List.3.1…`): a Doc's key follows `children`, a list index follows `List`; the rest is the
 * encoding's own structure.
 */
const dataPathOf = (segments: ReadonlyArray<string>): string => {
  let out = ""
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]
    if (segment === "children" && i + 1 < segments.length) out += (out === "" ? "" : ".") + segments[++i]
    else if (segment === "List" && i + 1 < segments.length) {
      out += `[${segments[++i]}]`
      if (segments[i + 1] === "0" || segments[i + 1] === "1") i++ // the item's position or value
    }
  }
  return out
}

class TooDeep {
  constructor(readonly keys: Array<string> = []) {}
}

/** `depth` counts the arrays and objects enclosing the value written, itself included (as the reader). */
const writeDoc = (doc: Doc, out: string[], depth: number): void => {
  if (depth > MAX_JSON_DEPTH) throw new TooDeep()
  if (depth + 1 > MAX_JSON_DEPTH) throw new TooDeep(["children"])
  out.push(doc.atomic ? `{"_a":true,"children":{` : `{"children":{`)
  const keys = [...doc["children"].keys()].sort(compareNames)
  for (let i = 0; i < keys.length; i++) {
    if (i > 0) out.push(",")
    out.push(JSON.stringify(keys[i]!), ":")
    try {
      writeValue(doc["children"].get(keys[i]!)!, out, depth + 2)
    } catch (e) {
      if (e instanceof TooDeep) e.keys.push(keys[i]!, "children")
      throw e
    }
  }
  out.push("}}")
}

const writeValue = (v: Value, out: string[], depth: number): void => {
  if (v === null) out.push(`"Null"`)
  else if (v === Deleted) out.push(`"Deleted"`)
  else if (depth > MAX_JSON_DEPTH) throw new TooDeep()
  else if (typeof v === "boolean") out.push(v ? `{"Bool":true}` : `{"Bool":false}`)
  else if (typeof v === "number") out.push(Number.isSafeInteger(v) ? `{"Int":${v}}` : `{"Float":${JSON.stringify(v)}}`)
  else if (typeof v === "string") out.push(`{"Text":`, JSON.stringify(v), "}")
  else if (v instanceof Doc) {
    out.push(`{"Doc":`)
    try {
      writeDoc(v, out, depth + 1)
    } catch (e) {
      if (e instanceof TooDeep) e.keys.push("Doc")
      throw e
    }
    out.push("}")
  } else {
    out.push(`{"List":[`)
    const items = v["items"]
    // the array one level in; each pair two, its position and value three
    if (depth + 1 > MAX_JSON_DEPTH) throw new TooDeep(["List"])
    if (items.length > 0 && depth + 2 > MAX_JSON_DEPTH) throw new TooDeep(["0", "List"])
    if (items.length > 0 && depth + 3 > MAX_JSON_DEPTH) throw new TooDeep(["0", "0", "List"])
    for (let i = 0; i < items.length; i++) {
      const { pos, value } = items[i]!
      if (i > 0) out.push(",")
      out.push(
        `[{"numerator":${pos.numerator},"denominator":${pos.denominator},"unique_id":`,
        JSON.stringify(pos.unique_id),
        "},"
      )
      try {
        writeValue(value, out, depth + 3)
      } catch (e) {
        if (e instanceof TooDeep) e.keys.push("1", String(i), "List")
        throw e
      }
      out.push("]")
    }
    out.push("]}")
  }
}

// ---------------------------------------------------------------------------------------------
// Reader

/** Runs a decoder, turning anything that is not a DocFormatError (e.g. stack exhaustion) into one. */
const guard = <A>(f: () => A): A => {
  try {
    return f()
  } catch (e) {
    if (e instanceof DocFormatError) throw e
    throw new DocFormatError("", `undecodable input: ${e instanceof Error ? e.message : String(e)}`)
  }
}

/**
 * Where the reader is, innermost key first: each level links to the one above, so going down a
 * level costs one object, not a copy of the whole path (a path of arrays made deep input quadratic).
 */
type Path = { readonly up: Path; readonly key: string } | undefined
const down = (up: Path, key: string): Path => ({ up, key })
const pathString = (path: Path): string => {
  const keys: Array<string> = []
  for (let p = path; p !== undefined; p = p.up) keys.push(p.key)
  return keys.reverse().join(".")
}

type Json = unknown
const isObject = (u: Json): u is { readonly [k: string]: Json } =>
  typeof u === "object" && u !== null && !Array.isArray(u)
const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k)
const fail = (path: Path, reason: string): never => {
  throw new DocFormatError(pathString(path), reason)
}
const tooDeep = `nested deeper than ${MAX_JSON_DEPTH} arrays and objects`
/** `depth` is how many arrays and objects enclose the value at `path`, itself included. */
const checkDepth = (depth: number, path: Path): void => {
  if (depth > MAX_JSON_DEPTH) fail(path, tooDeep)
}

const readDoc = (u: Json, path: Path, depth: number): Doc => {
  if (!isObject(u)) return fail(path, "expected a Doc object")
  checkDepth(depth, path)
  const doc = new Doc()
  for (const key of Object.keys(u)) {
    if (key !== "children" && key !== "_a" && key !== "_v") fail(down(path, key), "unknown field")
  }
  if (hasOwn(u, "_a")) {
    const a = u["_a"]
    if (typeof a !== "boolean") fail(down(path, "_a"), "expected a boolean")
    doc.atomic = a === true
  }
  if (hasOwn(u, "_v")) {
    const v = u["_v"]
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) fail(down(path, "_v"), "expected a version number")
  }
  if (!hasOwn(u, "children")) return fail(path, "missing field children")
  const children = u["children"]
  const childrenPath = down(path, "children")
  if (!isObject(children)) return fail(childrenPath, "expected an object")
  checkDepth(depth + 1, childrenPath)
  for (const key of Object.keys(children)) {
    doc["children"].set(key, readValue(children[key], down(childrenPath, key), depth + 2))
  }
  return doc
}

const readValue = (u: Json, path: Path, depth: number): Value => {
  if (typeof u === "string") {
    if (u === "Null") return null
    if (u === "Deleted") return Deleted
    return fail(path, `unknown tag ${JSON.stringify(u)}`)
  }
  if (!isObject(u)) return fail(path, "expected a tagged value")
  checkDepth(depth, path)
  const tags = Object.keys(u)
  if (tags.length !== 1) return fail(path, "expected a tagged value")
  const tag = tags[0]!
  const body = u[tag]
  const at = down(path, tag)
  switch (tag) {
    case "Bool":
      return typeof body === "boolean" ? body : fail(at, "expected a boolean")
    case "Int":
      return typeof body === "number" && Number.isSafeInteger(body)
        ? body === 0
          ? 0
          : body
        : fail(at, "expected a safe integer")
    case "Float":
      return typeof body === "number" && Number.isFinite(body) ? (body === 0 ? 0 : body) : fail(at, "expected a finite number")
    case "Text":
      return typeof body === "string" ? body : fail(at, "expected a string")
    case "Doc":
      return readDoc(body, at, depth + 1)
    case "List":
      return readList(body, at, depth + 1)
    default:
      return fail(path, `unknown tag ${JSON.stringify(tag)}`)
  }
}

/** A List slot as the reader builds it (the shape of `list["items"]`). */
type Item = List["items"][number]

const readList = (u: Json, path: Path, depth: number): List => {
  if (!Array.isArray(u)) return fail(path, "expected an array of [position, value] pairs")
  checkDepth(depth, path)
  const read: Array<Item> = []
  let sorted = true
  for (let i = 0; i < u.length; i++) {
    const pair: Json = u[i]
    const at = down(path, String(i))
    if (!Array.isArray(pair) || pair.length !== 2) fail(at, "expected a [position, value] pair")
    checkDepth(depth + 1, at)
    const pos = readPosition((pair as Json[])[0], down(at, "0"), depth + 2)
    const value = readValue((pair as Json[])[1], down(at, "1"), depth + 2)
    if (sorted && read.length > 0 && comparePositions(read[read.length - 1]!.pos, pos) >= 0) sorted = false
    read.push({ pos, value })
  }
  const list = new List()
  if (sorted) {
    list["items"] = read
    return list
  }
  // As the reference's BTreeMap, every order is accepted and a repeated position keeps the later
  // value: one stable sort, then the last of each run of equal positions (n log n, where placing
  // each item in turn was quadratic for a list written in reverse).
  read.sort((a, b) => comparePositions(a.pos, b.pos))
  const items: Array<Item> = []
  for (let i = 0; i < read.length; i++) {
    const next = read[i + 1]
    if (next === undefined || comparePositions(read[i]!.pos, next.pos) !== 0) items.push(read[i]!)
  }
  list["items"] = items
  return list
}

const readPosition = (u: Json, path: Path, depth: number): Position => {
  if (!isObject(u)) return fail(path, "expected a position object")
  checkDepth(depth, path)
  for (const key of Object.keys(u)) {
    if (key !== "numerator" && key !== "denominator" && key !== "unique_id") fail(down(path, key), "unknown field")
  }
  const n = u["numerator"]
  const d = u["denominator"]
  const id = u["unique_id"]
  if (!hasOwn(u, "numerator") || typeof n !== "number" || !Number.isSafeInteger(n)) {
    fail(down(path, "numerator"), "expected a safe integer")
  }
  if (!hasOwn(u, "denominator") || typeof d !== "number" || !Number.isSafeInteger(d) || d <= 0) {
    fail(down(path, "denominator"), "expected a positive safe integer")
  }
  if (!hasOwn(u, "unique_id") || typeof id !== "string") fail(down(path, "unique_id"), "expected a string")
  return makePosition(BigInt(n as number), BigInt(d as number), id as string)
}
