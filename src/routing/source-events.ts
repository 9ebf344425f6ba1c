/**
 * The messages IoT Hub produces for the routing sources that are not telemetry, as Microsoft's
 * "Azure IoT Hub non-telemetry event schemas" documents them: twin change events, device lifecycle
 * events and device connection state events. Each is a LogMessage the owning service appends to the
 * log (decision 0006) when a route for its source exists; route conditions read it like telemetry.
 *
 * Common to all three:
 * - system properties: content-type application/json, content-encoding utf-8, correlation-id (a
 *   unique id for the event), user-id (the hub's name), iothub-connection-device-id,
 *   iothub-connection-module-id (module lifecycle and twin events only), iothub-enqueuedtime,
 *   iothub-message-source (twinChangeEvents, deviceLifecycleEvents, deviceConnectionStateEvents);
 * - application properties: hubName, deviceId, moduleId (module events only), operationTimestamp,
 *   iothub-message-schema, opType.
 */
import { randomUUID } from 'node:crypto';
import { isJsonObject, type JsonObject } from '../core/json.js';
import type { TwinState } from '../core/types.js';
import type { LogMessage } from '../log/log-ports.js';

/** `iothub-message-source` of each non-telemetry source. */
export const MESSAGE_SOURCES = {
  twinChange: 'twinChangeEvents',
  deviceLifecycle: 'deviceLifecycleEvents',
  deviceConnectionState: 'deviceConnectionStateEvents',
  deviceJobLifecycle: 'deviceJobLifecycleEvents',
} as const;

/** Azure's route source names (RoutingSource), by the `iothub-message-source` our messages carry. */
const ROUTE_SOURCES: ReadonlyMap<string, RouteSource> = new Map<string, RouteSource>([
  ['Telemetry', 'DeviceMessages'],
  [MESSAGE_SOURCES.twinChange, 'TwinChangeEvents'],
  [MESSAGE_SOURCES.deviceLifecycle, 'DeviceLifecycleEvents'],
  [MESSAGE_SOURCES.deviceConnectionState, 'DeviceConnectionStateEvents'],
  [MESSAGE_SOURCES.deviceJobLifecycle, 'DeviceJobLifecycleEvents'],
]);

export type RouteSource = 'DeviceMessages' | 'TwinChangeEvents' | 'DeviceLifecycleEvents' | 'DeviceConnectionStateEvents' | 'DeviceJobLifecycleEvents';

/** The route source a message belongs to; a message without `iothub-message-source` is telemetry. */
export function routeSourceOf(systemProperties: Readonly<Record<string, string>>): RouteSource | undefined {
  const source = systemProperties['iothub-message-source'];
  return source === undefined ? 'DeviceMessages' : ROUTE_SOURCES.get(source);
}

/** Who and when, for any event. */
export interface EventContext {
  hubName: string;
  deviceId: string;
  /** null for a device. */
  moduleId: string | null;
  /** ISO-8601 UTC time of the operation: operationTimestamp, and iothub-enqueuedtime. */
  now: string;
  /** The event's correlation-id; a new UUID when not given. */
  correlationId?: string;
}

interface Shape {
  source: string;
  schema: string;
  opType: string;
  /** Whether iothub-connection-module-id is set for a module (lifecycle and twin events; not connection state). */
  moduleSystemProperty: boolean;
  body: JsonObject;
}

function build(ctx: EventContext, shape: Shape): LogMessage {
  const properties: Record<string, string> = { hubName: ctx.hubName, deviceId: ctx.deviceId };
  if (ctx.moduleId !== null) properties.moduleId = ctx.moduleId;
  properties.operationTimestamp = ctx.now;
  properties['iothub-message-schema'] = shape.schema;
  properties.opType = shape.opType;
  const systemProperties: Record<string, string> = {
    'content-type': 'application/json',
    'content-encoding': 'utf-8',
    'correlation-id': ctx.correlationId ?? randomUUID(),
    'user-id': ctx.hubName,
    'iothub-connection-device-id': ctx.deviceId,
  };
  if (ctx.moduleId !== null && shape.moduleSystemProperty) systemProperties['iothub-connection-module-id'] = ctx.moduleId;
  systemProperties['iothub-enqueuedtime'] = ctx.now;
  systemProperties['iothub-message-source'] = shape.source;
  return { deviceId: ctx.deviceId, moduleId: ctx.moduleId, body: Buffer.from(JSON.stringify(shape.body), 'utf8'), properties, systemProperties };
}

/** The whole twin as lifecycle and replace events carry it: ids, etag, version, tags (when any), properties with metadata. */
export function twinBody(twin: TwinState): JsonObject {
  const doc: JsonObject = { deviceId: twin.deviceId };
  if (twin.moduleId !== null) doc.moduleId = twin.moduleId;
  doc.etag = twin.etag;
  doc.version = twin.version;
  if (Object.keys(twin.tags).length > 0) doc.tags = twin.tags;
  doc.properties = {
    desired: { ...twin.desired, $metadata: twin.desiredMeta, $version: twin.desiredVersion },
    reported: { ...twin.reported, $metadata: twin.reportedMeta, $version: twin.reportedVersion },
  };
  return doc;
}

