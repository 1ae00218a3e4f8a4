/**
 * The Doc and List CRDTs (reference §1.3, §1.5): nested maps with tombstones, rational-position lists,
 * the reference's merge rules and its externally tagged serde JSON. Pure and deterministic: no I/O,
 * no randomness (list unique ids are passed in by callers).
 *
 * Ownership: a Doc or List owns every Doc/List stored inside it. `set`/`push`/`insert` and the
 * merges clone the Doc/List values they are given, so no two containers ever share a mutable part.
 * `get` returns the stored child itself, so `doc.get("a")` can be edited in place. The one exception
 * is `mergeSharing`, for immutable states: its result shares the parts a delta leaves untouched.
 */

/** The tombstone marker: a key or list slot holding it is deleted (and hidden by readers). */
export const Deleted: unique symbol = Symbol.for("eidetica/Deleted")
/** The type of the tombstone marker. */
export type Deleted = typeof Deleted

/** A CRDT value: a scalar, a nested Doc or List, or a tombstone. */
export type Value = null | boolean | number | string | Doc | List | Deleted

/** Plain JSON-like data, as accepted by `Doc.from`/`set` and produced by `toJSON`. */
export type Plain = null | boolean | number | string | ReadonlyArray<Plain> | { readonly [k: string]: Plain }

/** A list slot's position: a rational number (denominator > 0, kept reduced) with a unique-id tie-break. */
export interface Position {
  numerator: number
  denominator: number
  unique_id: string
}

/** Malformed serialized Doc data; `path` names where (e.g. `children.a.Doc.children.b`). */
export class DocFormatError extends Error {
  /** Tag for discriminating this error among others. */
  readonly _tag = "DocFormatError" as const
  constructor(
    readonly path: string,
    readonly reason: string
  ) {
    super(`${path === "" ? "(root)" : path}: ${reason}`)
    this.name = "DocFormatError"
  }
}

/**
 * The most arrays and objects a Doc's JSON may nest, as the reference's serde_json reads it (its
 * recursion limit of 128): about 40 levels of nested maps. Deeper data is malformed, however it
 * arrives, and a commit refuses to write it, so every replica agrees on which entries are valid
 * whatever its call stack.
 */
export const MAX_JSON_DEPTH = 127

/** True when the value is the tombstone marker. */
export const isDeleted = (value: unknown): value is Deleted => value === Deleted

// ---------------------------------------------------------------------------------------------
// Conversion of plain data

const isPlainObject = (u: object): boolean => {
  const proto = Object.getPrototypeOf(u)
  return proto === Object.prototype || proto === null
}

const toValue = (input: unknown, where: string, ancestors: Set<object>): Value => {
  switch (typeof input) {
    case "string":
    case "boolean":
      return input
    case "number":
      if (!Number.isFinite(input)) throw new TypeError(`${where}: numbers must be finite, got ${input}`)
      return input === 0 ? 0 : input // normalises -0
    case "symbol":
      if (input === Deleted) return Deleted
      throw new TypeError(`${where}: symbols other than Deleted are not values`)
    case "undefined":
      throw new TypeError(`${where}: undefined is not a value`)
    case "function":
      throw new TypeError(`${where}: functions are not values`)
    case "bigint":
      throw new TypeError(`${where}: bigints are not values`)
    case "object": {
      if (input === null) return null
      if (input instanceof Doc) return input.clone()
      if (input instanceof List) return input.clone()
      if (ancestors.has(input)) throw new TypeError(`${where}: cyclic structure`)
      ancestors.add(input)
      try {
        if (Array.isArray(input)) return listFromArray(input, where, ancestors)
        if (!isPlainObject(input)) throw new TypeError(`${where}: only plain objects and arrays are accepted`)
        return docFromObject(input as { readonly [k: string]: unknown }, where, ancestors)
      } finally {
        ancestors.delete(input)
      }
    }
  }
  throw new TypeError(`${where}: unsupported value`)
}

const docFromObject = (obj: { readonly [k: string]: unknown }, where: string, ancestors: Set<object>): Doc => {
  const doc = new Doc()
  for (const key of Object.keys(obj)) {
    doc["children"].set(key, toValue(obj[key], where === "" ? key : `${where}.${key}`, ancestors))
  }
  return doc
}

/** The deterministic unique id `Doc.from` gives the i-th element of a plain array (UUID-shaped). */
export const indexUniqueId = (index: number): string =>
  `00000000-0000-0000-0000-${index.toString(16).padStart(12, "0")}`

