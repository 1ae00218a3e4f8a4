/**
 * Database tickets (the reference's DatabaseTicket): the text form, its percent-encoding, the
 * form-urlencoded reading rules, and every way a string fails to be a ticket.
 */
import * as Either from "effect/Either"
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Ticket from "../../src/core/Ticket.js"

const DB = "bafyr4igz3yqtkjvp7ipl3gqebz4n2fxv6ptwhxqw5tlmbwutzbb4amjnyu"
const OTHER = "bafyr4ia7hsx6ptl3cwwu5a2r3j2w5vyzpqvg4ynyvg7sm2dtrbxemhqe5a"

const parsed = (text: string) => Either.getOrThrow(Ticket.parse(text))
const refused = (text: string) => Either.match(Ticket.parse(text), { onLeft: (e) => e.message, onRight: () => "parsed" })

describe("tickets", () => {
  it("read and write the reference's form: eidetica:?db=<ID>&pr=<transport>:<address>", () => {
    const text = `eidetica:?db=${DB}&pr=http:127.0.0.1:8080&pr=iroh:endpointabc`
    expect(parsed(text)).toEqual({
      databaseId: DB,
      addresses: [{ transport_type: "http", address: "127.0.0.1:8080" }, { transport_type: "iroh", address: "endpointabc" }]
    })
    expect(Ticket.format(parsed(text))).toBe(text)
    expect(Ticket.format({ databaseId: DB, addresses: [] })).toBe(`eidetica:?db=${DB}`)
    expect(parsed(`eidetica:?db=${DB}`).addresses).toEqual([])
  })

  it("percent-encode only % & = # +, and read them back", () => {
    const address = { transport_type: "sim", address: "a%b&c=d#e+f:g/h [::1]" }
    const text = Ticket.format({ databaseId: DB, addresses: [address] })
    expect(text).toBe(`eidetica:?db=${DB}&pr=sim:a%25b%26c%3Dd%23e%2Bf:g/h [::1]`)
    expect(parsed(text).addresses).toEqual([address])
  })

  it("read as form-urlencoded: the last db wins, unknown parameters are ignored, pr splits on its first colon", () => {
    const ticket = parsed(`eidetica:?db=${OTHER}&x=1&db=${DB}&pr=http:[::1]:3000&future=yes`)
    expect(ticket.databaseId).toBe(DB)
    expect(ticket.addresses).toEqual([{ transport_type: "http", address: "[::1]:3000" }])
  })

  it("round-trip any addresses", () => {
    const address = fc.record({
      transport_type: fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/),
      address: fc.string({ minLength: 1, maxLength: 40 }).filter((s) => s.trim() === s)
    })
    fc.assert(
      fc.property(fc.array(address, { maxLength: Ticket.MAX_TICKET_ADDRESSES }), (addresses) => {
        expect(parsed(Ticket.format({ databaseId: DB, addresses }))).toEqual({ databaseId: DB, addresses })
      })
    )
  })

  it("refuse what is not a ticket, saying why", () => {
    expect(refused(`https://example.com/?db=${DB}`)).toBe('Invalid ticket: a ticket starts with "eidetica:?db=" (it is what share or createTicket prints)')
    expect(refused("eidetica:?pr=http:127.0.0.1:1")).toBe("Invalid ticket: it names no database (no db= parameter)")
    expect(refused("eidetica:?db=notanid")).toBe('Invalid ticket: "notanid" is not a database id')
    expect(refused(`eidetica:?db=${DB}&pr=127.0.0.1`)).toBe(
      'Invalid ticket: the address hint "127.0.0.1" is not <transport>:<address>, as "http:127.0.0.1:3000"'
    )
    expect(refused(`eidetica:?db=${DB}&pr=http:`)).toMatch(/is not <transport>:<address>/)
    const many = Array.from({ length: Ticket.MAX_TICKET_ADDRESSES + 1 }, (_, i) => `pr=http:127.0.0.1:${i + 1}`).join("&")
    expect(refused(`eidetica:?db=${DB}&${many}`)).toBe(`Invalid ticket: it carries 17 address hints; at most 16 are tried`)
    expect(refused(`eidetica:?db=${DB}&pr=http:${"x".repeat(Ticket.MAX_TICKET_LENGTH)}`)).toBe(
      `Invalid ticket: a ticket has at most ${Ticket.MAX_TICKET_LENGTH} characters`
    )
  })
})
