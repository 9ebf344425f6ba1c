/** Who is calling, as registry change events record it. */
import type { FastifyRequest } from 'fastify';
import type { Actor } from '../../hub/registry/registry-service.js';

export function byCaller(req: FastifyRequest): Actor {
  const p = req.principal;
  return { actor: p === undefined ? 'anonymous' : `${p.kind}:${p.name}`, remote: req.ip };
}
