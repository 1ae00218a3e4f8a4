/**
 * Auth schemas: signature keys (SigKey), auth keys and the `_settings.auth` section.
 */
import * as Schema from "effect/Schema"
import { PubKey } from "./Ids.js"
import { Permission } from "./Permission.js"

/** A hint naming the signer: by public key, by name, or as a `*` global signer. */
export const KeyHint = Schema.Struct({
  pubkey: Schema.optional(PubKey),
  name: Schema.optional(Schema.String),
  is_global: Schema.optional(Schema.Literal(true))
})
/** A key hint. */
export type KeyHint = typeof KeyHint.Type

/** One step of a delegation path (kept for format fidelity; delegation is not resolved yet). */
export const DelegationStep = Schema.Struct({ tree: Schema.String, tips: Schema.Array(Schema.String) })

/** The signer of an entry, externally tagged as in the reference. */
export const SigKey = Schema.Union(
  Schema.Struct({ Direct: Schema.Struct({ hint: KeyHint }) }),
  Schema.Struct({ Delegation: Schema.Struct({ path: Schema.Array(DelegationStep), hint: KeyHint }) })
)
/** A signature key. */
export type SigKey = typeof SigKey.Type

/** Key status: revoked keys never grant anything. */
export const KeyStatus = Schema.Literal("Active", "Revoked")
/** A key status. */
export type KeyStatus = typeof KeyStatus.Type

/** An entry of `_settings.auth.keys` (or `auth.global`). */
export const AuthKey = Schema.Struct({
  name: Schema.optional(Schema.String),
  permissions: Permission,
  status: KeyStatus
})
/** An auth key. */
export type AuthKey = typeof AuthKey.Type

/** The `_settings.auth` section as a plain value. */
export const AuthSettings = Schema.Struct({
  keys: Schema.Record({ key: Schema.String, value: AuthKey }),
  global: Schema.optional(AuthKey)
})
/** Auth settings. */
export type AuthSettings = typeof AuthSettings.Type

/** A direct signature key naming a public key. */
export const directKey = (pubkey: string): SigKey => ({ Direct: { hint: { pubkey } } })
/** A signature key signing under the global `*` grant, carrying the real public key. */
export const globalKey = (pubkey: string): SigKey => ({ Direct: { hint: { pubkey, is_global: true } } })
/** The hint of a signature key. */
export const hintOf = (key: SigKey): KeyHint => ("Direct" in key ? key.Direct.hint : key.Delegation.hint)