const listFromArray = (arr: ReadonlyArray<unknown>, where: string, ancestors: Set<object>): List => {
  const list = new List()
  for (let i = 0; i < arr.length; i++) {
    list["items"].push({
      pos: makePosition(BigInt(i), 1n, indexUniqueId(i)),
      value: toValue(arr[i], `${where}[${i}]`, ancestors)
    })
  }
  return list
}

const fromInput = (input: unknown, where: string): Value => toValue(input, where, new Set())

/**
 * Check that `input` is plain data as `Doc.from` reads it (finite numbers, strings, booleans, null,
 * plain objects and arrays, no cycles); TypeError naming where otherwise.
 */
export const checkPlain = (input: unknown, where: string): void => void fromInput(input, where)

// ---------------------------------------------------------------------------------------------
// Value helpers

const cloneValue = (v: Value): Value => (v instanceof Doc || v instanceof List ? v.clone() : v)

/**
 * Merges `other` into the slot value `self` (undefined = absent), mutating `self` when it is a
 * container, and returns the slot's new value. Never aliases mutable parts of `other`.
 */
const mergeValueInPlace = (self: Value | undefined, other: Value): Value => {
  if (self === undefined || self === Deleted) return cloneValue(other) // absent / resurrection
  if (other === Deleted) return Deleted // the tombstone wins
  if (other instanceof Doc) {
    if (self instanceof Doc) {
      self.mergeInPlace(other)
      return self
    }
    return other.clone()
  }
  if (other instanceof List) {
    if (self instanceof List) {
      self.mergeInPlace(other)
      return self
    }
    return other.clone()
  }
  return other // later-applied wins
}

/** `mergeValueInPlace` for `Doc.mergeSharing`: a new value, sharing what `other` does not touch. */
const mergeValueSharing = (self: Value | undefined, other: Value, copied: { slots: number } | undefined): Value => {
  if (self instanceof Doc && other instanceof Doc) return self.mergeSharing(other, copied)
  const next = mergeValueInPlace(self instanceof List ? self.clone() : self, other)
  if (copied !== undefined && (next instanceof Doc || next instanceof List)) copied.slots += next.slots()
  return next
}

/** Pure `Value.merge` of the reference: neither input changes. */
export const mergeValues = (self: Value, other: Value): Value => mergeValueInPlace(cloneValue(self), other)

/** Structural equality of two values (tombstones, atomic flags and list positions included). */
export const valueEquals = (a: Value, b: Value): boolean => {
  if (a instanceof Doc) return b instanceof Doc && a.equals(b)
  if (a instanceof List) return b instanceof List && a.equals(b)
  return a === b
}

const toPlain = (v: Value): Plain => {
  if (v instanceof Doc) return v.toJSON()
  if (v instanceof List) return v.toJSON()
  if (v === Deleted) return null // callers filter tombstones before getting here
  return v
}

/** Defines a key on a plain object without ever touching the prototype (safe for "__proto__"). */
const defineKey = (obj: { [k: string]: Plain }, key: string, value: Plain): void => {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
}

const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

// ---------------------------------------------------------------------------------------------
// Positions

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

const bigGcd = (a: bigint, b: bigint): bigint => {
  a = a < 0n ? -a : a
  while (b !== 0n) {
    const t = a % b
    a = b
    b = t
  }
  return a
}

const makePosition = (numerator: bigint, denominator: bigint, uniqueId: string): Position => {
  const g = bigGcd(numerator, denominator)
  const n = g > 1n ? numerator / g : numerator
  const d = g > 1n ? denominator / g : denominator
  if (n > MAX_SAFE || n < -MAX_SAFE || d > MAX_SAFE) {
    throw new RangeError("list position precision exhausted (numerator or denominator beyond 2^53)")
  }
  return Object.freeze({ numerator: Number(n), denominator: Number(d), unique_id: uniqueId })
}

const compareRational = (a: Position, b: Position): number => {
  if (a.denominator === b.denominator) {
    return a.numerator < b.numerator ? -1 : a.numerator > b.numerator ? 1 : 0
  }
  const l = a.numerator * b.denominator
  const r = b.numerator * a.denominator
  if (Number.isSafeInteger(l) && Number.isSafeInteger(r)) return l < r ? -1 : l > r ? 1 : 0
  const L = BigInt(a.numerator) * BigInt(b.denominator)
  const R = BigInt(b.numerator) * BigInt(a.denominator)
  return L < R ? -1 : L > R ? 1 : 0
}

