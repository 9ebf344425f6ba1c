/** Service REST: device and module twins (wire doc §6.2, §6.3). */
import type { FastifyInstance } from 'fastify';
import { parseIfMatch } from '../../../core/ids.js';
import type { JsonObject } from '../../../core/json.js';
import { jsonBody } from '../body.js';
import type { HubServices } from '../services.js';


type DeviceParams = { Params: { id: string } };
type ModuleParams = { Params: { id: string; mid: string } };

function withEtag(doc: JsonObject): { doc: JsonObject; etag: string } {
  return { doc, etag: `"${String(doc.etag)}"` };
}

export function registerTwinRoutes(app: FastifyInstance, { twins }: Pick<HubServices, 'twins'>): void {
  app.get<DeviceParams>('/twins/:id', async (req, reply) => {
    const { doc, etag } = withEtag(await twins.get(req.params.id, null));
    return reply.header('etag', etag).send(doc);
  });

  app.patch<DeviceParams>('/twins/:id', async (req, reply) => {
    const { doc, etag } = withEtag(await twins.patch(req.params.id, null, jsonBody(req), parseIfMatch(req.headers['if-match'])));
    return reply.header('etag', etag).send(doc);
  });

  app.put<DeviceParams>('/twins/:id', async (req, reply) => {
    const { doc, etag } = withEtag(await twins.replace(req.params.id, null, jsonBody(req), parseIfMatch(req.headers['if-match'])));
    return reply.header('etag', etag).send(doc);
  });

  app.get<ModuleParams>('/twins/:id/modules/:mid', async (req, reply) => {
    const { doc, etag } = withEtag(await twins.get(req.params.id, req.params.mid));
    return reply.header('etag', etag).send(doc);
  });

  app.patch<ModuleParams>('/twins/:id/modules/:mid', async (req, reply) => {
    const { doc, etag } = withEtag(
      await twins.patch(req.params.id, req.params.mid, jsonBody(req), parseIfMatch(req.headers['if-match'])),
    );
    return reply.header('etag', etag).send(doc);
  });

  app.put<ModuleParams>('/twins/:id/modules/:mid', async (req, reply) => {
    const { doc, etag } = withEtag(
      await twins.replace(req.params.id, req.params.mid, jsonBody(req), parseIfMatch(req.headers['if-match'])),
    );
    return reply.header('etag', etag).send(doc);
  });
}
