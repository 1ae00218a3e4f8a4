/**
 * Mapping Exits and thrown values to EideticaError: a class per tag (cached), fields and cause kept,
 * defects and interruptions wrapped, FiberFailures unwrapped.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import { describe, expect, it } from "vitest"
import { errorClass, fromCause, fromUnknown, settle } from "../../src/facade/Errors.js"
import * as Errors from "../../src/schema/Errors.js"
import * as PromiseApi from "../../src/promise.js"
import { AbortError, BootstrapPending, Defect, EideticaError, PermissionDenied, StorageError } from "../../src/promise.js"

describe("facade errors", () => {
  it("a typed failure becomes its tag's class with the same message, every field and the original as cause", () => {
    const original = new Errors.BootstrapPending({ requestId: "req-1", detail: "waiting for an admin" })
    const e = fromCause(Cause.fail(original))
    expect(e).toBeInstanceOf(BootstrapPending)
    expect(e).toBeInstanceOf(EideticaError)
    expect(e).toBeInstanceOf(Error)
    expect(e._tag).toBe("BootstrapPending")
    expect(e.name).toBe("BootstrapPending")
    expect(e.message).toBe(original.message)
    expect((e as BootstrapPending).requestId).toBe("req-1")
    expect((e as BootstrapPending).detail).toBe("waiting for an admin")
    expect(e.cause).toBe(original)
  })

  it("instanceof narrows a rejection to its class's fields and literal tag (checked by the typecheck)", () => {
    const caught: unknown = fromCause(Cause.fail(new Errors.BootstrapPending({ requestId: "req-2", detail: "waiting" })))
    if (!(caught instanceof BootstrapPending)) return expect.fail("not a BootstrapPending")
    const requestId: string = caught.requestId
    const tag: "BootstrapPending" = caught._tag
    expect([requestId, tag]).toEqual(["req-2", "BootstrapPending"])
    const closed: unknown = new PromiseApi.InstanceClosed("closed")
    if (closed instanceof PromiseApi.InstanceClosed) {
      const closedTag: "InstanceClosed" = closed._tag
      expect(closedTag).toBe("InstanceClosed")
    } else expect.fail("not an InstanceClosed")
  })

  it("one class per tag, created once", () => {
    expect(errorClass("PermissionDenied")).toBe(PermissionDenied)
    expect(errorClass("SomethingNew")).toBe(errorClass("SomethingNew"))
    const e = fromCause(Cause.fail({ _tag: "SomethingNew", message: "m", extra: 1 }))
    expect(e).toBeInstanceOf(errorClass("SomethingNew"))
    expect(e).not.toBeInstanceOf(PermissionDenied)
  })

  it("every tagged error of the engine has its class exported by name from eidetica-ts/promise", () => {
    const tags = Object.entries(Errors).filter(([, value]) => typeof value === "function" && value.prototype instanceof Error)
    expect(tags.length).toBeGreaterThan(25)
    for (const [name] of tags) {
      expect((PromiseApi as Record<string, unknown>)[name], name).toBe(errorClass(name))
    }
  })

  it("a storage error keeps its own cause reachable through the original", () => {
    const sql = new Error("disk I/O error")
    const original = new Errors.StorageError({ operation: "put", cause: sql })
    const e = fromCause(Cause.fail(original))
    expect(e).toBeInstanceOf(StorageError)
    expect((e as StorageError).operation).toBe("put")
    expect(e.cause).toBe(original)
    expect((e.cause as Errors.StorageError).cause).toBe(sql)
  })

  it("defects and interruptions", () => {
    const boom = new Error("boom")
    const d = fromCause(Cause.die(boom))
    expect(d).toBeInstanceOf(Defect)
    expect(d._tag).toBe("Defect")
    expect(d.message).toBe("boom")
    expect(d.cause).toBe(boom)
    const odd = fromCause(Cause.die({ weird: true }))
    expect(odd._tag).toBe("Defect")
    expect(odd.message).toContain("weird")
    const i = fromCause(Cause.interrupt(FiberId.none))
    expect(i).toBeInstanceOf(AbortError)
    expect(i._tag).toBe("AbortError")
    // a failure wins over a defect beside it
    expect(fromCause(Cause.parallel(Cause.die(boom), Cause.fail(new Errors.PermissionDenied({ detail: "x" }))))._tag).toBe("PermissionDenied")
  })

  it("a FiberFailure is unwrapped to the failure it carries", async () => {
    let thrown: unknown
    try {
      Effect.runSync(Effect.fail(new Errors.UserNotFound({ username: "zed" })))
    } catch (e) {
      thrown = e
    }
    const e = fromUnknown(thrown)
    expect(e._tag).toBe("UserNotFound")
    expect((e as EideticaError & { username: string }).username).toBe("zed")
    await expect(settle(Exit.fail(new Errors.TreeNotFound({ treeId: "t" })))).rejects.toMatchObject({ _tag: "TreeNotFound", treeId: "t" })
    await expect(settle(Exit.succeed(1))).resolves.toBe(1)
  })
})
