/**
 * Received entries whose signatures are worth verifying before ingestion asks for them: those of
 * signers already known (a database root's active keys, or keys whose entries were accepted), so
 * a hostile batch from unknown keys costs no verification before the cheap checks refuse it.
 * Decoding sends each slice of known signers' signatures to the Auth layer's background verifier as
 * it goes, so a large batch is verified while the rest of it still decodes, and ingestion finds the
 * verdicts ready.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { Doc } from "../core/Doc.js"
import type { StoredEntry } from "../core/Entry.js"
import * as Entry from "../core/Entry.js"
import * as Settings from "../core/Settings.js"
import type { AuthShape, VerifyItem } from "../services/Auth.js"

/** Fewer signatures than this are not worth verifying ahead (the verifier's round trip costs more). */
export const AHEAD_MIN = 64

/** Entries decoded between two hand-overs to the verifier. */
const DECODE_SLICE = 256

/** The active keys a database root's settings name. */
export const rootSigners = (root: StoredEntry): ReadonlyArray<string> => {
  const data = Entry.subtree(root.entry, Entry.SETTINGS)?.data
  if (data === undefined || !Entry.isRoot(root.entry)) return []
  try {
    const state = Settings.authOf(Doc.decode(data))
    if (state._tag !== "Present") return []
    return Object.entries(state.auth.keys).filter(([, k]) => k.status === "Active").map(([pubkey]) => pubkey)
  } catch {
    return []
  }
}

/** The public key a signed entry names as its direct signer, if it names one. */
export const hintedSigner = (e: StoredEntry): string | undefined => {
  const key = e.entry.sig.key
  return e.entry.sig.sig !== undefined && "Direct" in key ? key.Direct.hint.pubkey : undefined
}

/**
 * What ingestion will verify for received entries signed by a known signer: a Direct hint naming a
 * public key makes that key the only candidate, over the entry's signing bytes.
 */
const aheadItems = (entries: ReadonlyArray<StoredEntry>, signers: ReadonlySet<string>): Array<VerifyItem> => {
  const items: Array<VerifyItem> = []
  if (signers.size === 0) return items
  for (const e of entries) {
    const signer = hintedSigner(e)
    if (signer !== undefined && signers.has(signer)) {
      items.push({ publicKey: signer, signature: e.entry.sig.sig!, message: Entry.signingBytesOf(e) })
    }
  }
  return items
}

/**
 * Decode encoded entries in order, each result an entry or the reason it does not decode. Every
 * `DECODE_SLICE` entries, the signatures of known signers among them go to the background verifier
 * (when `auth` has one). A root decoded here makes its active keys known (`signers` grows with
 * them), unless `treeId` names the one database expected and the root is another's: a peer cannot
 * make us verify ahead for keys of a root it made up. (The decoding loop is a plain function, the
 * generator only hands slices over: compiled inside it, the loop cost several times as much.)
 */
export const decodeVerifyingAhead = (
  encoded: ReadonlyArray<Uint8Array>,
  signers: Set<string>,
  auth: AuthShape,
  treeId?: string
): Effect.Effect<Array<Either.Either<StoredEntry, string>>> =>
  Effect.gen(function*() {
    const verifyAhead = auth.verifyAhead
    const out: Array<Either.Either<StoredEntry, string>> = []
    for (let from = 0; from < encoded.length; from += DECODE_SLICE) {
      const to = Math.min(encoded.length, from + DECODE_SLICE)
      const decoded = decodeInto(encoded, from, to, out, verifyAhead === undefined ? undefined : signers, treeId)
      if (verifyAhead === undefined) continue
      const items = aheadItems(decoded, signers)
      if (items.length >= AHEAD_MIN) yield* verifyAhead(items)
    }
    return out
  })

/**
 * Decode `encoded[from..to)` onto `out`; returns the entries that decoded. With `signers`, a root
 * among them (of `treeId`, when given) adds its active keys.
 */
const decodeInto = (
  encoded: ReadonlyArray<Uint8Array>,
  from: number,
  to: number,
  out: Array<Either.Either<StoredEntry, string>>,
  signers: Set<string> | undefined,
  treeId: string | undefined
): Array<StoredEntry> => {
  const decoded: Array<StoredEntry> = []
  for (let i = from; i < to; i++) {
    const result = Entry.decode(encoded[i]!)
    out.push(result)
    if (Either.isLeft(result)) continue
    const e = result.right
    if (signers !== undefined && Entry.isRoot(e.entry) && (treeId === undefined || e.id === treeId)) {
      for (const k of rootSigners(e)) signers.add(k)
    }
    decoded.push(e)
  }
  return decoded
}
