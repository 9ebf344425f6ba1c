/** Service REST: direct methods, `POST /twins/{id}[/modules/{mid}]/methods` (wire doc §6.6). */
import type { FastifyInstance } from 'fastify';
import { parseMethodCall, type MethodService } from '../../../hub/methods/method-service.js';
import { jsonBody } from '../body.js';


export function registerMethodRoutes(app: FastifyInstance, methods: MethodService): void {
  app.post<{ Params: { id: string } }>('/twins/:id/methods', async (req) => {
    return methods.invoke(req.params.id, null, parseMethodCall(jsonBody(req)));
  });
  app.post<{ Params: { id: string; mid: string } }>('/twins/:id/modules/:mid/methods', async (req) => {
    return methods.invoke(req.params.id, req.params.mid, parseMethodCall(jsonBody(req)));
  });
}
