/**
 * Message routing (issue 17, decision 0006), in the shape of the `routing` section of Azure's hub
 * properties:
 *   GET  /routing                      the routing document (secrets masked), etag header
 *   PUT  /routing                      replaces it (If-Match: the etag read; masked secrets kept)
 *   GET  /routing/endpointsHealth      Azure's get-endpoint-health: `{ value: [{ endpointId, healthStatus, ... }] }`
 *   POST /routing/routes/$testall      Azure's TestAllRoutes: which routes a sample message matches (and why not)
 *   POST /routing/routes/$testnew      Azure's TestRoute: one unsaved route against a sample message
 * `az iot hub message-route|message-endpoint|message-enrichment` edit the document by GET + PUT;
 * so do Gatehouse's CLI commands.
 */
import type { FastifyInstance } from 'fastify';
import { redactSecrets, type SecurityEvents } from '../../../core/security-events.js';
import type { RoutingEngine } from '../../../routing/routing-engine.js';
import { testAllRoutes, testRoute } from '../../../routing/route-test.js';
import { jsonBody } from '../body.js';
import { actorOf } from './security.js';

export function registerRoutingRoutes(app: FastifyInstance, routing: RoutingEngine, events: SecurityEvents): void {
  app.get('/routing', async (_req, reply) => {
    const { routing: doc, etag } = routing.service.view();
    void reply.header('etag', `"${etag}"`);
    return doc;
  });
  app.put('/routing', async (req, reply) => {
    const h = req.headers['if-match'];
    const before = routing.service.view().routing;
    const { routing: doc, etag } = await routing.service.replace(jsonBody(req), typeof h === 'string' ? h : undefined, actorOf(req));
    // A routing change can send every device's data anywhere: the audit log keeps who and what (secrets masked).
    events.emit({ type: 'change', at: Date.now(), actor: actorOf(req), action: 'routing.update', target: 'routing', before: redactSecrets(before), after: redactSecrets(doc), remote: req.ip });
    void reply.header('etag', `"${etag}"`);
    return doc;
  });
  app.get('/routing/endpointsHealth', async () => ({ value: await routing.health() }));
  app.post('/routing/routes/$testall', async (req) => testAllRoutes(routing.service.current.routing, jsonBody(req, false)));
  app.post('/routing/routes/$testnew', async (req) => testRoute(jsonBody(req)));
}