/** The changed part of a section with its metadata: the section's own `$lastUpdated*` and each changed key's. */
function changedSection(patch: JsonObject, meta: JsonObject, version: number): JsonObject {
  const $metadata: JsonObject = {};
  for (const [k, v] of Object.entries(meta)) if (k.startsWith('$')) $metadata[k] = v;
  for (const k of Object.keys(patch)) {
    const m = meta[k];
    if (isJsonObject(m)) $metadata[k] = m;
  }
  return { ...patch, $metadata, $version: version };
}

export type TwinChange =
  /** A patch: the twin after it, and the parts each section's patch changed (null values are removals). */
  | { opType: 'updateTwin'; twin: TwinState; tags?: JsonObject; desired?: JsonObject; reported?: JsonObject }
  /** A replacement of the whole twin (PUT): the twin after it. */
  | { opType: 'replaceTwin'; twin: TwinState };

/**
 * A twin change event (iothub-message-schema twinChangeNotification). On an update the body holds
 * the twin's version and the changed tags and properties with their metadata; on a replace, the
 * whole twin.
 */
export function twinChangeEvent(ctx: EventContext, change: TwinChange): LogMessage {
  let body: JsonObject;
  if (change.opType === 'replaceTwin') {
    body = twinBody(change.twin);
  } else {
    const { twin } = change;
    body = { version: twin.version };
    if (change.tags !== undefined) body.tags = change.tags;
    const properties: JsonObject = {};
    if (change.desired !== undefined) properties.desired = changedSection(change.desired, twin.desiredMeta, twin.desiredVersion);
    if (change.reported !== undefined) properties.reported = changedSection(change.reported, twin.reportedMeta, twin.reportedVersion);
    if (Object.keys(properties).length > 0) body.properties = properties;
  }
  return build(ctx, { source: MESSAGE_SOURCES.twinChange, schema: 'twinChangeNotification', opType: change.opType, moduleSystemProperty: true, body });
}

/**
 * A device lifecycle event (deviceLifecycleNotification) for a device or module created or deleted;
 * the body is its twin (at creation, or as it was when deleted).
 */
export function deviceLifecycleEvent(ctx: EventContext, opType: 'createDeviceIdentity' | 'deleteDeviceIdentity', twin: TwinState): LogMessage {
  return build(ctx, { source: MESSAGE_SOURCES.deviceLifecycle, schema: 'deviceLifecycleNotification', opType, moduleSystemProperty: true, body: twinBody(twin) });
}

/**
 * A connection state event (deviceConnectionStateNotification) for a device or module connecting
 * or disconnecting; the body is `{ sequenceNumber }`, a 64-digit hexadecimal string that increases
 * strictly per device (connectionSequenceNumber makes one).
 */
export function connectionStateEvent(ctx: EventContext, opType: 'deviceConnected' | 'deviceDisconnected', sequenceNumber: string): LogMessage {
  return build(ctx, {
    source: MESSAGE_SOURCES.deviceConnectionState,
    schema: 'deviceConnectionStateNotification',
    opType,
    moduleSystemProperty: false,
    body: { sequenceNumber },
  });
}

/**
 * A device job lifecycle event (deviceJobLifecycleNotification): one device's part of a job ended
 * (opType `deviceJobCompleted` or `deviceJobFailed`); the body is its `devices.jobs` row.
 */
export function deviceJobLifecycleEvent(ctx: EventContext, opType: 'deviceJobCompleted' | 'deviceJobFailed', deviceJob: JsonObject): LogMessage {
  return build(ctx, { source: MESSAGE_SOURCES.deviceJobLifecycle, schema: 'deviceJobLifecycleNotification', opType, moduleSystemProperty: false, body: deviceJob });
}

/** 100-ns intervals from 1601-01-01 to 1970-01-01 (Windows FILETIME epoch, as in Azure's numbers). */
const FILETIME_EPOCH_OFFSET = 116_444_736_000_000_000n;

/**
 * A connection state sequence number as Azure writes them: 64 hexadecimal digits (a 256-bit
 * number), compared as strings. Ours: 16 zeros, the FILETIME of `timeMs` (16 digits, 100 ns
 * units, so a fractional millisecond counts), then `counter` (32 digits), so numbers grow with time
 * and, within one 100 ns tick, with the counter. The counter is per node: two nodes' numbers order
 * by their times, which is why callers pass a clock finer than a millisecond (preciseNowMs).
 */
export function connectionSequenceNumber(timeMs: number, counter: number | bigint): string {
  const t = Math.max(0, timeMs);
  const whole = Math.floor(t);
  const ticks = BigInt(whole) * 10_000n + BigInt(Math.min(9_999, Math.floor((t - whole) * 10_000)));
  const filetime = ticks + FILETIME_EPOCH_OFFSET;
  const count = BigInt(counter);
  if (count < 0n || count >= 1n << 128n) throw new RangeError('the counter must be a whole number from 0 to 2^128 - 1');
  return `${'0'.repeat(16)}${filetime.toString(16).toUpperCase().padStart(16, '0')}${count.toString(16).toUpperCase().padStart(32, '0')}`;
}

/**
 * Wall-clock milliseconds with a fraction (about 0.25 µs apart): the process's start time plus
 * monotonic time since. Processes on one machine agree to within microseconds, so a session taken
 * over on another node a moment later gets a larger number even within the same millisecond.
 */
export function preciseNowMs(): number {
  return performance.timeOrigin + performance.now();
}
