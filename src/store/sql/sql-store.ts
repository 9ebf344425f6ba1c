/**
 * The one store implementation, over a SqlDriver. SQLite and PostgreSQL differ only in their
 * driver and migrations, so both pass store.case.ts for the same reasons.
 *
 * Secrets (device, module and policy keys, secret meta values) are sealed with the SecretBox
 * before they reach SQL, bound to the row they belong to.
 */
import { HubError } from '../../core/errors.js';
import type { JsonObject } from '../../core/json.js';
import type { SecretBox } from '../../core/secret-box.js';
import type {
  Authentication,
  AuthType,
  DeviceRecord,
  DeviceStatus,
  ConnectionState,
  ModuleRecord,
  Right,
  SharedAccessPolicy,
  TwinState,
} from '../../core/types.js';
import type { EtagCondition, Store, TwinScanEntry } from '../ports.js';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue } from './driver.js';
import { SqlEventStore } from './sql-event-store.js';
import { SqlSessionStore } from './sql-session-store.js';
import { SqlC2dStore } from './sql-c2d-store.js';
import { SqlCertificateStore } from './sql-certificate-store.js';
import { SqlEnrollmentStore } from './sql-enrollment-store.js';
import { SqlAuthorityStore } from './sql-authority-store.js';

const DEVICE_COLUMNS =
  'device_id, generation_id, etag, status, status_reason, status_updated_time, auth_type, primary_key, secondary_key, primary_thumbprint, secondary_thumbprint, iot_edge, device_scope, parent_scopes, connection_state, connection_state_updated_time, last_activity_time, c2d_count';
const MODULE_COLUMNS =
  'device_id, module_id, generation_id, etag, managed_by, auth_type, primary_key, secondary_key, primary_thumbprint, secondary_thumbprint, connection_state, connection_state_updated_time, last_activity_time, c2d_count';
const TWIN_COLUMNS =
  'device_id, module_id, etag, version, tags, desired, desired_meta, desired_version, reported, reported_meta, reported_version, model_id';

function placeholders(columns: string): string {
  return columns
    .split(',')
    .map(() => '?')
    .join(', ');
}

function str(row: SqlRow, col: string): string {
  const v = row[col];
  if (typeof v !== 'string') throw new Error(`store: column ${col} is not text`);
  return v;
}
function strOrNull(row: SqlRow, col: string): string | null {
  const v = row[col];
  return v === null || v === undefined ? null : String(v);
}
function num(row: SqlRow, col: string): number {
  return Number(row[col]);
}
function json(row: SqlRow, col: string): JsonObject {
  return JSON.parse(str(row, col)) as JsonObject;
}

export class SqlStore implements Store {
  readonly kind: 'sqlite' | 'postgres';
  readonly events: SqlEventStore;
  readonly sessions: SqlSessionStore;
  readonly c2d: SqlC2dStore;
  readonly certificates: SqlCertificateStore;
  readonly enrollments: SqlEnrollmentStore;
  readonly authority: SqlAuthorityStore;

