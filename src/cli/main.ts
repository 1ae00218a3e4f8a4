/**
 * Entry point of the `eidetica` command (`npm start` runs `eidetica serve`). With no arguments at
 * all it serves, as the reference's command does (the environment may set its address and data).
 */
import { ValidationError } from "@effect/cli"
import { NodeContext, NodeHttpClient, NodeRuntime } from "@effect/platform-node"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { run } from "./Commands.js"

// A command that fails says why in one line (a JSON object with --json) and exits 1; bad flags
// were already answered with the usage by the CLI library. Defects still print their stack.
const explain = (error: unknown) =>
  Effect.gen(function*() {
    process.exitCode = 1
    if (ValidationError.isValidationError(error)) return
    const message = error instanceof Error ? error.message : String(error)
    const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : "Error"
    yield* Console.error(process.argv.includes("--json") ? JSON.stringify({ error: { tag, message } }) : `eidetica: ${message}`)
  })

run(process.argv.length <= 2 ? [...process.argv, "serve"] : process.argv).pipe(
  Effect.catchAll(explain),
  Effect.provide(Layer.mergeAll(NodeContext.layer, NodeHttpClient.layerUndici)),
  NodeRuntime.runMain
)
