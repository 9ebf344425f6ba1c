import type { FastifyInstance } from 'fastify';
import type { HubServices } from '../services.js';

/**
 * Liveness and store reachability, and readiness for a load balancer (`/health/ready`: 200 only
 * while the node is ready and its store answers; 503 while it starts or drains). No secrets, no auth.
 */
export function registerHealthRoutes(app: FastifyInstance, services: Pick<HubServices, 'health' | 'lifecycle'>): void {
  app.get('/health', async (_req, reply) => {
    const h = await services.health();
    return reply.code(h.status === 'ok' ? 200 : 503).send(h);
  });
  app.get('/health/ready', async (_req, reply) => {
    const phase = services.lifecycle.phase;
    if (phase !== 'ready') return reply.code(503).send({ status: phase });
    const h = await services.health();
    return reply.code(h.status === 'ok' ? 200 : 503).send(h.status === 'ok' ? { status: 'ready' } : { status: 'degraded', checks: h.checks });
  });
}
