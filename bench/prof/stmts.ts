// Counts SQL statements executed per commit (wraps better-sqlite3 prepare/run/all).
import Sqlite from "better-sqlite3"
const counts = new Map<string, { n: number; us: number }>()
const proto = (Sqlite as unknown as { prototype: { prepare: (s: string) => unknown } }).prototype
const orig = proto.prepare
proto.prepare = function (this: unknown, s: string) {
  const st = orig.call(this, s) as Record<string, (...a: Array<unknown>) => unknown>
  for (const m of ["run", "all", "get"]) {
    const f = st[m]!
    st[m] = function (this: unknown, ...a: Array<unknown>) {
      const t = performance.now()
      try { return f.apply(this, a) } finally {
        const c = counts.get(s) ?? { n: 0, us: 0 }; c.n++; c.us += (performance.now() - t) * 1000; counts.set(s, c)
      }
    }
  }
  return st
}
await import("./commit.js")
await new Promise((r) => setTimeout(r, 100))
setTimeout(() => { for (const [s, c] of counts) console.log(c.n, (c.us / c.n).toFixed(1), "us", s.slice(0, 90).replace(/\s+/g, " ")) }, 5000)
