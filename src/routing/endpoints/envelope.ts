/**
 * How a routed message looks on the way out, shared by every endpoint type so a back end reading
 * two endpoints sees one shape (docs/routing-endpoints.md documents both forms):
 *
 * - The JSON envelope (webhook `json`, the file endpoint's NDJSON lines), after Azure's storage
 *   endpoint's JSON encoding: the body, properties, system properties, enrichments and the log
 *   position (partition, sequence number, offset, enqueued time). The body is a string: the
 *   bytes as UTF-8 when they are valid UTF-8 (`bodyEncoding: "utf-8"`), else base64
 *   (`"base64"`); either way the receiver gets the exact bytes back.
 * - Headers (webhook `raw`, NATS, RabbitMQ), the body left as it is: application properties and
 *   enrichments as `iothub-app-<name>` (the prefix Azure's HTTPS device API gives them, and one
 *   that keeps a device's property from posing as a transport header such as `Nats-Msg-Id` or
 *   RabbitMQ's `CC`); system properties as `iothub-<key>` (`iothub-message-id`,
 *   `iothub-content-type`, `iothub-connection-device-id` as it is); the position as
 *   `x-gatehouse-*`. An enrichment replaces an application property of the same name (Azure
 *   does the same).
 */
import type { LogRecord } from '../../log/log-ports.js';
import type { RoutedMessage } from './sink.js';

export interface MessageEnvelope {
  iothub: string;
  deviceId: string;
  moduleId: string | null;
  partition: number;
  sequenceNumber: number;
  offset: string;
  enqueuedTime: string;
  properties: Record<string, string>;
  systemProperties: Record<string, string>;
  enrichments: Record<string, string>;
  body: string;
  bodyEncoding: 'utf-8' | 'base64';
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The body as UTF-8 text when it is valid UTF-8 (no replacement happens), else base64. */
export function encodeBody(body: Buffer): { body: string; bodyEncoding: 'utf-8' | 'base64' } {
  try {
    return { body: utf8.decode(body), bodyEncoding: 'utf-8' };
  } catch {
    return { body: body.toString('base64'), bodyEncoding: 'base64' };
  }
}

/** The exact bytes an envelope's body stands for (what a receiver does; the tests use it). */
export function decodeBody(e: Pick<MessageEnvelope, 'body' | 'bodyEncoding'>): Buffer {
  return Buffer.from(e.body, e.bodyEncoding === 'base64' ? 'base64' : 'utf8');
}

export function envelope(m: RoutedMessage, hub: string): MessageEnvelope {
  const r = m.record;
  return {
    iothub: hub,
    deviceId: r.deviceId,
    moduleId: r.moduleId,
    partition: r.partition,
    sequenceNumber: r.sequenceNumber,
    offset: r.offset,
    enqueuedTime: r.enqueuedTime,
    properties: r.properties,
    systemProperties: r.systemProperties,
    enrichments: m.enrichments,
    ...encodeBody(r.body),
  };
}

/**
 * The id a target dedupes on: the same record always gets the same id, whichever node or retry
 * sends it. `<hub>/<partition>/<sequenceNumber>`.
 */
export function recordId(hub: string, r: Pick<LogRecord, 'partition' | 'sequenceNumber'>): string {
  return `${hub}/${r.partition}/${r.sequenceNumber}`;
}

/** Header names, as the module comment lists them; values as they are (each transport encodes). */
export function messageHeaders(m: RoutedMessage, hub: string): Map<string, string> {
  const r = m.record;
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(r.properties)) out.set(`iothub-app-${k}`, v);
  for (const [k, v] of Object.entries(m.enrichments)) out.set(`iothub-app-${k}`, v);
  for (const [k, v] of Object.entries(r.systemProperties)) out.set(k.startsWith('iothub-') ? k : `iothub-${k}`, v);
  out.set('x-gatehouse-iothub', hub);
  out.set('x-gatehouse-partition', String(r.partition));
  out.set('x-gatehouse-sequence-number', String(r.sequenceNumber));
  out.set('x-gatehouse-offset', r.offset);
  out.set('x-gatehouse-enqueued-time', r.enqueuedTime);
  return out;
}

/** RFC 9110 token characters: what a header name may hold. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/;

/**
 * A header for HTTP and NATS, whose headers are MIME-like: the name with every character outside
 * the token set percent-encoded (as UTF-8), the value percent-encoded as encodeURIComponent does,
 * so a receiver always gets the original back with decodeURIComponent, and no property can break
 * a header line.
 */
export function mimeHeader(name: string, value: string): [string, string] {
  let n = '';
  for (const ch of name) {
    if (TOKEN.test(ch) && ch !== '%') n += ch;
    else for (const b of Buffer.from(ch, 'utf8')) n += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return [n, encodeURIComponent(value)];
}

/**
 * An error's message with every secret replaced by `***`, for errors a sink passes on: the
 * dispatcher logs them and shows them in endpoint health. Secrets shorter than 4 characters are
 * left alone (they would mask ordinary words).
 */
export function redact(message: string, secrets: readonly (string | undefined)[]): string {
  let out = message;
  for (const s of secrets) {
    if (s === undefined || s.length < 4) continue;
    out = out.split(s).join('***');
    const enc = encodeURIComponent(s);
    if (enc !== s) out = out.split(enc).join('***');
  }
  return out;
}

/** `code: message` of whatever was thrown, for a reason a person reads. */
export function reasonOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return reasonOf(err.errors[0]);
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const msg = err.message || err.name;
    return typeof code === 'string' && !msg.includes(code) ? `${code}: ${msg}` : msg;
  }
  return String(err);
}
