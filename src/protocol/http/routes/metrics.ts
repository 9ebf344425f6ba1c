/**
 * `GET /metrics`: the hub's Prometheus metrics in the text exposition format (version 0.0.4).
 * Needs RegistryRead (a policy SAS in `Authorization`) or an operator role with `metrics/read`.
 */
import type { FastifyInstance } from 'fastify';
import type { HubMetrics } from '../../../metrics/metrics.js';


export function registerMetricsRoutes(app: FastifyInstance, metrics: HubMetrics): void {
  app.get('/metrics', async (_req, reply) => {
    const { contentType, body } = await metrics.exposition();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
}
