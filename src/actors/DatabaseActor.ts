/**
 * One actor per tracked database with sync enabled (DESIGN.md §4). It hands each local commit's
 * entries to every peer registered for the database at once (sync-on-commit), relays entries
 * received from one peer to the others, runs the periodic sync every `intervalSeconds` (default
 * 300 s), and re-reads the combined settings every 60 s: when sync is turned off the actor ends
 * (and its supervisor removes it); when the interval changes the period follows.
 *
 * Write events reach it through the engine's single subscription (`onWrite`), so an actor started
 * lazily by a write still sees that write.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type { MailboxFull } from "../schema/Errors.js"
import type { SyncSettings } from "../schema/SyncSettings.js"
import type { WriteEvent } from "../services/WriteEvents.js"
import type { Actor } from "./SyncSupervisor.js"

/** The period of the background sync when no tracking sets one (seconds). */
export const DEFAULT_INTERVAL_SECONDS = 300

/** How often the combined settings are read again (seconds). */
export const SETTINGS_REFRESH_SECONDS = 60

/** A peer the database syncs with, as the database actor drives it. */
export interface PeerTarget {
  readonly peer: string
  readonly push: (treeId: string, entryIds: ReadonlyArray<string>) => Effect.Effect<void, MailboxFull>
  readonly sync: (treeId: string) => Effect.Effect<void, MailboxFull>
}

/** Options of a database actor. */
export interface Options {
  readonly treeId: string
  /** The database's combined settings, read fresh. */
  readonly settings: Effect.Effect<SyncSettings | undefined>
  /** The peers registered for this database, read fresh. */
  readonly peers: Effect.Effect<ReadonlyArray<PeerTarget>>
}

/** A running database actor. */
export interface DatabaseActor {
  readonly treeId: string
  /** Handle one stored batch of this database, under the settings just read. */
  readonly onWrite: (event: WriteEvent, settings: SyncSettings) => Effect.Effect<void>
  /** Ask every peer for a sync of this database now. */
  readonly syncAll: Effect.Effect<void>
}

/** Build a database actor; supervise its `run` (the periodic sync and settings refresh). */
export const make = (options: Options): Effect.Effect<Actor<DatabaseActor>> =>
  Effect.sync(() => {
    const { treeId } = options

    const tell = (target: PeerTarget, send: Effect.Effect<void, MailboxFull>) =>
      send.pipe(
        // the periodic sync picks the work up again once the mailbox drains
        Effect.catchTag("MailboxFull", (e) => Effect.logWarning(`sync of ${treeId} to ${target.peer} deferred: ${e.message}`))
      )

    const syncAll = Effect.flatMap(options.peers, (peers) =>
      Effect.forEach(peers, (p) => tell(p, p.sync(treeId)), { discard: true })
    )

    const onWrite: DatabaseActor["onWrite"] = (event, settings) =>
      Effect.gen(function*() {
        if (!settings.syncEnabled || !settings.syncOnCommit || event.entryIds.length === 0) return
        const peers = yield* options.peers
        for (const p of peers) {
          // relay received entries onward, never back to the peer they came from
          if (event.source === "remote" && event.peer === p.peer) continue
          yield* tell(p, p.push(treeId, event.entryIds))
        }
      })

    const changed = (a: SyncSettings | undefined, b: SyncSettings | undefined) =>
      a?.syncEnabled !== b?.syncEnabled || a?.intervalSeconds !== b?.intervalSeconds

    const run = Effect.gen(function*() {
      let current = yield* options.settings
      while (current?.syncEnabled === true) {
        const seen = current
        const period = Duration.seconds(seen.intervalSeconds ?? DEFAULT_INTERVAL_SECONDS)
        // the first tick is one period after start, as in the reference
        const periodic = Effect.zipRight(Effect.sleep(period), Effect.repeat(syncAll, Schedule.spaced(period)))
        const watch = Effect.repeat(Effect.delay(options.settings, Duration.seconds(SETTINGS_REFRESH_SECONDS)), {
          until: (s) => changed(s, seen)
        })
        current = yield* Effect.raceFirst(Effect.as(periodic, seen), watch)
      }
    })

    return { value: { treeId, onWrite, syncAll }, run }
  })
