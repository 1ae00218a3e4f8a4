/**
 * Compile the TypeScript the benchmarks run into plain JavaScript under `.build/` (esbuild, one file
 * at a time, no bundling, no type check), so `npm run bench` measures the engine as a bundler ships
 * it rather than through the tsx development loader (whose per-closure `__name` wrappers cost about
 * a fifth of a commit). `.mjs` files are copied as they are.
 */
import { transform } from "esbuild"
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const out = join(root, ".build")
const roots = ["src", "bench", "test/fixtures"]

const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? (d.name === "tmp" ? [] : walk(join(dir, d.name))) : [join(dir, d.name)]
  )

rmSync(out, { recursive: true, force: true })
const files = roots.flatMap((r) => walk(join(root, r)))
await Promise.all(
  files.map(async (file) => {
    const target = join(out, relative(root, file))
    mkdirSync(dirname(target), { recursive: true })
    if (file.endsWith(".mjs")) return copyFileSync(file, target)
    if (!file.endsWith(".ts")) return
    const { code } = await transform(readFileSync(file, "utf8"), {
      loader: "ts",
      format: "esm",
      platform: "node",
      target: "node20",
      sourcefile: file
    })
    writeFileSync(target.replace(/\.ts$/, ".js"), code)
  })
)
