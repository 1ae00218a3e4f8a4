/**
 * Database tickets, the reference's `DatabaseTicket`: one string that names a database and where to
 * find it, `eidetica:?db=<ID>&pr=<transport>:<address>&pr=…`, to paste into another device or print
 * as a QR code. Only `% & = # +` are percent-encoded; the parser reads the query as form-urlencoded:
 * the last `db` wins, unknown parameters are ignored, and `pr` splits on its first `:`.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { EntryId } from "../schema/Ids.js"
import { InvalidTicket } from "../schema/Errors.js"
import type { Address } from "../schema/Address.js"

/** A parsed ticket: the database and the addresses it may be fetched from (its "address hints"). */
export interface Ticket {
  readonly databaseId: string
  readonly addresses: ReadonlyArray<Address>
}

/** The scheme every ticket starts with. */
export const SCHEME = "eidetica:"

/** The most characters a ticket may have (a hostile one is refused before it is read). */
export const MAX_TICKET_LENGTH = 16_384

/** The most address hints a ticket may carry: each is tried at once when syncing with it. */
export const MAX_TICKET_ADDRESSES = 16

const isEntryId = Schema.is(EntryId)

/** Percent-encode the characters that would break the query (`% & = # +`), and nothing else. */
const encode = (s: string): string => s.replace(/[%&=#+]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

/** The ticket's text: `eidetica:?db=<ID>&pr=<transport>:<address>…`, addresses in order. */
export const format = (ticket: Ticket): string =>
  [
    `${SCHEME}?db=${encode(ticket.databaseId)}`,
    ...ticket.addresses.map((a) => `pr=${encode(a.transport_type)}:${encode(a.address)}`)
  ].join("&")

/** Read a ticket; anything that is not one fails with InvalidTicket saying why. */
export const parse = (text: string): Either.Either<Ticket, InvalidTicket> => {
  const refuse = (reason: string) => Either.left(new InvalidTicket({ reason }))
  if (text.length > MAX_TICKET_LENGTH) return refuse(`a ticket has at most ${MAX_TICKET_LENGTH} characters`)
  const trimmed = text.trim()
  if (trimmed.slice(0, SCHEME.length).toLowerCase() !== SCHEME) {
    return refuse(`a ticket starts with "${SCHEME}?db=" (it is what share or createTicket prints)`)
  }
  const query = trimmed.slice(SCHEME.length).replace(/^\?/, "").replace(/#.*$/, "")
  let databaseId: string | undefined
  const addresses: Array<Address> = []
  for (const [name, value] of new URLSearchParams(query)) {
    if (name === "db") databaseId = value
    else if (name === "pr") {
      const colon = value.indexOf(":")
      if (colon <= 0 || colon === value.length - 1) {
        return refuse(`the address hint ${JSON.stringify(value)} is not <transport>:<address>, as "http:127.0.0.1:3000"`)
      }
      addresses.push({ transport_type: value.slice(0, colon).toLowerCase(), address: value.slice(colon + 1) })
    }
  }
  if (databaseId === undefined) return refuse("it names no database (no db= parameter)")
  if (!isEntryId(databaseId)) return refuse(`${JSON.stringify(databaseId)} is not a database id`)
  if (addresses.length > MAX_TICKET_ADDRESSES) {
    return refuse(`it carries ${addresses.length} address hints; at most ${MAX_TICKET_ADDRESSES} are tried`)
  }
  return Either.right({ databaseId, addresses })
}
