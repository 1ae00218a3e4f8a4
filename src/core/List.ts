/**
 * The List CRDT and its positions. Implemented alongside Doc in `Doc.ts` (the two are mutually
 * recursive); this module re-exports them for callers that import lists on their own.
 */
export { comparePositions, List } from "./Doc.js"
export type { Position } from "./Doc.js"