/** The total order of list positions: by rational value, then by unique id (plain string order). */
export const comparePositions = (a: Position, b: Position): number =>
  compareRational(a, b) || compareStrings(a.unique_id, b.unique_id)

/** The reference's midpoint between two positions, doubling the denominator when needed. */
const between = (left: Position, right: Position, uniqueId: string): Position => {
  const L = BigInt(left.numerator) * BigInt(right.denominator)
  const R = BigInt(right.numerator) * BigInt(left.denominator)
  const D = BigInt(left.denominator) * BigInt(right.denominator)
  const mid = (L + R) / 2n // truncates toward zero, as Rust's i128 division
  return mid === L || mid === R ? makePosition(L + R, D * 2n, uniqueId) : makePosition(mid, D, uniqueId)
}

/** The position after `last`: last.numerator+1 over 1 (or ⌊last⌋+1 when that would not be after it). */
const after = (last: Position, uniqueId: string): Position => {
  const candidate = makePosition(BigInt(last.numerator) + 1n, 1n, uniqueId)
  if (compareRational(candidate, last) > 0) return candidate
  const n = BigInt(last.numerator)
  const d = BigInt(last.denominator)
  let q = n / d
  if (n < 0n && q * d !== n) q -= 1n
  return makePosition(q + 1n, 1n, uniqueId)
}

// ---------------------------------------------------------------------------------------------
// Doc

/** A key must be a string: anything else would be written as JSON no replica can read. */
const checkKey = (key: string): void => {
  if (typeof key !== "string") throw new TypeError(`a key must be a string, got ${describeInput(key)}`)
}

const describeInput = (u: unknown): string => (u === null ? "null" : Array.isArray(u) ? "an array" : typeof u)

const splitPath = (path: string): string[] | undefined => {
  if (typeof path !== "string") throw new TypeError(`a path must be a dotted string such as "a.b", got ${describeInput(path)}`)
  if (path === "") return undefined
  const parts = path.split(".")
  return parts.some((p) => p === "") ? undefined : parts
}

const requirePath = (path: string): string[] => {
  const parts = splitPath(path)
  if (parts === undefined) {
    throw new TypeError(`invalid path ${JSON.stringify(path)}: components must be non-empty and dot-separated`)
  }
  return parts
}

/** A CRDT map from string keys to values, with tombstones and the reference's merge rules. */
export class Doc {
  /** The children, tombstones included; owned by this Doc (module code reaches it as `doc["children"]`). */
  private children: Map<string, Value> = new Map()
  /** Whole-replacement flag (`_a`): merging an atomic Doc replaces the target instead of merging into it. */
  atomic = false

  /** A new empty, non-atomic Doc. */
  static empty(): Doc {
    return new Doc()
  }

  /** Converts plain data: objects → Doc, arrays → List (positions i/1, deterministic ids); throws TypeError on non-data. */
  static from(plain: { readonly [k: string]: unknown }): Doc {
    if (typeof plain !== "object" || plain === null || Array.isArray(plain) || !isPlainObject(plain)) {
      throw new TypeError("Doc.from expects a plain object")
    }
    return docFromObject(plain, "", new Set([plain]))
  }

  /** The live value at `key` (undefined when absent or tombstoned). */
  get(key: string): Value | undefined {
    const v = this.children.get(key)
    return v === Deleted ? undefined : v
  }

  /** The live value at a dotted path "a.b.c" (undefined when absent, tombstoned or not reachable through Docs). */
  getPath(path: string): Value | undefined {
    const parts = splitPath(path)
    if (parts === undefined) return undefined
    let cur: Doc = this
    for (let i = 0; i < parts.length - 1; i++) {
      const next = cur.children.get(parts[i]!)
      if (!(next instanceof Doc)) return undefined
      cur = next
    }
    return cur.get(parts[parts.length - 1]!)
  }

  /** True when `key` holds a live value. */
  has(key: string): boolean {
    const v = this.children.get(key)
    return v !== undefined && v !== Deleted
  }

  /** Sets `key` (plain objects/arrays are converted as in `from`; Docs/Lists are cloned). */
  set(key: string, value: Value | Plain): this {
    checkKey(key)
    this.children.set(key, fromInput(value, key))
    return this
  }

