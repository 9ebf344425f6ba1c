/**
 * Hub administration over REST (owner-level: a policy with RegistryRead, RegistryWrite and
 * ServiceConnect, or the Owner role; route-access.ts):
 *
 *   GET/PATCH /settings                    hub settings (PATCH: JSON merge patch; ?dryRun=true)
 *   GET/PUT/PATCH/DELETE /operators[/:id]  operators; POST /operators/:id/tokens mints a token
 *   GET/POST /roleAssignments, DELETE /roleAssignments/:id, GET /roleDefinitions
 *
 * Operators and role assignments carry an etag (body and ETag header); PATCH and DELETE take
 * If-Match and answer 412 PreconditionFailed when the row changed since (on any node).
 *   GET /policies[/:name], PUT/DELETE /policies/:name, POST /policies/:name/regenerateKey
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HubError } from '../../../core/errors.js';
import { redactSecrets, type SecurityEvents } from '../../../core/security-events.js';
import type { OperatorService } from '../../../access/operators.js';
import { renderPolicy, type PolicyService } from '../../../policies/policy-service.js';
import { ROLE_ACTIONS, ROLE_DESCRIPTIONS, ROLE_NAMES } from '../../../access/roles.js';
import type { SettingsService } from '../../../settings/settings-service.js';
import type { Finding } from '../../../posture/posture.js';
import { jsonBody } from '../body.js';


export function actorOf(req: FastifyRequest): string {
  const p = req.principal;
  return p === undefined ? 'anonymous' : `${p.kind}:${p.name}`;
}

function flag(v: unknown): boolean {
  return v === 'true' || v === '1' || v === '';
}

/** If-Match as the raw etag (quotes and a weak prefix dropped); undefined when absent. */
function ifMatchOf(req: FastifyRequest): string | undefined {
  const h = req.headers['if-match'];
  return h === undefined ? undefined : h.trim().replace(/^W\//, '').replace(/"/g, '');
}

function field(body: unknown, name: string): unknown {
  return body !== null && typeof body === 'object' ? (body as Record<string, unknown>)[name] : undefined;
}

export interface SecurityRouteDeps {
  /** The posture audit over the live store. */
  posture: (expiringDays: number) => Promise<Finding[]>;
  settings: SettingsService;
  operators: OperatorService;
  policies: PolicyService;
  events: SecurityEvents;
  now: () => number;
}

export function registerSecurityRoutes(app: FastifyInstance, deps: SecurityRouteDeps): void {
  const { settings, operators, policies, events } = deps;
  const change = (req: FastifyRequest, action: string, target: string, before: unknown, after: unknown) =>
    events.emit({ type: 'change', at: deps.now(), actor: actorOf(req), action, target, before: redactSecrets(before), after: redactSecrets(after), remote: req.ip });

  // ---------------------------------------------------------------- settings
  app.get('/settings', async (_req, reply) => {
    const s = settings.current;
    void reply.header('etag', `"${s.etag}"`);
    return s;
  });

  app.patch<{ Querystring: Record<string, string | undefined> }>('/settings', async (req, reply) => {
    const q = req.query;
    const r = await settings.change({
      patch: jsonBody(req),
      ifMatch: req.headers['if-match'],
      dryRun: flag(q.dryRun),
      force: flag(q.force),
      allowLegacyTls: flag(q.allowLegacyTls),
      actor: actorOf(req),
      remote: req.ip,
    });
    if (!r.dryRun && 'etag' in r.settings) void reply.header('etag', `"${r.settings.etag}"`);
    return r;
  });

  app.get<{ Querystring: { expiringDays?: string } }>('/posture', async (req) => {
    const raw = req.query.expiringDays ?? '30';
    if (!/^\d{1,4}$/.test(raw)) throw new HubError('ArgumentInvalid', 'expiringDays must be a whole number of days.');
    const findings = await deps.posture(Number(raw));
    return { findings, summary: { high: findings.filter((f) => f.severity === 'high').length, medium: findings.filter((f) => f.severity === 'medium').length, low: findings.filter((f) => f.severity === 'low').length } };
  });

  // ---------------------------------------------------------------- operators
  app.get('/operators', async () => ({ value: operators.list().map((o) => ({ ...o, roles: [...operators.rolesOf(o.id)] })) }));

  app.get<{ Params: { id: string } }>('/operators/:id', async (req, reply) => {
    const op = operators.get(req.params.id);
    if (op === undefined) throw new HubError('OperatorNotFound', `Operator ${req.params.id.slice(0, 128)} does not exist.`);
    void reply.header('etag', `"${op.etag}"`);
    return { ...op, roles: [...operators.rolesOf(op.id)] };
  });

  app.put<{ Params: { id: string } }>('/operators/:id', async (req, reply) => {
    const body = jsonBody(req, false);
    const name = field(body, 'displayName');
    if (name !== undefined && (typeof name !== 'string' || name.length > 256)) throw new HubError('ArgumentInvalid', 'displayName must be a string of at most 256 characters.');
    const op = await operators.create(req.params.id, name as string | undefined);
    change(req, 'operator.create', `operators/${op.id}`, null, op);
    return reply.code(201).header('etag', `"${op.etag}"`).send(op);
  });

  app.patch<{ Params: { id: string } }>('/operators/:id', async (req, reply) => {
    const body = jsonBody(req);
    const enabled = field(body, 'enabled');
    const revoke = field(body, 'revokeTokens');
    if (enabled !== undefined && typeof enabled !== 'boolean') throw new HubError('ArgumentInvalid', 'enabled must be true or false.');
    if (revoke !== undefined && typeof revoke !== 'boolean') throw new HubError('ArgumentInvalid', 'revokeTokens must be true or false.');
    const { before, after } = await operators.update(req.params.id, {
      ...(enabled === undefined ? {} : { enabled: enabled as boolean }),
      ...(revoke === true ? { revokeTokens: true } : {}),
    }, ifMatchOf(req));
    change(req, revoke === true ? 'operator.revoke-tokens' : 'operator.update', `operators/${after.id}`, before, after);
    return reply.header('etag', `"${after.etag}"`).send(after);
  });

  app.delete<{ Params: { id: string } }>('/operators/:id', async (req, reply) => {
    const op = await operators.delete(req.params.id, ifMatchOf(req));
    change(req, 'operator.delete', `operators/${op.id}`, op, null);
    return reply.code(204).send();
  });

  app.post<{ Params: { id: string } }>('/operators/:id/tokens', async (req) => {
    const seconds = field(jsonBody(req, false), 'expiresInSeconds') ?? 3600;
    if (typeof seconds !== 'number') throw new HubError('ArgumentInvalid', 'expiresInSeconds must be a number.');
    const t = await operators.issueToken(req.params.id, seconds);
    change(req, 'operator.token', `operators/${req.params.id}`, null, { expiresAt: t.expiresAt });
    return t;
  });

  // ---------------------------------------------------------------- roles
  app.get('/roleDefinitions', async () => ({
    value: ROLE_NAMES.map((name) => ({ roleName: name, description: ROLE_DESCRIPTIONS[name], actions: ROLE_ACTIONS[name] })),
  }));

  app.get<{ Querystring: { assignee?: string; role?: string } }>('/roleAssignments', async (req) => ({
    value: operators.listAssignments({
      ...(req.query.assignee === undefined ? {} : { assignee: req.query.assignee }),
      ...(req.query.role === undefined ? {} : { role: req.query.role }),
    }),
  }));

  app.post('/roleAssignments', async (req, reply) => {
    const body = jsonBody(req);
    const assignee = field(body, 'assignee');
    const role = field(body, 'role');
    const scope = field(body, 'scope') ?? '/';
    if (typeof assignee !== 'string' || typeof role !== 'string' || typeof scope !== 'string') throw new HubError('ArgumentInvalid', 'assignee and role are required strings.');
    const a = await operators.createAssignment(assignee, role, scope, actorOf(req));
    change(req, 'role-assignment.create', `roleAssignments/${a.id}`, null, a);
    return reply.code(201).header('etag', `"${a.etag}"`).send(a);
  });

  app.delete<{ Params: { id: string }; Querystring: { assignee?: string; role?: string } }>('/roleAssignments/:id', async (req) => {
    const removed = await operators.deleteAssignments(
      req.params.id === '-'
        ? { ...(req.query.assignee === undefined ? {} : { assignee: req.query.assignee }), ...(req.query.role === undefined ? {} : { role: req.query.role }) }
        : { id: req.params.id },
      ifMatchOf(req),
    );
    for (const a of removed) change(req, 'role-assignment.delete', `roleAssignments/${a.id}`, a, null);
    return { value: removed };
  });

  // ---------------------------------------------------------------- policies
  app.get('/policies', async () => ({ value: (await policies.list()).map((p) => renderPolicy(p, false)) }));

  app.get<{ Params: { name: string } }>('/policies/:name', async (req, reply) => {
    const p = await policies.get(req.params.name);
    void reply.header('etag', `"${p.etag}"`);
    return renderPolicy(p, true);
  });

  app.put<{ Params: { name: string } }>('/policies/:name', async (req, reply) => {
    const ifMatch = req.headers['if-match']?.replace(/"/g, '');
    const { policy, created } = await policies.put(req.params.name, field(jsonBody(req), 'rights'), actorOf(req), ifMatch);
    void reply.header('etag', `"${policy.etag}"`);
    return reply.code(created ? 201 : 200).send(renderPolicy(policy, true));
  });

  app.delete<{ Params: { name: string } }>('/policies/:name', async (req, reply) => {
    await policies.delete(req.params.name, actorOf(req), req.headers['if-match']?.replace(/"/g, ''));
    return reply.code(204).send();
  });

  app.post<{ Params: { name: string } }>('/policies/:name/regenerateKey', async (req) => {
    const keyType = field(jsonBody(req, false), 'keyType') ?? 'primary';
    return renderPolicy(await policies.regenerateKey(req.params.name, String(keyType), actorOf(req)), true);
  });
}
