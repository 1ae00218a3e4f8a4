/**
 * Build the package as apps install it: `src/` compiled to plain JavaScript under `dist/` (esbuild,
 * one file at a time, no bundling), with declaration files from the TypeScript compiler, so an app
 * runs `eidetica-ts` on plain Node.js and type-checks against it under its own compiler options.
 * `npm ci` and `npm install` run it (the `prepare` script).
 *
 *   node scripts/build.mjs [--out <dir>] [--no-types]
 *
 * `--out` writes elsewhere (default `dist/`); `--no-types` leaves out the declarations (~20 s of
 * the compiler), for a quick JavaScript-only build.
 */
import { spawnSync } from "node:child_process"
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { transform } from "esbuild"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")

const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? (d.name === "tmp" ? [] : walk(join(dir, d.name))) : [join(dir, d.name)]
  )

/**
 * Compile every `.ts` file under `from` to `.js` at the same place under `to` (`.mjs` files are
 * copied as they are; `tmp/` folders are skipped). Relative imports already name `.js` files.
 */
export const transpileDir = async (from, to) => {
  await Promise.all(
    walk(from).map(async (file) => {
      const target = join(to, relative(from, file))
      if (file.endsWith(".mjs")) {
        mkdirSync(dirname(target), { recursive: true })
        return copyFileSync(file, target)
      }
      if (!file.endsWith(".ts")) return
      const { code } = await transform(readFileSync(file, "utf8"), {
        loader: "ts",
        format: "esm",
        platform: "node",
        target: "node20",
        sourcefile: file
      })
      mkdirSync(dirname(target), { recursive: true })
      writeFileSync(target.replace(/\.ts$/, ".js"), code)
    })
  )
}

const main = async (args) => {
  const at = args.indexOf("--out")
  const out = at >= 0 && args[at + 1] !== undefined ? resolve(args[at + 1]) : join(root, "dist")
  rmSync(out, { recursive: true, force: true })
  await transpileDir(join(root, "src"), out)
  if (args.includes("--no-types")) return
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
  const result = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", out], {
    stdio: "inherit"
  })
  if (result.status !== 0) {
    console.error(`build: the declarations did not compile (tsc exit ${result.status ?? result.signal})`)
    process.exit(1)
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await main(process.argv.slice(2))
}
