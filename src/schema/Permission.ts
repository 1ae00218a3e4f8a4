/**
 * Permissions: Admin(n) | Write(n) | Read, where a lower number means more authority.
 */
import * as Schema from "effect/Schema"

/** The stored shape of a permission, `{ type, priority? }`, as in `_settings.auth`. */
export const Permission = Schema.Union(
  Schema.Struct({ type: Schema.Literal("Admin"), priority: Schema.Number.pipe(Schema.int(), Schema.nonNegative()) }),
  Schema.Struct({ type: Schema.Literal("Write"), priority: Schema.Number.pipe(Schema.int(), Schema.nonNegative()) }),
  Schema.Struct({ type: Schema.Literal("Read") })
)
/** A permission value. */
export type Permission = typeof Permission.Type

const MAX = 0xffffffff

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
