import type { FastifyRequest } from 'fastify';
import { HubError } from '../../core/errors.js';

/**
 * The JSON body of a request. Bodies arrive as raw Buffers (see app.ts) so each route decides how
 * to read them; service routes want JSON whatever the Content-Type says (some clients send none).
 */
export function jsonBody(req: FastifyRequest, required = true): unknown {
  const raw = req.body;
  if (raw === undefined || raw === null || (Buffer.isBuffer(raw) && raw.length === 0)) {
    if (required) throw new HubError('IotHubFormatError', 'The request body is empty; a JSON body is required.');
    return undefined;
  }
  if (!Buffer.isBuffer(raw)) return raw;
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch (err) {
    throw new HubError('IotHubFormatError', `The request body is not valid JSON: ${(err as Error).message}`);
  }
}
