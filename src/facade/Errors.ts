/**
 * Errors of the Promise facade. Every rejection is an `EideticaError`: a subclass per `_tag`
 * (created once and cached, so `err instanceof PermissionDenied` works), with the tagged error's
 * message and fields and the original error as `cause`. Defects reject as `Defect`, interruption
 * as `AbortError`; a FiberFailure never reaches a user.
 */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as Schema from "effect/Schema"
import * as Errors from "../schema/Errors.js"

/** The facade class of every tag met so far. */
const classes = new Map<string, EideticaErrorClass<string, {}>>()

/** Properties an error's fields may not overwrite. */
const RESERVED = new Set(["_tag", "name", "message", "stack", "cause"])

/** Options of an EideticaError. */
export interface EideticaErrorOptions {
  /** The case; defaults to the class's tag. */
  readonly _tag?: string | undefined
  /** Fields copied onto the error (`requestId`, `username`, …). */
  readonly fields?: Readonly<Record<string, unknown>> | undefined
  /** The underlying error. */
  readonly cause?: unknown
}

/** The base class of every error the Promise facade rejects with. */
export class EideticaError extends Error {
  /** The tag of the base class; subclasses carry their own. */
  static readonly tag: string = "EideticaError"
  /** The case of the error (`PermissionDenied`, `UserNotFound`, `Defect`, …). */
  readonly _tag: string

  constructor(message: string, options: EideticaErrorOptions = {}) {
    super(message, "cause" in options ? { cause: options.cause } : undefined)
    this._tag = options._tag ?? (new.target as { readonly tag?: string }).tag ?? "EideticaError"
    this.name = this._tag
    for (const [key, value] of Object.entries(options.fields ?? {})) {
      if (!RESERVED.has(key)) Object.defineProperty(this, key, { value, enumerable: true, writable: false })
    }
  }
}

/** A constructor of the facade error for one tagged error class `E` of the engine. */
export type EideticaErrorClass<Tag extends string, Fields> = {
  new (message: string, options?: EideticaErrorOptions): EideticaError & Fields & { readonly _tag: Tag }
  readonly tag: Tag
  /** Typed as an instance, so `e instanceof BootstrapPending` narrows `e` to its fields and tag. */
  readonly prototype: EideticaError & Fields & { readonly _tag: Tag }
}

/** The facade class for a tag: created on first use, then always the same class. */
export const errorClass = (tag: string): EideticaErrorClass<string, {}> => {
  const known = classes.get(tag)
  if (known !== undefined) return known
  const created = class extends EideticaError {
    static override readonly tag: string = tag
  }
  Object.defineProperty(created, "name", { value: tag })
  classes.set(tag, created)
  return created
}

/** The class of a facade-only tag (one with no fields), typed with its literal tag. */
const facadeClass = <Tag extends string>(tag: Tag): EideticaErrorClass<Tag, {}> =>
  errorClass(tag) as EideticaErrorClass<Tag, {}>

/** A broken invariant or a bug: `_tag: "Defect"`, the defect as `cause`. */
export const Defect = facadeClass("Defect")
/** The operation was interrupted (for example by `close()`). */
export const AbortError = facadeClass("AbortError")
/** The instance was closed; open it again to continue. */
export const InstanceClosed = facadeClass("InstanceClosed")
/** A facade call got an argument of the wrong type or shape. */
export const InvalidArgument = facadeClass("InvalidArgument")
/** A feature of the API this build does not provide yet. */
export const NotImplemented = facadeClass("NotImplemented")

