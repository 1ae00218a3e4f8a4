/**
 * The List CRDT and its positions. List is implemented alongside Doc in `Doc.ts` (the two are
 * mutually recursive) and the position arithmetic in `internal/Position.ts`; this module re-exports
 * them for callers that import lists on their own.
 */
export { comparePositions, List } from "./Doc.js"
export type { Position } from "./Doc.js"
