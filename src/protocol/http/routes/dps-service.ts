/**
 * DPS service REST (wire doc §6.9): what `azure-iot-provisioning-service`'s
 * ProvisioningServiceClient calls. Routing is case-insensitive and ignores trailing slashes, so
 * the SDK's `POST /enrollments/` (bulk) and `/enrollmentgroups/...` land here too. The SDK sends
 * If-Match as the raw etag; quoted ones are accepted as well.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HubError } from '../../../core/errors.js';
import { parseIfMatch } from '../../../core/ids.js';
import { isJsonObject } from '../../../core/json.js';
import type { EnrollmentService } from '../../../dps/enrollment-service.js';
import type { Page } from '../../../core/enrollments.js';
import { jsonBody } from '../body.js';

type IdParams = { Params: { id: string } };


/** `*`, or `SELECT * FROM <collection>`: the queries this service answers (all records, by id). */
const SUPPORTED_QUERY = /^\s*(\*|select\s+\*\s+from\s+[a-z]+)\s*$/i;

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function pageArgs(req: FastifyRequest): [number | undefined, string | undefined] {
  const raw = jsonBody(req, false);
  if (raw !== undefined && (!isJsonObject(raw) || (raw.query !== undefined && (typeof raw.query !== 'string' || !SUPPORTED_QUERY.test(raw.query))))) {
    throw new HubError('ArgumentInvalid', 'The query specification must be {"query": "*"}; filters are not supported.');
  }
  const sizeHeader = header(req.headers['x-ms-max-item-count']);
  let pageSize: number | undefined;
  if (sizeHeader !== undefined) {
    pageSize = Number(sizeHeader);
    if (!Number.isInteger(pageSize) || pageSize < 1) throw new HubError('ArgumentInvalid', 'x-ms-max-item-count must be a positive integer.');
  }
  return [pageSize, header(req.headers['x-ms-continuation'])];
}

function sendPage<T>(reply: FastifyReply, page: Page<T>, itemType: string): FastifyReply {
  reply.header('x-ms-item-type', itemType);
  // Only while more pages exist: the SDK's Query keeps paging as long as the header is there.
  if (page.continuation !== undefined) reply.header('x-ms-continuation', page.continuation);
  return reply.send(page.items);
}

function withEtag<T extends { etag?: string }>(reply: FastifyReply, record: T): FastifyReply {
  if (record.etag !== undefined) reply.header('etag', `"${record.etag}"`);
  return reply.send(record);
}

export function registerDpsServiceRoutes(app: FastifyInstance, enrollments: EnrollmentService): void {
  // ------------------------------------------------------------ individual enrollments
  app.post('/enrollments', async (req) => enrollments.bulk(jsonBody(req)));

  app.post('/enrollments/query', async (req, reply) =>
    sendPage(reply, await enrollments.queryIndividuals(...pageArgs(req)), 'Enrollment'),
  );

  app.put<IdParams>('/enrollments/:id', async (req, reply) =>
    withEtag(reply, await enrollments.putIndividual(req.params.id, jsonBody(req), parseIfMatch(req.headers['if-match']))),
  );

  app.get<IdParams>('/enrollments/:id', async (req, reply) => withEtag(reply, await enrollments.getIndividual(req.params.id)));

  app.delete<IdParams>('/enrollments/:id', async (req, reply) => {
    await enrollments.deleteIndividual(req.params.id, parseIfMatch(req.headers['if-match']));
    return reply.code(204).send();
  });

  app.post<IdParams>('/enrollments/:id/attestationmechanism', async (req) =>
    enrollments.attestationMechanism('individual', req.params.id),
  );

  // ------------------------------------------------------------ enrollment groups
  app.post('/enrollmentGroups/query', async (req, reply) =>
    sendPage(reply, await enrollments.queryGroups(...pageArgs(req)), 'Enrollment'),
  );

  app.put<IdParams>('/enrollmentGroups/:id', async (req, reply) =>
    withEtag(reply, await enrollments.putGroup(req.params.id, jsonBody(req), parseIfMatch(req.headers['if-match']))),
  );

  app.get<IdParams>('/enrollmentGroups/:id', async (req, reply) => withEtag(reply, await enrollments.getGroup(req.params.id)));

  app.delete<IdParams>('/enrollmentGroups/:id', async (req, reply) => {
    await enrollments.deleteGroup(req.params.id, parseIfMatch(req.headers['if-match']));
    return reply.code(204).send();
  });

  app.post<IdParams>('/enrollmentGroups/:id/attestationmechanism', async (req) =>
    enrollments.attestationMechanism('group', req.params.id),
  );

  // ------------------------------------------------------------ registration states
  app.post<IdParams>('/registrations/:id/query', async (req, reply) =>
    sendPage(reply, await enrollments.queryGroupRegistrations(req.params.id, ...pageArgs(req)), 'DeviceRegistration'),
  );

  app.get<IdParams>('/registrations/:id', async (req, reply) => {
    const state = await enrollments.getRegistrationState(req.params.id);
    if (state === undefined) throw new HubError('RegistrationNotFound', `Registration ${req.params.id.slice(0, 128)} not found.`);
    return withEtag(reply, state);
  });

  app.delete<IdParams>('/registrations/:id', async (req, reply) => {
    await enrollments.deleteRegistrationState(req.params.id, parseIfMatch(req.headers['if-match']));
    return reply.code(204).send();
  });
}
