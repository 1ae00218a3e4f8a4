/**
 * A cluster of complete engines on one simulated network (the reference harness's `Cluster`): N
 * peers, each a real Instance with Sync (and the background engine when one is given) over its
 * own memory storage, which outlives the instance so a peer can crash and restart on what it had
 * persisted. A crash is a crash, not a shutdown: the incarnation is fenced off its storage and the
 * network first, so nothing its finalizers or leftover fibers do afterwards is persisted or sent
 * (what lived only in memory is lost, and restart takes the real recovery path). Keys and
 * randomness come from the fiber's `Random` (seeded auth), time from its `Clock`. Two ways to
 * move entries: explicit `exchange`/`converge` (the reference's manual mode) and the engine's
 * `autoSync`/`flush` (its background mode).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { Doc, type Plain } from "../core/Doc.js"
import type { Signer } from "../database/Database.js"
import { SettingsStore } from "../database/SettingsStore.js"
import { layerCache, type StateCache } from "../database/StateCache.js"
import { DocStore, DocStoreView } from "../database/Stores.js"
import * as Transaction from "../database/Transaction.js"
import * as AuthLayers from "../layers/Auth.js"
import * as CipherLayers from "../layers/Cipher.js"
import * as InstanceLayers from "../layers/Instance.js"
import * as StorageLayers from "../layers/Storage.js"
import * as SyncLayers from "../layers/Sync.js"
import type * as SimNetwork from "../layers/TransportSim.js"
import type { Address } from "../schema/Address.js"
import * as Permission from "../schema/Permission.js"
import type { SyncSettings } from "../schema/SyncSettings.js"
import { Auth, type AuthShape } from "../services/Auth.js"
import type { Cipher } from "../services/Cipher.js"
import { Instance, type InstanceShape, type User } from "../services/Instance.js"
import { Storage, type StorageShape } from "../services/Storage.js"
import { Sync, type SyncResult, type SyncError, type SyncShape } from "../services/Sync.js"
import { SyncEngine, type FlushReport, type SyncEngineShape } from "../services/SyncEngine.js"
import * as WriteEvents from "../services/WriteEvents.js"
import { fence } from "./Fence.js"

/** Every service of one simulated peer without the background engine. */
export type PeerServices = Storage | Auth | Cipher | StateCache | WriteEvents.WriteEvents | Instance | Sync

/** The background engine's layer over a peer's services (e.g. the actors' `SyncEngine` layer). */
export type EngineLayer = Layer.Layer<SyncEngine, never, PeerServices>

/** Which peers of a cluster register each other for the room. */
export type Topology = "mesh" | "line" | "star" | "none"

/** The pairs of peers (by index) that register each other under a topology of `n` peers. */
export const links = (topology: Topology, n: number): ReadonlyArray<readonly [number, number]> => {
  const pairs: Array<readonly [number, number]> = []
  if (topology === "mesh") for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) pairs.push([a, b])
  if (topology === "line") for (let a = 0; a + 1 < n; a++) pairs.push([a, a + 1])
  if (topology === "star") for (let b = 1; b < n; b++) pairs.push([0, b])
  return pairs
}

/** Options of a cluster. */
export interface ClusterOptions {
  /** How many peers (named `sim-peer-0` …). */
  readonly peers: number
  /** The network the peers live on. */
  readonly network: SimNetwork.SimNetwork
  /** The background engine of every peer; without it entries move only by `exchange`/`converge`. */
  readonly engine?: EngineLayer | undefined
  /** Set up the cluster room (default true): see `Cluster.room`. */
  readonly room?: boolean | undefined
  /**
   * With an engine and a room: which peers register each other: "mesh" (the default: every pair),
   * "line" (each with the next: 0-1, 1-2, …, so entries reach the far end only relayed), "star"
   * (peer 0 with every other: the others reach each other only through it), or "none".
   */
  readonly topology?: Topology | undefined
  /** The room's periodic sync interval (default 60 s). */
  readonly intervalSeconds?: number | undefined
}

/** The sync settings the room is tracked with. */
export const roomSyncSettings = (intervalSeconds = 60): SyncSettings => ({
  syncEnabled: true,
  syncOnCommit: true,
  intervalSeconds,
  properties: {}
})

/** One simulated peer: its storage survives crashes; its instance comes and goes. */
export interface SimPeer {
  readonly index: number
  /** The peer's network name and server address (`sim-peer-N`). */
  readonly name: string
  readonly address: Address
  /** The persisted storage (shared by every incarnation of the peer). */
  readonly storage: StorageShape
  /** The device key (stable across restarts: it is persisted). */
  readonly deviceId: string
  /** The peer's user name (`user-N`). */
  readonly username: string
  /** Whether the peer is running. */
  readonly isUp: () => boolean
  /** Run an effect on the running peer's services (a defect when the peer is down). */
  readonly run: <A, E>(effect: Effect.Effect<A, E, PeerServices>) => Effect.Effect<A, E>
  /** The running peer's services. */
  readonly services: () => Context.Context<PeerServices>
  /** The logged-in user of the running peer. */
  readonly user: () => User
  /** The user's default key. */
  readonly key: () => string
  /** The running peer's engine (a defect when the cluster has none or the peer is down). */
  readonly engine: () => SyncEngineShape
}

