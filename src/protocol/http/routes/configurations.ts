/**
 * Automatic device and module configurations (issue 18 item 2), Azure's service REST API:
 *   PUT    /configurations/:id            create (no If-Match; 201) or update under If-Match ('*' = force; 200)
 *   GET    /configurations/:id            the configuration with its metrics, etag header
 *   GET    /configurations?top=n          all of them (at most 100), by id
 *   DELETE /configurations/:id            If-Match optional; 204
 *   POST   /configurations/testQueries    which of a target condition and metric queries are invalid, and why
 * Every change is an audit-log entry (who, before and after).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parseIfMatch } from '../../../core/ids.js';
import type { SecurityEvents } from '../../../core/security-events.js';
import type { ConfigurationChange, ConfigurationService } from '../../../hub/configurations/configuration-service.js';
import { jsonBody } from '../body.js';
import { parseTop } from './devices.js';
import { actorOf } from './security.js';

type IdParams = { Params: { id: string } };

export function registerConfigurationRoutes(app: FastifyInstance, configurations: ConfigurationService, events: SecurityEvents): void {
  const audit = (req: FastifyRequest, c: ConfigurationChange): void => {
    events.emit({ type: 'change', at: Date.now(), actor: actorOf(req), action: c.action, target: `configurations/${c.id}`, ...(c.before === undefined ? {} : { before: c.before }), ...(c.after === undefined ? {} : { after: c.after }), remote: req.ip });
  };

  app.put<IdParams>('/configurations/:id', async (req, reply) => {
    const { doc, created, change } = await configurations.put(req.params.id, jsonBody(req), parseIfMatch(req.headers['if-match']));
    audit(req, change);
    return reply.code(created ? 201 : 200).header('etag', `"${String(doc.etag)}"`).send(doc);
  });

  app.get<IdParams>('/configurations/:id', async (req, reply) => {
    const doc = await configurations.get(req.params.id);
    return reply.header('etag', `"${String(doc.etag)}"`).send(doc);
  });

  app.get<{ Querystring: { top?: string } }>('/configurations', async (req) => configurations.list(parseTop(req.query.top)));

  app.delete<IdParams>('/configurations/:id', async (req, reply) => {
    audit(req, await configurations.delete(req.params.id, parseIfMatch(req.headers['if-match'])));
    return reply.code(204).send();
  });

  app.post('/configurations/testQueries', async (req) => configurations.testQueries(jsonBody(req)));
}
