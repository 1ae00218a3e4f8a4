/**
 * `npm run bench -- <suite…>`: runs the named benchmark suites (all when none is named) and prints
 * one JSON object per line: {"bench": name, "value": n, "unit": u}. The machine's one-core ed25519
 * verification speeds come first (`machine.ed25519_verify_per_s`, OpenSSL; `..._libsodium_per_s`), to read the figures against.
 */
type Suite = { run: () => Promise<void> }
const load = (name: string) => (): Promise<Suite> => import(`./${name}.js`) as Promise<Suite>
const suites: Record<string, () => Promise<Suite>> = { local: load("local"), sync: load("sync"), live: load("live"), sim: load("sim") }

const wanted = process.argv.slice(2).filter((a) => !a.startsWith("-"))
await ((await import("./machine.js")) as Suite).run()
for (const name of wanted.length > 0 ? wanted : Object.keys(suites)) {
  const loader = suites[name]
  if (loader === undefined) {
    console.error(`unknown suite ${name}; known: ${Object.keys(suites).join(", ")}`)
    process.exitCode = 2
    continue
  }
  const suite = await loader().catch((e: unknown) => {
    console.error(`suite ${name} is not available: ${e instanceof Error ? e.message : String(e)}`)
    return undefined
  })
  if (suite !== undefined) await suite.run()
}