  /** Sets a dotted path, creating intermediate Docs and replacing non-Docs (scalars, tombstones, lists) in the way. */
  setPath(path: string, value: Value | Plain): this {
    const parts = requirePath(path)
    const converted = fromInput(value, path)
    let cur: Doc = this
    for (let i = 0; i < parts.length - 1; i++) {
      const key = parts[i]!
      const next = cur.children.get(key)
      if (next instanceof Doc) {
        cur = next
      } else {
        const created = new Doc()
        cur.children.set(key, created)
        cur = created
      }
    }
    cur.children.set(parts[parts.length - 1]!, converted)
    return this
  }

  /** Writes the tombstone at `key` (whether or not it held a value, so deltas carry the deletion). */
  remove(key: string): this {
    checkKey(key)
    this.children.set(key, Deleted)
    return this
  }

  /** Writes the tombstone at a dotted path, creating intermediate Docs as `setPath` does. */
  removePath(path: string): this {
    return this.setPath(path, Deleted)
  }

  /** Live keys, sorted (plain code-unit order). */
  keys(): string[] {
    const out: string[] = []
    for (const [k, v] of this.children) if (v !== Deleted) out.push(k)
    return out.sort(compareStrings)
  }

  /** Every child including tombstones (read only; do not mutate). */
  rawEntries(): ReadonlyMap<string, Value> {
    return this.children
  }

  /** Number of live keys. */
  get size(): number {
    let n = 0
    for (const v of this.children.values()) if (v !== Deleted) n++
    return n
  }

  /** True when there are no children at all (tombstones count as content; the atomic flag does not). */
  isEmpty(): boolean {
    return this.children.size === 0
  }

  /** Plain JS: Doc → object, List → array of live values; tombstones hidden. */
  toJSON(): { [k: string]: Plain } {
    const out: { [k: string]: Plain } = {}
    for (const k of this.keys()) defineKey(out, k, toPlain(this.children.get(k)!))
    return out
  }

  /** Slots in this Doc and in everything nested in it, tombstones included: what `clone` copies. */
  slots(): number {
    let n = this.children.size
    for (const v of this.children.values()) if (v instanceof Doc || v instanceof List) n += v.slots()
    return n
  }

  /** Deep copy. */
  clone(): Doc {
    const copy = new Doc()
    copy.atomic = this.atomic
    for (const [k, v] of this.children) copy.children.set(k, cloneValue(v))
    return copy
  }

  /** Pure merge (reference `Doc.merge`): returns a new Doc, neither input changes. */
  merge(other: Doc): Doc {
    const result = this.clone()
    result.mergeInPlace(other)
    return result
  }

  /**
   * Pure merge that shares with this Doc every part `other` does not touch: the result is new, and
   * so is each map on the way to a change (shallow copies), but untouched children are this Doc's own.
   * Neither may be mutated afterwards: it is for immutable states (the pinned settings cache) and
   * results read once. Costs the size of `other` plus the widths of the maps on its paths, where
   * `merge` copies all of this Doc. `copied`, when given, is increased by the slots it copied.
   */
  mergeSharing(other: Doc, copied?: { slots: number }): Doc {
    if (other.atomic || other === this) {
      const result = this.merge(other)
      if (copied !== undefined) copied.slots += result.slots()
      return result
    }
    const result = new Doc()
    result.atomic = this.atomic
    result.children = new Map(this.children)
    if (copied !== undefined) copied.slots += this.children.size
    for (const [k, v] of other.children) {
      const cur = this.children.get(k)
      const next = mergeValueSharing(cur, v, copied)
      if (next !== cur) result.children.set(k, next)
    }
    return result
  }

  /** Merges `other` into this Doc in O(size of other); clones everything it takes from `other`. */
  mergeInPlace(other: Doc): void {
    if (other === this) other = other.clone()
    if (other.atomic) {
      const replaced = other.clone()
      this.children = replaced.children
      this.atomic = true
      return
    }
    for (const [k, v] of other.children) {
      const cur = this.children.get(k)
      const next = mergeValueInPlace(cur, v)
      if (next !== cur) this.children.set(k, next)
    }
  }

  /** The reference's serde JSON with children keys sorted (deterministic). */
  serialize(): string {
    const parts: string[] = []
    try {
      writeDoc(this, parts, 1)
    } catch (e) {
      if (e instanceof TooDeep) throw new DocFormatError(e.keys.reverse().join("."), tooDeep)
      throw e
    }
    return parts.join("")
  }

