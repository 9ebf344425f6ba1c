/**
 * Rows <-> records for sql-store.ts: column lists, parameter order, and the sealing of keys with
 * the SecretBox, bound to the row they belong to. Pure functions of a row and the box.
 */
import type { JsonObject } from '../../core/json.js';
import type { SecretBox } from '../../core/secret-box.js';
import type {
  Authentication,
  AuthType,
  ConnectionState,
  DeviceOrigin,
  DeviceRecord,
  DeviceStatus,
  ModuleRecord,
  Right,
  SharedAccessPolicy,
  TwinState,
} from '../../core/types.js';
import type { SqlRow, SqlValue } from './driver.js';

export const DEVICE_COLUMNS =
  'device_id, generation_id, etag, status, status_reason, status_updated_time, auth_type, primary_key, secondary_key, primary_thumbprint, secondary_thumbprint, iot_edge, device_scope, parent_scopes, connection_state, connection_state_updated_time, last_activity_time, c2d_count, origin';
export const MODULE_COLUMNS =
  'device_id, module_id, generation_id, etag, managed_by, auth_type, primary_key, secondary_key, primary_thumbprint, secondary_thumbprint, connection_state, connection_state_updated_time, last_activity_time, c2d_count';
export const TWIN_COLUMNS =
  'device_id, module_id, etag, version, tags, desired, desired_meta, desired_version, reported, reported_meta, reported_version, model_id, configurations';

export function placeholders(columns: string): string {
  return columns
    .split(',')
    .map(() => '?')
    .join(', ');
}

export function str(row: SqlRow, col: string): string {
  const v = row[col];
  if (typeof v !== 'string') throw new Error(`store: column ${col} is not text`);
  return v;
}
export function strOrNull(row: SqlRow, col: string): string | null {
  const v = row[col];
  return v === null || v === undefined ? null : String(v);
}
/** A BLOB / BYTEA column as a Buffer (empty for NULL). */
export function bytes(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (v === null || v === undefined) return Buffer.alloc(0);
  throw new Error('store: column is not binary');
}
export function num(row: SqlRow, col: string): number {
  return Number(row[col]);
}
export function json(row: SqlRow, col: string): JsonObject {
  return JSON.parse(str(row, col)) as JsonObject;
}

/** auth_type, primary_key, secondary_key, primary_thumbprint, secondary_thumbprint; keys sealed. */
export function authParams(box: SecretBox, a: Authentication, ctx: string): SqlValue[] {
  return [
    a.type,
    box.sealNullable(a.primaryKey, `${ctx}:primary`),
    box.sealNullable(a.secondaryKey, `${ctx}:secondary`),
    a.primaryThumbprint,
    a.secondaryThumbprint,
  ];
}

export function authFromRow(box: SecretBox, r: SqlRow, ctx: string): Authentication {
  return {
    type: str(r, 'auth_type') as AuthType,
    primaryKey: box.openNullable(strOrNull(r, 'primary_key'), `${ctx}:primary`),
    secondaryKey: box.openNullable(strOrNull(r, 'secondary_key'), `${ctx}:secondary`),
    primaryThumbprint: strOrNull(r, 'primary_thumbprint'),
    secondaryThumbprint: strOrNull(r, 'secondary_thumbprint'),
  };
}

/** devices.origin: NULL (unknown), `registry`, `individual:<registrationId>`, `group:<enrollmentGroupId>`. */
export function originText(o: DeviceOrigin): string | null {
  switch (o.kind) {
    case 'unknown':
      return null;
    case 'registry':
      return 'registry';
    case 'individual':
      return `individual:${o.registrationId}`;
    case 'group':
      return `group:${o.enrollmentGroupId}`;
  }
}

export function originFromText(v: string | null): DeviceOrigin {
  if (v === null) return { kind: 'unknown' };
  if (v === 'registry') return { kind: 'registry' };
  if (v.startsWith('individual:')) return { kind: 'individual', registrationId: v.slice('individual:'.length) };
  if (v.startsWith('group:')) return { kind: 'group', enrollmentGroupId: v.slice('group:'.length) };
  throw new Error(`store: unknown device origin '${v.slice(0, 40)}'`);
}

export function deviceParams(box: SecretBox, d: DeviceRecord): SqlValue[] {
  const ctx = `device:${d.deviceId}`;
  return [
    d.deviceId,
    d.generationId,
    d.etag,
    d.status,
    d.statusReason,
    d.statusUpdatedTime,
    ...authParams(box, d.auth, ctx),
    d.iotEdge ? 1 : 0,
    d.deviceScope,
    JSON.stringify(d.parentScopes),
    d.connectionState,
    d.connectionStateUpdatedTime,
    d.lastActivityTime,
    d.cloudToDeviceMessageCount,
    originText(d.origin),
  ];
}

