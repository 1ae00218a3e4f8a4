/**
 * The per-process cache of folded store states (see StoreState.ts for the folds): each state with
 * the checkpoints kept to refold from, under a bound on the slots (`Doc.slots`) they hold together,
 * past which the states read least recently are dropped, to be loaded from their saved copy (or
 * refolded) when read again. It also holds the settings states at pinned tips (see PinnedSettings.ts).
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import type { Doc } from "../core/Doc.js"

/** Which intermediate states of a fold are kept to refold from. */
export interface CheckpointPolicy {
  /** A fold keeps the state this many entries before its end, for each distance (ascending). */
  readonly lags: ReadonlyArray<number>
  /** After this many entries merged on top, the current state is kept as a checkpoint too... */
  readonly every: number
  /**
   * ...or after one entry per this many slots of the state (`Doc.slots`), when that is more: a
   * checkpoint copies the whole state, so a large state keeps them further apart (undefined: `every` alone).
   */
  readonly slotsPerEntry?: number
  /** Checkpoints kept per store at most (the oldest and the newest are kept). */
  readonly max: number
}

/**
 * The default: 64 and 1,024 entries back; one more every 256 entries merged on top, or one per 32
 * slots of the state when that is more; 4 at most (each is a copy of the state, so a store's states
 * take at most five times its state's memory). Copying a state costs ~0.8 us per slot here (80 ms at
 * 100,000 keys; strings are shared, not copied), so a copy every 256 entries cost ~310 us per entry
 * merged at that size; one per 32 slots keeps it near 26 us, while a refold from the latest
 * checkpoint (at most 3,125 entries back at that size) costs from about the copy's own cost (memory
 * storage) to about twice it (SQLite).
 */
export const defaultCheckpoints: CheckpointPolicy = { lags: [64, 1_024], every: 256, max: 4, slotsPerEntry: 32 }

/** The fold of every entry of a store up to and including (height, id), in fold order. Never mutated. */
export interface Checkpoint {
  readonly doc: Doc
  readonly height: number
  readonly id: string
}

/** A cached store state: the fold up to insertion `seq`, whose last entry in fold order is (maxHeight, maxId). */
export interface Cached {
  doc: Doc
  seq: number
  maxHeight: number
  maxId: string
  /** Earlier states of the same fold, in fold order. */
  checkpoints: Array<Checkpoint>
  /** Entries merged on top since the last checkpoint was kept. */
  merged: number
  /** The state's slots (`Doc.slots`) when it was folded, loaded or last checkpointed. */
  slots: number
  /** What was folded in since the state was last saved to (or loaded from) storage. */
  unsaved: Unsaved
  /** The slots the cache counts for this state (see `remember`). */
  weight: number
}

/** What a state holds that its saved copy does not, and the size of that copy (see StoreState's `save`). */
export interface Unsaved {
  /** Entries folded in since the last save. */
  entries: number
  /** Bytes of store data those entries carried. */
  bytes: number
  /** The length of the saved state's JSON (0 when none is saved). */
  savedSize: number
}

/**
 * The default bound: a state of 100,000 keys and its four checkpoints count 500,000 slots. A slot takes
 * ~150 bytes of heap besides its value in a state (measured), ~37 in a checkpoint (values are shared).
 */
export const DEFAULT_MAX_SLOTS = 1_000_000

/** A state of fewer slots (as last checkpointed) is counted again whenever it changes. */
const RECOUNT_BELOW = 1_024

/** A pinned settings state (PinnedSettings.ts) and the slots it holds of its own. */
export interface PinnedState {
  readonly doc: Doc
  readonly slots: number
}

/** The per-process cache of folded states. */
export class StateCache extends Context.Tag("eidetica-ts/StateCache")<
  StateCache,
  {
    /** By key, the least recently read first. */
    readonly states: Map<string, Cached>
    /** Settings states by pinned tips (PinnedSettings.ts), with the slots each holds of its own. */
    readonly settings: Map<string, PinnedState>
    /** What the settings states hold together: their keys' characters (the pinned tips) and slots. */
    readonly settingsHeld: { chars: number; slots: number }
    readonly checkpoints: CheckpointPolicy
    /** The most slots the states and their checkpoints may hold together (the one last read is always kept)... */
    readonly maxSlots: number
    /** ...and the slots they hold now. */
    readonly held: { slots: number }
    /** Per state being updated, the last update queued (see `serialized`): the next one waits for it. */
    readonly updating: Map<string, Deferred.Deferred<void>>
  }
