/**
 * Pure helpers of the sync protocol: the bytes a `SyncRequestAuth` signature covers (bound to the
 * server, the tree, the tips, the time and a nonce, as in the reference) and the page splitter that
 * keeps every message under the 1 MiB cap of the transports.
 */

/** The domain separator of sync-request signatures. */
export const DOMAIN = "eidetica/sync/tree-request/v1"

/** The domain separator of push (SendEntries) signatures. */
export const PUSH_DOMAIN = "eidetica/sync/send-entries/v1"

/**
 * The answer to a proof whose nonce the server has seen. A client's nonces are random, so it means
 * the server saw this very request before: a transport resent it (a reused connection failed
 * after the first copy arrived), and the client signs anew rather than taking it as a refusal.
 */
export const NONCE_SPENT = "Authentication failed: request nonce already spent"

/** How far a signed request's timestamp may be from the server's clock, in milliseconds. */
export const FRESHNESS_WINDOW_MS = 60_000

/** The default byte budget of the entries of one message: a JSON message then stays under 1 MiB. */
export const PAGE_BYTES = 900_000

/** What a sync-request signature binds. */
export interface SigningInput {
  /** The audience: the server's device public key. */
  readonly serverPubkey: string
  readonly treeId: string
  /** The requester's tips as sent in `our_tips`, in the order sent. */
  readonly tips: ReadonlyArray<string>
  readonly timestampMs: number
  /** 32 random bytes. */
  readonly nonce: Uint8Array | ReadonlyArray<number>
}

/**
 * The signed bytes of a sync request: every field as `u64 BE length ‖ bytes`, in order: the
 * domain, the server pubkey, the tree ID, the tip count (8 BE bytes), each tip, the timestamp
 * (8 BE bytes), the nonce.
 */
export const signingBytes = (input: SigningInput): Uint8Array =>
  framed([
    utf8.encode(DOMAIN),
    utf8.encode(input.serverPubkey),
    utf8.encode(input.treeId),
    u64(input.tips.length),
    ...input.tips.map((tip) => utf8.encode(tip)),
    u64(input.timestampMs),
    Uint8Array.from(input.nonce)
  ])

/** What a push signature binds: the server, every pushed entry (by ID, in the order sent), the time and a nonce. */
export interface PushSigningInput {
  readonly serverPubkey: string
  readonly entryIds: ReadonlyArray<string>
  readonly timestampMs: number
  readonly nonce: Uint8Array | ReadonlyArray<number>
}

/** The signed bytes of a push, framed as `signingBytes`: the push domain, the server, the ID count and each ID, the timestamp, the nonce. */
export const pushSigningBytes = (input: PushSigningInput): Uint8Array =>
  framed([
    utf8.encode(PUSH_DOMAIN),
    utf8.encode(input.serverPubkey),
    u64(input.entryIds.length),
    ...input.entryIds.map((id) => utf8.encode(id)),
    u64(input.timestampMs),
    Uint8Array.from(input.nonce)
  ])

/** Every field as `u64 BE length ‖ bytes`, in order. */
const framed = (fields: ReadonlyArray<Uint8Array>): Uint8Array => {
  const size = fields.reduce((n, f) => n + 8 + f.length, 0)
  const out = new Uint8Array(size)
  let offset = 0
  for (const field of fields) {
    out.set(u64(field.length), offset)
    out.set(field, offset + 8)
    offset += 8 + field.length
  }
  return out
}

/** Whether a timestamp is within the freshness window around `now`. */
export const isFresh = (timestampMs: number, nowMs: number): boolean =>
  Math.abs(nowMs - timestampMs) <= FRESHNESS_WINDOW_MS

/**
 * How many of `entries` (encoded strings, in order) fit in one message of `budget` bytes, counting
 * each as its JSON cost (the string, its quotes and a comma). Always at least one, so a single
 * oversized entry still moves (the transport's own cap then decides).
 */
export const pageLength = (entries: ReadonlyArray<string>, budget: number = PAGE_BYTES): number => {
  let used = 0
  for (let i = 0; i < entries.length; i++) {
    used += entries[i]!.length + 3
    if (used > budget) return Math.max(1, i)
  }
  return entries.length
}

/** The longest prefix of `entries` within `budget` bytes (at least one entry), and the rest. */
export const splitPage = <A extends string>(
  entries: ReadonlyArray<A>,
  budget: number = PAGE_BYTES
): { readonly page: ReadonlyArray<A>; readonly rest: ReadonlyArray<A> } => {
  const n = pageLength(entries, budget)
  return { page: entries.slice(0, n), rest: entries.slice(n) }
}

/** The JSON cost of one base64-encoded entry of `byteLength` bytes inside an array. */
export const wireCost = (byteLength: number): number => 4 * Math.ceil(byteLength / 3) + 3

const utf8 = new TextEncoder()

const u64 = (n: number): Uint8Array => {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt(n), false)
  return out
}
