/**
 * Per-user sync preferences of a tracked database, and their combination across users.
 */
import * as Schema from "effect/Schema"

/** How a user wants one database synced. */
export const SyncSettings = Schema.Struct({
  syncEnabled: Schema.Boolean,
  syncOnCommit: Schema.Boolean,
  intervalSeconds: Schema.optional(Schema.Number.pipe(Schema.int(), Schema.positive())),
  properties: Schema.Record({ key: Schema.String, value: Schema.String })
})
/** Sync settings. */
export type SyncSettings = typeof SyncSettings.Type

/** A database a user tracks, with the key the user uses for it and the sync settings. */
export const TrackedDatabase = Schema.Struct({
  databaseId: Schema.String,
  keyId: Schema.String,
  syncSettings: SyncSettings
})
/** A tracked database. */
export type TrackedDatabase = typeof TrackedDatabase.Type

/** Sync off: the default for a database a user creates. */
export const disabled: SyncSettings = { syncEnabled: false, syncOnCommit: false, properties: {} }

/** Combine the settings of every user tracking a database: OR, OR, MIN, union (later values win). */
export const combine = (all: ReadonlyArray<SyncSettings>): SyncSettings => {
  let intervalSeconds: number | undefined
  const properties: Record<string, string> = {}
  for (const s of all) {
    if (s.intervalSeconds !== undefined) intervalSeconds = intervalSeconds === undefined ? s.intervalSeconds : Math.min(intervalSeconds, s.intervalSeconds)
    Object.assign(properties, s.properties)
  }
  return {
    syncEnabled: all.some((s) => s.syncEnabled),
    syncOnCommit: all.some((s) => s.syncOnCommit),
    ...(intervalSeconds !== undefined ? { intervalSeconds } : {}),
    properties
  }
}
