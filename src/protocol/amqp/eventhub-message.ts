/**
 * The Event Hubs-compatible endpoint's vocabulary (issue 17): its node addresses, the starting
 * positions receivers ask for in an `apache.org:selector-filter:string` source filter, and a log
 * record as the AMQP message Azure IoT Hub delivers to `@azure/event-hubs`:
 *
 * - message properties: message_id, correlation_id, user_id, to, content_type, content_encoding,
 *   absolute_expiry_time, from the device's system properties;
 * - message annotations: the hub's stamps (`iothub-connection-device-id`, `-module-id`,
 *   `-auth-method`, `-auth-generation-id`, `iothub-enqueuedtime` as a timestamp,
 *   `iothub-message-source`, and any other system property), then `x-opt-sequence-number` (long),
 *   `x-opt-offset` (string), `x-opt-enqueued-time` (timestamp), `x-opt-partition-key` (the device id);
 * - application properties as the device sent them, with the enrichments configured for `events`
 *   (applied by the reader, eventhub-endpoint.ts); the body as one data section.
 */
import rhea, { type Message } from 'rhea';
import { LogPositionError } from '../../log/positions.js';
import type { LogPosition, LogRecord, PartitionProperties } from '../../log/log-ports.js';

export const SELECTOR_FILTER = 'apache.org:selector-filter:string';
export const EPOCH_PROPERTY = 'com.microsoft:epoch';
export const RUNTIME_METRIC_CAPABILITY = 'com.microsoft:enable-receiver-runtime-metric';

/** `{entity}/ConsumerGroups/{group}/Partitions/{n}`, or IoT Hub's own `/messages/events/ConsumerGroups/...`. */
export interface PartitionAddress {
  entity: string;
  consumerGroup: string;
  partition: string;
}

export function parsePartitionAddress(address: string): PartitionAddress | undefined {
  const m = /^\/?(messages\/events|[^/]+)\/ConsumerGroups\/([^/]+)\/Partitions\/([^/]+)\/?$/i.exec(address);
  if (m === null) return undefined;
  try {
    return { entity: decodeURIComponent(m[1] as string), consumerGroup: decodeURIComponent(m[2] as string), partition: decodeURIComponent(m[3] as string) };
  } catch {
    return undefined;
  }
}

/** `$management` (what @azure/event-hubs attaches to), `{entity}/$management`, `/messages/events/$management`. */
export function isManagementAddress(address: string): boolean {
  return /^\/?(?:(?:messages\/events|[^/]+)\/)?\$management$/i.test(address);
}

/** The string a filter value carries, however the decoder wrapped the described type. */
function filterText(v: unknown): string | undefined {
  for (let i = 0; i < 4 && v !== null && v !== undefined; i++) {
    if (typeof v === 'string') return v;
    if (Buffer.isBuffer(v)) return v.toString('utf8');
    if (typeof v !== 'object') return undefined;
    v = (v as { value?: unknown }).value;
  }
  return undefined;
}

/** The selector filter's descriptor, numeric (0x0000468C:0x00000004) and symbolic. */
const SELECTOR_CODE = 0x468c00000004;

function isSelectorDescriptor(d: unknown): boolean {
  const v = d !== null && typeof d === 'object' && 'value' in d ? (d as { value: unknown }).value : d;
  return v === SELECTOR_CODE || (typeof v === 'bigint' && v === BigInt(SELECTOR_CODE)) || v === SELECTOR_FILTER;
}

/**
 * The source's selector filter: its name in the filter set and its expression. A filter is known
 * by its descriptor, not its name, which the client picks (`@azure/event-hubs` names it after the
 * descriptor, rhea's `filter.selector` and Qpid JMS `jms-selector`); a name that says selector-filter
 * is taken too, for a client that sent the value undescribed.
 */
function selectorFilter(filter: unknown): { name: string; text: string } | undefined {
  if (filter === null || filter === undefined || typeof filter !== 'object') return undefined;
  const entries = Object.entries(filter as Record<string, unknown>);
  const entry =
    entries.find(([, v]) => v !== null && typeof v === 'object' && isSelectorDescriptor((v as { descriptor?: unknown }).descriptor)) ??
    entries.find(([k]) => k === SELECTOR_FILTER || k.toLowerCase().includes('selector-filter'));
  if (entry === undefined) return undefined;
  const text = filterText(entry[1]);
  if (text === undefined) throw new LogPositionError('the selector filter is not a string');
  return { name: entry[0], text };
}

