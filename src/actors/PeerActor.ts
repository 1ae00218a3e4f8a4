/**
 * One actor per registered peer (DESIGN.md §4): a bounded mailbox of per-database work (push
 * these entries, sync this database) with duplicates coalesced, executed against the peer's
 * addresses (the first that works), failures retried per database with exponential backoff
 * (2 s doubling to 64 s, jitter from Effect's Random), and a `SubscriptionRef` status per
 * database. Backoff spaces out the retries of work that failed; new work (a commit, a sync
 * request) is tried at once. Only the schedule's own attempts count toward it: the first failure,
 * each timed retry and each flush. An attempt of new work (or of a new address) that fails while
 * the database waits for a retry keeps its count and its retry time, so a burst of commits during
 * a short outage neither pushes the next retry out nor uses up the retries. Nothing is dropped:
 * after `maxAttempts` consecutive failures the work stays pending (state "failed", no timed
 * retries) and is tried again on the next sync request, push, flush or new address.
 * Pending work is saved through a `PendingStore` so it survives a restart: work waiting for a
 * retry at once, work tried at once when its attempt fails, and whatever is pending when the actor
 * closes. (Work whose first attempt is in flight is not written first: a commit's push would cost
 * two metadata writes for nothing when it succeeds, and a restart syncs every registered pair anyway.)
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { Address } from "../schema/Address.js"
import { MailboxFull } from "../schema/Errors.js"
import type { PeerStatus } from "../services/SyncEngine.js"
import { monotonicMillis } from "../services/Time.js"
import type { Actor } from "./SyncSupervisor.js"

/** A failure of one attempt, as the actor reports it. */
export interface PeerFailure {
  readonly _tag: string
  readonly message: string
}

/** How the actor reaches the peer: one database sync, or a push of given entries, at one address. */
export interface PeerClient {
  /** Sync one database with the peer (pull, then push what it lacks). */
  readonly sync: (address: Address, treeId: string) => Effect.Effect<unknown, PeerFailure>
  /** Deliver these entries (and whatever of their history the peer lacks). */
  readonly push: (address: Address, treeId: string, entryIds: ReadonlyArray<string>) => Effect.Effect<unknown, PeerFailure>
}

/** The work pending for one database: entries to push and whether a full sync is wanted. */
export interface PendingWork {
  readonly entries: ReadonlyArray<string>
  readonly sync: boolean
}

/**
 * Where pending work is kept across restarts (Storage metadata in the engine). Each call says
 * whether it took effect; one that did not (the store reported why) is made again at the actor's
 * next save of that database, so what it says on disk catches up with the work.
 */
export interface PendingStore {
  readonly save: (treeId: string, work: PendingWork) => Effect.Effect<boolean>
  readonly remove: (treeId: string) => Effect.Effect<boolean>
}

/** Retry policy of failed work. */
export interface Backoff {
  /** First retry delay in ms (default 2,000). */
  readonly baseMs: number
  /** Longest delay in ms (default 64,000). */
  readonly capMs: number
  /** Jitter as a fraction of the delay, drawn uniformly in ±jitter (default 0.1; 0 disables). */
  readonly jitter: number
  /** Consecutive failures after which the state is "failed" and timed retries stop (default 10). */
  readonly maxAttempts: number
}

/** The default retry policy: 2 s doubling to 64 s, ±10% jitter, "failed" after 10 attempts. */
export const defaultBackoff: Backoff = { baseMs: 2_000, capMs: 64_000, jitter: 0.1, maxAttempts: 10 }

/** The default mailbox capacity: databases with pending work per peer, of those the actor does not know (registered ones always get in). */
export const DEFAULT_CAPACITY = 1_024

/** The most entries a database's pending work is saved as a list; past it, it is saved as a full sync. */
export const SAVED_ENTRIES_MAX = 256