/** A cluster and its operations. */
export interface Cluster {
  readonly network: SimNetwork.SimNetwork
  readonly peers: ReadonlyArray<SimPeer>
  /** Whether the peers run the background engine. */
  readonly hasEngine: boolean
  /**
   * The room: a database peer 0 created with a global Write(10) grant and `data.seed`, served with
   * sync enabled; every other peer bootstrapped it and tracks it with syncEnabled + syncOnCommit.
   */
  readonly room: () => string
  /** Create the room now (when the cluster was built with `room: false`). */
  readonly setupRoom: Effect.Effect<string>
  /** Commit `data[key] = value` at a peer (to the room by default); returns the entry ID. */
  readonly write: (peer: number, key: string, value: Plain, treeId?: string) => Effect.Effect<string, Transaction.CommitError>
  /** The `data` store of a database at a peer, as a plain object. */
  readonly read: (peer: number, treeId?: string) => Effect.Effect<{ readonly [k: string]: Plain }>
  /** The tips of a database at a peer. */
  readonly tips: (peer: number, treeId?: string) => Effect.Effect<ReadonlyArray<string>>
  /** `from` syncs a database with `to` (pull then push); failures are returned, not raised. */
  readonly exchange: (from: number, to: number, treeId?: string) => Effect.Effect<Either.Either<SyncResult, SyncError>>
  /** Exchange every pair of running peers, round after round (at most one per peer), until their tips agree; returns the rounds. */
  readonly converge: (treeId?: string) => Effect.Effect<number>
  /** Register `a` and `b` as sync peers of each other for a database (needs the engine). */
  readonly autoSync: (a: number, b: number, treeId?: string) => Effect.Effect<void>
  /** Push a peer's queued work now, ignoring backoff (needs the engine). */
  readonly flush: (peer: number) => Effect.Effect<FlushReport>
  /** N+1 passes of `flush` over every running peer, enough for relay hops. */
  readonly flushAll: Effect.Effect<void>
  /**
   * Crash a peer: from this instant its incarnation can neither write its storage nor use the
   * network, then its actors, server and caches go (their finalizers run, but nothing they write
   * is kept). Its storage stays as it was at the crash.
   */
  readonly crash: (peer: number) => Effect.Effect<void>
  /** Start a crashed peer again on its storage (same device key, user and tracking). */
  readonly restart: (peer: number) => Effect.Effect<void>
}

