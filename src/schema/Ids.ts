/**
 * Identifier schemas: entry IDs (CIDv1 base32 strings) and ed25519 public keys.
 */
import * as Schema from "effect/Schema"

/** An entry ID: CIDv1 (dag-cbor, BLAKE3-256) in base32lower, `bafyr4i…`. */
export const EntryId = Schema.String.pipe(
  Schema.pattern(/^b[a-z2-7]{20,}$/, { message: () => "an entry ID must be a base32 CIDv1 string (b…)" })
)
/** An entry ID as a plain string (IDs cross many boundaries; branding buys little here). */
export type EntryId = string

/** A public key string, `ed25519:<base64 of 32 bytes>`. */
export const PubKey = Schema.String.pipe(
  Schema.pattern(/^ed25519:[A-Za-z0-9+/]{43}=$/, {
    message: () => "a public key must look like ed25519:<base64 of 32 bytes>"
  })
)
/** A public key string. */
export type PubKey = string

/** Whether a value is a well-formed public key, `ed25519:<base64 of 32 bytes>`. */
export const isPubKey: (value: unknown) => value is PubKey = Schema.is(PubKey)

/** Ordering of IDs used everywhere a deterministic tie-break is needed (plain code-unit order). */
export const compareIds = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)
