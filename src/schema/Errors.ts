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
    // the reference's words: "Authentication required to read database '<id>'"
    return /^(to|for) /.test(this.detail) ? `Authentication required ${this.detail}` : `Authentication required: ${this.detail}`
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

/** Sealed data did not open: the password (key) is wrong or the ciphertext, tag or nonce was altered. */
export class DecryptionFailed extends Schema.TaggedError<DecryptionFailed>()("DecryptionFailed", {
  detail: Schema.optional(Schema.String)
}) {
  override get message() {
    return `Decryption failed: wrong password or corrupted data${this.detail ? ` (${this.detail})` : ""}`
  }
}

/** A sync message (request or response) did not have the protocol's shape; `detail` names the bad field. */
export class MalformedMessage extends Schema.TaggedError<MalformedMessage>()("MalformedMessage", {
  detail: Schema.String
}) {
  override get message() {
    return `Malformed message: ${this.detail}`
  }
}

/** A sync operation needs a transport and none is enabled. */
export class NoTransportEnabled extends Schema.TaggedError<NoTransportEnabled>()("NoTransportEnabled", {}) {
  override get message() {
    return "No transport enabled. Call enable_http_transport() first"
  }
}

/** A sync operation was attempted on an Instance without sync. */
export class SyncNotEnabled extends Schema.TaggedError<SyncNotEnabled>()("SyncNotEnabled", {}) {
  override get message() {
    return "Sync is not enabled on this Instance. Call Instance::enable_sync() first"
  }
}

/** A transport was asked to serve while its server is already running. */
export class ServerAlreadyRunning extends Schema.TaggedError<ServerAlreadyRunning>()("ServerAlreadyRunning", {
  address: Schema.String
}) {
  override get message() {
    return `Server already running on ${this.address}`
  }
}

/** A server operation needs a running server and there is none. */
export class ServerNotRunning extends Schema.TaggedError<ServerNotRunning>()("ServerNotRunning", {}) {
  override get message() {
    return "Server not running"
  }
}

/**
 * A transport could not reach, bind or talk to an address (refused, timed out, non-2xx, bad bind
 * string). `operation` is "listen" when a server could not bind; otherwise the client's connect.
 */
export class TransportError extends Schema.TaggedError<TransportError>()("TransportError", {
  address: Schema.String,
  reason: Schema.String,
  operation: Schema.optional(Schema.Literal("connect", "listen")),
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return this.operation === "listen"
      ? `Failed to listen on ${this.address}: ${this.reason}`
      : `Failed to connect to ${this.address}: ${this.reason}`
  }
}

/** An address its transport cannot read (an http address that is not `host:port`, an iroh one without a ticket's form); nothing was saved. */
export class InvalidAddress extends Schema.TaggedError<InvalidAddress>()("InvalidAddress", {
  address: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `Invalid address: ${this.reason}`
  }
}

/** No enabled transport handles the address's `transport_type`. */
export class NoTransportForAddress extends Schema.TaggedError<NoTransportForAddress>()("NoTransportForAddress", {
  address: Schema.String
}) {
  override get message() {
    return `No transport can handle address: ${this.address}`
  }
}

/** The peer speaks another protocol version. */
export class ProtocolVersionMismatch extends Schema.TaggedError<ProtocolVersionMismatch>()(
  "ProtocolVersionMismatch",
  { expected: Schema.Number, received: Schema.Number }
) {
  override get message() {
    return `Protocol version mismatch: expected ${this.expected}, received ${this.received}`
  }
}

/** The handshake failed (bad challenge response, unexpected answer). */
export class HandshakeFailed extends Schema.TaggedError<HandshakeFailed>()("HandshakeFailed", {
  reason: Schema.String
}) {
  override get message() {
    return `Handshake failed: ${this.reason}`
  }
}

/** A message is larger than the transport accepts. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  limit: Schema.Number
}) {
  override get message() {
    return `Payload too large: a message may be at most ${this.limit} bytes`
  }
}

/** The peer holds the bootstrap request for an administrator's approval. */
export class BootstrapPending extends Schema.TaggedError<BootstrapPending>()("BootstrapPending", {
  requestId: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `Bootstrap request pending approval (request_id: ${this.requestId}): ${this.detail}`
  }
}

/** The peer answered with an `Error` response. */
export class RemoteError extends Schema.TaggedError<RemoteError>()("RemoteError", {
  address: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `Peer ${this.address} answered with an error: ${this.detail}`
  }
}

/** No key with this public key (in a database's auth, or among a user's keys). */
export class KeyNotFound extends Schema.TaggedError<KeyNotFound>()("KeyNotFound", {
  key: Schema.String
}) {
  override get message() {
    return `Key not found: ${this.key}`
  }
}

/** No user with this name on this instance. */
export class UserNotFound extends Schema.TaggedError<UserNotFound>()("UserNotFound", {
  username: Schema.String
}) {
  override get message() {
    return `User not found: ${this.username}. Create it first with createUser`
  }
}

/** A user with this name already exists. */
export class UserExists extends Schema.TaggedError<UserExists>()("UserExists", {
  username: Schema.String
}) {
  override get message() {
    return `User already exists: ${this.username}. Log in with loginUser, or choose another name`
  }
}

/** The password was wrong, missing, or given for a passwordless user. */
export class InvalidPassword extends Schema.TaggedError<InvalidPassword>()("InvalidPassword", {
  username: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `Invalid password for user ${this.username}: ${this.detail}`
  }
}

/** No database with this name among a user's databases. */
export class DatabaseNotFound extends Schema.TaggedError<DatabaseNotFound>()("DatabaseNotFound", {
  name: Schema.String
}) {
  override get message() {
    return `No database named "${this.name}" among this user's databases; create it, or track it after syncing`
  }
}

/** An actor's mailbox is full: the work was not queued (it is retried on the next interval or commit). */
export class MailboxFull extends Schema.TaggedError<MailboxFull>()("MailboxFull", {
  actor: Schema.String,
  capacity: Schema.Number
}) {
  override get message() {
    return `Mailbox of ${this.actor} is full (capacity ${this.capacity}); the work will be retried`
  }
}

/** A bootstrap request is not in the state the operation needs (e.g. approving one already approved). */
export class InvalidRequestState extends Schema.TaggedError<InvalidRequestState>()("InvalidRequestState", {
  requestId: Schema.String,
  status: Schema.String
}) {
  override get message() {
    return `Invalid request state: request ${this.requestId} is ${this.status}, not Pending`
  }
}

/** No bootstrap request with this id. */
export class RequestNotFound extends Schema.TaggedError<RequestNotFound>()("RequestNotFound", {
  requestId: Schema.String
}) {
  override get message() {
    return `Bootstrap request not found: ${this.requestId}`
  }
}

/** A ticket (`eidetica:?db=…&pr=…`) that cannot be read, or that gives no address to sync with. */
export class InvalidTicket extends Schema.TaggedError<InvalidTicket>()("InvalidTicket", {
  reason: Schema.String
}) {
  override get message() {
    return `Invalid ticket: ${this.reason}`
  }
}

/** A feature this build does not have yet (the iroh transport). */
export class NotImplemented extends Schema.TaggedError<NotImplemented>()("NotImplemented", {
  feature: Schema.String
}) {
  override get message() {
    return `${this.feature} is not available in this build of eidetica-ts yet`
  }
}