/** Options of a peer actor. */
export interface Options {
  /** The peer's device key. */
  readonly peer: string
  readonly client: PeerClient
  /** The peer's addresses, read before each attempt (they may change). */
  readonly addresses: Effect.Effect<ReadonlyArray<Address>>
  readonly store?: PendingStore | undefined
  /** Databases with pending work the mailbox holds at most, registered ones (`addTree`) aside (default 1,024). */
  readonly capacity?: number | undefined
  readonly backoff?: Partial<Backoff> | undefined
  /** Work loaded from the store at start. */
  readonly initial?: ReadonlyMap<string, PendingWork> | undefined
  /**
   * Resolves once peers can be reached at all (a transport is enabled): rounds wait for it, so
   * work loaded at a restart is not failed (a retry spent, a row saved) for want of a transport.
   * A flush does not wait: it is told what failed.
   */
  readonly ready?: Effect.Effect<void> | undefined
}

/** What a flush of one peer did. */
export interface FlushOutcome {
  /** Databases whose work was delivered. */
  readonly delivered: number
  /** Databases whose work failed again (still pending). */
  readonly failed: number
}

/** A running peer actor. */
export interface PeerActor {
  readonly peer: string
  /** Queue entries to push for a database (coalesced with those already queued). */
  readonly push: (treeId: string, entryIds: ReadonlyArray<string>) => Effect.Effect<void, MailboxFull>
  /** Queue a sync of a database (several collapse into one). */
  readonly sync: (treeId: string) => Effect.Effect<void, MailboxFull>
  /**
   * Sync every known database and push everything queued now, ignoring backoff; waits for the round.
   * If the actor stops first (unregistration, close), it completes then, counting as failed every
   * database whose work is left (kept, not dropped: saved as the actor closes).
   */
  readonly flush: Effect.Effect<FlushOutcome>
  /** Try failed work again now (an address was added). */
  readonly poke: Effect.Effect<void>
  /** Start reporting a database's status (registration); its work is kept. */
  readonly addTree: (treeId: string) => Effect.Effect<void>
  /** Forget a database: its pending work and status (unregistration); its initial-sync waiters are interrupted. */
  readonly removeTree: (treeId: string) => Effect.Effect<void>
  /** The status ref of a database; a detached idle one for a database this actor does not know. */
  readonly statusRef: (treeId: string) => Effect.Effect<SubscriptionRef.SubscriptionRef<PeerStatus>>
  /** The current status of a database; `idleStatus` for a database this actor does not know. */
  readonly status: (treeId: string) => Effect.Effect<PeerStatus>
  /**
   * Every status change of a database, starting with the current one, ending with `idleStatus` when
   * the database is removed or the actor stops; just `idleStatus` for an unknown one.
   */
  readonly changes: (treeId: string) => Stream.Stream<PeerStatus>
  /**
   * Completes after the first successful sync of the database with this peer; interrupted when the
   * database is removed or the actor stops (and at once for a database this actor does not know).
   */
  readonly waitForInitialSync: (treeId: string) => Effect.Effect<void>
  /** Databases this actor knows. */
  readonly trees: Effect.Effect<ReadonlyArray<string>>
}

/** The status of a database with nothing queued and never synced, or no longer registered. */
export const idleStatus: PeerStatus = { state: "idle", hasLocalData: false, pendingEntries: 0 }

/** The retry delay after `attempt` consecutive failures (1-based), for a uniform draw `r` in [0, 1). */
export const backoffDelay = (attempt: number, backoff: Backoff, r: number): number => {
  const base = Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30))
  const jittered = base * (1 + backoff.jitter * (2 * r - 1))
  return Math.max(0, Math.min(backoff.capMs, Math.round(jittered)))
}

/** A `monotonicMillis` instant as wall-clock time, as statuses show it. */
const wallTime = (at: number) => Effect.zipWith(Clock.currentTimeMillis, monotonicMillis, (wall, mono) => wall + (at - mono))

