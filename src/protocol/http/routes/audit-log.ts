/**
 * The audit log over REST (Gatehouse's own endpoints, hub administration: owner-level, see route-access.ts):
 *
 *   GET /auditLog?from=&to=&identity=&outcome=&type=&actor=&limit=&before=   newest first: { entries, next }
 *   GET /auditLog/verify                                                      the chain check
 *
 * `next` is the `before` of the following (older) page, null on the last. Bad filters are 400
 * ArgumentInvalid naming the parameter.
 */
import type { FastifyInstance } from 'fastify';
import type { AuditLog } from '../../../audit/audit-log.js';
import { parseAuditFilters } from '../../../audit/audit-filters.js';


export function registerAuditLogRoutes(app: FastifyInstance, auditLog: AuditLog): void {
  app.get('/auditLog', async (req) =>
    auditLog.query(parseAuditFilters(req.query as Record<string, unknown>, Date.now(), ['api-version'])),
  );

  app.get('/auditLog/verify', async () => auditLog.verify());
}
