/**
 * The sink of each endpoint type (src/routing/endpoints/). Until the endpoint types land, every
 * custom endpoint is refused at delivery (its health says why).
 */
import { EndpointConfigError } from './endpoints/sink.js';
import type { SinkFactory } from './dispatch.js';

export const createEndpointSink: SinkFactory = (endpoint) => {
  throw new EndpointConfigError(`${endpoint.type} endpoints are not available in this build`);
};
