import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Database from "../../src/database/Database.js"
import * as PasswordStore from "../../src/database/PasswordStore.js"
import { layerCache, stateOf } from "../../src/database/StoreState.js"
import { DocStore, Table, TableView } from "../../src/database/Stores.js"
import * as Transaction from "../../src/database/Transaction.js"
import * as AuthLayers from "../../src/layers/Auth.js"
import * as CipherLayers from "../../src/layers/Cipher.js"
import * as StorageLayers from "../../src/layers/Storage.js"
import { Auth } from "../../src/services/Auth.js"
import { Storage } from "../../src/services/Storage.js"
import * as WriteEvents from "../../src/services/WriteEvents.js"

const env = () => Layer.mergeAll(StorageLayers.layerMemory, AuthLayers.layerNode, CipherLayers.layerNode, layerCache, WriteEvents.layer)

describe("PasswordStore", () => {
  it.effect("a store keeps its type: writing an encrypted store or a table as a document store is refused, and both stay readable", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const storage = yield* Storage
      const admin = yield* auth.generateKey
      const db = yield* Database.create({ signer: admin })
      const t1 = Transaction.begin(db, admin)
      yield* (yield* PasswordStore.docStore(t1, "secrets", "hunter2")).set("pin", "4321")
      const rowId = yield* new Table<{ title: string }>(t1, "todos").insert({ title: "one" })
      yield* Transaction.commit(t1)
      const count = yield* storage.count(db.rootId)
      for (const [name, type] of [["secrets", PasswordStore.TYPE_ID], ["todos", "table:v0"]] as const) {
        const t = Transaction.begin(db, admin)
        yield* new DocStore(t, name).set("oops", 1)
        const refused = yield* Effect.flip(Transaction.commit(t))
        expect(refused._tag).toBe("InvalidEntry")
        expect(refused.message).toContain(`store ${name} is a ${type} store, not a docstore:v0 store`)
      }
      expect(yield* storage.count(db.rootId)).toBe(count)
      expect(yield* (yield* PasswordStore.docStoreView(db, "secrets", "hunter2")).get("pin")).toBe("4321")
      expect(yield* new TableView<{ title: string }>(db, "todos").get(rowId)).toEqual({ title: "one" })
    }).pipe(Effect.provide(env())))

  it.effect("values are encrypted in entries and readable only with the password", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const storage = yield* Storage
      const admin = yield* auth.generateKey
      const db = yield* Database.create({ signer: admin })
      const t1 = Transaction.begin(db, admin)
      const secrets = yield* PasswordStore.docStore(t1, "secrets", "hunter2")
      yield* secrets.set("pin", "4321")
      yield* secrets.setPath("bank.iban", "DE-SECRET-IBAN")
      expect(yield* secrets.get("pin")).toBe("4321")
      const id1 = yield* Transaction.commit(t1)
      const t2 = Transaction.begin(db, admin)
      const again = yield* PasswordStore.docStore(t2, "secrets", "hunter2")
      yield* again.delete("pin")
      yield* Transaction.commit(t2)

      const view = yield* PasswordStore.docStoreView(db, "secrets", "hunter2")
      expect(yield* view.getAll()).toEqual({ bank: { iban: "DE-SECRET-IBAN" } })
      // ciphertext only, in the entry and in _index (the wrapped type is sealed too)
      const raw = new TextDecoder().decode(Option.getOrThrow(yield* storage.get(id1)).bytes)
      expect(raw).not.toContain("4321")
      expect(raw).not.toContain("DE-SECRET-IBAN")
      expect(raw).not.toContain("docstore")
      const index = yield* stateOf(db.rootId, "_index")
      expect(JSON.stringify(index.toJSON())).not.toContain("docstore")

      const wrong = yield* Effect.flip(PasswordStore.docStoreView(db, "secrets", "hunter3"))
      expect(wrong._tag).toBe("DecryptionFailed")
      const t3 = Transaction.begin(db, admin)
      expect((yield* Effect.flip(PasswordStore.docStore(t3, "secrets", "")))._tag).toBe("DecryptionFailed")
    }).pipe(Effect.provide(env())))

  it.effect("two writers that create the store before seeing each other's registration both stay readable", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const admin = yield* auth.generateKey
      const db = yield* Database.create({ signer: admin })
      // both transactions find no registration, so each makes its own salt; _index keeps one
      const t1 = Transaction.begin(db, admin)
      const t2 = Transaction.begin(db, admin)
      yield* (yield* PasswordStore.docStore(t1, "secrets", "pw")).set("a", "1")
      yield* (yield* PasswordStore.docStore(t2, "secrets", "pw")).set("b", "2")
      yield* Transaction.commit(t1)
      yield* Transaction.commit(t2)
      expect(yield* (yield* PasswordStore.docStoreView(db, "secrets", "pw")).getAll()).toEqual({ a: "1", b: "2" })
      // and later writes under the registration that won read with both
      const t3 = Transaction.begin(db, admin)
      yield* (yield* PasswordStore.docStore(t3, "secrets", "pw")).set("c", "3")
      yield* Transaction.commit(t3)
      expect(yield* (yield* PasswordStore.docStoreView(db, "secrets", "pw")).getAll()).toEqual({ a: "1", b: "2", c: "3" })
      expect((yield* Effect.flip(PasswordStore.docStoreView(db, "secrets", "other")))._tag).toBe("DecryptionFailed")
    }).pipe(Effect.provide(env())))

  it.effect("wraps a Table, and refuses to open it as the wrong kind of store", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const admin = yield* auth.generateKey
      const db = yield* Database.create({ signer: admin })
      const t = Transaction.begin(db, admin)
      const vault = yield* PasswordStore.table<{ site: string; password: string }>(t, "vault", "pw")
      const id = yield* vault.insert({ site: "example.org", password: "p@ss" })
      yield* Transaction.commit(t)
      const view = yield* PasswordStore.tableView<{ site: string; password: string }>(db, "vault", "pw")
      expect(yield* view.get(id)).toEqual({ site: "example.org", password: "p@ss" })
      expect((yield* Effect.flip(PasswordStore.docStoreView(db, "vault", "pw")))._tag).toBe("InvalidEntry")
      expect((yield* Effect.flip(PasswordStore.tableView(db, "missing", "pw")))._tag).toBe("InvalidEntry")
    }).pipe(Effect.provide(env())))
})
