/**
 * The whole engine in one layer: storage (embedded SQLite by default), node crypto, the password
 * cipher, the store-state cache, write events, the Instance service, Sync (transports off until
 * enabled) and the background sync engine (its actors). Build it once and provide
 * it at the edge: every call of `layer` builds a separate engine (and opens its own storage).
 */
import * as Layer from "effect/Layer"
import { DEFAULT_MAX_SLOTS, defaultCheckpoints, layerCacheWith, type StateCache } from "../database/StateCache.js"
import type { StorageError } from "../schema/Errors.js"
import type { Auth } from "../services/Auth.js"
import type { Cipher } from "../services/Cipher.js"
import type { Instance } from "../services/Instance.js"
import type { Storage } from "../services/Storage.js"
import type { Sync } from "../services/Sync.js"
import type { SyncEngine } from "../services/SyncEngine.js"
import * as WriteEvents from "../services/WriteEvents.js"
import * as SyncEngineLayers from "../actors/SyncEngine.js"
import * as AuthLayers from "./Auth.js"
import * as CipherLayers from "./Cipher.js"
import * as InstanceLayers from "./Instance.js"
import * as SchedulerLayers from "./Scheduler.js"
import * as StorageLayers from "./Storage.js"
import * as SyncLayers from "./Sync.js"

/** Where the engine keeps its data. */
export interface Options {
  /** "sqlite" (the default): an embedded SQLite file; "memory": nothing survives the layer. */
  readonly storage?: "sqlite" | "memory" | undefined
  /** The SQLite file, created if absent, reopened if present; `./eidetica.db` by default. */
  readonly filename?: string | undefined
  /** Options of the Sync layer (tests and benchmarks; the defaults suit production). */
  readonly sync?: SyncLayers.SyncLayerOptions | undefined
  /** Options of the background sync engine (tests and benchmarks). */
  readonly engine?: SyncEngineLayers.Options | undefined
  /**
   * The most slots (keys and list items) of folded store states kept in memory, their checkpoints
   * counted too; past it the states read least recently are dropped. 1,000,000 by default.
   */
  readonly stateCacheSlots?: number | undefined
}

/** The SQLite file used when no filename is given. */
export const defaultFilename = "./eidetica.db"

/** Every service a complete engine provides. */
export type Services = Instance | Sync | SyncEngine | Storage | Auth | Cipher | StateCache | WriteEvents.WriteEvents

/** A complete engine; the graph is built once per call (each call is a separate engine). */
export const layer = (options: Options = {}): Layer.Layer<Services, StorageError> => {
  const storage =
    options.storage === "memory"
      ? StorageLayers.layerMemory
      : StorageLayers.layerSqlite({ filename: options.filename ?? defaultFilename })
  const cache = layerCacheWith(defaultCheckpoints, options.stateCacheSlots ?? DEFAULT_MAX_SLOTS)
  const base = Layer.mergeAll(storage, AuthLayers.layerNode, CipherLayers.layerNode, cache, WriteEvents.layer)
  const withInstance = InstanceLayers.layer.pipe(Layer.provideMerge(base))
  const withSync = SyncLayers.layerWith(options.sync ?? {}).pipe(Layer.provideMerge(withInstance))
  // last, so its actors stop before the servers and storage they use
  const engine = SyncEngineLayers.layer(options.engine).pipe(Layer.provideMerge(withSync))
  // built first, so every fiber of the instance (its actors and servers too, and any runtime built
  // from it) runs on the scheduler that lets I/O in while it works
  return engine.pipe(Layer.provideMerge(SchedulerLayers.layer()))
}

/** A complete in-memory engine, for tests. */
export const layerMemory: Layer.Layer<Services, StorageError> = layer({ storage: "memory" })
