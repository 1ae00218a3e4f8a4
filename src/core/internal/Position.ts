/**
 * The rational positions of List slots (reference §1.5): exact arithmetic on numerator/denominator
 * pairs kept reduced and within 2^53, the reference's midpoint and append rules, and the total
 * order (value, then unique id). Separate from `Doc.ts` because it is plain number work that
 * needs neither container; `Doc.ts` re-exports `Position` and `comparePositions`.
 */

/** A list slot's position: a rational number (denominator > 0, kept reduced) with a unique-id tie-break. */
export interface Position {
  numerator: number
  denominator: number
  unique_id: string
}

/** Plain code-unit string order: the unique-id tie-break (UUIDs in lower-case hex, so their byte order too). */
const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

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

/** The reduced, frozen position numerator/denominator; RangeError when either leaves 2^53. */
export const makePosition = (numerator: bigint, denominator: bigint, uniqueId: string): Position => {
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
export const between = (left: Position, right: Position, uniqueId: string): Position => {
  const L = BigInt(left.numerator) * BigInt(right.denominator)
  const R = BigInt(right.numerator) * BigInt(left.denominator)
  const D = BigInt(left.denominator) * BigInt(right.denominator)
  const mid = (L + R) / 2n // truncates toward zero, as Rust's i128 division
  return mid === L || mid === R ? makePosition(L + R, D * 2n, uniqueId) : makePosition(mid, D, uniqueId)
}

/** The position after `last`: last.numerator+1 over 1 (or ⌊last⌋+1 when that would not be after it). */
export const after = (last: Position, uniqueId: string): Position => {
  const candidate = makePosition(BigInt(last.numerator) + 1n, 1n, uniqueId)
  if (compareRational(candidate, last) > 0) return candidate
  const n = BigInt(last.numerator)
  const d = BigInt(last.denominator)
  let q = n / d
  if (n < 0n && q * d !== n) q -= 1n
  return makePosition(q + 1n, 1n, uniqueId)
}
