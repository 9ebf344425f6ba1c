/**
 * The hub's fixed MQTT topic API (wire doc §3.2-3.7): what a device may subscribe to and publish
 * on, and the property bags carried in topic names. A device only ever touches its own topics.
 */
import { isJsonObject } from '../../core/json.js';
import type { DeviceDenial } from '../../access/gate.js';

export interface Identity {
  deviceId: string;
  moduleId: string | null;
}

export const TWIN_RESPONSE_FILTER = '$iothub/twin/res/#';
export const TWIN_DESIRED_FILTER = '$iothub/twin/PATCH/properties/desired/#';
export const METHODS_FILTER = '$iothub/methods/POST/#';

export function c2dFilter(id: Identity): string {
  return id.moduleId === null ? `devices/${id.deviceId}/messages/devicebound/#` : `devices/${id.deviceId}/modules/${id.moduleId}/inputs/#`;
}

/** The filters an identity may subscribe to; anything else closes the connection. */
export function allowedFilters(id: Identity): ReadonlySet<string> {
  return new Set([c2dFilter(id), METHODS_FILTER, TWIN_RESPONSE_FILTER, TWIN_DESIRED_FILTER]);
}

/**
 * Whether a topic or filter names another identity's topics: `devices/<other>/...`, a module's
 * topics for its device or the device's for a module, or a wildcard over devices or modules.
 */
export function reachesAnotherIdentity(topic: string, id: Identity): boolean {
  const [first, device, third, module] = topic.split('/');
  if (first === '#' || first === '+') return true;
  if (first !== 'devices' || device === undefined || device === '') return false;
  if (device === '+' || device === '#' || device !== id.deviceId) return true;
  if (third === '+' || third === '#') return true;
  const named = third === 'modules' ? (module ?? null) : null;
  return named === '+' || named === '#' || named !== id.moduleId;
}

/** A refused PUBLISH or SUBSCRIBE outside the identity's own topics, for the security events. */
export function topicDenial(action: 'publish to' | 'subscription to', topic: string, id: Identity): DeviceDenial {
  const cross = reachesAnotherIdentity(topic, id);
  return { code: cross ? 'cross_device' : 'forbidden_topic', reason: `${action} ${topic.slice(0, 200)} refused: ${cross ? "another device's topic" : "outside the device's own topics"}` };
}

export type DevicePublish =
  | { kind: 'telemetry'; bag: string }
  | { kind: 'twin-get'; rid: string }
  | { kind: 'twin-reported'; rid: string }
  | { kind: 'method-response'; status: number; rid: string }
  | { kind: 'forbidden' };

function queryParam(query: string, name: string): string | undefined {
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    if (k === name) return eq < 0 ? '' : part.slice(eq + 1);
  }
  return undefined;
}

/** Classifies a topic a device published on. */
export function classifyPublish(topic: string, id: Identity): DevicePublish {
  const eventsPrefix =
    id.moduleId === null ? `devices/${id.deviceId}/messages/events/` : `devices/${id.deviceId}/modules/${id.moduleId}/messages/events/`;
  if (topic.startsWith(eventsPrefix) || topic === eventsPrefix.slice(0, -1)) {
    return { kind: 'telemetry', bag: topic.slice(eventsPrefix.length) };
  }
  if (topic.startsWith('$iothub/')) {
    const q = topic.indexOf('?');
    const path = q < 0 ? topic : topic.slice(0, q);
    const query = q < 0 ? '' : topic.slice(q + 1);
    const rid = queryParam(query, '$rid');
    if (rid === undefined || rid === '' || rid.length > 128) return { kind: 'forbidden' };
    if (path === '$iothub/twin/GET/') return { kind: 'twin-get', rid };
    if (path === '$iothub/twin/PATCH/properties/reported/') return { kind: 'twin-reported', rid };
    const m = /^\$iothub\/methods\/res\/(\d{1,3})\/$/.exec(path);
    if (m?.[1] !== undefined) return { kind: 'method-response', status: Number(m[1]), rid };
  }
  return { kind: 'forbidden' };
}

/** System property keys in a property bag, by the names the hub stores them under. */
const SYSTEM_KEYS: Readonly<Record<string, string>> = {
  '$.mid': 'message-id',
  '$.cid': 'correlation-id',
  '$.uid': 'user-id',
  '$.to': 'to',
  '$.ct': 'content-type',
  '$.ce': 'content-encoding',
  '$.exp': 'absolute-expiry-time',
  '$.ifid': 'iothub-interface-id',
  '$.on': 'iothub-outputname',
  '$.sub': 'dt-subject',
  // Distributed tracing: the C SDK sends `%24.tracestate=timestamp%3D<unix seconds>` [DOCS: Trace
  // Azure IoT device-to-cloud messages by using distributed tracing].
  '$.tracestate': 'tracestate',
};

export interface ParsedBag {
  system: Record<string, string>;
  app: Record<string, string>;
}

/**
 * Parses a telemetry property bag (wire doc §3.3): strip one trailing `/`, split on `&`, then on
 * the first `=`, percent-decode both sides. Throws on malformed percent-encoding.
 */
export function parsePropertyBag(bag: string): ParsedBag {
  const out: ParsedBag = { system: {}, app: {} };
  const text = bag.endsWith('/') ? bag.slice(0, -1) : bag;
  if (text === '') return out;
  for (const part of text.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1));
    const sys = SYSTEM_KEYS[key];
    if (sys !== undefined) out.system[sys] = value;
    else out.app[key] = value;
  }
  return out;
}

/** Builds a C2D property bag the SDK parses (wire doc §3.4): system keys first, then app props. */
export function buildPropertyBag(system: ReadonlyArray<[string, string | null]>, app: Record<string, string>): string {
  const parts: string[] = [];
  for (const [k, v] of system) if (v !== null && v !== '') parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  for (const [k, v] of Object.entries(app)) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  return parts.join('&');
}

/** JSON body for MQTT responses; SDK parsers need a body, always (wire doc §0.1.7). */
export function jsonPayload(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v ?? null));
}

export function parseJsonPayload(payload: Buffer): unknown {
  const text = payload.toString('utf8').trim();
  if (text === '') return null;
  return JSON.parse(text) as unknown;
}

export { isJsonObject };
