/**
 * Checks of the facade's arguments, run before anything reaches the engine: bad input from plain
 * TypeScript (or JavaScript) rejects with InvalidArgument, never a Defect or a wire error.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { isPubKey } from "../schema/Ids.js"
import * as Permission from "../schema/Permission.js"
import { InvalidArgument } from "./Errors.js"

/** A non-empty string, or InvalidArgument with `message`. */
export const checkString = (value: unknown, message: string): string => {
  if (typeof value !== "string" || value.length === 0) throw new InvalidArgument(message)
  return value
}

/** A public key, `ed25519:<base64 of 32 bytes>` (what `getDefaultKey` and `deviceId` give), or InvalidArgument. */
export const checkPubKey = (value: unknown, message: string): string => {
  if (typeof value !== "string" || !isPubKey(value)) {
    throw new InvalidArgument(`${message}, such as ed25519:<base64 of 32 bytes>; got ${JSON.stringify(value)?.slice(0, 80)}`)
  }
  return value
}

/** A permission as the wire and `_settings` carry it (an integer priority from 0 to 2^32-1), or InvalidArgument. */
export const checkPermission = (value: unknown, what: string): Permission.Permission =>
  Either.getOrThrowWith(
    decodePermission(value),
    (error) =>
      new InvalidArgument(
        `${what} expects Permission.Admin(n), Permission.Write(n) (n an integer from 0 to ${Permission.MAX_PRIORITY}) or Permission.Read: ${
          ParseResult.ArrayFormatter.formatErrorSync(error)
            .map((issue) => (issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message))
            .join("; ")
        }`,
        { cause: error }
      )
  )

const decodePermission = Schema.decodeUnknownEither(Permission.Permission)