/** Build a cluster in the current scope (closing it stops every peer). */
export const make = (options: ClusterOptions): Effect.Effect<Cluster, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { network } = options
    const outer = yield* Effect.scope
    const peers: Array<PeerImpl> = []
    let roomId: string | undefined

    const start = (peer: PeerImpl, first: boolean) =>
      Effect.gen(function* () {
        const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
        const incarnation = fence(peer.storage, network.transport(peer.name))
        const context = yield* Layer.build(peerLayer(incarnation.storage, options.engine)).pipe(Scope.extend(scope))
        const sync = Context.get(context, Sync)
        const instance = Context.get(context, Instance)
        yield* sync.enableTransport(incarnation.transport)
        yield* Effect.orDie(sync.startServer(peer.name))
        if (first) yield* Effect.orDie(instance.createUser(peer.username))
        const user = yield* Effect.orDie(instance.loginUser(peer.username))
        peer.state = { scope, kill: incarnation.kill, context, instance, sync, user, key: yield* user.getDefaultKey, signers: new Map() }
        peer.deviceId = instance.deviceId
      })

    for (let i = 0; i < options.peers; i++) {
      const storage = yield* StorageLayers.makeMemory
      const peer = new PeerImpl(i, `sim-peer-${i}`, storage, network.address(`sim-peer-${i}`), options.engine !== undefined)
      peers.push(peer)
      yield* start(peer, true)
    }

    const tree = (treeId: string | undefined) => {
      const id = treeId ?? roomId
      return id === undefined ? Effect.dieMessage("the cluster has no room; pass a database ID") : Effect.succeed(id)
    }

    const signerOf = (peer: PeerImpl, treeId: string) =>
      Effect.gen(function* () {
        const state = peer.up()
        const cached = state.signers.get(treeId)
        if (cached !== undefined) return cached
        const opened = yield* Effect.orDie(state.user.openDatabase(treeId))
        state.signers.set(treeId, opened.signer)
        return opened.signer
      })

    const write: Cluster["write"] = (i, key, value, treeId) =>
      Effect.gen(function* () {
        const peer = peers[i]!
        const id = yield* tree(treeId)
        const signer = yield* signerOf(peer, id)
        const entry = yield* peer.run(
          Effect.gen(function* () {
            const txn = Transaction.begin({ rootId: id }, signer)
            yield* new DocStore(txn, "data").set(key, value)
            return yield* Transaction.commit(txn)
          })
        )
        yield* network.record({ type: "write", peer: peer.name, key, entry })
        return entry
      })

    const exchange: Cluster["exchange"] = (from, to, treeId) =>
      Effect.flatMap(tree(treeId), (id) => Effect.either(peers[from]!.up().sync.syncWithPeer(peers[to]!.address, id)))

    const tipsOf = (i: number, id: string) => Effect.orDie(peers[i]!.storage.tips(id))

    const agree = (id: string) =>
      Effect.gen(function* () {
        const up = peers.filter((p) => p.state !== undefined)
        const first = JSON.stringify(yield* tipsOf(up[0]!.index, id))
        for (const p of up.slice(1)) if (JSON.stringify(yield* tipsOf(p.index, id)) !== first) return false
        return true
      })

    const converge: Cluster["converge"] = (treeId) =>
      Effect.gen(function* () {
        const id = yield* tree(treeId)
        const up = peers.filter((p) => p.state !== undefined).map((p) => p.index)
        for (let round = 1; round <= Math.max(1, up.length); round++) {
          for (let a = 0; a < up.length; a++) for (let b = a + 1; b < up.length; b++) yield* exchange(up[a]!, up[b]!, id)
          if (yield* agree(id)) return round
        }
        return up.length
      })

    const autoSync: Cluster["autoSync"] = (a, b, treeId) =>
      Effect.gen(function* () {
        const id = yield* tree(treeId)
        const register = (self: PeerImpl, other: PeerImpl) =>
          Effect.orDie(
            self.engine().registerSyncPeer({
              peerPubkey: other.deviceId,
              treeId: id,
              addresses: [other.address],
              displayName: other.name
            })
          )
        yield* register(peers[a]!, peers[b]!)
        yield* register(peers[b]!, peers[a]!)
      })

    const flush: Cluster["flush"] = (i) => Effect.suspend(() => peers[i]!.engine().flush)

    const flushAll: Cluster["flushAll"] = Effect.gen(function* () {
      for (let pass = 0; pass <= peers.length; pass++) {
        for (const p of peers) if (p.state !== undefined) yield* p.engine().flush
      }
    })

    const crash: Cluster["crash"] = (i) =>
      Effect.gen(function* () {
        const peer = peers[i]!
        const state = peer.state
        if (state === undefined) return
        peer.state = undefined
        yield* network.record({ type: "crash", peer: peer.name })
        // the process is gone at this instant: nothing after it reaches the disk or the wire
        state.kill()
        yield* Scope.close(state.scope, Exit.void)
      })

    const restart: Cluster["restart"] = (i) =>
      Effect.gen(function* () {
        const peer = peers[i]!
        if (peer.state !== undefined) return
        yield* network.record({ type: "restart", peer: peer.name })
        yield* start(peer, false)
      })

    const setupRoom = Effect.gen(function* () {
      if (roomId !== undefined) return roomId
      const owner = peers[0]!
      const settings = roomSyncSettings(options.intervalSeconds)
      const id = yield* owner.run(
        Effect.gen(function* () {
          const state = owner.up()
          const { db, signer } = yield* state.user.createDatabase(Doc.from({ name: "room" }), state.key)
          const txn = Transaction.begin(db, signer)
          yield* new SettingsStore(txn).setGlobalPermission(Permission.Write(10))
          yield* Transaction.commit(txn)
          const seed = Transaction.begin(db, signer)
          yield* new DocStore(seed, "data").set("seed", "seed")
          yield* Transaction.commit(seed)
          yield* state.user.trackDatabase({ databaseId: db.rootId, keyId: state.key, syncSettings: settings })
          state.signers.set(db.rootId, signer)
          return db.rootId
        })
      ).pipe(Effect.orDie)
      for (const peer of peers.slice(1)) {
        const state = peer.up()
        yield* Effect.orDie(state.sync.syncWithPeer(owner.address, id))
        yield* Effect.orDie(state.user.trackDatabase({ databaseId: id, keyId: state.key, syncSettings: settings }))
      }
      roomId = id
      if (options.engine !== undefined) {
        for (const [a, b] of links(options.topology ?? "mesh", peers.length)) yield* autoSync(a, b, id)
      }
      return id
    })

    if (options.room !== false) yield* setupRoom

    const cluster: Cluster = {
      network,
      peers,
      hasEngine: options.engine !== undefined,
      room: () => {
        if (roomId === undefined) throw new Error("the cluster has no room")
        return roomId
      },
      setupRoom,
      write,
      read: (i, treeId) =>
        Effect.flatMap(tree(treeId), (id) => Effect.orDie(peers[i]!.run(new DocStoreView({ rootId: id }, "data").getAll()))),
      tips: (i, treeId) => Effect.flatMap(tree(treeId), (id) => tipsOf(i, id)),
      exchange,
      converge,
      autoSync,
      flush,
      flushAll,
      crash,
      restart
    }
    return cluster
  })

