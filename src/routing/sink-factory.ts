/**
 * The sink of each custom endpoint, as the dispatchers get it: the endpoint types' code
 * (src/routing/endpoints/create-sink.ts) with the hub's name and the endpoint's logger.
 */
import { createSink } from './endpoints/create-sink.js';
import type { SinkFactory } from './dispatch.js';

export const createEndpointSink: SinkFactory = (endpoint, ctx) => createSink(endpoint, { hubName: ctx.hubName, logger: ctx.logger });
