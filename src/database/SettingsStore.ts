/**
 * The settings view inside a transaction: name, global grant, auth keys and revocation. Changes are
 * staged into `_settings` and checked at commit (Admin only, and never above the signer's own authority).
 */
import * as Effect from "effect/Effect"
import type { Doc } from "../core/Doc.js"
import * as Entry from "../core/Entry.js"
import * as Settings from "../core/Settings.js"
import type { AuthKey, AuthSettings } from "../schema/Auth.js"
import { KeyNotFound } from "../schema/Errors.js"
import type * as Permission from "../schema/Permission.js"
import type { DatabaseEnv } from "./Database.js"
import { DocReader } from "./Stores.js"
import * as Transaction from "./Transaction.js"

/** Settings of a database, read and staged through a transaction. */
export class SettingsStore extends DocReader {
  constructor(readonly txn: Transaction.Transaction) {
    super(() => Transaction.read(txn, Entry.SETTINGS))
  }
  private get delta(): Doc {
    return Transaction.stage(this.txn, Entry.SETTINGS, "settings")
  }
  /** Set the database's name. */
  setName(name: string): Effect.Effect<void> {
    return Effect.sync(() => void this.delta.set("name", name))
  }
  /** Set any top-level setting other than `auth` (use the auth methods for that). */
  set(key: string, value: string | number | boolean): Effect.Effect<void> {
    return Effect.sync(() => void this.delta.set(key, value))
  }
  /** The auth section as the transaction sees it. */
  auth(): Effect.Effect<AuthSettings, Transaction.CommitError, DatabaseEnv> {
    return Effect.map(Transaction.read(this.txn, Entry.SETTINGS), (doc) => {
      const state = Settings.authOf(doc)
      return state._tag === "Present" ? state.auth : { keys: {} }
    })
  }
  /** Grant (or change) a key's permission; the key becomes Active. */
  setAuthKey(pubkey: string, options: { readonly permission: Permission.Permission; readonly name?: string | undefined }): Effect.Effect<void> {
    const key: AuthKey = options.name !== undefined
      ? { name: options.name, permissions: options.permission, status: "Active" }
      : { permissions: options.permission, status: "Active" }
    return Effect.sync(() => void this.delta.setPath(`auth.keys.${pubkey}`, Settings.authKeyDoc(key)))
  }
  /** Revoke a key: it stays listed with status Revoked and grants nothing for entries written after. */
  revokeAuthKey(pubkey: string): Effect.Effect<void, KeyNotFound | Transaction.CommitError, DatabaseEnv> {
    return Effect.flatMap(this.auth(), (auth) => {
      const key = auth.keys[pubkey]
      if (key === undefined) return Effect.fail(new KeyNotFound({ key: pubkey }))
      return Effect.sync(() => void this.delta.setPath(`auth.keys.${pubkey}`, Settings.authKeyDoc({ ...key, status: "Revoked" })))
    })
  }
  /** Set the global `*` grant, so that every key may sign with this permission. */
  setGlobalPermission(permission: Permission.Permission): Effect.Effect<void> {
    return Effect.sync(() => void this.delta.setPath("auth.global", Settings.authKeyDoc({ permissions: permission, status: "Active" })))
  }
  /** Remove the global grant (it stays as Revoked). */
  revokeGlobalPermission(): Effect.Effect<void, Transaction.CommitError, DatabaseEnv> {
    return Effect.flatMap(this.auth(), (auth) =>
      Effect.sync(() => {
        if (auth.global !== undefined) this.delta.setPath("auth.global", Settings.authKeyDoc({ ...auth.global, status: "Revoked" }))
      })
    )
  }
}