/** The layer of one peer over a kept storage: seeded auth, cipher, caches, Instance, Sync (and the engine). */
export const peerLayer = (storage: StorageShape, engine?: EngineLayer): Layer.Layer<PeerServices | SyncEngine> => {
  const base = Layer.mergeAll(
    Layer.succeed(Storage, storage),
    layerSimAuth,
    CipherLayers.layerNode,
    layerCache,
    WriteEvents.layer
  )
  const withInstance = Layer.provideMerge(InstanceLayers.layer, base)
  const withSync = Layer.orDie(Layer.provideMerge(SyncLayers.layer, withInstance))
  return engine === undefined
    ? Layer.merge(withSync, Layer.succeed(SyncEngine, noEngine))
    : Layer.provideMerge(engine, withSync)
}

/**
 * Seeded auth (keys and nonces from the fiber's `Random`) that verifies every batch on the calling
 * fiber: the node layer hands batches of 256 or more to worker threads, whose replies would arrive
 * at times the virtual clock cannot see. Derived public keys are remembered (sync checks its
 * signer on every call, and a simulation makes thousands).
 */
export const layerSimAuth: Layer.Layer<Auth> = Layer.scoped(
  Auth,
  Effect.map(AuthLayers.makeSeeded, (auth): AuthShape => ({
    ...auth,
    publicKeyOf: (secretKey) => {
      const known = derived.get(secretKey)
      if (known !== undefined) return Effect.succeed(known)
      return Effect.tap(auth.publicKeyOf(secretKey), (publicKey) =>
        Effect.sync(() => {
          if (derived.size >= 10_000) derived.clear()
          derived.set(secretKey, publicKey)
        })
      )
    },
    verifyBatch: (items) =>
      items.length < AuthLayers.poolThreshold
        ? auth.verifyBatch(items)
        : Effect.map(
            Effect.forEach(chunks(items, AuthLayers.poolThreshold - 1), (chunk) => auth.verifyBatch(chunk)),
            (results) => results.flat()
          )
  }))
)

// ---------------------------------------------------------------------------------------------
// helpers

interface PeerState {
  readonly scope: Scope.CloseableScope
  /** Fence the incarnation off its storage and the network (the crash instant). */
  readonly kill: () => void
  readonly context: Context.Context<PeerServices | SyncEngine>
  readonly instance: InstanceShape
  readonly sync: SyncShape
  readonly user: User
  readonly key: string
  readonly signers: Map<string, Signer>
}

class PeerImpl implements SimPeer {
  state: PeerState | undefined
  deviceId = ""
  readonly username: string
  constructor(
    readonly index: number,
    readonly name: string,
    readonly storage: StorageShape,
    readonly address: Address,
    private readonly withEngine: boolean
  ) {
    this.username = `user-${index}`
  }
  up(): PeerState {
    if (this.state === undefined) throw new Error(`${this.name} is down`)
    return this.state
  }
  isUp = () => this.state !== undefined
  run = <A, E>(effect: Effect.Effect<A, E, PeerServices>): Effect.Effect<A, E> =>
    Effect.suspend(() => Effect.provide(effect, this.up().context))
  services = () => this.up().context
  user = () => this.up().user
  key = () => this.up().key
  engine = (): SyncEngineShape => {
    if (!this.withEngine) throw new Error("this cluster runs without the background engine")
    return Context.get(this.up().context, SyncEngine)
  }
}

/** Stands in for the engine when a cluster has none; any use is a test bug. */
const noEngine: SyncEngineShape = {
  registerSyncPeer: () => Effect.dieMessage("this cluster runs without the background engine"),
  unregisterSyncPeer: () => Effect.dieMessage("this cluster runs without the background engine"),
  handle: () => Effect.dieMessage("this cluster runs without the background engine"),
  flush: Effect.dieMessage("this cluster runs without the background engine"),
  requestSync: () => Effect.dieMessage("this cluster runs without the background engine")
}

/** Public keys derived from secret keys (a pure function, so sharing it across peers is safe). */
const derived = new Map<string, string>()

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}
