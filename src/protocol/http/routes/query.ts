/** Service REST: `POST /devices/query` with page size and continuation headers (wire doc §6.2). */
import type { FastifyInstance } from 'fastify';
import { HubError } from '../../../core/errors.js';
import { isJsonObject } from '../../../core/json.js';
import { jsonBody } from '../body.js';
import type { HubServices } from '../services.js';


function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export function registerQueryRoutes(app: FastifyInstance, { query }: Pick<HubServices, 'query'>): void {
  app.post('/devices/query', async (req, reply) => {
    const body = jsonBody(req);
    if (!isJsonObject(body) || typeof body.query !== 'string') {
      throw new HubError('ArgumentInvalid', 'The body must be {"query": "<SQL>"}.');
    }
    const sizeHeader = header(req.headers['x-ms-max-item-count']);
    let pageSize: number | undefined;
    if (sizeHeader !== undefined) {
      pageSize = Number(sizeHeader);
      if (!Number.isInteger(pageSize) || pageSize < 1) throw new HubError('ArgumentInvalid', 'x-ms-max-item-count must be a positive integer.');
    }
    const page = await query.run(body.query, pageSize, header(req.headers['x-ms-continuation']));
    reply.header('x-ms-item-type', page.itemType);
    // Only while more pages exist: the SDK keeps paging as long as the header is there.
    if (page.continuation !== undefined) reply.header('x-ms-continuation', page.continuation);
    return reply.send(page.items);
  });
}