  constructor(
    private readonly db: SqlDriver,
    private readonly box: SecretBox,
  ) {
    this.kind = db.dialect;
    this.events = new SqlEventStore(db);
    this.sessions = new SqlSessionStore(db);
    this.c2d = new SqlC2dStore(db, box);
    this.certificates = new SqlCertificateStore(db);
    this.enrollments = new SqlEnrollmentStore(db, box);
    this.authority = new SqlAuthorityStore(db, box);
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  // ---------------------------------------------------------------- devices

  async createDevice(device: DeviceRecord, twin: TwinState): Promise<void> {
    try {
      await this.db.transaction(async (tx) => {
        await tx.run(
          `INSERT INTO devices (${DEVICE_COLUMNS}) VALUES (${placeholders(DEVICE_COLUMNS)})`,
          this.deviceParams(device),
        );
        await this.insertTwin(tx, twin);
      });
    } catch (err) {
      if (this.db.isUniqueViolation(err)) {
        throw new HubError('DeviceAlreadyExists', `A device with ID '${device.deviceId}' is already registered.`);
      }
      throw err;
    }
  }

  async getDevice(deviceId: string): Promise<DeviceRecord | undefined> {
    const rows = await this.db.all(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE device_id = ?`, [deviceId]);
    return rows[0] === undefined ? undefined : this.deviceFromRow(rows[0]);
  }

  findDevice(deviceId: string): Promise<DeviceRecord | undefined> {
    return this.getDevice(deviceId);
  }

  async replaceDevice(device: DeviceRecord, ifMatch: EtagCondition): Promise<void> {
    const params = this.deviceParams(device);
    const set = DEVICE_COLUMNS.split(',')
      .slice(1)
      .map((c) => `${c.trim()} = ?`)
      .join(', ');
    const changed = await this.db.run(
      `UPDATE devices SET ${set} WHERE device_id = ? AND (? = '*' OR etag = ?)`,
      [...params.slice(1), device.deviceId, ifMatch, ifMatch],
    );
    if (changed === 0) await this.explainMiss('device', device.deviceId, undefined);
  }

  async deleteDevice(deviceId: string, ifMatch: EtagCondition): Promise<void> {
    const changed = await this.db.run(`DELETE FROM devices WHERE device_id = ? AND (? = '*' OR etag = ?)`, [
      deviceId,
      ifMatch,
      ifMatch,
    ]);
    if (changed === 0) await this.explainMiss('device', deviceId, undefined);
  }

  async listDevices(opts: { after?: string; limit: number }): Promise<DeviceRecord[]> {
    const rows =
      opts.after === undefined
        ? await this.db.all(`SELECT ${DEVICE_COLUMNS} FROM devices ORDER BY device_id LIMIT ?`, [opts.limit])
        : await this.db.all(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE device_id > ? ORDER BY device_id LIMIT ?`, [
            opts.after,
            opts.limit,
          ]);
    return rows.map((r) => this.deviceFromRow(r));
  }

  async deviceStatistics(): Promise<{ total: number; enabled: number; disabled: number }> {
    const rows = await this.db.all(
      `SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN status = 'enabled' THEN 1 ELSE 0 END), 0) AS enabled FROM devices`,
    );
    const total = Number(rows[0]?.total ?? 0);
    const enabled = Number(rows[0]?.enabled ?? 0);
    return { total, enabled, disabled: total - enabled };
  }

  async setConnectionState(deviceId: string, moduleId: string | null, state: 'Connected' | 'Disconnected', at: string): Promise<void> {
    if (moduleId === null) {
      await this.db.run(
        'UPDATE devices SET connection_state = ?, connection_state_updated_time = ?, last_activity_time = ? WHERE device_id = ?',
        [state, at, at, deviceId],
      );
    } else {
      await this.db.run(
        'UPDATE modules SET connection_state = ?, connection_state_updated_time = ?, last_activity_time = ? WHERE device_id = ? AND module_id = ?',
        [state, at, at, deviceId, moduleId],
      );
    }
  }

  // ---------------------------------------------------------------- modules

  async createModule(module: ModuleRecord, twin: TwinState): Promise<void> {
    try {
      await this.db.transaction(async (tx) => {
        const dev = await tx.all('SELECT device_id FROM devices WHERE device_id = ?', [module.deviceId]);
        if (dev.length === 0) throw new HubError('DeviceNotFound', `Device ${module.deviceId} not found`);
        await tx.run(`INSERT INTO modules (${MODULE_COLUMNS}) VALUES (${placeholders(MODULE_COLUMNS)})`, this.moduleParams(module));
        await this.insertTwin(tx, twin);
      });
    } catch (err) {
      if (this.db.isUniqueViolation(err)) {
        throw new HubError(
          'ModuleAlreadyExistsOnDevice',
          `A module with ID '${module.moduleId}' already exists on device '${module.deviceId}'.`,
        );
      }
      throw err;
    }
  }

  async getModule(deviceId: string, moduleId: string): Promise<ModuleRecord | undefined> {
    const rows = await this.db.all(`SELECT ${MODULE_COLUMNS} FROM modules WHERE device_id = ? AND module_id = ?`, [
      deviceId,
      moduleId,
    ]);
    return rows[0] === undefined ? undefined : this.moduleFromRow(rows[0]);
  }

  findModule(deviceId: string, moduleId: string): Promise<ModuleRecord | undefined> {
    return this.getModule(deviceId, moduleId);
  }

  async listModules(deviceId: string): Promise<ModuleRecord[]> {
    const rows = await this.db.all(`SELECT ${MODULE_COLUMNS} FROM modules WHERE device_id = ? ORDER BY module_id`, [deviceId]);
    return rows.map((r) => this.moduleFromRow(r));
  }

  async countModules(deviceId: string): Promise<number> {
    const rows = await this.db.all('SELECT COUNT(*) AS n FROM modules WHERE device_id = ?', [deviceId]);
    return Number(rows[0]?.n ?? 0);
  }

  async replaceModule(module: ModuleRecord, ifMatch: EtagCondition): Promise<void> {
    const params = this.moduleParams(module);
    const set = MODULE_COLUMNS.split(',')
      .slice(2)
      .map((c) => `${c.trim()} = ?`)
      .join(', ');
    const changed = await this.db.run(
      `UPDATE modules SET ${set} WHERE device_id = ? AND module_id = ? AND (? = '*' OR etag = ?)`,
      [...params.slice(2), module.deviceId, module.moduleId, ifMatch, ifMatch],
    );
    if (changed === 0) await this.explainMiss('module', module.deviceId, module.moduleId);
  }

  async deleteModule(deviceId: string, moduleId: string, ifMatch: EtagCondition): Promise<void> {
    await this.db.transaction(async (tx) => {
      const changed = await tx.run(
        `DELETE FROM modules WHERE device_id = ? AND module_id = ? AND (? = '*' OR etag = ?)`,
        [deviceId, moduleId, ifMatch, ifMatch],
      );
      if (changed === 0) await this.explainMiss('module', deviceId, moduleId, tx);
      await tx.run('DELETE FROM twins WHERE device_id = ? AND module_id = ?', [deviceId, moduleId]);
    });
  }

  // ---------------------------------------------------------------- twins

  async getTwin(deviceId: string, moduleId: string | null): Promise<TwinState | undefined> {
    const rows = await this.db.all(`SELECT ${TWIN_COLUMNS} FROM twins WHERE device_id = ? AND module_id = ?`, [
      deviceId,
      moduleId ?? '',
    ]);
    return rows[0] === undefined ? undefined : twinFromRow(rows[0]);
  }

  async replaceTwin(twin: TwinState, expectedEtag: string): Promise<void> {
    const p = twinParams(twin);
    const changed = await this.db.run(
      `UPDATE twins SET etag = ?, version = ?, tags = ?, desired = ?, desired_meta = ?, desired_version = ?, reported = ?, reported_meta = ?, reported_version = ?, model_id = ?
       WHERE device_id = ? AND module_id = ? AND etag = ?`,
      [...p.slice(2), p[0] ?? null, p[1] ?? null, expectedEtag],
    );
    if (changed === 0) {
      const current = await this.getTwin(twin.deviceId, twin.moduleId);
      if (current === undefined) {
        throw twin.moduleId === null
          ? new HubError('DeviceNotFound', `Device ${twin.deviceId} not found`)
          : new HubError('ModuleNotFound', `Module ${twin.moduleId} on device ${twin.deviceId} not found`);
      }
      throw new HubError('PreconditionFailed', 'The twin etag does not match; it was changed by someone else.');
    }
  }

  async scanTwins(opts: {
    kind: 'devices' | 'modules';
    after?: { deviceId: string; moduleId: string };
    limit: number;
  }): Promise<TwinScanEntry[]> {
    const twinCols = TWIN_COLUMNS.split(',')
      .map((c) => `t.${c.trim()} AS t_${c.trim()}`)
      .join(', ');
    const devCols = DEVICE_COLUMNS.split(',')
      .map((c) => `d.${c.trim()} AS d_${c.trim()}`)
      .join(', ');
    const after = opts.after ?? { deviceId: '', moduleId: '' };
    if (opts.kind === 'devices') {
      const rows = await this.db.all(
        `SELECT ${twinCols}, ${devCols} FROM twins t JOIN devices d ON d.device_id = t.device_id
         WHERE t.module_id = '' AND t.device_id > ? ORDER BY t.device_id LIMIT ?`,
        [opts.after === undefined ? '' : after.deviceId, opts.limit],
      );
      // '' sorts first, so a first page starting "after ''" still includes every real id (ids are non-empty).
      return rows.map((r) => ({ twin: twinFromRow(prefixed(r, 't_')), device: this.deviceFromRow(prefixed(r, 'd_')) }));
    }
    const modCols = MODULE_COLUMNS.split(',')
      .map((c) => `m.${c.trim()} AS m_${c.trim()}`)
      .join(', ');
    const rows = await this.db.all(
      `SELECT ${twinCols}, ${devCols}, ${modCols} FROM twins t
         JOIN devices d ON d.device_id = t.device_id
         JOIN modules m ON m.device_id = t.device_id AND m.module_id = t.module_id
       WHERE t.module_id <> '' AND (t.device_id > ? OR (t.device_id = ? AND t.module_id > ?))
       ORDER BY t.device_id, t.module_id LIMIT ?`,
      [after.deviceId, after.deviceId, after.moduleId, opts.limit],
    );
    return rows.map((r) => ({
      twin: twinFromRow(prefixed(r, 't_')),
      device: this.deviceFromRow(prefixed(r, 'd_')),
      module: this.moduleFromRow(prefixed(r, 'm_')),
    }));
  }

  // ---------------------------------------------------------------- policies

  async listPolicies(): Promise<SharedAccessPolicy[]> {
    const rows = await this.db.all('SELECT name, primary_key, secondary_key, rights, etag FROM policies ORDER BY name');
    return rows.map((r) => this.policyFromRow(r));
  }

  async getPolicy(name: string): Promise<SharedAccessPolicy | undefined> {
    const rows = await this.db.all('SELECT name, primary_key, secondary_key, rights, etag FROM policies WHERE name = ?', [name]);
    return rows[0] === undefined ? undefined : this.policyFromRow(rows[0]);
  }

  findPolicy(name: string): Promise<SharedAccessPolicy | undefined> {
    return this.getPolicy(name);
  }

  async putPolicy(policy: SharedAccessPolicy, ifMatch?: EtagCondition): Promise<void> {
    const ctx = `policy:${policy.name}`;
    const values: SqlValue[] = [
      this.box.seal(policy.primaryKey, `${ctx}:primary`),
      this.box.seal(policy.secondaryKey, `${ctx}:secondary`),
      policy.rights.join(','),
      policy.etag,
    ];
    if (ifMatch === undefined) {
      try {
        await this.db.run('INSERT INTO policies (name, primary_key, secondary_key, rights, etag) VALUES (?, ?, ?, ?, ?)', [
          policy.name,
          ...values,
        ]);
      } catch (err) {
        if (this.db.isUniqueViolation(err)) throw new HubError('InvalidOperation', `Policy ${policy.name} already exists.`);
        throw err;
      }
      return;
    }
    const changed = await this.db.run(
      `UPDATE policies SET primary_key = ?, secondary_key = ?, rights = ?, etag = ? WHERE name = ? AND (? = '*' OR etag = ?)`,
      [...values, policy.name, ifMatch, ifMatch],
    );
    if (changed === 0) {
      const exists = await this.getPolicy(policy.name);
      throw exists === undefined
        ? new HubError('ResourceNotFound', `Policy ${policy.name} not found`)
        : new HubError('PreconditionFailed', 'The policy etag does not match.');
    }
  }

  // ---------------------------------------------------------------- meta

  async getMeta(key: string): Promise<string | undefined> {
    const rows = await this.db.all('SELECT value FROM meta WHERE key = ?', [key]);
    return rows[0] === undefined ? undefined : str(rows[0], 'value');
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.db.run(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      [key, value],
    );
  }

  async getSecretMeta(key: string): Promise<string | undefined> {
    const v = await this.getMeta(`secret:${key}`);
    return v === undefined ? undefined : this.box.open(v, `meta:${key}`);
  }

  async setSecretMeta(key: string, value: string): Promise<void> {
    await this.setMeta(`secret:${key}`, this.box.seal(value, `meta:${key}`));
  }

  // ---------------------------------------------------------------- helpers

  /** After a conditional write touched no row: tell "not found" from "etag moved". */
  private async explainMiss(
    kind: 'device' | 'module',
    deviceId: string,
    moduleId: string | undefined,
    exec: SqlExecutor = this.db,
  ): Promise<never> {
    const rows =
      kind === 'device'
        ? await exec.all('SELECT 1 AS x FROM devices WHERE device_id = ?', [deviceId])
        : await exec.all('SELECT 1 AS x FROM modules WHERE device_id = ? AND module_id = ?', [deviceId, moduleId ?? '']);
    if (rows.length === 0) {
      throw kind === 'device'
        ? new HubError('DeviceNotFound', `Device ${deviceId} not found`)
        : new HubError('ModuleNotFound', `Module ${moduleId ?? ''} on device ${deviceId} not found`);
    }
    throw new HubError('PreconditionFailed', `The ${kind} etag does not match; it was changed by someone else.`);
  }

  private async insertTwin(tx: SqlExecutor, twin: TwinState): Promise<void> {
    await tx.run(`INSERT INTO twins (${TWIN_COLUMNS}) VALUES (${placeholders(TWIN_COLUMNS)})`, twinParams(twin));
  }

  /** auth_type, primary_key, secondary_key, primary_thumbprint, secondary_thumbprint; keys sealed. */
  private authParams(a: Authentication, ctx: string): SqlValue[] {
    return [
      a.type,
      this.box.sealNullable(a.primaryKey, `${ctx}:primary`),
      this.box.sealNullable(a.secondaryKey, `${ctx}:secondary`),
      a.primaryThumbprint,
      a.secondaryThumbprint,
    ];
  }

  private authFromRow(r: SqlRow, ctx: string): Authentication {
    return {
      type: str(r, 'auth_type') as AuthType,
      primaryKey: this.box.openNullable(strOrNull(r, 'primary_key'), `${ctx}:primary`),
      secondaryKey: this.box.openNullable(strOrNull(r, 'secondary_key'), `${ctx}:secondary`),
      primaryThumbprint: strOrNull(r, 'primary_thumbprint'),
      secondaryThumbprint: strOrNull(r, 'secondary_thumbprint'),
    };
  }

  private deviceParams(d: DeviceRecord): SqlValue[] {
    const ctx = `device:${d.deviceId}`;
    return [
      d.deviceId,
      d.generationId,
      d.etag,
      d.status,
      d.statusReason,
      d.statusUpdatedTime,
      ...this.authParams(d.auth, ctx),
      d.iotEdge ? 1 : 0,
      d.deviceScope,
      JSON.stringify(d.parentScopes),
      d.connectionState,
      d.connectionStateUpdatedTime,
      d.lastActivityTime,
      d.cloudToDeviceMessageCount,
    ];
  }

  private deviceFromRow(r: SqlRow): DeviceRecord {
    const deviceId = str(r, 'device_id');
    const ctx = `device:${deviceId}`;
    return {
      deviceId,
      generationId: str(r, 'generation_id'),
      etag: str(r, 'etag'),
      status: str(r, 'status') as DeviceStatus,
      statusReason: strOrNull(r, 'status_reason'),
      statusUpdatedTime: str(r, 'status_updated_time'),
      auth: this.authFromRow(r, ctx),
      iotEdge: num(r, 'iot_edge') === 1,
      deviceScope: strOrNull(r, 'device_scope'),
      parentScopes: JSON.parse(str(r, 'parent_scopes')) as string[],
      connectionState: str(r, 'connection_state') as ConnectionState,
      connectionStateUpdatedTime: str(r, 'connection_state_updated_time'),
      lastActivityTime: str(r, 'last_activity_time'),
      cloudToDeviceMessageCount: num(r, 'c2d_count'),
    };
  }

  private moduleParams(m: ModuleRecord): SqlValue[] {
    const ctx = `module:${m.deviceId}/${m.moduleId}`;
    return [
      m.deviceId,
      m.moduleId,
      m.generationId,
      m.etag,
      m.managedBy,
      ...this.authParams(m.auth, ctx),
      m.connectionState,
      m.connectionStateUpdatedTime,
      m.lastActivityTime,
      m.cloudToDeviceMessageCount,
    ];
  }

  private moduleFromRow(r: SqlRow): ModuleRecord {
    const deviceId = str(r, 'device_id');
    const moduleId = str(r, 'module_id');
    const ctx = `module:${deviceId}/${moduleId}`;
    return {
      deviceId,
      moduleId,
      generationId: str(r, 'generation_id'),
      etag: str(r, 'etag'),
      managedBy: strOrNull(r, 'managed_by'),
      auth: this.authFromRow(r, ctx),
      connectionState: str(r, 'connection_state') as ConnectionState,
      connectionStateUpdatedTime: str(r, 'connection_state_updated_time'),
      lastActivityTime: str(r, 'last_activity_time'),
      cloudToDeviceMessageCount: num(r, 'c2d_count'),
    };
  }

  private policyFromRow(r: SqlRow): SharedAccessPolicy {
    const name = str(r, 'name');
    return {
      name,
      primaryKey: this.box.open(str(r, 'primary_key'), `policy:${name}:primary`),
      secondaryKey: this.box.open(str(r, 'secondary_key'), `policy:${name}:secondary`),
      rights: str(r, 'rights').split(',').filter(Boolean) as Right[],
      etag: str(r, 'etag'),
    };
  }
}

function twinParams(t: TwinState): SqlValue[] {
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
  ];
}

function twinFromRow(r: SqlRow): TwinState {
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
  };
}

function prefixed(row: SqlRow, prefix: string): SqlRow {
  const out: SqlRow = {};
  for (const [k, v] of Object.entries(row)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = v;
  return out;
}