/** The selector filter's expression, if the source has one. */
export function selectorFilterText(filter: unknown): string | undefined {
  return selectorFilter(filter)?.text;
}

/** The source a receiver's attach is answered with: its address and its filter, as Event Hubs echoes them. */
export function echoedSource(address: string, filter: unknown): { address: string; filter?: Record<string, unknown> } {
  let found: { name: string; text: string } | undefined;
  try {
    found = selectorFilter(filter);
  } catch {
    // A filter that is not a string is refused after the attach (positionFromFilter): answer without it.
  }
  return found === undefined ? { address } : { address, filter: { [found.name]: rhea.types.wrap_described(found.text, SELECTOR_CODE) } };
}

/**
 * The position a receiver's source filter asks for. No filter: the start of the partition.
 * Throws LogPositionError (for an `amqp:invalid-field` refusal) on anything else.
 */
export function positionFromFilter(filter: unknown): LogPosition {
  const text = selectorFilterText(filter);
  if (text === undefined) return 'earliest';
  const m = /^\s*amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time)\s*(>=|>)\s*(?:'([^']*)'|(\S+))\s*$/i.exec(text);
  if (m === null) throw new LogPositionError(`unsupported selector filter: ${text.slice(0, 120)}`);
  const field = (m[1] as string).toLowerCase();
  const inclusive = m[2] === '>=';
  const value = (m[3] ?? m[4] ?? '').trim();
  if (field === 'x-opt-offset') {
    if (value === '@latest') return 'latest';
    if (value === '-1') return 'earliest';
    return { offset: value, inclusive };
  }
  if (field === 'x-opt-sequence-number') {
    if (!/^-?\d{1,16}$/.test(value)) throw new LogPositionError(`sequence number '${value.slice(0, 40)}' is not a whole number`);
    return { sequenceNumber: Number(value), inclusive };
  }
  if (!/^-?\d{1,16}$/.test(value)) throw new LogPositionError(`enqueued time '${value.slice(0, 40)}' is not milliseconds since the epoch`);
  // Records enqueued strictly after the time (`>=` means one millisecond earlier).
  const ms = Number(value) - (inclusive ? 1 : 0);
  return { enqueuedTime: new Date(Math.max(0, ms)).toISOString() };
}

/** System properties that are AMQP message properties; everything else becomes an annotation. */
const MESSAGE_PROPERTIES: Readonly<Record<string, string>> = {
  'message-id': 'message_id',
  'correlation-id': 'correlation_id',
  to: 'to',
  'content-type': 'content_type',
  'content-encoding': 'content_encoding',
};

function timestamp(v: string): Date | undefined {
  const ms = Date.parse(v);
  return Number.isFinite(ms) ? new Date(ms) : undefined;
}

/** A log record as Azure delivers it on the Event Hubs-compatible endpoint. */
export function eventHubMessage(r: LogRecord, runtime?: PartitionProperties & { retrievedAt: Date }): Message {
  const msg: Record<string, unknown> = {};
  const annotations: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r.systemProperties)) {
    const prop = MESSAGE_PROPERTIES[k];
    if (prop !== undefined) msg[prop] = v;
    else if (k === 'user-id') msg.user_id = Buffer.from(v, 'utf8');
    else if (k === 'absolute-expiry-time') {
      const t = timestamp(v);
      if (t !== undefined) msg.absolute_expiry_time = t;
    } else if (k === 'iothub-enqueuedtime') annotations[k] = timestamp(v) ?? v;
    else annotations[k] = v;
  }
  annotations['x-opt-sequence-number'] = rhea.types.wrap_long(r.sequenceNumber);
  annotations['x-opt-offset'] = r.offset;
  annotations['x-opt-enqueued-time'] = new Date(r.enqueuedTime);
  annotations['x-opt-partition-key'] = r.deviceId;
  msg.message_annotations = annotations;
  if (Object.keys(r.properties).length > 0) msg.application_properties = { ...r.properties };
  if (runtime !== undefined) {
    msg.delivery_annotations = {
      last_enqueued_sequence_number: rhea.types.wrap_long(runtime.lastEnqueuedSequenceNumber),
      last_enqueued_offset: runtime.lastEnqueuedOffset,
      last_enqueued_time_utc: new Date(runtime.lastEnqueuedTimeUtc),
      runtime_info_retrieval_time_utc: runtime.retrievedAt,
    };
  }
  msg.body = rhea.message.data_section(r.body);
  return msg as unknown as Message;
}
