/**
 * Test fixtures for sync: a complete engine per node (memory storage, node crypto, Instance and
 * Sync), built in the test's scope, plus helpers for users, databases, writes and hand-built
 * signed requests.
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { Doc, type Plain } from "../../src/core/Doc.js"
import * as SyncAuth from "../../src/core/SyncAuth.js"
import type { Signer } from "../../src/database/Database.js"
import { SettingsStore } from "../../src/database/SettingsStore.js"
import { layerCache, type StateCache } from "../../src/database/StoreState.js"
import { DocStore, DocStoreView } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as CipherLayers from "../../src/layers/Cipher.js"
import * as InstanceLayers from "../../src/layers/Instance.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import * as SyncLayers from "../../src/layers/Sync.js"
import type * as Permission from "../../src/schema/Permission.js"
import type { SyncRequest, SyncRequestAuth } from "../../src/schema/Protocol.js"
import { Auth, type AuthShape } from "../../src/services/Auth.js"
import type { Cipher } from "../../src/services/Cipher.js"
import { Instance, type InstanceShape, type User } from "../../src/services/Instance.js"
import { Storage, type StorageShape } from "../../src/services/Storage.js"
import { Sync, type SyncShape } from "../../src/services/Sync.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"

/** Every service of one node. */
export type NodeServices = Storage | Auth | Cipher | StateCache | WriteEvents.WriteEvents | Instance | Sync

/** One complete engine. */
export interface Node {
  readonly context: Context.Context<NodeServices>
  readonly instance: InstanceShape
  readonly storage: StorageShape
  readonly auth: AuthShape
  readonly sync: SyncShape
  /** Run an effect against this node's services. */
  readonly run: <A, E>(effect: Effect.Effect<A, E, NodeServices>) => Effect.Effect<A, E>
}

/** The layer of one complete in-memory engine (on the node Auth layer unless another is given). */
export const nodeLayer = (
  options: SyncLayers.SyncLayerOptions = {},
  auth: Layer.Layer<Auth> = AuthLayers.layerNode
): Layer.Layer<NodeServices> => {
  const base = Layer.mergeAll(
    StorageLayers.layerMemory,
    auth,
    CipherLayers.layerNode,
    layerCache,
    WriteEvents.layer
  )
  const withInstance = Layer.provideMerge(InstanceLayers.layer, base)
  return Layer.orDie(Layer.provideMerge(SyncLayers.layerWith(options), withInstance))
}

/** Build a node in the current scope (closing the scope stops its server). */
export const makeNode = (options: SyncLayers.SyncLayerOptions = {}): Effect.Effect<Node, never, Scope.Scope> =>
  Effect.gen(function*() {
    const context = yield* Layer.build(nodeLayer(options))
    const run = <A, E>(effect: Effect.Effect<A, E, NodeServices>) => Effect.provide(effect, context)
    return yield* run(
      Effect.gen(function*() {
        return {
          context,
          instance: yield* Instance,
          storage: yield* Storage,
          auth: yield* Auth,
          sync: yield* Sync,
          run
        } satisfies Node
      })
    )
  })

/** Sync on, no commit trigger: what a server needs to serve a database. */
export const syncOn = { syncEnabled: true, syncOnCommit: false, properties: {} }

/** A user with a database it created (its default key Admin(0)), optionally with a global grant and sync enabled. */
export const setupDb = (
  node: Node,
  options: {
    readonly username?: string
    readonly global?: Permission.Permission | undefined
    readonly syncEnabled?: boolean
    readonly data?: Record<string, Plain>
  } = {}
) =>
  node.run(
    Effect.gen(function*() {
      const username = options.username ?? "alice"
      yield* node.instance.createUser(username)
      const user = yield* node.instance.loginUser(username)
      const key = yield* user.getDefaultKey
      const { db, signer } = yield* user.createDatabase(Doc.from({ name: "notes" }), key)
      if (options.global !== undefined) {
        const txn = Transaction.begin(db, signer)
        yield* new SettingsStore(txn).setGlobalPermission(options.global)
        yield* Transaction.commit(txn)
      }
      for (const [k, v] of Object.entries(options.data ?? {})) yield* write(node, db.rootId, signer, k, v)
      if (options.syncEnabled === true) {
        yield* user.trackDatabase({ databaseId: db.rootId, keyId: key, syncSettings: syncOn })
      }
      return { user, key, db, signer, treeId: db.rootId }
    })
  )

/** Enable sync for a database on a node through a user's tracking. */
export const enableSync = (user: User, treeId: string, keyId: string) =>
  user.trackDatabase({ databaseId: treeId, keyId, syncSettings: syncOn })

/** Commit `data[key] = value` to a database; returns the entry ID. */
export const write = (node: Node, treeId: string, signer: Signer, key: string, value: Plain) =>
  node.run(
    Effect.gen(function*() {
      const txn = Transaction.begin({ rootId: treeId }, signer)
      yield* new DocStore(txn, "data").set(key, value)
      return yield* Transaction.commit(txn)
    })
  )

/** Change a database's auth: grant `pubkey` a permission. */
export const grant = (node: Node, treeId: string, admin: Signer, pubkey: string, permission: Permission.Permission) =>
  node.run(
    Effect.gen(function*() {
      const txn = Transaction.begin({ rootId: treeId }, admin)
      yield* new SettingsStore(txn).setAuthKey(pubkey, { permission })
      return yield* Transaction.commit(txn)
    })
  )

/** The `data` store of a database as a plain object. */
export const readData = (node: Node, treeId: string) => node.run(new DocStoreView({ rootId: treeId }, "data").getAll())

/** A signed proof for a SyncTree request, built by hand (so tests can bend any field). */
export const signProof = (
  auth: AuthShape,
  signer: Signer,
  input: { serverPubkey: string; treeId: string; tips: ReadonlyArray<string>; timestampMs: number; nonce?: Uint8Array }
) =>
  Effect.gen(function*() {
    const nonce = input.nonce ?? (yield* auth.randomBytes(32))
    const signature = yield* auth.sign(
      signer.secretKey,
      SyncAuth.signingBytes({ ...input, nonce })
    )
    return { key: signer.publicKey, timestamp_ms: input.timestampMs, nonce: Array.from(nonce), signature } satisfies
      SyncRequestAuth
  })

/** A SyncTree request. */
export const syncTree = (
  treeId: string,
  ourTips: ReadonlyArray<string>,
  extra: { auth?: SyncRequestAuth; known?: ReadonlyArray<string> } = {}
): SyncRequest => ({ SyncTree: { tree_id: treeId, our_tips: ourTips, ...extra } })
