/**
 * The deterministic simulation runner (DESIGN.md §6): N complete peers on a simulated network
 * under a virtual clock and a seeded `Random`, the cluster room set up, then a seeded schedule of
 * writes and faults (partitions and heals of directed links, crashes and restarts on persisted
 * storage, message loss and duplication, and an intruder pushing forged and unauthorized
 * entries), then everything healed, the engine left to settle, and the invariants checked. The
 * same options give a deeply equal trace.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import { Doc } from "../core/Doc.js"
import * as Entry from "../core/Entry.js"
import * as Settings from "../core/Settings.js"
import type { Signer } from "../database/Database.js"
import * as Transaction from "../database/Transaction.js"
import * as EngineActors from "../actors/SyncEngine.js"
import * as SimClock from "../layers/SimClock.js"
import * as SimNetwork from "../layers/TransportSim.js"
import { directKey, globalKey, type SigKey } from "../schema/Auth.js"
import * as Permission from "../schema/Permission.js"
import { responseKind } from "../schema/Protocol.js"
import { Auth, type AuthShape } from "../services/Auth.js"
import type { StorageShape } from "../services/Storage.js"
import { InvalidArgument } from "../facade/Errors.js"
import * as Cluster from "./Cluster.js"
import * as Invariants from "./Invariants.js"

/** Fault rates; all optional, all default 0. */
export interface Faults {
  /** Per message: the probability a request is lost. */
  readonly dropRate?: number | undefined
  /** Per message: the probability a request arrives twice. */
  readonly duplicateRate?: number | undefined
  /** Per step: the probability of cutting or healing a random directed link. */
  readonly partitionRate?: number | undefined
  /** Per step: the probability of crashing (or restarting) a random peer. */
  readonly crashRate?: number | undefined
}

/** The default delivery delays, virtual ms. */
const DEFAULT_MIN_DELAY_MS = 1
const DEFAULT_MAX_DELAY_MS = 200

/** Options of one simulation run. */
export interface Options {
  /** How many peers (at least 2). */
  readonly peers: number
  /** The seed of everything random: keys, schedule, delays, losses. */
  readonly seed: number
  /** How many schedule steps. */
  readonly steps: number
  readonly faults?: Faults | undefined
  /** Delivery delays in virtual ms (default 1 to 200). */
  readonly minDelayMs?: number | undefined
  readonly maxDelayMs?: number | undefined
  /** Per step: the probability that the intruder offers a forged entry (default 0.02; three forgeries happen regardless). */
  readonly forgeRate?: number | undefined
  /** "engine" (default): the background engine moves entries; "manual": random explicit exchanges do. */
  readonly mode?: "engine" | "manual" | undefined
  /**
   * With the engine: which peers register each other (default "mesh", every pair). "line" and
   * "star" make most entries arrive relayed: convergence then rests on the engine's relaying.
   */
  readonly topology?: "mesh" | "line" | "star" | undefined
}

/** What a run found. */
export interface Report {
  readonly converged: boolean
  readonly noLostEntries: boolean
  readonly allSigned: boolean
  readonly noUnauthorizedEntries: boolean
  /** Every event, plain JSON; the same options give an equal trace. */
  readonly trace: ReadonlyArray<SimNetwork.TraceEvent>
  readonly stats: Stats
  readonly seed: number
  readonly peers: number
  readonly steps: number
  /** Every invariant violation, one line each (empty when all hold). */
  readonly violations: ReadonlyArray<string>
  /** Virtual time the run took, ms. */
  readonly virtualMs: number
}

/** Counts over the trace. */
export interface Stats {
  readonly writes: number
  readonly sends: number
  readonly deliveries: number
  readonly drops: number
  readonly duplicates: number
  readonly partitions: number
  readonly crashes: number
  readonly forgeries: number
}

/** The background engine of simulated peers: the actors with their production defaults. */
export const engineLayer: Cluster.EngineLayer = Layer.orDie(EngineActors.layer())