>() {}

/**
 * Run an update of the state under `key` alone: states are merged into in place, so two readers
 * folding the same new entries at once would apply them twice, interleaved, and a reader between
 * could see later entries undone by earlier ones (a revoked key active again, for a moment).
 * Updates of one key queue up, each after the one before. An update with none before it runs at
 * once, with no asynchronous step: one would reset the fiber's count of operations towards its
 * next yield, and a loop of commits (each reading `_index`) would then never yield at all.
 */
export const serialized = <A, E, R>(
  cache: Context.Tag.Service<StateCache>,
  key: string,
  update: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    const before = cache.updating.get(key)
    const mine = Deferred.unsafeMake<void>(FiberId.none)
    cache.updating.set(key, mine)
    // done only once the update before is done too, even when this one is interrupted while waiting
    const release = Effect.zipRight(
      before === undefined ? Effect.void : Deferred.await(before),
      Effect.sync(() => {
        Deferred.unsafeDone(mine, Exit.void)
        if (cache.updating.get(key) === mine) cache.updating.delete(key)
      })
    )
    return Effect.ensuring(before === undefined ? update : Effect.zipRight(Deferred.await(before), update), release)
  })

/** A fresh, empty cache (by default with `defaultCheckpoints`, holding `DEFAULT_MAX_SLOTS` slots at most). */
export const layerCacheWith = (
  checkpoints: CheckpointPolicy = defaultCheckpoints,
  maxSlots: number = DEFAULT_MAX_SLOTS
): Layer.Layer<StateCache> =>
  Layer.scoped(
    StateCache,
    // emptied when the layer closes: an app that keeps its Instance after close() keeps no states
    Effect.acquireRelease(
      Effect.sync(() => ({
        states: new Map<string, Cached>(),
        settings: new Map<string, PinnedState>(),
        settingsHeld: { chars: 0, slots: 0 },
        checkpoints,
        maxSlots,
        held: { slots: 0 },
        updating: new Map()
      })),
      (cache) =>
        Effect.sync(() => {
          cache.states.clear()
          cache.settings.clear()
          cache.settingsHeld.chars = 0
          cache.settingsHeld.slots = 0
          cache.held.slots = 0
        })
    )
  )

/** A fresh, empty cache. */
export const layerCache: Layer.Layer<StateCache> = layerCacheWith()

/**
 * Keep a new or changed state as the one read last, counting its slots (a large state's as of its
 * last checkpoint, which come at least every 1/32 of its size) once more per checkpoint (an earlier,
 * smaller state); then drop the states read least recently while the cache holds more than `maxSlots`.
 */
export const remember = (cache: Context.Tag.Service<StateCache>, key: string, cached: Cached): void => {
  const previous = cache.states.get(key)
  if (previous !== undefined) forget(cache, key, previous)
  const slots = cached.slots < RECOUNT_BELOW ? cached.doc.slots() : cached.slots
  cached.weight = Math.max(1, slots) * (1 + cached.checkpoints.length)
  cache.held.slots += cached.weight
  cache.states.set(key, cached)
  for (const [k, c] of cache.states) {
    if (cache.held.slots <= cache.maxSlots || k === key) break
    forget(cache, k, c)
  }
}

/** Keep an unchanged state as the one read last. */
export const touch = (cache: Context.Tag.Service<StateCache>, key: string, cached: Cached): void => {
  if (cache.states.get(key) !== cached) return remember(cache, key, cached)
  cache.states.delete(key)
  cache.states.set(key, cached)
}

const forget = (cache: Context.Tag.Service<StateCache>, key: string, cached: Cached): void => {
  cache.states.delete(key)
  cache.held.slots -= cached.weight
}

/** The key of a store's state read through a codec: under its tree's prefix, which `invalidate` drops. */
export const stateKey = (treeId: string, store: string, codecId: string): string =>
  `${treePrefix(treeId)}${store}\u0000${codecId}`

const treePrefix = (treeId: string): string => `${treeId}\u0000`

/** Forget cached states of a tree (for example after a codec's key changed). */
export const invalidate = (treeId: string) =>
  Effect.map(StateCache, (cache) => {
    const prefix = treePrefix(treeId)
    for (const [k, c] of cache.states) if (k.startsWith(prefix)) forget(cache, k, c)
  })
