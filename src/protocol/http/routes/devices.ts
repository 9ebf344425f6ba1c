/** Service REST: device identities, bulk, statistics (wire doc §6.2). */
import type { FastifyInstance } from 'fastify';
import { HubError } from '../../../core/errors.js';
import { parseIfMatch } from '../../../core/ids.js';
import { applyBulk } from '../../../hub/registry/bulk.js';
import { byCaller } from '../caller.js';
import { renderDevice } from '../../../hub/registry/registry-service.js';
import { jsonBody } from '../body.js';
import type { HubServices } from '../services.js';

type IdParams = { Params: { id: string } };


export function parseTop(raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new HubError('ArgumentInvalid', 'top must be a positive integer.');
  return n;
}

export function registerDeviceRoutes(app: FastifyInstance, { registry, twins }: Pick<HubServices, 'registry' | 'twins'>): void {
  app.put<IdParams>('/devices/:id', async (req, reply) => {
    const ifMatch = parseIfMatch(req.headers['if-match']);
    const body = jsonBody(req);
    // No If-Match: create, and refuse to overwrite. If-Match: update under that etag ('*' = any).
    const device =
      ifMatch === undefined
        ? await registry.createDevice(req.params.id, body, byCaller(req))
        : await registry.updateDevice(req.params.id, body, ifMatch, byCaller(req));
    return reply.header('etag', `"${device.etag}"`).send(renderDevice(device));
  });

  app.get<IdParams>('/devices/:id', async (req, reply) => {
    const device = await registry.getDevice(req.params.id);
    return reply.header('etag', `"${device.etag}"`).send(renderDevice(device));
  });

  app.delete<IdParams>('/devices/:id', async (req, reply) => {
    await registry.deleteDevice(req.params.id, parseIfMatch(req.headers['if-match']) ?? '*', byCaller(req));
    return reply.code(204).send();
  });

  app.get<{ Querystring: { top?: string } }>('/devices', async (req) => {
    const devices = await registry.listDevices(parseTop(req.query.top));
    return devices.map(renderDevice);
  });

  app.post('/devices', async (req, reply) => {
    const result = await applyBulk(jsonBody(req), registry, twins, byCaller(req));
    if (result.isSuccessful) return reply.send(result);
    // Azure answers a partly failed bulk request with 400 and the per-device errors; Message keeps
    // the legacy error shape so the SDK's ArgumentError carries a readable message.
    const first = result.errors[0];
    return reply.code(400).header('iothub-errorcode', 'BulkRegistryOperationFailure').send({
      ...result,
      Message: `ErrorCode:BulkRegistryOperationFailure;${result.errors.length} of the operations failed, first: ${first?.deviceId ?? ''} ${first?.errorCode ?? ''}`.replace(/;(?=.*;)/g, ','),
    });
  });

  app.get('/statistics/devices', async () => {
    const s = await registry.statistics();
    return { totalDeviceCount: s.total, enabledDeviceCount: s.enabled, disabledDeviceCount: s.disabled };
  });

  app.get('/statistics/service', async () => registry.serviceStatistics());
}
