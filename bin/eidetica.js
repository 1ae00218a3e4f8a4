#!/usr/bin/env node
// Launch the TypeScript command line through tsx (the package ships its sources).
import { register } from "tsx/esm/api"
register()
await import("../src/cli/main.ts")
