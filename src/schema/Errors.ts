/**
 * Errors that cross a boundary (storage, wire, facade). Each carries a `_tag` and a message that
 * says what went wrong and, where it can, what to do.
 */
import * as Schema from "effect/Schema"

/** An entry failed decoding or validation; nothing of it was stored. */
export class InvalidEntry extends Schema.TaggedError<InvalidEntry>()("InvalidEntry", {
  reason: Schema.String,
  entryId: Schema.optional(Schema.String)
}) {
  override get message() {
    return this.entryId ? `Invalid entry ${this.entryId}: ${this.reason}` : `Invalid entry: ${this.reason}`
  }
}

/** The storage backend failed (I/O, SQL, corrupt rows). */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  operation: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `Storage failed during ${this.operation}${this.cause instanceof Error ? `: ${this.cause.message}` : ""}`
  }
}

/** No entry with this ID is stored here. */
export class EntryNotFound extends Schema.TaggedError<EntryNotFound>()("EntryNotFound", {
  id: Schema.String
}) {
  override get message() {
    return `Entry not found: ${this.id}`
  }
}

/** No database (tree) with this ID is here, or it is not served. */
export class TreeNotFound extends Schema.TaggedError<TreeNotFound>()("TreeNotFound", {
  treeId: Schema.String
}) {
  override get message() {
    return `Tree not found: ${this.treeId}`
  }
}

/** An operation needs a signing key or a signed request and had none. */
export class AuthenticationRequired extends Schema.TaggedError<AuthenticationRequired>()(
  "AuthenticationRequired",
  { detail: Schema.String }
) {
  override get message() {
    return `Authentication required: ${this.detail}`
  }
}

/** The key has no, or not enough, permission for what was attempted. */
export class PermissionDenied extends Schema.TaggedError<PermissionDenied>()("PermissionDenied", {
  detail: Schema.String
}) {
  override get message() {
    return `Permission denied: ${this.detail}`
  }
}

/** A commit would delete `_settings.auth` or replace it with something that is not a map. */
export class CorruptedAuthConfiguration extends Schema.TaggedError<CorruptedAuthConfiguration>()(
  "CorruptedAuthConfiguration",
  { detail: Schema.String }
) {
  override get message() {
    return `Corrupted auth configuration: ${this.detail}`
  }
}

/** A signature, key or ciphertext could not be produced or checked. */
export class CryptoError extends Schema.TaggedError<CryptoError>()("CryptoError", {
  detail: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `Crypto failure: ${this.detail}`
  }
}
