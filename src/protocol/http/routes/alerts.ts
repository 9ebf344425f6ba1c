/**
 * Alerts over REST (Gatehouse's own endpoints; hub administration, so every route is owner-level:
 * see route-access.ts): the alert history, newest first, and the rules. A rule change is a
 * ChangeEvent on the security event stream. No answer ever carries a webhook secret.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HubError } from '../../../core/errors.js';
import type { JsonObject } from '../../../core/json.js';
import { renderRule } from '../../../alerts/alert-rules.js';
import type { AlertEngine } from '../../../alerts/alerts.js';
import { redactSecrets, type SecurityEvents } from '../../../core/security-events.js';
import type { AlertRecord } from '../../../store/alert-ports.js';
import { jsonBody } from '../body.js';

const MAX_LIMIT = 1000;

type NameParams = { Params: { name: string } };
type ListQuery = { Querystring: { state?: string; limit?: string } };

export function renderAlert(a: AlertRecord): JsonObject {
  return {
    id: a.id,
    rule: a.rule,
    kind: a.kind,
    key: a.key,
    state: a.state,
    value: a.value,
    threshold: a.threshold,
    windowSeconds: a.windowSeconds,
    firedAt: a.firedAt,
    resolvedAt: a.resolvedAt,
    summary: a.summary,
    details: a.details,
    deliveries: a.deliveries,
    lastDelivery: a.lastDelivery === null ? null : { ...a.lastDelivery },
  };
}

function actor(req: FastifyRequest): string {
  const p = req.principal;
  return p === undefined ? 'unknown' : `${p.kind}:${p.name}`;
}

export function registerAlertRoutes(app: FastifyInstance, alerts: AlertEngine, events: SecurityEvents): void {
  app.get<ListQuery>('/alerts', async (req) => {
    const { state, limit } = req.query;
    if (state !== undefined && state !== 'fired' && state !== 'resolved') throw new HubError('ArgumentInvalid', 'state must be fired or resolved.');
    if (limit !== undefined && (!/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_LIMIT)) {
      throw new HubError('ArgumentInvalid', `limit must be an integer from 1 to ${MAX_LIMIT}.`);
    }
    const list = await alerts.listAlerts({ ...(state === undefined ? {} : { state }), limit: limit === undefined ? 100 : Number(limit) });
    return { value: list.map(renderAlert) };
  });

  app.get('/alerts/rules', async () => ({ value: (await alerts.listRules()).map(renderRule) }));

  app.put<NameParams>('/alerts/rules/:name', async (req, reply) => {
    const { before, after } = await alerts.putRule(req.params.name, jsonBody(req));
    const shown = renderRule(after);
    events.emit({
      type: 'change',
      at: Date.now(),
      actor: actor(req),
      action: before === undefined ? 'alert-rule.create' : 'alert-rule.update',
      target: `alerts/rules/${after.name}`,
      ...(before === undefined ? {} : { before: redactSecrets(renderRule(before)) }),
      after: redactSecrets(shown),
      remote: req.ip,
    });
    return reply.code(before === undefined ? 201 : 200).send(shown);
  });

  app.delete<NameParams>('/alerts/rules/:name', async (req, reply) => {
    const before = await alerts.deleteRule(req.params.name);
    events.emit({
      type: 'change',
      at: Date.now(),
      actor: actor(req),
      action: 'alert-rule.delete',
      target: `alerts/rules/${before.name}`,
      before: redactSecrets(renderRule(before)),
      remote: req.ip,
    });
    return reply.code(204).send();
  });
}
