/** Service REST: direct methods, `POST /twins/{id}[/modules/{mid}]/methods` (wire doc §6.6). */
import type { FastifyInstance } from 'fastify';
import { parseMethodCall, type MethodService } from '../../../hub/methods/method-service.js';
import { jsonBody } from '../body.js';

const INVOKE = { rights: ['ServiceConnect'] } as const;

export function registerMethodRoutes(app: FastifyInstance, methods: MethodService): void {
  app.post<{ Params: { id: string } }>('/twins/:id/methods', { config: INVOKE }, async (req) => {
    return methods.invoke(req.params.id, null, parseMethodCall(jsonBody(req)));
  });
  app.post<{ Params: { id: string; mid: string } }>('/twins/:id/modules/:mid/methods', { config: INVOKE }, async (req) => {
    return methods.invoke(req.params.id, req.params.mid, parseMethodCall(jsonBody(req)));
  });
}