/** @see Errors.InvalidEntry */
export const InvalidEntry = fromSchema(Errors.InvalidEntry)
/** @see Errors.StorageError */
export const StorageError = fromSchema(Errors.StorageError)
/** @see Errors.EntryNotFound */
export const EntryNotFound = fromSchema(Errors.EntryNotFound)
/** @see Errors.TreeNotFound */
export const TreeNotFound = fromSchema(Errors.TreeNotFound)
/** @see Errors.AuthenticationRequired */
export const AuthenticationRequired = fromSchema(Errors.AuthenticationRequired)
/** @see Errors.PermissionDenied */
export const PermissionDenied = fromSchema(Errors.PermissionDenied)
/** @see Errors.CorruptedAuthConfiguration */
export const CorruptedAuthConfiguration = fromSchema(Errors.CorruptedAuthConfiguration)
/** @see Errors.CryptoError */
export const CryptoError = fromSchema(Errors.CryptoError)
/** @see Errors.DecryptionFailed */
export const DecryptionFailed = fromSchema(Errors.DecryptionFailed)
/** @see Errors.MalformedMessage */
export const MalformedMessage = fromSchema(Errors.MalformedMessage)
/** @see Errors.NoTransportEnabled */
export const NoTransportEnabled = fromSchema(Errors.NoTransportEnabled)
/** @see Errors.SyncNotEnabled */
export const SyncNotEnabled = fromSchema(Errors.SyncNotEnabled)
/** @see Errors.ServerAlreadyRunning */
export const ServerAlreadyRunning = fromSchema(Errors.ServerAlreadyRunning)
/** @see Errors.ServerNotRunning */
export const ServerNotRunning = fromSchema(Errors.ServerNotRunning)
/** @see Errors.TransportError */
export const TransportError = fromSchema(Errors.TransportError)
/** @see Errors.InvalidAddress */
export const InvalidAddress = fromSchema(Errors.InvalidAddress)
/** @see Errors.NoTransportForAddress */
export const NoTransportForAddress = fromSchema(Errors.NoTransportForAddress)
/** @see Errors.ProtocolVersionMismatch */
export const ProtocolVersionMismatch = fromSchema(Errors.ProtocolVersionMismatch)
/** @see Errors.HandshakeFailed */
export const HandshakeFailed = fromSchema(Errors.HandshakeFailed)
/** @see Errors.PayloadTooLarge */
export const PayloadTooLarge = fromSchema(Errors.PayloadTooLarge)
/** @see Errors.BootstrapPending */
export const BootstrapPending = fromSchema(Errors.BootstrapPending)
/** @see Errors.RemoteError */
export const RemoteError = fromSchema(Errors.RemoteError)
/** @see Errors.KeyNotFound */
export const KeyNotFound = fromSchema(Errors.KeyNotFound)
/** @see Errors.UserNotFound */
export const UserNotFound = fromSchema(Errors.UserNotFound)
/** @see Errors.UserExists */
export const UserExists = fromSchema(Errors.UserExists)
/** @see Errors.InvalidPassword */
export const InvalidPassword = fromSchema(Errors.InvalidPassword)
/** @see Errors.DatabaseNotFound */
export const DatabaseNotFound = fromSchema(Errors.DatabaseNotFound)
/** @see Errors.MailboxFull */
export const MailboxFull = fromSchema(Errors.MailboxFull)
/** @see Errors.InvalidRequestState */
export const InvalidRequestState = fromSchema(Errors.InvalidRequestState)
/** @see Errors.RequestNotFound */
export const RequestNotFound = fromSchema(Errors.RequestNotFound)
/** @see Errors.InvalidTicket */
export const InvalidTicket = fromSchema(Errors.InvalidTicket)

/** The instance types of the named error classes, so they can be used as types too. */
export type Defect = InstanceType<typeof Defect>
/** An interruption. */
export type AbortError = InstanceType<typeof AbortError>
/** A closed instance. */
export type InstanceClosed = InstanceType<typeof InstanceClosed>
/** A bad argument. */
export type InvalidArgument = InstanceType<typeof InvalidArgument>
/** A missing feature. */
export type NotImplemented = InstanceType<typeof NotImplemented>
/** An invalid entry. */
export type InvalidEntry = InstanceType<typeof InvalidEntry>
/** A storage failure. */
export type StorageError = InstanceType<typeof StorageError>
/** A missing entry. */
export type EntryNotFound = InstanceType<typeof EntryNotFound>
/** A missing database. */
export type TreeNotFound = InstanceType<typeof TreeNotFound>
/** Authentication required. */
export type AuthenticationRequired = InstanceType<typeof AuthenticationRequired>
/** Permission denied. */
export type PermissionDenied = InstanceType<typeof PermissionDenied>
/** Corrupted auth configuration. */
export type CorruptedAuthConfiguration = InstanceType<typeof CorruptedAuthConfiguration>
/** A crypto failure. */
export type CryptoError = InstanceType<typeof CryptoError>
/** A decryption failure. */
export type DecryptionFailed = InstanceType<typeof DecryptionFailed>
/** A malformed sync message. */
export type MalformedMessage = InstanceType<typeof MalformedMessage>
/** No transport enabled. */
export type NoTransportEnabled = InstanceType<typeof NoTransportEnabled>
/** Sync not enabled. */
export type SyncNotEnabled = InstanceType<typeof SyncNotEnabled>
/** Server already running. */
export type ServerAlreadyRunning = InstanceType<typeof ServerAlreadyRunning>
/** Server not running. */
export type ServerNotRunning = InstanceType<typeof ServerNotRunning>
/** A transport failure. */
export type TransportError = InstanceType<typeof TransportError>
/** No transport for an address. */
export type NoTransportForAddress = InstanceType<typeof NoTransportForAddress>
/** A protocol version mismatch. */
export type ProtocolVersionMismatch = InstanceType<typeof ProtocolVersionMismatch>
/** A failed handshake. */
export type HandshakeFailed = InstanceType<typeof HandshakeFailed>
/** A message too large. */
export type PayloadTooLarge = InstanceType<typeof PayloadTooLarge>
/** A bootstrap request waiting for approval (`requestId`). */
export type BootstrapPending = InstanceType<typeof BootstrapPending>
/** An error answered by a peer. */
export type RemoteError = InstanceType<typeof RemoteError>
/** A missing key. */
export type KeyNotFound = InstanceType<typeof KeyNotFound>
/** A missing user. */
export type UserNotFound = InstanceType<typeof UserNotFound>
/** A duplicate user. */
export type UserExists = InstanceType<typeof UserExists>
/** A wrong, missing or unexpected password. */
export type InvalidPassword = InstanceType<typeof InvalidPassword>
/** No database by that name. */
export type DatabaseNotFound = InstanceType<typeof DatabaseNotFound>
/** An actor's mailbox is full. */
export type MailboxFull = InstanceType<typeof MailboxFull>
/** A bootstrap request already decided. */
export type InvalidRequestState = InstanceType<typeof InvalidRequestState>
/** No bootstrap request by that id. */
export type RequestNotFound = InstanceType<typeof RequestNotFound>
/** An unreadable ticket. */
export type InvalidTicket = InstanceType<typeof InvalidTicket>