/** What is wrong with run options, in one sentence; undefined when they are fine. */
export const optionsProblem = (options: unknown): string | undefined => {
  if (typeof options !== "object" || options === null) return "Simulation.run expects options { peers, seed, steps, faults?, … }"
  const o = options as Partial<Record<keyof Options, unknown>>
  const isInt = (n: unknown): n is number => typeof n === "number" && Number.isSafeInteger(n)
  const isRate = (n: unknown) => n === undefined || (typeof n === "number" && n >= 0 && n <= 1)
  const isDelay = (n: unknown) => n === undefined || (typeof n === "number" && Number.isFinite(n) && n >= 0)
  if (!isInt(o.peers) || o.peers < 2) return `peers must be an integer of at least 2, got ${String(o.peers)}`
  if (!isInt(o.steps) || o.steps < 0) return `steps must be a non-negative integer, got ${String(o.steps)}`
  if (typeof o.seed !== "number" || !Number.isFinite(o.seed)) return `seed must be a finite number, got ${String(o.seed)}`
  if (o.faults !== undefined && (typeof o.faults !== "object" || o.faults === null)) return "faults must be { dropRate?, duplicateRate?, partitionRate?, crashRate? }"
  for (const [name, rate] of Object.entries({ ...(o.faults ?? {}), forgeRate: o.forgeRate })) {
    if (!isRate(rate)) return `${name} must be a probability from 0 to 1, got ${String(rate)}`
  }
  if (!isDelay(o.minDelayMs) || !isDelay(o.maxDelayMs)) return "minDelayMs and maxDelayMs must be non-negative numbers of virtual ms"
  const min = (o.minDelayMs as number | undefined) ?? DEFAULT_MIN_DELAY_MS
  const max = (o.maxDelayMs as number | undefined) ?? DEFAULT_MAX_DELAY_MS
  if (min > max) return `minDelayMs (${min}) must not exceed maxDelayMs (${max})`
  if (o.mode !== undefined && o.mode !== "engine" && o.mode !== "manual") return `mode must be "engine" or "manual", got ${String(o.mode)}`
  return undefined
}

/** Run one simulation as an Effect (it brings its own virtual clock, scheduler and seeded Random); bad options are a defect. */
export const runEffect = (options: Options): Effect.Effect<Report> => {
  const problem = optionsProblem(options)
  return problem !== undefined ? Effect.die(new InvalidArgument(problem)) : runChecked(options)
}

const runChecked = (options: Options): Effect.Effect<Report> => {
  const clock = SimClock.make()
  return simulate(options, clock).pipe(
    Effect.scoped,
    Effect.withRandom(Random.make(options.seed)),
    SimClock.provide(clock)
  )
}

/** Run one simulation; resolves with its report, or rejects with InvalidArgument for options it cannot run. */
export const run = (options: Options): Promise<Report> => {
  const problem = optionsProblem(options)
  return problem !== undefined ? Promise.reject(new InvalidArgument(problem)) : Effect.runPromise(runChecked(options))
}

/** Whether every invariant of a report holds. */
export const passed = (report: Report): boolean =>
  report.converged && report.noLostEntries && report.allSigned && report.noUnauthorizedEntries

/** Counts over a trace. */
export const statsOf = (trace: ReadonlyArray<SimNetwork.TraceEvent>): Stats => {
  const count = (type: SimNetwork.TraceEvent["type"]) => trace.filter((e) => e.type === type).length
  return {
    writes: count("write"),
    sends: count("send"),
    deliveries: count("deliver"),
    drops: count("drop"),
    duplicates: count("duplicate"),
    partitions: count("partition"),
    crashes: count("crash"),
    forgeries: count("forge")
  }
}

// ---------------------------------------------------------------------------------------------
// the run

