/**
 * `GET /metrics`: the hub's Prometheus metrics in the text exposition format (version 0.0.4).
 * Needs RegistryRead for now (a policy SAS in `Authorization`); operator bearer tokens join the
 * same auth hook later.
 */
import type { FastifyInstance } from 'fastify';
import type { HubMetrics } from '../../../security/metrics.js';

const READ = { rights: ['RegistryRead'] } as const;

export function registerMetricsRoutes(app: FastifyInstance, metrics: HubMetrics): void {
  app.get('/metrics', { config: READ }, async (_req, reply) => {
    const { contentType, body } = await metrics.exposition();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
}
