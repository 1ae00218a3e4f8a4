import { describe, expect, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import { base32 } from "multiformats/bases/base32"
import { base32Multibase } from "../../../src/core/internal/Base32.js"

describe("base32Multibase", () => {
  it("is multiformats' base32.encode, for bytes of every length up to 80 and each byte value", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        expect(base32Multibase(bytes)).toBe(base32.encode(bytes))
      }),
      { numRuns: 2_000 }
    )
    for (let b = 0; b < 256; b++) expect(base32Multibase(Uint8Array.of(b, 255 - b, b))).toBe(base32.encode(Uint8Array.of(b, 255 - b, b)))
  })
})