const simulate = (options: Options, clock: SimClock.SimClock) =>
  Effect.gen(function* () {
    const n = Math.max(2, Math.floor(options.peers))
    const faults = options.faults ?? {}
    const schedule = Random.make(`schedule/${options.seed}`)
    const network = yield* SimNetwork.make({ seed: options.seed })
    const engine = options.mode === "manual" ? undefined : engineLayer
    const drive = clock.drive
    const cluster = yield* drive(Cluster.make({ peers: n, network, engine, intervalSeconds: 600, topology: options.topology }))
    const start = yield* clock.currentTimeMillis
    const room = cluster.room()
    const peers = cluster.peers

    // a private database (no global grant) the intruder will try to write to
    const owner = peers[0]!
    const privateDb = yield* owner.run(
      Effect.gen(function* () {
        const { db } = yield* owner.user().createDatabase(Doc.from({ name: "private" }), owner.key())
        yield* owner.user().trackDatabase({ databaseId: db.rootId, keyId: owner.key(), syncSettings: Cluster.roomSyncSettings() })
        return db.rootId
      })
    ).pipe(Effect.orDie)

    const intruderAuth = Context.get(yield* Layer.build(Cluster.layerSimAuth), Auth)
    const intruderKey = yield* intruderAuth.generateKey
    const intruder = network.transport("sim-intruder")
    const forged = new Set<string>()
    /**
     * Forgery kinds a peer able to judge them answered (not lost to a drop, a cut link or a crash;
     * the private database lives at the owner only).
     */
    const judged = new Set<ForgeryKind>()
    const written = new Set<string>()
    /** What each key was written with (every key is written once): what every peer must read at the end. */
    const values = new Map<string, string>()

    yield* network.setLinkPolicy({
      dropRate: faults.dropRate ?? 0,
      duplicateRate: faults.duplicateRate ?? 0,
      minDelayMs: options.minDelayMs ?? DEFAULT_MIN_DELAY_MS,
      maxDelayMs: options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS
    })

    const pick = (k: number) => schedule.nextIntBetween(0, k)
    const upPeers = () => peers.filter((p) => p.isUp()).map((p) => p.index)

    const forge = (kindIndex: number) =>
      Effect.gen(function* () {
        const kind = forgeryKinds[kindIndex % forgeryKinds.length]!
        const up = upPeers()
        if (up.length === 0) return
        const target = peers[kind === "non-member" && owner.isUp() ? 0 : up[yield* pick(up.length)]!]!
        const treeId = kind === "non-member" ? privateDb : room
        const entry = yield* forgeEntry(target.storage, intruderAuth, treeId, intruderKey, kind)
        forged.add(entry.id)
        const response = yield* drive(intruder.send(target.address, { SendEntries: [Encoding.encodeBase64(entry.bytes)] }).pipe(
          Effect.map(responseKind),
          Effect.orElseSucceed(() => "TransportError")
        ))
        if (response !== "TransportError" && (kind !== "non-member" || target === owner)) judged.add(kind)
        yield* network.record({ type: "forge", peer: target.name, kind, entry: entry.id, response })
      })

    const forgeRate = options.forgeRate ?? 0.02
    // each kind of forgery is tried at least once, a quarter, half and three quarters into the run
    const forcedForgeries = new Map<number, Array<number>>()
    forgeryKinds.forEach((_, k) => {
      const at = Math.floor(((k + 1) * options.steps) / 4)
      forcedForgeries.set(at, [...(forcedForgeries.get(at) ?? []), k])
    })

    for (let step = 0; step < options.steps; step++) {
      const r = yield* schedule.next
      const partitionRate = faults.partitionRate ?? 0
      const crashRate = faults.crashRate ?? 0
      if (r < partitionRate) {
        const a = yield* pick(n)
        const b = (a + 1 + (yield* pick(n - 1))) % n
        const from = peers[a]!.name
        const to = peers[b]!.name
        if (yield* network.isPartitioned(from, to)) yield* network.heal(from, to)
        else yield* network.partition(from, to)
      } else if (r < partitionRate + crashRate) {
        const p = yield* pick(n)
        if (peers[p]!.isUp()) yield* drive(cluster.crash(p))
        else yield* drive(cluster.restart(p))
      } else if (r < partitionRate + crashRate + forgeRate) {
        yield* forge(yield* pick(forgeryKinds.length))
      } else {
        let up = upPeers()
        if (up.length === 0) {
          yield* drive(cluster.restart(yield* pick(n)))
          up = upPeers()
        }
        const writer = up[yield* pick(up.length)]!
        const id = yield* drive(Effect.either(cluster.write(writer, `k${step}`, `v${step}@${writer}`)))
        if (id._tag === "Right") {
          written.add(id.right)
          values.set(`k${step}`, `v${step}@${writer}`)
        }
        else yield* network.record({ type: "note", text: `write at ${peers[writer]!.name} failed: ${id.left._tag}` })
      }
      for (const k of forcedForgeries.get(step) ?? []) yield* forge(k)
      if (engine === undefined && (yield* schedule.nextBoolean)) {
        const up = upPeers()
        if (up.length >= 2) {
          const a = up[yield* pick(up.length)]!
          const others = up.filter((x) => x !== a)
          yield* drive(cluster.exchange(a, others[yield* pick(others.length)]!))
        }
      }
      yield* clock.advance(yield* schedule.nextIntBetween(10, 400))
    }

    for (const [at, kinds] of forcedForgeries) if (at >= options.steps) for (const k of kinds) yield* forge(k)

    // heal, restart, settle
    yield* network.record({ type: "note", text: "settle" })
    yield* network.healAll()
    yield* network.setLinkPolicy({ dropRate: 0, duplicateRate: 0 })
    for (const p of peers) yield* drive(cluster.restart(p.index))
    // every forgery lost on the way tests nothing: then each kind is offered again, on links that now deliver
    for (let k = 0; k < forgeryKinds.length; k++) if (!judged.has(forgeryKinds[k]!)) yield* forge(k)
    const checked = peers.map((p) => ({ name: p.name, storage: p.storage }))
    const isConverged = Effect.map(Invariants.converged(checked, room, []), (r) => r.ok)
    let unaided = true
    if (engine !== undefined) {
      // liveness: the engine alone (no flush) converges within its longest backoff and an interval or two
      for (let i = 0; i < 3 && !(yield* isConverged); i++) yield* clock.advance(70_000)
      unaided = yield* isConverged
      if (!unaided) yield* network.record({ type: "note", text: "not converged without flushes" })
    }
    if (engine === undefined) {
      yield* drive(cluster.converge())
    } else {
      // the engine retries with backoff up to 64 s and syncs every interval: let that time pass, flushing between
      for (let round = 0; round < 3 * n + 8 && !(yield* isConverged); round++) {
        if (round % 2 === 0) {
          for (const p of peers) yield* drive(cluster.flush(p.index))
        } else yield* clock.advance(70_000)
      }
    }
    yield* clock.advance(1_000)
    // sync-on-commit on healthy links: one write at every peer reaches every other within seconds
    let prompt = true
    if (engine !== undefined) {
      for (const p of peers) {
        const id = yield* drive(Effect.orDie(cluster.write(p.index, `probe${p.index}`, `probe@${p.index}`)))
        written.add(id)
        values.set(`probe${p.index}`, `probe@${p.index}`)
      }
      yield* clock.advance(5_000)
      prompt = yield* isConverged
    }
    const writesKept = yield* Invariants.noLostWrites(checked, room, values)

    const convergence = yield* Invariants.converged(checked, room)
    const lost = yield* Invariants.noLostEntries(checked, room, written)
    const signed = yield* Invariants.allSigned(checked, [room, privateDb], intruderAuth)
    // the forged IDs are not stored; nor, whatever its ID, is anything else the intruder signed
    // without the authority for it: an entry of the private database, a settings change of the room
    const unauthorized = yield* Invariants.noUnauthorizedEntries(checked, forged)
    const intruderWrites = yield* Invariants.noEntriesSignedBy(checked, privateDb, intruderKey.publicKey, () => true)
    const intruderSettings = yield* Invariants.noEntriesSignedBy(
      checked,
      room,
      intruderKey.publicKey,
      (e) => e.entry.subtrees.some((s) => s.name === "_settings")
    )
    const trace = yield* network.trace()
    const end = yield* clock.currentTimeMillis
    return {
      converged: convergence.ok && unaided && prompt,
      noLostEntries: lost.ok && writesKept.ok,
      allSigned: signed.ok,
      noUnauthorizedEntries: unauthorized.ok && intruderWrites.ok && intruderSettings.ok && judged.size === forgeryKinds.length,
      trace,
      stats: statsOf(trace),
      seed: options.seed,
      peers: n,
      steps: options.steps,
      violations: [
        ...convergence.violations.map((v) => `converged: ${v}`),
        ...lost.violations.map((v) => `noLostEntries: ${v}`),
        ...writesKept.violations.map((v) => `noLostEntries: ${v}`),
        ...(unaided ? [] : ["converged: the engine did not converge on its own within 210 s of healing (only flushes did)"]),
        ...(prompt ? [] : ["converged: a write on healthy links did not reach every peer within 5 s"]),
        ...signed.violations.map((v) => `allSigned: ${v}`),
        ...[...unauthorized.violations, ...intruderWrites.violations, ...intruderSettings.violations].map((v) =>
          `noUnauthorizedEntries: ${v}`
        ),
        ...forgeryKinds.filter((k) => !judged.has(k)).map((k) => `noUnauthorizedEntries: no ${k} forgery reached a peer that could judge it`)
      ],
      virtualMs: end - start
    } satisfies Report
  })

