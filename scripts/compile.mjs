/**
 * Compile the TypeScript the benchmarks run into plain JavaScript under `.build/` (as `build.mjs`
 * compiles the package: esbuild, one file at a time, no bundling, no type check), so `npm run bench`
 * measures the engine as a bundler ships it rather than through the tsx development loader (whose
 * per-closure `__name` wrappers cost about a fifth of a commit). `.mjs` files are copied as they are.
 */
import { rmSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { transpileDir } from "./build.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const out = join(root, ".build")

rmSync(out, { recursive: true, force: true })
for (const dir of ["src", "bench", "test/fixtures"]) await transpileDir(join(root, dir), join(out, dir))
