/**
 * A peer address, `{ transport_type, address }`, and the forms of the addresses of the transports
 * this package has (http's `host:port`, iroh's endpoint ticket): pure, so the facade, the engine and
 * the transports read one definition.
 */
import * as Schema from "effect/Schema"

/** A peer address: which transport, and the transport-specific address (`host:port` for http). */
export const Address = Schema.Struct({
  transport_type: Schema.String.pipe(Schema.minLength(1, { message: () => "transport_type must not be empty" })),
  address: Schema.String
})
/** A peer address. */
export type Address = typeof Address.Type

/** The `transport_type` of http addresses. */
export const HTTP_TRANSPORT_TYPE = "http"

/**
 * The host and port of an http address, `host:port` or `[v6]:port` with a port from 1 to 65535;
 * undefined for anything else (a URL, a bare host, port 0).
 */
export const httpAddressParts = (address: string): { readonly host: string; readonly port: number } | undefined => {
  const match = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(address) ?? /^([^:[\]\s/?#@]+):(\d{1,5})$/.exec(address)
  const port = match ? Number(match[2]) : NaN
  return match && port > 0 && port <= 65535 ? { host: match[1]!, port } : undefined
}

/** The `transport_type` of iroh addresses. */
export const IROH_TRANSPORT_TYPE = "iroh"

/** The ticket an iroh address holds: spaces around and an `iroh:` prefix (as `getServerAddress` gives it) taken off. */
export const irohTicketText = (address: string): string => address.trim().replace(/^iroh:/i, "")

/**
 * Whether a string has the form of an iroh endpoint ticket: `endpoint`, then lowercase base32 of at
 * least the 32-byte endpoint id and its header (55 characters); as the iroh transport reads it,
 * spaces around and an `iroh:` prefix (as `getServerAddress` gives it) are taken. The form only:
 * whether the bytes read as a ticket is for the iroh transport to say, when it is enabled.
 */
export const isIrohTicketForm = (address: string): boolean => /^endpoint[a-z2-7]{55,}$/.test(irohTicketText(address))

/** An address shortened for a message. */
const quoted = (address: string) => JSON.stringify(address.length > 80 ? `${address.slice(0, 80)}…` : address)

/**
 * Why an address cannot be used by its transport, or undefined: an http address that is not
 * `host:port`, an iroh address without a ticket's form. Other transports' addresses are theirs to read.
 */
export const addressProblem = (a: Address): string | undefined => {
  if (a.transport_type === HTTP_TRANSPORT_TYPE && httpAddressParts(a.address) === undefined) {
    return `${quoted(a.address)} is not an http address: expected host:port, such as "127.0.0.1:3000" or "[::1]:3000"`
  }
  if (a.transport_type === IROH_TRANSPORT_TYPE && !isIrohTicketForm(a.address)) {
    return `${quoted(a.address)} is not an iroh address: expected an endpoint ticket ("endpoint…", as an iroh server's address gives it)`
  }
  return undefined
}
