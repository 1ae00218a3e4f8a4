import { describe, expect, it } from "vitest"
import { Bounded } from "../../../src/core/internal/Bounded.js"

describe("Bounded", () => {
  it("never holds more than its bound, and keeps at least half of it once filled", () => {
    const cache = new Bounded<number, number>(100)
    for (let i = 0; i < 1_000; i++) {
      cache.set(i, i * 2)
      expect(cache.size).toBeLessThanOrEqual(100)
      if (i >= 100) expect(cache.size).toBeGreaterThanOrEqual(50)
    }
    // the newest half is always there, with its values; the oldest keys are gone
    for (let i = 950; i < 1_000; i++) expect(cache.get(i)).toBe(i * 2)
    expect(cache.get(0)).toBeUndefined()
    expect(cache.get(899)).toBeUndefined()
  })

  it("an odd or tiny bound is never exceeded (a bound under 2 counts as 2)", () => {
    for (const [max, limit] of [[3, 3], [2, 2], [1, 2], [0, 2]] as const) {
      const cache = new Bounded<number, number>(max)
      for (let i = 0; i < 20; i++) {
        cache.set(i, i)
        expect(cache.size).toBeLessThanOrEqual(limit)
        expect(cache.get(i)).toBe(i)
      }
    }
  })

  it("a key read while old is kept as new: a key used all the time is never dropped", () => {
    const cache = new Bounded<string, string>(10)
    cache.set("hot", "h")
    for (let i = 0; i < 1_000; i++) {
      cache.set(`k${i}`, "v")
      expect(cache.get("hot")).toBe("h")
    }
  })

  it("set replaces a value wherever the key is held; delete and clear forget", () => {
    const cache = new Bounded<string, number>(4)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.set("c", 3) // "a" and "b" now in the old generation
    cache.set("a", 10)
    expect(cache.get("a")).toBe(10)
    expect(cache.size).toBe(3)
    cache.delete("b")
    expect(cache.get("b")).toBeUndefined()
    cache.clear()
    expect(cache.size).toBe(0)
    expect(cache.get("a")).toBeUndefined()
  })
})
