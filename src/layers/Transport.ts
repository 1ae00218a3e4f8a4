/**
 * The Transport namespace of the public API: the port's Tag and router beside its layers
 * (`layerHttp`, `layerHttpWith(options)`; `layerIroh`, which fails with NotImplemented in this build).
 */
export { formatAddress, Transport, TransportRouter } from "../services/Transport.js"
export type { Handler, RequestContext, SendError, ServeError, TransportShape } from "../services/Transport.js"
export { API_PATH, HEALTH_PATH, layerHttp, layerHttpWith, makeHttp, TRANSPORT_TYPE as HTTP_TRANSPORT_TYPE } from "./TransportHttp.js"
export { layerIroh } from "./TransportIroh.js"
export type { HttpTransportOptions } from "./TransportHttp.js"