/** Build a peer actor in the current scope; supervise its `run`. */
export const make = (options: Options): Effect.Effect<Actor<PeerActor>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const backoff: Backoff = { ...defaultBackoff, ...options.backoff }
    const capacity = options.capacity ?? DEFAULT_CAPACITY
    const store = options.store
    const wake = yield* Queue.sliding<void>(1)
    const trees = new Map<string, TreeState>()
    let flushRequested = 0
    let flushCompleted = 0
    let lastOutcome: FlushOutcome = { delivered: 0, failed: 0 }
    const flushWaiters: Array<{ readonly gen: number; readonly done: Deferred.Deferred<FlushOutcome> }> = []
    /** The index of the address that worked last; tried first. */
    let preferred = 0
    /** Set as the actor's scope closes: no round runs any more, so nothing may start waiting for one. */
    let closed = false
    /**
     * Trees given new entries (a commit's push) since the round began: each goes before the round's
     * next sync, so a commit does not wait behind a round of interval syncs (one per database).
     */
    const pushed = new Set<string>()
    /** Once `options.ready` has resolved (it stays so): rounds no longer wait for it. */
    let ready = false

    const tree = (treeId: string) =>
      Effect.gen(function*() {
        const found = trees.get(treeId)
        if (found !== undefined) return found
        const created: TreeState = {
          entries: new Set(),
          sync: false,
          syncGen: 0,
          attempts: 0,
          retryAt: undefined,
          trigger: false,
          dirty: false,
          saved: false,
          savedCollapsed: false,
          status: yield* SubscriptionRef.make<PeerStatus>(idleStatus),
          initial: yield* Deferred.make<void>(),
          gone: yield* Deferred.make<void>()
        }
        // a concurrent creator may have won while this one allocated
        const again = trees.get(treeId)
        if (again !== undefined) return again
        trees.set(treeId, created)
        return created
      })

    const hasWork = (t: TreeState) => t.sync || t.entries.size > 0
    const busy = () => {
      let n = 0
      for (const t of trees.values()) if (hasWork(t)) n++
      return n
    }

    const publish = (t: TreeState, patch: Partial<Mutable<PeerStatus>>) =>
      SubscriptionRef.update(t.status, (s) => normalize({ ...s, pendingEntries: t.entries.size, ...patch }))

    const enqueue = (treeId: string, mutate: (t: TreeState) => boolean, alwaysTrigger = false) =>
      Effect.gen(function*() {
        const existing = trees.get(treeId)
        // a database the actor knows (registered) always gets its work in: bounding those too let the
        // same first `capacity` of them in at every interval (they fire together, in one order), and
        // the rest never synced. The bound is on work for databases it does not know.
        if (existing === undefined && busy() >= capacity) {
          return yield* new MailboxFull({ actor: `peer ${options.peer}`, capacity })
        }
        const t = existing ?? (yield* tree(treeId))
        const changed = mutate(t)
        // New work is tried at once even in backoff or failed (the backoff spaces out retries of
        // work that already failed, as the reference's retry queue does); a burst of commits is
        // one attempt, since the actor runs one attempt at a time and coalesces the rest. Its
        // failure in backoff does not count as a retry (see runTree).
        const retry = (changed || alwaysTrigger) && !t.trigger
        if (retry) t.trigger = true
        if (changed) {
          t.dirty = true
          yield* publish(t, {})
        }
        if (changed || retry) yield* Queue.offer(wake, undefined)
      })

    const push: PeerActor["push"] = (treeId, entryIds) =>
      enqueue(treeId, (t) => {
        const before = t.entries.size
        for (const id of entryIds) t.entries.add(id)
        if (t.entries.size === before) return false
        pushed.add(treeId)
        return true
      })

    const sync: PeerActor["sync"] = (treeId) =>
      enqueue(treeId, (t) => {
        t.syncGen++
        if (t.sync) return false
        t.sync = true
        return true
      }, true)

    const persist = (treeId: string, t: TreeState) =>
      Effect.suspend(() => {
        if (!t.dirty || store === undefined || trees.get(treeId) !== t) return Effect.void
        t.dirty = false
        // a save that did not take leaves the tree dirty, so the next round saves it again
        const settle = (done: boolean, saved: boolean) => {
          if (done) t.saved = saved
          else t.dirty = true
        }
        if (hasWork(t)) {
          // a long list is saved as a full sync (which delivers the same), once: rewriting it at every
          // commit of an outage wrote O(n²) bytes (684 MB for 6,000 commits while a peer was down)
          const collapsed = t.entries.size > SAVED_ENTRIES_MAX
          if (collapsed && t.savedCollapsed) return Effect.void
          const work: PendingWork = collapsed ? { entries: [], sync: true } : { entries: [...t.entries], sync: t.sync }
          return Effect.map(store.save(treeId, work), (done) => {
            settle(done, true)
            if (done) t.savedCollapsed = collapsed
          })
        }
        if (!t.saved) return Effect.void
        return Effect.map(store.remove(treeId), (done) => {
          settle(done, false)
          if (done) t.savedCollapsed = false
        })
      })

    const persistAll = Effect.suspend(() =>
      Effect.forEach([...trees], ([id, t]) => persist(id, t), { discard: true })
    )

    /** One attempt at the peer's addresses, the last one that worked first. */
    const attempt = (run: (address: Address) => Effect.Effect<unknown, PeerFailure>) =>
      Effect.gen(function*() {
        const addresses = yield* options.addresses
        if (addresses.length === 0) {
          return yield* Effect.fail<PeerFailure>({ _tag: "NoAddress", message: `no address known for peer ${options.peer}` })
        }
        const start = preferred < addresses.length ? preferred : 0
        let last: PeerFailure | undefined
        for (let i = 0; i < addresses.length; i++) {
          const index = (start + i) % addresses.length
          const result = yield* Effect.either(run(addresses[index]!))
          if (result._tag === "Right") {
            preferred = index
            return
          }
          last = result.left
        }
        return yield* Effect.fail(last!)
      })

    /** Run the pending work of one database once; `forced` by a flush. */
    const runTree = (treeId: string, t: TreeState, forced: boolean) =>
      Effect.gen(function*() {
        const entries = [...t.entries]
        const syncing = t.sync
        const syncGen = t.syncGen
        t.trigger = false
        yield* publish(t, { state: "syncing", retryAt: undefined })
        const result = yield* Effect.either(
          syncing ? attempt((a) => options.client.sync(a, treeId)) : attempt((a) => options.client.push(a, treeId, entries))
        )
        const now = yield* monotonicMillis
        const wall = yield* Clock.currentTimeMillis
        const shown = (at: number) => wall + (at - now)
        if (result._tag === "Right") {
          for (const id of entries) t.entries.delete(id)
          // a sync asked for while this one ran is kept: it may need what arrived meanwhile
          if (syncing && t.syncGen === syncGen) t.sync = false
          t.attempts = 0
          t.retryAt = undefined
          t.dirty = true
          yield* persist(treeId, t)
          yield* publish(t, { state: "idle", lastSync: wall, lastError: undefined, retryAt: undefined })
          if (syncing) yield* Deferred.succeed(t.initial, undefined)
          return true
        }
        // Tried early for new work or a new address while a retry is scheduled: not a retry of
        // the schedule, which keeps its count and its time (else every commit in an outage would
        // double the wait and a burst would end the retries). It counts if the retry fell due
        // while it ran (it stood in for it), and a flush counts: the caller asked for this
        // attempt, waits for it and is told it failed, so it is a retry, not a side effect of work.
        if (!forced && t.attempts > 0 && t.attempts < backoff.maxAttempts && t.retryAt !== undefined && now < t.retryAt) {
          yield* publish(t, { state: "backoff", lastError: result.left.message, retryAt: shown(t.retryAt) })
          yield* persist(treeId, t)
          return false
        }
        t.attempts++
        if (t.attempts >= backoff.maxAttempts) {
          t.retryAt = undefined
          yield* publish(t, { state: "failed", lastError: result.left.message, retryAt: undefined })
        } else {
          const r = backoff.jitter === 0 ? 0.5 : yield* Random.next
          t.retryAt = now + backoffDelay(t.attempts, backoff, r)
          yield* publish(t, { state: "backoff", lastError: result.left.message, retryAt: shown(t.retryAt) })
        }
        yield* persist(treeId, t)
        return false
      })

    const due = (t: TreeState, now: number, forced: boolean) =>
      hasWork(t) && (forced || t.trigger || (t.attempts < backoff.maxAttempts && (t.retryAt === undefined || t.retryAt <= now)))

    const run: Effect.Effect<void> = Effect.gen(function*() {
      // after a restart, nothing is running any more: a database shows where its attempts left it
      for (const t of trees.values()) {
        const s = yield* SubscriptionRef.get(t.status)
        if (s.state !== "syncing") continue
        if (t.attempts >= backoff.maxAttempts) yield* publish(t, { state: "failed", retryAt: undefined })
        else if (t.attempts > 0) yield* publish(t, { state: "backoff", retryAt: t.retryAt === undefined ? undefined : yield* wallTime(t.retryAt) })
        else yield* publish(t, { state: "idle", retryAt: undefined })
      }
      while (true) {
        const now = yield* monotonicMillis
        const flushGen = flushRequested
        const forced = flushGen > flushCompleted
        const work = [...trees].filter(([, t]) => due(t, now, forced))
        // what waits is saved now; what runs now is saved if its attempt fails (see the header)
        for (const [treeId, t] of trees) if (t.dirty && !work.some(([id]) => id === treeId)) yield* persist(treeId, t)
        if (work.length === 0 && !forced) {
          let next: number | undefined
          for (const t of trees.values()) {
            if (hasWork(t) && t.retryAt !== undefined && t.attempts < backoff.maxAttempts) {
              next = next === undefined ? t.retryAt : Math.min(next, t.retryAt)
            }
          }
          const wait = Queue.take(wake)
          yield* next === undefined ? wait : Effect.timeoutOption(wait, Duration.millis(Math.max(0, next - now)))
          continue
        }
        if (!forced && !ready && options.ready !== undefined) {
          // no transport yet: wait for one (or for a flush, which runs regardless), then look again
          ready = yield* Effect.raceFirst(Effect.as(options.ready, true), Effect.as(Queue.take(wake), false))
          if (!ready) continue
        }
        let delivered = 0
        let failed = 0
        const ran = new Set<TreeState>()
        pushed.clear()
        for (const [treeId, t] of work) {
          // commits pushed while the round ran go first (each once a round; a sync delivers them too)
          for (const hotId of pushed) {
            pushed.delete(hotId)
            const hot = trees.get(hotId)
            if (hot === undefined || ran.has(hot) || hot.sync || !hot.trigger || hot.entries.size === 0) continue
            ran.add(hot)
            // in a flush's round it is one of the flush's attempts: counted, and as forced
            const ok = yield* runTree(hotId, hot, forced)
            if (forced) ok ? delivered++ : failed++
          }
          // removed meanwhile, or removed and added again: its old work went with the old registration
          if (trees.get(treeId) !== t || ran.has(t) || !hasWork(t)) continue
          ran.add(t)
          if (yield* runTree(treeId, t, forced)) delivered++
          else failed++
        }
        if (forced) {
          flushCompleted = flushGen
          lastOutcome = { delivered, failed }
          for (let i = flushWaiters.length - 1; i >= 0; i--) {
            const w = flushWaiters[i]!
            if (w.gen <= flushGen) {
              flushWaiters.splice(i, 1)
              yield* Deferred.succeed(w.done, lastOutcome)
            }
          }
        }
      }
    })

    // work saved at the last run comes back
    for (const [treeId, work] of options.initial ?? new Map<string, PendingWork>()) {
      const t = yield* tree(treeId)
      for (const id of work.entries) t.entries.add(id)
      if (work.sync) t.sync = true
      t.saved = true
      t.savedCollapsed = work.sync && work.entries.length === 0
      yield* publish(t, {})
    }
    /**
     * Settle whatever waits on a loop that no longer runs (unregistration, close). A flush completes
     * rather than fails: nothing it was asked to deliver is dropped (persistAll just saved it, or
     * the user unregistered the peer), the outcome says what is left, and a sync engine's flush
     * should not turn the ordinary end of a peer or of the app into an error every caller handles.
     * A first sync will not happen any more: its waiters are interrupted.
     */
    const release = Effect.suspend(() => {
      closed = true
      const outcome: FlushOutcome = { delivered: 0, failed: busy() }
      const waiters = flushWaiters.splice(0)
      return Effect.zipRight(
        Effect.forEach(waiters, (w) => Deferred.succeed(w.done, outcome), { discard: true }),
        Effect.forEach([...trees.values()], (t) => Effect.zipRight(Deferred.interrupt(t.initial), Deferred.succeed(t.gone, undefined)), {
          discard: true
        })
      )
    })

    // whatever was queued but not yet saved is saved when the actor closes
    yield* Effect.addFinalizer(() => Effect.zipRight(persistAll, release))

    const actor: PeerActor = {
      peer: options.peer,
      push,
      sync,
      flush: Effect.gen(function*() {
        for (const [treeId] of trees) yield* Effect.ignore(sync(treeId))
        const done = yield* Deferred.make<FlushOutcome>()
        // checked in the same step as the waiter is added, so release cannot slip in between
        if (closed) return { delivered: 0, failed: busy() }
        flushRequested++
        flushWaiters.push({ gen: flushRequested, done })
        yield* Queue.offer(wake, undefined)
        return yield* Deferred.await(done)
      }),
      poke: Effect.gen(function*() {
        for (const t of trees.values()) if (hasWork(t)) t.trigger = true
        yield* Queue.offer(wake, undefined)
      }),
      addTree: (treeId) => Effect.asVoid(tree(treeId)),
      removeTree: (treeId) =>
        Effect.gen(function*() {
          const t = trees.get(treeId)
          if (t === undefined) return
          trees.delete(treeId)
          // its first sync will not run any more, and its subscriptions end
          yield* Deferred.interrupt(t.initial)
          yield* Deferred.succeed(t.gone, undefined)
          if (store !== undefined) yield* store.remove(treeId)
        }),
      // Reads never create a database's state: a handle kept after unregistration would bring the
      // database back, and the next flush would sync it and save its work as pending.
      statusRef: (treeId) =>
        Effect.suspend(() => {
          const t = trees.get(treeId)
          return t === undefined ? SubscriptionRef.make(idleStatus) : Effect.succeed(t.status)
        }),
      status: (treeId) =>
        Effect.suspend(() => {
          const t = trees.get(treeId)
          return t === undefined ? Effect.succeed(idleStatus) : SubscriptionRef.get(t.status)
        }),
      // nothing will ever change for an unknown database: its stream ends after the one status; a
      // known one's ends the same way when it is removed or the actor stops (a registration made
      // again later has a status of its own, which the ended stream would never see)
      changes: (treeId) =>
        Stream.suspend(() => {
          const t = trees.get(treeId)
          return t === undefined
            ? Stream.make(idleStatus)
            : Stream.concat(Stream.interruptWhen(t.status.changes, Deferred.await(t.gone)), Stream.make(idleStatus))
        }),
      waitForInitialSync: (treeId) =>
        Effect.suspend(() => {
          const t = trees.get(treeId)
          return t === undefined || closed ? Effect.interrupt : Deferred.await(t.initial)
        }),
      trees: Effect.sync(() => [...trees.keys()])
    }
    return { value: actor, run }
  })