  /** Parses the serde JSON; throws DocFormatError naming the bad path on anything malformed. */
  static deserialize(json: string): Doc {
    return guard(() => {
      if (typeof json !== "string") throw new DocFormatError("", "expected a JSON string")
      let parsed: unknown
      try {
        parsed = JSON.parse(json)
      } catch (e) {
        throw new DocFormatError("", `invalid JSON: ${e instanceof Error ? e.message : String(e)}`)
      }
      return readDoc(parsed, undefined, 1)
    })
  }

  /** UTF-8 bytes of `serialize()`. */
  encode(): Uint8Array {
    return textEncoder.encode(this.serialize())
  }

  /** Decodes UTF-8 serde JSON bytes; throws DocFormatError (only) on malformed input. */
  static decode(bytes: Uint8Array): Doc {
    return guard(() => {
      if (!(bytes instanceof Uint8Array)) throw new DocFormatError("", "expected bytes")
      let text: string
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(bytes)
      } catch {
        throw new DocFormatError("", "invalid UTF-8")
      }
      return Doc.deserialize(text)
    })
  }

  /** Structural equality including tombstones and the atomic flag. */
  equals(other: Doc): boolean {
    if (this === other) return true
    if (this.atomic !== other.atomic || this.children.size !== other.children.size) return false
    for (const [k, v] of this.children) {
      const w = other.children.get(k)
      if (w === undefined || !valueEquals(v, w)) return false
    }
    return true
  }
}

// ---------------------------------------------------------------------------------------------
// List

interface Item {
  readonly pos: Position
  value: Value
}

/** A CRDT list: values keyed by rational positions, tombstoned on removal, merged as a union by position. */
export class List {
  /** Slots sorted by position, tombstones included; owned by this List (module code uses `list["items"]`). */
  private items: Item[] = []

  /** A new empty List. */
  static empty(): List {
    return new List()
  }

  /** Converts a plain array as `Doc.from` does (positions i/1, deterministic ids). */
  static from(values: ReadonlyArray<unknown>): List {
    if (!Array.isArray(values)) throw new TypeError("List.from expects an array")
    return listFromArray(values, "", new Set([values]))
  }

  /** Number of live items. */
  get length(): number {
    let n = 0
    for (const it of this.items) if (it.value !== Deleted) n++
    return n
  }

  private slotOf(index: number): number {
    if (!Number.isInteger(index) || index < 0) return -1
    let live = 0
    for (let i = 0; i < this.items.length; i++) {
      if (this.items[i]!.value === Deleted) continue
      if (live === index) return i
      live++
    }
    return -1
  }

