/**
 * SEAM: the iroh (QUIC) transport is named by the API but not in this build. `layerIroh` exists so
 * programs written against the API compile; building it fails with NotImplemented, as the Promise
 * facade's `enableIrohTransport` rejects. The real layer lands here (see reference/toolchain.md for
 * @number0/iroh and its byte arrays).
 */
import * as Layer from "effect/Layer"
import { NotImplemented } from "../schema/Errors.js"
import type { Transport } from "../services/Transport.js"

/** The iroh transport as the Transport service: not in this build, so building it fails with NotImplemented. */
export const layerIroh: Layer.Layer<Transport, NotImplemented> = Layer.fail(new NotImplemented({ feature: "the iroh transport" }))
