/**
 * The Transport namespace of the public API: the port's Tag and router beside its layers
 * (`layerHttp`, `layerHttpWith(options)`, `layerIroh`, `layerIrohWith(options)`).
 */
export { formatAddress, Transport, TransportRouter } from "../services/Transport.js"
export type { Handler, RequestContext, SendError, ServeError, TransportShape } from "../services/Transport.js"
export { API_PATH, HEALTH_PATH, layerHttp, layerHttpWith, makeHttp, TRANSPORT_TYPE as HTTP_TRANSPORT_TYPE } from "./TransportHttp.js"
export {
  generateIrohSecretKey,
  IROH_ALPN,
  IROH_TRANSPORT_TYPE,
  layerIroh,
  layerIrohWith,
  makeIroh
} from "./TransportIroh.js"
export type { HttpTransportOptions } from "./TransportHttp.js"
export type { IrohTransportOptions } from "./TransportIroh.js"