/** Turn anything an engine operation failed with into the facade error for it. */
export const fromFailure = (error: unknown): EideticaError => {
  if (error instanceof EideticaError) return error
  if (isTagged(error)) {
    const Class = errorClass(error._tag)
    return new Class(messageOf(error), { fields: fieldsOf(error), cause: error })
  }
  return new Defect(`Unexpected failure: ${messageOf(error)}`, { cause: error })
}

/** Map a Cause: the first typed failure, else the first defect, else an interruption. */
export const fromCause = (cause: Cause.Cause<unknown>): EideticaError => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return fromFailure(failure.value)
  const defect = Chunk.head(Cause.defects(cause))
  if (Option.isSome(defect)) return fromDefect(defect.value)
  return new AbortError("The operation was interrupted", { cause: Cause.squash(cause) })
}

/** Map an Exit: the value, or the facade error as a rejection. */
export const settle = <A, E>(exit: Exit.Exit<A, E>): Promise<A> =>
  Exit.isSuccess(exit) ? Promise.resolve(exit.value) : Promise.reject(fromCause(exit.cause))

/** Map anything thrown or rejected (FiberFailures are unwrapped to their Cause). */
export const fromUnknown = (thrown: unknown): EideticaError => {
  if (thrown instanceof EideticaError) return thrown
  if (Runtime.isFiberFailure(thrown)) return fromCause(thrown[Runtime.FiberFailureCauseId])
  if (isTagged(thrown)) return fromFailure(thrown)
  return fromDefect(thrown)
}

// ---------------------------------------------------------------------------------------------
// helpers

/** The facade class of an engine error class, typed with the error's fields. */
function fromSchema<Tag extends string, Fields extends Schema.Struct.Fields>(
  schema: { readonly _tag: Tag; readonly fields: Fields }
): EideticaErrorClass<Tag, Omit<Schema.Struct.Type<Fields>, "_tag" | "cause">> {
  return errorClass(schema._tag) as EideticaErrorClass<Tag, Omit<Schema.Struct.Type<Fields>, "_tag" | "cause">>
}

const fromDefect = (defect: unknown): EideticaError =>
  new Defect(defect instanceof Error ? defect.message : `Defect: ${messageOf(defect)}`, { cause: defect })

const isTagged = (u: unknown): u is { readonly _tag: string } =>
  typeof u === "object" && u !== null && typeof (u as { _tag?: unknown })._tag === "string"

const messageOf = (u: unknown): string => {
  if (u instanceof Error) return u.message
  if (typeof u === "object" && u !== null && typeof (u as { message?: unknown }).message === "string")
    return (u as { message: string }).message
  try {
    return typeof u === "string" ? u : JSON.stringify(u) ?? String(u)
  } catch {
    return String(u)
  }
}

const fieldsOf = (error: object): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(error)) if (!RESERVED.has(key)) out[key] = value
  return out
}
