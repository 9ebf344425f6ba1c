import type { FastifyInstance } from 'fastify';
import type { HubServices } from '../services.js';

/** Liveness and store reachability, for load balancers and orchestration. No secrets, no auth. */
export function registerHealthRoutes(app: FastifyInstance, services: HubServices): void {
  app.get('/health', async (_req, reply) => {
    const h = await services.health();
    return reply.code(h.status === 'ok' ? 200 : 503).send(h);
  });
}
