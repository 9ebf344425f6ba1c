/**
 * Device HTTPS API (wire doc §5): telemetry, single and batched. The device authenticates with
 * its SAS token or its TLS client certificate (app.ts; `device` in route-access.ts) and may only
 * act as itself.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HubError, unauthorized } from '../../../core/errors.js';
import { isJsonObject } from '../../../core/json.js';
import { MAX_MESSAGE_BYTES, telemetryEvent } from '../../../hub/telemetry/telemetry-event.js';
import type { HubServices } from '../services.js';

type IdParams = { Params: { id: string } };
type LockParams = { Params: { id: string; lockToken: string }; Querystring: { reject?: string } };

/** HTTP receive holds a message for one minute [DOCS: Send cloud-to-device messages from IoT Hub]. */
export const HTTP_LOCK_MS = 60_000;

/** Device headers carrying system properties (wire doc §5.1), by the names the hub stores. */
const SYSTEM_HEADERS: Readonly<Record<string, string>> = {
  'iothub-messageid': 'message-id',
  'iothub-correlationid': 'correlation-id',
  'iothub-userid': 'user-id',
  'iothub-to': 'to',
  'iothub-expiry': 'absolute-expiry-time',
  'iothub-contenttype': 'content-type',
  'iothub-contentencoding': 'content-encoding',
  'iothub-interface-id': 'iothub-interface-id',
  'dt-subject': 'dt-subject',
};
const APP_PREFIX = 'iothub-app-';
export const BATCH_CONTENT_TYPE = 'application/vnd.microsoft.iothub.json';

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function propertiesFromHeaders(req: FastifyRequest): { system: Record<string, string>; app: Record<string, string> } {
  const system: Record<string, string> = {};
  const app: Record<string, string> = {};
  for (const [name, raw] of Object.entries(req.headers)) {
    const value = header(raw);
    if (value === undefined) continue;
    const sys = SYSTEM_HEADERS[name];
    if (sys !== undefined) system[sys] = value;
    else if (name.startsWith(APP_PREFIX) && name.length > APP_PREFIX.length) app[name.slice(APP_PREFIX.length)] = value;
  }
  return { system, app };
}

function rawBody(req: FastifyRequest): Buffer {
  return Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
}

/** `[{"body":"<base64>","properties":{"iothub-app-k":"v"}}, ...]` (wire doc §5.2). */
function parseBatch(body: Buffer): Array<{ body: Buffer; app: Record<string, string> }> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HubError('IotHubFormatError', 'The batch is not valid JSON.');
  }
  if (!Array.isArray(parsed) || parsed.length === 0) throw new HubError('ArgumentInvalid', 'A batch is a non-empty JSON array of messages.');
  return parsed.map((m, i) => {
    if (!isJsonObject(m) || typeof m.body !== 'string') throw new HubError('ArgumentInvalid', `Batch message ${i} has no base64 body.`);
    const app: Record<string, string> = {};
    if (isJsonObject(m.properties)) {
      for (const [k, v] of Object.entries(m.properties)) {
        if (typeof v === 'string') app[k.startsWith(APP_PREFIX) ? k.slice(APP_PREFIX.length) : k] = v;
      }
    }
    return { body: Buffer.from(m.body, 'base64'), app };
  });
}

export function registerDeviceHttpRoutes(app: FastifyInstance, services: Pick<HubServices, 'telemetry' | 'c2d'>): void {
  app.post<IdParams>('/devices/:id/messages/events', async (req, reply) => {
    const identity = req.device;
    if (identity === undefined) throw unauthorized('other', 'device route reached without an authenticated device');
    const body = rawBody(req);
    const now = new Date().toISOString();
    const contentType = header(req.headers['content-type']) ?? '';
    if (contentType.startsWith(BATCH_CONTENT_TYPE)) {
      if (body.length > MAX_MESSAGE_BYTES) throw new HubError('MessageTooLarge', `A batch is at most ${MAX_MESSAGE_BYTES} bytes.`);
      const events = parseBatch(body).map((m) => telemetryEvent(identity, m.body, {}, m.app, now));
      await Promise.all(events.map((e) => services.telemetry.append(e)));
    } else {
      const { system, app: props } = propertiesFromHeaders(req);
      await services.telemetry.append(telemetryEvent(identity, body, system, props, now));
    }
    // Answered only once every message is durable.
    return reply.code(204).send();
  });

  // C2D over HTTPS (wire doc §5.3-5.4): receive locks one message; the device completes,
  // rejects or abandons it by lock token (ETag). A lost lock is 412.
  app.get<IdParams>('/devices/:id/messages/devicebound', async (req, reply) => {
    const [m] = await services.c2d.lockNext(req.params.id, 1, HTTP_LOCK_MS);
    if (m === undefined || m.lockToken === null) return reply.code(204).send();
    reply
      .header('etag', `"${m.lockToken}"`)
      .header('iothub-messageid', m.messageId)
      .header('iothub-to', m.to)
      .header('iothub-expiry', m.expiryTime)
      .header('iothub-enqueuedtime', m.enqueuedTime)
      .header('iothub-deliverycount', String(m.deliveryCount))
      .header('iothub-sequencenumber', String(m.seq))
      .header('iothub-ack', m.ack)
      .header('content-type', m.contentType ?? 'application/octet-stream');
    if (m.correlationId !== null) reply.header('iothub-correlationid', m.correlationId);
    if (m.userId !== null) reply.header('iothub-userid', m.userId);
    if (m.contentEncoding !== null) reply.header('iothub-contentencoding', m.contentEncoding);
    for (const [k, v] of Object.entries(m.properties)) reply.header(`${APP_PREFIX}${k}`, v);
    return reply.code(200).send(m.body);
  });

  app.delete<LockParams>('/devices/:id/messages/devicebound/:lockToken', async (req, reply) => {
    if (req.query.reject !== undefined) await services.c2d.reject(req.params.id, req.params.lockToken);
    else await services.c2d.complete(req.params.id, req.params.lockToken);
    return reply.code(204).send();
  });

  app.post<LockParams>('/devices/:id/messages/devicebound/:lockToken/abandon', async (req, reply) => {
    await services.c2d.abandon(req.params.id, req.params.lockToken);
    return reply.code(204).send();
  });
}
