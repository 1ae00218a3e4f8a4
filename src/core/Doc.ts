/**
 * The Doc and List CRDTs (reference §1.3, §1.5): nested maps with tombstones, rational-position lists
 * and the reference's merge rules. Pure and deterministic: no I/O, no randomness (list unique ids are
 * passed in by callers). The public face of the CRDT: the position arithmetic (`internal/Position.ts`)
 * and the serde JSON reader and writer (`internal/DocJson.ts`) live apart and are reached through
 * here (`comparePositions`, `MAX_JSON_DEPTH`, `serialize`/`deserialize`/`encode`/`decode`).
 *
 * Ownership: a Doc or List owns every Doc/List stored inside it. `set`/`push`/`insert` and the
 * merges clone the Doc/List values they are given, so no two containers ever share a mutable part.
 * `get` returns the stored child itself, so `doc.get("a")` can be edited in place. The one exception
 * is `mergeSharing`, for immutable states: its result shares the parts a delta leaves untouched.
 */
import * as DocJson from "./internal/DocJson.js"
import { compareNames } from "../schema/Ids.js"
import { after, between, comparePositions, makePosition, type Position } from "./internal/Position.js"

export { MAX_JSON_DEPTH } from "./internal/DocJson.js"
export { comparePositions, type Position } from "./internal/Position.js"

/** The tombstone marker: a key or list slot holding it is deleted (and hidden by readers). */
export const Deleted: unique symbol = Symbol.for("eidetica/Deleted")
/** The type of the tombstone marker. */
export type Deleted = typeof Deleted

/** A CRDT value: a scalar, a nested Doc or List, or a tombstone. */
export type Value = null | boolean | number | string | Doc | List | Deleted

/** Plain JSON-like data, as accepted by `Doc.from`/`set` and produced by `toJSON`. */
export type Plain = null | boolean | number | string | ReadonlyArray<Plain> | { readonly [k: string]: Plain }

/** Malformed serialized Doc data; `path` names where (e.g. `children.a.Doc.children.b`). */
export class DocFormatError extends Error {
  /** Tag for discriminating this error among others. */
  readonly _tag = "DocFormatError" as const
  constructor(
    readonly path: string,
    readonly reason: string,
    /** Where in the data an app wrote, as it wrote it (`a.b[3].c`), when the writer found the problem. */
    readonly dataPath?: string
  ) {
    super(`${path === "" ? "(root)" : path}: ${reason}`)
    this.name = "DocFormatError"
  }
}

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

  /** Live keys, sorted as the reference's maps are (by UTF-8 bytes). */
  keys(): string[] {
    const out: string[] = []
    for (const [k, v] of this.children) if (v !== Deleted) out.push(k)
    return out.sort(compareNames)
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
    return DocJson.serialize(this)
  }

  /** Parses the serde JSON; throws DocFormatError naming the bad path on anything malformed. */
  static deserialize(json: string): Doc {
    return DocJson.deserialize(json)
  }

  /** UTF-8 bytes of `serialize()`. */
  encode(): Uint8Array {
    return DocJson.encode(this)
  }

  /** Decodes UTF-8 serde JSON bytes; throws DocFormatError (only) on malformed input. */
  static decode(bytes: Uint8Array): Doc {
    return DocJson.decode(bytes)
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