  private search(pos: Position): { found: boolean; at: number } {
    let lo = 0
    let hi = this.items.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const c = comparePositions(this.items[mid]!.pos, pos)
      if (c === 0) return { found: true, at: mid }
      if (c < 0) lo = mid + 1
      else hi = mid
    }
    return { found: false, at: lo }
  }

  private place(pos: Position, value: Value): void {
    const { found, at } = this.search(pos)
    if (found) this.items[at]!.value = value
    else this.items.splice(at, 0, { pos, value })
  }

  /** The live item at `index` (undefined when out of range). */
  get(index: number): Value | undefined {
    const slot = this.slotOf(index)
    return slot < 0 ? undefined : this.items[slot]!.value
  }

  /** Appends at position last.numerator+1 over 1 (0/1 when empty). */
  push(value: Value | Plain, uniqueId: string): this {
    const converted = fromInput(value, "push")
    const last = this.items[this.items.length - 1]
    const pos = last === undefined ? makePosition(0n, 1n, uniqueId) : after(last.pos, uniqueId)
    this.place(pos, converted)
    return this
  }

  /** Inserts before the live item at `index` (0 ≤ index ≤ length) at a midpoint position; RangeError otherwise. */
  insert(index: number, value: Value | Plain, uniqueId: string): this {
    const len = this.length
    if (!Number.isInteger(index) || index < 0 || index > len) {
      throw new RangeError(`list index ${index} out of range 0..${len}`)
    }
    if (index === len) return this.push(value, uniqueId)
    const converted = fromInput(value, "insert")
    let pos: Position
    if (index === 0) {
      const first = this.items[0]!.pos
      pos = makePosition(BigInt(first.numerator) - 1n, BigInt(first.denominator), uniqueId)
    } else {
      const leftSlot = this.slotOf(index - 1)
      pos = between(this.items[leftSlot]!.pos, this.items[leftSlot + 1]!.pos, uniqueId)
    }
    this.place(pos, converted)
    return this
  }

  /** Tombstones the live item at `index`; RangeError when out of range. */
  remove(index: number): this {
    const slot = this.slotOf(index)
    if (slot < 0) throw new RangeError(`list index ${index} out of range`)
    this.items[slot]!.value = Deleted
    return this
  }

  /** Replaces the live item at `index` (keeping its position); RangeError when out of range. */
  set(index: number, value: Value | Plain): this {
    const slot = this.slotOf(index)
    if (slot < 0) throw new RangeError(`list index ${index} out of range`)
    this.items[slot]!.value = fromInput(value, `[${index}]`)
    return this
  }

  /** Live values in order. */
  toArray(): Value[] {
    const out: Value[] = []
    for (const it of this.items) if (it.value !== Deleted) out.push(it.value)
    return out
  }

  /** Plain array of live values. */
  toJSON(): Plain[] {
    return this.toArray().map(toPlain)
  }

  /** Every slot in position order, tombstones included (read only). */
  rawEntries(): ReadonlyArray<readonly [Position, Value]> {
    return this.items.map((it) => [it.pos, it.value] as const)
  }

  /** Slots in this List and in everything nested in it, tombstones included: what `clone` copies. */
  slots(): number {
    let n = this.items.length
    for (const it of this.items) if (it.value instanceof Doc || it.value instanceof List) n += it.value.slots()
    return n
  }

  /** Deep copy. */
  clone(): List {
    const copy = new List()
    copy.items = this.items.map((it) => ({ pos: it.pos, value: cloneValue(it.value) }))
    return copy
  }

  /** Pure merge: union by position, values at the same position merged; returns a new List. */
  merge(other: List): List {
    const result = this.clone()
    result.mergeInPlace(other)
    return result
  }

  /** Merges `other` into this List; clones everything it takes from `other`. */
  mergeInPlace(other: List): void {
    if (other === this) other = other.clone()
    const theirs = other.items
    if (theirs.length <= 8) {
      for (const it of theirs) {
        const { found, at } = this.search(it.pos)
        if (found) this.items[at]!.value = mergeValueInPlace(this.items[at]!.value, it.value)
        else this.items.splice(at, 0, { pos: it.pos, value: cloneValue(it.value) })
      }
      return
    }
    const mine = this.items
    const out: Item[] = []
    let i = 0
    let j = 0
    while (i < mine.length || j < theirs.length) {
      if (j >= theirs.length) out.push(mine[i++]!)
      else if (i >= mine.length) {
        const t = theirs[j++]!
        out.push({ pos: t.pos, value: cloneValue(t.value) })
      } else {
        const c = comparePositions(mine[i]!.pos, theirs[j]!.pos)
        if (c < 0) out.push(mine[i++]!)
        else if (c > 0) {
          const t = theirs[j++]!
          out.push({ pos: t.pos, value: cloneValue(t.value) })
        } else {
          const m = mine[i++]!
          m.value = mergeValueInPlace(m.value, theirs[j++]!.value)
          out.push(m)
        }
      }
    }
    this.items = out
  }

  /** Structural equality: same positions (value and id) holding equal values, tombstones included. */
  equals(other: List): boolean {
    if (this === other) return true
    if (this.items.length !== other.items.length) return false
    for (let i = 0; i < this.items.length; i++) {
      const a = this.items[i]!
      const b = other.items[i]!
      if (comparePositions(a.pos, b.pos) !== 0 || !valueEquals(a.value, b.value)) return false
    }
    return true
  }
}

// ---------------------------------------------------------------------------------------------
// Serialization

const textEncoder = new TextEncoder()

/**
 * Thrown by the writer past MAX_JSON_DEPTH, with the path the reader would name: innermost key first,
 * each level on the way out adding its own.
 */
class TooDeep {
  constructor(readonly keys: Array<string> = []) {}
}

/** `depth` counts the arrays and objects enclosing the value written, itself included (as the reader). */
const writeDoc = (doc: Doc, out: string[], depth: number): void => {
  if (depth > MAX_JSON_DEPTH) throw new TooDeep()
  if (depth + 1 > MAX_JSON_DEPTH) throw new TooDeep(["children"])
  out.push(doc.atomic ? `{"_a":true,"children":{` : `{"children":{`)
  const keys = [...doc["children"].keys()].sort(compareStrings)
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
