/**
 * eidetica-ts: the Effect API. Services as namespaces with their Tags and layers, the schemas,
 * the errors, and the Database/Transaction/store modules.
 */
export * as Entry from "./core/Entry.js"
export * as Permission from "./schema/Permission.js"
export * as Errors from "./schema/Errors.js"
