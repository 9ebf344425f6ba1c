/**
 * Service REST for cloud-to-device messages: send (`POST /devices/{id}/messages/deviceBound`, the
 * HTTPS counterpart of the SDK's AMQP `Client.send`, wire doc §6.7-6.8), purge
 * (`DELETE /devices/{id}/commands`) and feedback (`GET /messages/serviceBound/feedback`).
 *
 * A send carries the payload as the raw body and the message properties as headers, as device
 * HTTPS does (wire doc §5.1): `iothub-messageid`, `iothub-correlationid`, `iothub-userid`,
 * `iothub-expiry` (ISO-8601), `iothub-ack`, `iothub-contenttype` (or `content-type`),
 * `iothub-contentencoding`, and `iothub-app-<name>` per application property.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HubError } from '../../../core/errors.js';
import { ACK_MODES, C2D_MAX_MESSAGE_BYTES, type C2dSendInput, type C2dService } from '../../../hub/c2d/c2d-service.js';
import type { AckMode } from '../../../store/c2d-ports.js';

const APP_PREFIX = 'iothub-app-';
const MAX_FEEDBACK_PAGE = 1000;

type IdParams = { Params: { id: string } };

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Application properties from `iothub-app-*` headers, names in the case the client sent. */
function appProperties(req: FastifyRequest): Record<string, string> {
  const out: Record<string, string> = {};
  const raw = req.raw.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (name.toLowerCase().startsWith(APP_PREFIX)) out[name.slice(APP_PREFIX.length)] = raw[i + 1] ?? '';
  }
  return out;
}

export function parseSendRequest(req: FastifyRequest): C2dSendInput {
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const ack = header(req, 'iothub-ack');
  if (ack !== undefined && !ACK_MODES.includes(ack as AckMode)) {
    throw new HubError('ArgumentInvalid', 'iothub-ack must be one of none, positive, negative, full.');
  }
  const input: C2dSendInput = { body, properties: appProperties(req) };
  const set = <K extends keyof C2dSendInput>(key: K, value: C2dSendInput[K] | undefined) => {
    if (value !== undefined) input[key] = value;
  };
  set('messageId', header(req, 'iothub-messageid'));
  set('correlationId', header(req, 'iothub-correlationid'));
  set('userId', header(req, 'iothub-userid'));
  set('expiryTime', header(req, 'iothub-expiry'));
  set('ack', ack as AckMode | undefined);
  set('contentType', header(req, 'iothub-contenttype') ?? header(req, 'content-type'));
  set('contentEncoding', header(req, 'iothub-contentencoding'));
  return input;
}

function nonNegativeInt(raw: string | undefined, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0 || n > max) throw new HubError('ArgumentInvalid', `${name} must be an integer from 0 to ${max}.`);
  return n;
}

export function registerC2dRoutes(app: FastifyInstance, c2d: C2dService): void {
  app.post<IdParams>('/devices/:id/messages/deviceBound', { bodyLimit: C2D_MAX_MESSAGE_BYTES }, async (req, reply) => {
    const message = await c2d.send(req.params.id, parseSendRequest(req));
    return reply.code(204).header('iothub-messageid', message.messageId).send();
  });

  app.delete<IdParams>('/devices/:id/commands', async (req) => {
    const n = await c2d.purge(req.params.id);
    return { totalMessagesPurged: n, deviceId: req.params.id };
  });

  app.get<{ Querystring: { after?: string; top?: string } }>('/messages/serviceBound/feedback', async (req) => {
    const after = nonNegativeInt(req.query.after, 'after', 0);
    const top = nonNegativeInt(req.query.top, 'top', 100, MAX_FEEDBACK_PAGE);
    if (top === 0) throw new HubError('ArgumentInvalid', `top must be an integer from 1 to ${MAX_FEEDBACK_PAGE}.`);
    return c2d.readFeedback(after, top);
  });
}
