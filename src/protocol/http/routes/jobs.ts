/**
 * Jobs (issue 18 item 1), Azure's service REST API as the azure-iothub JobClient calls it:
 *   PUT  /jobs/v2/:id          schedule a twin update (scheduleUpdateTwin) or a direct method (scheduleDeviceMethod)
 *   GET  /jobs/v2/:id          the job with its status, times and deviceJobStatistics
 *   POST /jobs/v2/:id/cancel   cancel it
 *   GET  /jobs/v2/query        jobs by ?jobType= and ?jobStatus=, paged (x-ms-max-item-count, x-ms-continuation)
 * Rights as Azure's: a twin-update job needs RegistryWrite, a method job ServiceConnect (to create
 * and to cancel); the route table admits either, the handler checks the one the job's type needs.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { authorize } from '../../../access/access.js';
import type { AccessGate } from '../../../access/gate.js';
import { HubError, unauthorized } from '../../../core/errors.js';
import { isJsonObject } from '../../../core/json.js';
import type { Right } from '../../../core/types.js';
import type { JobService } from '../../../hub/jobs/job-service.js';
import type { JobType } from '../../../store/job-ports.js';
import { jsonBody } from '../body.js';

type IdParams = { Params: { id: string } };

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

const RIGHT_FOR: Record<JobType, Right> = { scheduleUpdateTwin: 'RegistryWrite', scheduleDeviceMethod: 'ServiceConnect' };

export function registerJobRoutes(app: FastifyInstance, jobs: JobService, gate: AccessGate): void {
  /** The right the job's type needs, on top of the route's entry (which admits either). */
  const requireFor = (req: FastifyRequest, type: unknown): void => {
    const principal = req.principal;
    if (principal === undefined || (type !== 'scheduleUpdateTwin' && type !== 'scheduleDeviceMethod')) return; // the body check answers a bad type
    const decision = authorize(principal, { kind: 'service', action: 'jobs/write', anyOf: [RIGHT_FOR[type]] });
    if (!decision.allowed) {
      gate.denied(principal, decision.reason, { remote: req.ip, protocol: 'https' });
      throw unauthorized('insufficient_rights', decision.reason);
    }
    if (principal.kind === 'policy') gate.policyUsed(principal.name, decision.used);
  };

  app.put<IdParams>('/jobs/v2/:id', async (req) => {
    const body = jsonBody(req);
    requireFor(req, isJsonObject(body) ? body.type : undefined);
    return jobs.create(req.params.id, body);
  });

  app.get<{ Querystring: { jobType?: string; jobStatus?: string } }>('/jobs/v2/query', async (req, reply) => {
    const sizeHeader = header(req.headers['x-ms-max-item-count']);
    let pageSize: number | undefined;
    if (sizeHeader !== undefined) {
      pageSize = Number(sizeHeader);
      if (!Number.isInteger(pageSize) || pageSize < 1) throw new HubError('ArgumentInvalid', 'x-ms-max-item-count must be a positive integer.');
    }
    const filter = (v: string | undefined) => (v === undefined || v === '' ? undefined : v);
    const page = await jobs.query(filter(req.query.jobType), filter(req.query.jobStatus), pageSize, header(req.headers['x-ms-continuation']));
    reply.header('x-ms-item-type', 'jobResponse');
    // Only while more pages exist: the SDK keeps paging as long as the header is there.
    if (page.continuation !== undefined) reply.header('x-ms-continuation', page.continuation);
    return reply.send(page.items);
  });

  app.get<IdParams>('/jobs/v2/:id', async (req) => jobs.get(req.params.id));

  app.post<IdParams>('/jobs/v2/:id/cancel', async (req) => {
    requireFor(req, await jobs.typeOf(req.params.id));
    return jobs.cancel(req.params.id);
  });
}