// ---------------------------------------------------------------------------------------------
// helpers

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

interface TreeState {
  readonly entries: Set<string>
  sync: boolean
  /** Bumped by every sync request, so one asked for during a running sync is not lost. */
  syncGen: number
  /** Consecutive failures of the schedule's attempts (the first, timed retries, flushes); not of early ones. */
  attempts: number
  /** When the next timed retry is due, in `monotonicMillis` (statuses show it in wall-clock time). */
  retryAt: number | undefined
  /** Run at the next turn even in backoff or failed (new work after giving up, a new address). */
  trigger: boolean
  /** Changed since last saved. */
  dirty: boolean
  /** Whether the store holds work of this database (so clearing it needs a remove). */
  saved: boolean
  /** Whether what it holds is the collapsed form (a full sync standing for a long list). */
  savedCollapsed: boolean
  readonly status: SubscriptionRef.SubscriptionRef<PeerStatus>
  readonly initial: Deferred.Deferred<void>
  /** Completed when the database is removed or the actor stops: its status changes no more. */
  readonly gone: Deferred.Deferred<void>
}

/** Leave out undefined optional fields (whichever a status has), so statuses compare and print cleanly. */
const normalize = (s: PeerStatus): PeerStatus => {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(s)) if (value !== undefined) out[key] = value
  return out as unknown as PeerStatus
}
