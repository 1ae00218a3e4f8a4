/**
 * The Auth port: ed25519 keys, signatures and secure randomness. Layers: `layerNode` (native, the
 * default: libsodium, else node:crypto), `layerNodeCrypto` (node:crypto alone), `layerNoble`
 * (@noble/ed25519, portable) and `layerSeeded` (keys and randomness from Effect's Random, for
 * deterministic simulation only). All pass one contract suite and accept exactly the same signatures.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { CryptoError } from "../schema/Errors.js"

/** A key pair as strings: `ed25519:<base64 public key>` and `ed25519:<base64 32-byte seed>`. */
export interface KeyPair {
  readonly publicKey: string
  readonly secretKey: string
}

/** One item of a batch verification. */
export interface VerifyItem {
  readonly publicKey: string
  /** The signature as standard padded base64. */
  readonly signature: string
  readonly message: Uint8Array
}

/** The Auth service interface. */
export interface AuthShape {
  /** A fresh key pair. */
  readonly generateKey: Effect.Effect<KeyPair>
  /** The public key of a secret key. */
  readonly publicKeyOf: (secretKey: string) => Effect.Effect<string, CryptoError>
  /** Sign bytes; the signature as standard padded base64. */
  readonly sign: (secretKey: string, message: Uint8Array) => Effect.Effect<string, CryptoError>
  /** Verify a signature; false for a bad signature or a malformed key or signature (never fails). */
  readonly verify: (publicKey: string, signature: string, message: Uint8Array) => Effect.Effect<boolean>
  /** Verify many; one boolean per item, in order. */
  readonly verifyBatch: (items: ReadonlyArray<VerifyItem>) => Effect.Effect<ReadonlyArray<boolean>>
  /**
   * Optional: start verifying items in the background (returns at once), so that a later
   * `verifyBatch` asking for exactly the same items takes the outcomes, or waits for them, instead of
   * verifying again. A hint for callers that know what they will verify soon (a sync client with the
   * next page in hand); no items means "many may come" (the layer may get ready: Sync says so when it
   * enables a transport). Layers without background verification leave it out.
   */
  readonly verifyAhead?: ((items: ReadonlyArray<VerifyItem>) => Effect.Effect<void>) | undefined
  /** Secure random bytes (entropy, nonces, challenges, salts). */
  readonly randomBytes: (n: number) => Effect.Effect<Uint8Array>
}

/** The Auth service tag. */
export class Auth extends Context.Tag("eidetica-ts/Auth")<Auth, AuthShape>() {}
