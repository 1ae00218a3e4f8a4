/**
 * Helpers of the facade tests: temp SQLite files, the backend matrix, and a rejection matcher that
 * checks what every rejection must be (an EideticaError with a tag and a message, never a FiberFailure).
 */
import * as Runtime from "effect/Runtime"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { expect } from "vitest"
import { type Backend, EideticaError, InMemory, Sqlite } from "../../src/promise.js"

/** A fresh temp directory, removed by `cleanup`. */
export const tempDir = (): string => Fs.mkdtempSync(Path.join(Os.tmpdir(), "eidetica-facade-"))

/** Remove a temp directory. */
export const cleanup = (dir: string): void => Fs.rmSync(dir, { recursive: true, force: true })

/** The backends every facade test runs on: memory, and a SQLite file in a temp directory. */
export const backends: ReadonlyArray<readonly [string, (dir: string) => Backend]> = [
  ["InMemory", () => new InMemory()],
  ["Sqlite", (dir) => new Sqlite(Path.join(dir, "test.db"))]
]

/** Await a rejection and check its shape; returns the error for more checks. */
export const rejection = async <E extends EideticaError = EideticaError>(
  promise: Promise<unknown>,
  tag: string,
  Class?: abstract new (...args: never) => E
): Promise<E> => {
  let thrown: unknown
  try {
    await promise
  } catch (e) {
    thrown = e
  }
  expect(thrown, `expected a rejection with ${tag}`).toBeDefined()
  expect(Runtime.isFiberFailure(thrown)).toBe(false)
  expect(thrown).toBeInstanceOf(EideticaError)
  expect(thrown).toBeInstanceOf(Error)
  const error = thrown as E
  expect(error._tag).toBe(tag)
  expect(error.name).toBe(tag)
  expect(typeof error.message).toBe("string")
  expect(error.message.length).toBeGreaterThan(0)
  if (Class !== undefined) expect(error).toBeInstanceOf(Class)
  return error
}

/** Resolve once `predicate` holds (polled), or fail after `ms`. */
export const eventually = async (predicate: () => boolean, ms = 2_000): Promise<void> => {
  const start = Date.now()
  while (!predicate()) {
    if (Date.now() - start > ms) throw new Error("condition not reached in time")
    await new Promise((r) => setTimeout(r, 5))
  }
}