export function deviceFromRow(box: SecretBox, r: SqlRow): DeviceRecord {
  const deviceId = str(r, 'device_id');
  const ctx = `device:${deviceId}`;
  return {
    deviceId,
    generationId: str(r, 'generation_id'),
    etag: str(r, 'etag'),
    status: str(r, 'status') as DeviceStatus,
    statusReason: strOrNull(r, 'status_reason'),
    statusUpdatedTime: str(r, 'status_updated_time'),
    auth: authFromRow(box, r, ctx),
    iotEdge: num(r, 'iot_edge') === 1,
    deviceScope: strOrNull(r, 'device_scope'),
    parentScopes: JSON.parse(str(r, 'parent_scopes')) as string[],
    connectionState: str(r, 'connection_state') as ConnectionState,
    connectionStateUpdatedTime: str(r, 'connection_state_updated_time'),
    lastActivityTime: str(r, 'last_activity_time'),
    cloudToDeviceMessageCount: num(r, 'c2d_count'),
    origin: originFromText(strOrNull(r, 'origin')),
  };
}

export function moduleParams(box: SecretBox, m: ModuleRecord): SqlValue[] {
  const ctx = `module:${m.deviceId}/${m.moduleId}`;
  return [
    m.deviceId,
    m.moduleId,
    m.generationId,
    m.etag,
    m.managedBy,
    ...authParams(box, m.auth, ctx),
    m.connectionState,
    m.connectionStateUpdatedTime,
    m.lastActivityTime,
    m.cloudToDeviceMessageCount,
  ];
}

export function moduleFromRow(box: SecretBox, r: SqlRow): ModuleRecord {
  const deviceId = str(r, 'device_id');
  const moduleId = str(r, 'module_id');
  const ctx = `module:${deviceId}/${moduleId}`;
  return {
    deviceId,
    moduleId,
    generationId: str(r, 'generation_id'),
    etag: str(r, 'etag'),
    managedBy: strOrNull(r, 'managed_by'),
    auth: authFromRow(box, r, ctx),
    connectionState: str(r, 'connection_state') as ConnectionState,
    connectionStateUpdatedTime: str(r, 'connection_state_updated_time'),
    lastActivityTime: str(r, 'last_activity_time'),
    cloudToDeviceMessageCount: num(r, 'c2d_count'),
  };
}

export function policyFromRow(box: SecretBox, r: SqlRow): SharedAccessPolicy {
  const name = str(r, 'name');
  return {
    name,
    primaryKey: box.open(str(r, 'primary_key'), `policy:${name}:primary`),
    secondaryKey: box.open(str(r, 'secondary_key'), `policy:${name}:secondary`),
    rights: str(r, 'rights').split(',').filter(Boolean) as Right[],
    etag: str(r, 'etag'),
  };
}

export function twinParams(t: TwinState): SqlValue[] {
  return [
    t.deviceId,
    t.moduleId ?? '',
    t.etag,
    t.version,
    JSON.stringify(t.tags),
    JSON.stringify(t.desired),
    JSON.stringify(t.desiredMeta),
    t.desiredVersion,
    JSON.stringify(t.reported),
    JSON.stringify(t.reportedMeta),
    t.reportedVersion,
    t.modelId,
    t.configurations === undefined || Object.keys(t.configurations).length === 0 ? null : JSON.stringify(t.configurations),
  ];
}

export function twinFromRow(r: SqlRow): TwinState {
  const moduleId = str(r, 'module_id');
  return {
    deviceId: str(r, 'device_id'),
    moduleId: moduleId === '' ? null : moduleId,
    etag: str(r, 'etag'),
    version: num(r, 'version'),
    tags: json(r, 'tags'),
    desired: json(r, 'desired'),
    desiredMeta: json(r, 'desired_meta'),
    desiredVersion: num(r, 'desired_version'),
    reported: json(r, 'reported'),
    reportedMeta: json(r, 'reported_meta'),
    reportedVersion: num(r, 'reported_version'),
    modelId: str(r, 'model_id'),
    ...(r.configurations === null || r.configurations === undefined ? {} : { configurations: json(r, 'configurations') }),
  };
}

export function prefixed(row: SqlRow, prefix: string): SqlRow {
  const out: SqlRow = {};
  for (const [k, v] of Object.entries(row)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = v;
  return out;
}
