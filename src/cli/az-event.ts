/**
 * A telemetry event from the hub's event stream in the shape `az iot hub monitor-events` prints
 * (azure-iot-cli-extension `azext_iot/monitor/parsers/common_parser.py`), so scripts written for
 * az read Gatehouse's output unchanged:
 *
 *   {"event": {"origin", "module", "interface", "component",
 *              "properties": {"system", "application"},   (with --props sys/app/all)
 *              "annotations",                              (with --props anno/all)
 *              "payload"}}
 *
 * az reads Event Hubs: the AMQP message properties become `properties.system` (uamqp's names:
 * message_id, content_type, ..., sorted, empty ones left out), the message annotations
 * (iothub-connection-*, iothub-enqueuedtime, x-opt-sequence-number, ...) become `annotations`.
 * The payload is UTF-8 text, parsed as JSON only when the content type (the message's, or
 * `--content-type`) says application/json.
 */

/** The event stream's JSON (src/hub/telemetry/render-event.ts renderEvent). */
export interface StreamEvent {
  deviceId: string;
  moduleId?: string;
  /** Where the record sits in the hub's partitioned log (Event Hubs' positions). */
  partition: number;
  sequenceNumber: number;
  offset: string;
  enqueuedTime: string;
  /** JSON when the body parsed as JSON, the text when UTF-8, else `{base64}`. */
  payload: unknown;
  properties: Record<string, string>;
  systemProperties: Record<string, string>;
}

export type PropKind = 'sys' | 'app' | 'anno' | 'all';

export interface AzEvent {
  event: {
    origin: string;
    module: string;
    interface: string;
    component: string;
    properties?: { system?: Record<string, unknown>; application?: Record<string, string> };
    annotations?: Record<string, unknown>;
    payload: unknown;
  };
}

/** az's placeholder for a body that is not text (azext_iot/iothub/common.py NON_DECODABLE_PAYLOAD). */
export const NON_DECODABLE_PAYLOAD = '{{non-decodable payload}}';

/** The hub's system property names that are AMQP message properties, by uamqp's attribute name. */
const AMQP_PROPERTIES: Readonly<Record<string, string>> = {
  'absolute-expiry-time': 'absolute_expiry_time',
  'content-encoding': 'content_encoding',
  'content-type': 'content_type',
  'correlation-id': 'correlation_id',
  'creation-time': 'creation_time',
  'message-id': 'message_id',
  to: 'to',
  'user-id': 'user_id',
};

/** AMQP timestamps arrive in az as milliseconds since the epoch. */
const TIMESTAMPS = new Set(['absolute_expiry_time', 'creation_time', 'iothub-enqueuedtime']);

function timestamp(v: string): number | string {
  const ms = Date.parse(v);
  return Number.isFinite(ms) ? ms : v;
}

/** The body as text: what the event stream sent, back to the string the device sent. */
function bodyText(payload: unknown): string | undefined {
  if (typeof payload === 'string') return payload;
  if (payload !== null && typeof payload === 'object' && !Array.isArray(payload)) {
    const keys = Object.keys(payload);
    const b64 = (payload as { base64?: unknown }).base64;
    if (keys.length === 1 && typeof b64 === 'string') {
      const bytes = Buffer.from(b64, 'base64');
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        return undefined;
      }
    }
  }
  // The stream parsed it as JSON already; az would see the same text.
  return JSON.stringify(payload);
}

function renderPayload(e: StreamEvent, contentType: string): unknown {
  const text = bodyText(e.payload);
  if (text === undefined) return NON_DECODABLE_PAYLOAD;
  if (!contentType.toLowerCase().includes('application/json')) {
    // The stream already turned JSON text into a value: az shows that text as a string.
    return typeof e.payload === 'string' ? e.payload : text;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export function azEvent(e: StreamEvent, props: ReadonlySet<PropKind>, contentType?: string): AzEvent {
  const sys = e.systemProperties;
  const system: Record<string, unknown> = {};
  const annotations: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(sys)) {
    const amqp = AMQP_PROPERTIES[k];
    if (amqp !== undefined) {
      if (v !== '') system[amqp] = TIMESTAMPS.has(amqp) ? timestamp(v) : v;
    } else annotations[k] = TIMESTAMPS.has(k) ? timestamp(v) : v;
  }
  annotations['x-opt-sequence-number'] = e.sequenceNumber;
  annotations['x-opt-offset'] = e.offset;
  annotations['x-opt-enqueued-time'] = timestamp(e.enqueuedTime);
  const all = props.has('all');
  // Built in az's key order: origin, module, interface, component, properties, annotations, payload.
  const event: Omit<AzEvent['event'], 'payload'> & { payload?: unknown } = {
    origin: e.deviceId,
    module: e.moduleId ?? sys['iothub-connection-module-id'] ?? '',
    interface: sys['iothub-interface-name'] ?? sys['dt-dataschema'] ?? '',
    component: sys['dt-subject'] ?? '',
  };
  if (props.size > 0) event.properties = {};
  if (all || props.has('anno')) event.annotations = annotations;
  if (event.properties !== undefined && Object.keys(system).length > 0 && (all || props.has('sys'))) {
    event.properties.system = Object.fromEntries(Object.entries(system).sort(([a], [b]) => (a < b ? -1 : 1)));
  }
  if (event.properties !== undefined && (all || props.has('app'))) event.properties.application = { ...e.properties };
  event.payload = renderPayload(e, contentType ?? sys['content-type'] ?? '');
  return { event: event as AzEvent['event'] };
}
