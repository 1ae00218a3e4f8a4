/**
 * eidetica-ts/testing: the deterministic simulation kit, for this project's tests and users'. The
 * simulated network (`SimNetwork`: a Transport per peer plus partitions, link policies, manual
 * delivery and a trace), the virtual clock it runs under (`SimClock`), clusters of complete
 * engines on it (`Cluster`), the runner (`Simulation.run` / `Simulation.runEffect`), the
 * invariant checks, and the in-memory layers a test needs.
 */
import type * as Layer from "effect/Layer"
import * as EideticaLayers from "./layers/Eidetica.js"
import type { StorageError } from "./schema/Errors.js"

/** The simulated network: `make`, `layer`, `layerTransport`, link policies, the trace's event types. */
export * as SimNetwork from "./layers/TransportSim.js"
/** The virtual clock of simulations: `make`, `advance`, `settle`, `provide`. */
export * as SimClock from "./layers/SimClock.js"
/** Clusters of complete engines on a simulated network (crash, restart, write, exchange, converge, flush). */
export * as Cluster from "./testing/Cluster.js"
/** The simulation runner: `run(options)` → Promise of a report, `runEffect` its Effect twin. */
export * as Simulation from "./testing/Simulation.js"
/** The invariant checks over a set of peers. */
export * as Invariants from "./testing/Invariants.js"
/** The invariant checks, also at the top level. */
export { allSigned, converged, noLostEntries, noUnauthorizedEntries } from "./testing/Invariants.js"
export type { CheckedPeer, InvariantResult } from "./testing/Invariants.js"

/** In-memory storage (nothing survives the layer). */
export { layerMemory as layerStorageMemory, makeMemory as makeStorageMemory } from "./layers/Storage.js"
/** Seeded auth: keys and nonces from the fiber's `Random` (deterministic; never for production). */
export { layerSeeded as layerAuthSeeded } from "./layers/Auth.js"
/** Seeded auth that verifies on the calling fiber (what simulated peers use). */
export { layerSimAuth } from "./testing/Cluster.js"

/** A complete in-memory engine (`Eidetica.layer({ storage: "memory" })`); each use builds a new one. */
export const layerEideticaMemory: Layer.Layer<EideticaLayers.Services, StorageError> = EideticaLayers.layerMemory