// ---------------------------------------------------------------------------------------------
// forgeries

/** The intruder's attempts: a tampered signature, a Write key changing settings, a key outside a private database's auth. */
export const forgeryKinds = ["bad-signature", "escalation", "non-member"] as const

/** One kind of forgery. */
export type ForgeryKind = (typeof forgeryKinds)[number]

/**
 * Build an entry the way a commit would, on top of what `storage` holds of `treeId`, but one no
 * honest peer may accept: its signature is broken ("bad-signature"), it gives the intruder Admin
 * under a Write grant ("escalation"), or it is signed by a key the database's auth does not know
 * ("non-member").
 */
export const forgeEntry = (
  storage: StorageShape,
  auth: AuthShape,
  treeId: string,
  intruder: Signer,
  kind: ForgeryKind
) =>
  Effect.gen(function* () {
    const settingsTips = yield* storage.storeTips(treeId, Entry.SETTINGS)
    const key: SigKey = kind === "non-member" ? directKey(intruder.publicKey) : globalKey(intruder.publicKey)
    const subtrees =
      kind === "escalation"
        ? [{ name: Entry.SETTINGS, parents: settingsTips, data: escalation(intruder.publicKey).encode() }]
        : [{ name: "data", parents: yield* storage.storeTips(treeId, "data"), data: Doc.from({ forged: kind }).encode() }]
    const unsigned = yield* Transaction.nextEntry(storage, treeId, settingsTips, subtrees, key)
    const signed = Entry.signingBytes(unsigned)
    const message = kind === "bad-signature" ? Uint8Array.from([...signed, 0]) : signed
    const sig = yield* auth.sign(intruder.secretKey, message)
    return Entry.stored(Entry.withSignature(unsigned, sig))
  }).pipe(Effect.orDie)

const escalation = (pubkey: string): Doc => {
  const keys = Doc.empty()
  keys.set(pubkey, Settings.authKeyDoc({ permissions: Permission.Admin(0), status: "Active" }))
  const auth = Doc.empty()
  auth.set("keys", keys)
  const settings = Doc.empty()
  settings.set("auth", auth)
  return settings
}
