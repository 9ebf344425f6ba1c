/** Service REST: module identities (wire doc §6.2). */
import type { FastifyInstance } from 'fastify';
import { parseIfMatch } from '../../../core/ids.js';
import { renderModule } from '../../../hub/registry/registry-service.js';
import { jsonBody } from '../body.js';
import type { HubServices } from '../services.js';
import { byCaller } from '../caller.js';

type ModuleParams = { Params: { id: string; mid: string } };


export function registerModuleRoutes(app: FastifyInstance, { registry }: Pick<HubServices, 'registry'>): void {
  app.put<ModuleParams>('/devices/:id/modules/:mid', async (req, reply) => {
    const ifMatch = parseIfMatch(req.headers['if-match']);
    const body = jsonBody(req);
    const module =
      ifMatch === undefined
        ? await registry.createModule(req.params.id, req.params.mid, body, byCaller(req))
        : await registry.updateModule(req.params.id, req.params.mid, body, ifMatch, byCaller(req));
    return reply.header('etag', `"${module.etag}"`).send(renderModule(module));
  });

  app.get<ModuleParams>('/devices/:id/modules/:mid', async (req, reply) => {
    const module = await registry.getModule(req.params.id, req.params.mid);
    return reply.header('etag', `"${module.etag}"`).send(renderModule(module));
  });

  app.get<{ Params: { id: string } }>('/devices/:id/modules', async (req) => {
    return (await registry.listModules(req.params.id)).map(renderModule);
  });

  app.delete<ModuleParams>('/devices/:id/modules/:mid', async (req, reply) => {
    await registry.deleteModule(req.params.id, req.params.mid, parseIfMatch(req.headers['if-match']) ?? '*', byCaller(req));
    return reply.code(204).send();
  });
}
