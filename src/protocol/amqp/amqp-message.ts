/** AMQP message fields as the hub reads them, and hub errors as AMQP error conditions. */
import rhea from 'rhea';
import { HubError } from '../../core/errors.js';

/** An AMQP message id or correlation id as the C2D queue keeps it (uuids in their text form). */
export function amqpId(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (Buffer.isBuffer(v)) return v.length === 16 ? rhea.uuid_to_string(v) : v.toString('utf8');
  return String(v);
}

/** The body of a message: a data section (what the SDK sends), a value, or nothing. */
export function amqpBody(body: unknown): Buffer {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  const section = body as { typecode?: number; content?: unknown; multiple?: boolean };
  if (section.content !== undefined) {
    if (Buffer.isBuffer(section.content)) return section.content;
    if (Array.isArray(section.content)) return Buffer.concat(section.content.map((c) => (Buffer.isBuffer(c) ? c : Buffer.from(String(c)))));
    return Buffer.from(typeof section.content === 'string' ? section.content : JSON.stringify(section.content));
  }
  return Buffer.from(JSON.stringify(body));
}

/** The AMQP error condition for a hub error: the ones `azure-iothub` maps to its own error types. */
export function amqpCondition(err: unknown): { condition: string; description: string } {
  if (err instanceof HubError) {
    const c =
      err.code === 'DeviceNotFound'
        ? 'amqp:not-found'
        : err.code === 'DeviceMaximumQueueDepthExceeded'
          ? 'amqp:resource-limit-exceeded'
          : err.code === 'MessageTooLarge'
            ? 'amqp:link:message-size-exceeded'
            : err.code === 'IotHubUnauthorizedAccess'
              ? 'amqp:unauthorized-access'
              : err.code === 'ThrottlingException'
                ? 'com.microsoft:device-container-throttled'
                : err.status >= 500
                  ? 'amqp:internal-error'
                  : 'amqp:invalid-field';
    return { condition: c, description: err.message };
  }
  return { condition: 'amqp:internal-error', description: 'internal error' };
}

