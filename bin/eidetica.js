#!/usr/bin/env node
// The `eidetica` command: the compiled package (`dist/`, which `npm ci`/`npm install` build through
// the `prepare` script, or `npm run build`); a checkout not built yet runs the sources through tsx.
import { existsSync } from "node:fs"

const compiled = new URL("../dist/cli/main.js", import.meta.url)
if (existsSync(compiled)) {
  await import(compiled.href)
} else {
  const { register } = await import("tsx/esm/api")
  register()
  await import("../src/cli/main.ts")
}
