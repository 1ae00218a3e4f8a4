/**
 * Permissions: Admin(n) | Write(n) | Read, where a lower number means more authority.
 */
import * as Schema from "effect/Schema"

/** The largest priority: priorities are the reference's u32. */
export const MAX_PRIORITY = 0xffffffff
const MAX = MAX_PRIORITY

/**
 * Whether a value is a valid priority: an integer from 0 (the most authority) to MAX_PRIORITY. A
 * plain check, as every key of `_settings.auth` is read with it (the schema's `is` costs ~20x more).
 */
export const isPriority = (value: unknown): value is number =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_PRIORITY

/** A priority, as the schemas decode it. */
const Priority = Schema.Number.pipe(
  Schema.filter(isPriority, { message: () => `a priority is an integer from 0 to ${MAX_PRIORITY}` })
)

/** The stored shape of a permission, `{ type, priority? }`, as in `_settings.auth`. */
export const Permission = Schema.Union(
  Schema.Struct({ type: Schema.Literal("Admin"), priority: Priority }),
  Schema.Struct({ type: Schema.Literal("Write"), priority: Priority }),
  Schema.Struct({ type: Schema.Literal("Read") })
)
/** A permission value. */
export type Permission = typeof Permission.Type

/** Admin with a priority (0 is the highest authority). */
export const Admin = (priority: number): Permission => ({ type: "Admin", priority })
/** Write with a priority. */
export const Write = (priority: number): Permission => ({ type: "Write", priority })
/** Read only. */
export const Read: Permission = { type: "Read" }

/** A total rank: Read < every Write < every Admin; within a class a smaller number ranks higher. */
export const rank = (p: Permission): number => {
  switch (p.type) {
    case "Read":
      return 0
    case "Write":
      return 1 + MAX - p.priority
    case "Admin":
      return 2 + 2 * MAX - p.priority
  }
}

/** Compare two permissions by authority: negative when `a` has less authority than `b`. */
export const compare = (a: Permission, b: Permission): number => rank(a) - rank(b)

/** Whether `held` grants at least the authority of `wanted`. */
export const satisfies = (held: Permission, wanted: Permission): boolean => rank(held) >= rank(wanted)

/** Whether the permission may write data (Write or Admin). */
export const canWrite = (p: Permission): boolean => p.type !== "Read"

/** Whether the permission may change `_settings` (Admin). */
export const canAdmin = (p: Permission): boolean => p.type === "Admin"

/** A short human form, `Admin(0)`, `Write(10)`, `Read`. */
export const format = (p: Permission): string => (p.type === "Read" ? "Read" : `${p.type}(${p.priority})`)
