/**
 * The one store implementation, over a SqlDriver. SQLite and PostgreSQL differ only in their
 * driver and migrations, so both pass store.case.ts for the same reasons.
 *
 * Secrets (device, module and policy keys, secret meta values) are sealed with the SecretBox
 * before they reach SQL, bound to the row they belong to.
 */
import { HubError } from '../../core/errors.js';
import type { SecretBox } from '../../core/secret-box.js';
import type { DeviceRecord, ModuleRecord, SharedAccessPolicy, TwinState } from '../../core/types.js';
import type { ConnectionStateChange, EtagCondition, Store, TwinScanEntry } from '../ports.js';
import type { SqlDriver, SqlExecutor, SqlValue } from './driver.js';
import {
  DEVICE_COLUMNS,
  MODULE_COLUMNS,
  TWIN_COLUMNS,
  deviceFromRow,
  deviceParams,
  moduleFromRow,
  moduleParams,
  placeholders,
  policyFromRow,
  prefixed,
  str,
  twinFromRow,
  twinParams,
} from './rows.js';
import { SqlSessionStore } from './sql-session-store.js';
import { SqlC2dStore } from './sql-c2d-store.js';
import { SqlCertificateStore } from './sql-certificate-store.js';
import { SqlEnrollmentStore } from './sql-enrollment-store.js';
import { SqlAuthorityStore } from './sql-authority-store.js';
import { SqlAuditStore } from './sql-audit-store.js';
import { SqlAlertStore } from './sql-alert-store.js';
import { SqlOperatorStore } from './sql-operator-store.js';
import { SqlCounterStore } from './sql-counter-store.js';
import { SqlConfigurationStore } from './sql-configuration-store.js';
import { SqlJobStore } from './sql-job-store.js';
import { SqlFileNotificationStore } from './sql-file-notification-store.js';

export class SqlStore implements Store {
  readonly kind: 'sqlite' | 'postgres';
  readonly sessions: SqlSessionStore;
  readonly c2d: SqlC2dStore;
  readonly certificates: SqlCertificateStore;
  readonly enrollments: SqlEnrollmentStore;
  readonly authority: SqlAuthorityStore;
  readonly audit: SqlAuditStore;
  readonly alerts: SqlAlertStore;
  readonly operators: SqlOperatorStore;
  readonly counters: SqlCounterStore;
  readonly configurations: SqlConfigurationStore;
  readonly jobs: SqlJobStore;
  readonly fileNotifications: SqlFileNotificationStore;

  constructor(
    private readonly db: SqlDriver,
    private readonly box: SecretBox,
  ) {
    this.kind = db.dialect;
    this.sessions = new SqlSessionStore(db);
    this.c2d = new SqlC2dStore(db, box);
    this.certificates = new SqlCertificateStore(db);
    this.enrollments = new SqlEnrollmentStore(db, box);
    this.authority = new SqlAuthorityStore(db, box);
    this.audit = new SqlAuditStore(db);
    this.alerts = new SqlAlertStore(db, box);
    this.operators = new SqlOperatorStore(db);
    this.counters = new SqlCounterStore(db);
    this.configurations = new SqlConfigurationStore(db);
    this.jobs = new SqlJobStore(db);
    this.fileNotifications = new SqlFileNotificationStore(db);
  }

  /** The driver, for what keeps its own tables beside the store's (the event log, src/log/sql). */
  get sqlDriver(): SqlDriver {
    return this.db;
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  // ---------------------------------------------------------------- devices

  async createDevice(device: DeviceRecord, twin: TwinState): Promise<void> {
    try {
      // One round trip on PostgreSQL (was BEGIN, two INSERTs, COMMIT): the registry's hottest write.
      await this.db.writeAll([
        { sql: `INSERT INTO devices (${DEVICE_COLUMNS}) VALUES (${placeholders(DEVICE_COLUMNS)})`, params: deviceParams(this.box, device) },
        { sql: `INSERT INTO twins (${TWIN_COLUMNS}) VALUES (${placeholders(TWIN_COLUMNS)})`, params: twinParams(twin) },
      ]);
    } catch (err) {
      if (this.db.isUniqueViolation(err)) {
        throw new HubError('DeviceAlreadyExists', `A device with ID '${device.deviceId}' is already registered.`);
      }
      throw err;
    }
  }

  async getDevice(deviceId: string): Promise<DeviceRecord | undefined> {
    const rows = await this.db.all(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE device_id = ?`, [deviceId]);
    return rows[0] === undefined ? undefined : deviceFromRow(this.box, rows[0]);
  }

  findDevice(deviceId: string): Promise<DeviceRecord | undefined> {
    return this.getDevice(deviceId);
  }

  async replaceDevice(device: DeviceRecord, ifMatch: EtagCondition): Promise<void> {
    const params = deviceParams(this.box, device);
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
    return rows.map((r) => deviceFromRow(this.box, r));
  }

  async deviceStatistics(): Promise<{ total: number; enabled: number; disabled: number }> {
    const rows = await this.db.all(
      `SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN status = 'enabled' THEN 1 ELSE 0 END), 0) AS enabled FROM devices`,
    );
    const total = Number(rows[0]?.total ?? 0);
    const enabled = Number(rows[0]?.enabled ?? 0);
    return { total, enabled, disabled: total - enabled };
  }

  async connectedDeviceCount(): Promise<number> {
    const rows = await this.db.all(`SELECT COUNT(*) AS n FROM devices WHERE connection_state = 'Connected'`);
    return Number(rows[0]?.n ?? 0);
  }

  async resetConnectionStates(at: string): Promise<number> {
    return this.db.transaction(async (tx) => {
      let n = 0;
      for (const table of ['devices', 'modules']) {
        const stale = await tx.all(`SELECT COUNT(*) AS n FROM ${table} WHERE connection_state = 'Connected'`);
        n += Number(stale[0]?.n ?? 0);
        await tx.run(`UPDATE ${table} SET connection_state = 'Disconnected', connection_state_updated_time = ? WHERE connection_state = 'Connected'`, [at]);
      }
      return n;
    });
  }

  async setConnectionState(deviceId: string, moduleId: string | null, state: 'Connected' | 'Disconnected', at: string): Promise<void> {
    await writeConnectionState(this.db, { deviceId, moduleId, state, at });
  }

  async setConnectionStates(changes: readonly ConnectionStateChange[]): Promise<void> {
    if (changes.length === 0) return;
    if (changes.length === 1 && changes[0] !== undefined) return writeConnectionState(this.db, changes[0]);
    // A batch of devices is one UPDATE joined to a VALUES list (one round trip on PostgreSQL, not
    // one per device), with the last change of each device (one UPDATE sets a row once). Modules
    // are rare and keep a statement each, in order.
    const last = new Map<string, ConnectionStateChange>();
    for (const c of changes) if (c.moduleId === null) last.set(c.deviceId, c);
    const devices = [...last.values()];
    const modules = changes.filter((c) => c.moduleId !== null);
    const write = async (exec: SqlExecutor) => {
      for (let i = 0; i < devices.length; i += CONNECTION_STATE_ROWS) await writeDeviceStates(exec, devices.slice(i, i + CONNECTION_STATE_ROWS));
      for (const c of modules) await writeConnectionState(exec, c);
    };
    // One statement is atomic by itself: no BEGIN and COMMIT around it (two round trips on PostgreSQL).
    if (modules.length === 0 && devices.length <= CONNECTION_STATE_ROWS) await write(this.db);
    else await this.db.transaction(write);
  }

  // ---------------------------------------------------------------- modules

  async createModule(module: ModuleRecord, twin: TwinState): Promise<void> {
    try {
      await this.db.transaction(async (tx) => {
        const dev = await tx.all('SELECT device_id FROM devices WHERE device_id = ?', [module.deviceId]);
        if (dev.length === 0) throw new HubError('DeviceNotFound', `Device ${module.deviceId} not found`);
        await tx.run(`INSERT INTO modules (${MODULE_COLUMNS}) VALUES (${placeholders(MODULE_COLUMNS)})`, moduleParams(this.box, module));
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
    return rows[0] === undefined ? undefined : moduleFromRow(this.box, rows[0]);
  }

  findModule(deviceId: string, moduleId: string): Promise<ModuleRecord | undefined> {
    return this.getModule(deviceId, moduleId);
  }

  async listModules(deviceId: string): Promise<ModuleRecord[]> {
    const rows = await this.db.all(`SELECT ${MODULE_COLUMNS} FROM modules WHERE device_id = ? ORDER BY module_id`, [deviceId]);
    return rows.map((r) => moduleFromRow(this.box, r));
  }

  async countModules(deviceId: string): Promise<number> {
    const rows = await this.db.all('SELECT COUNT(*) AS n FROM modules WHERE device_id = ?', [deviceId]);
    return Number(rows[0]?.n ?? 0);
  }

  async replaceModule(module: ModuleRecord, ifMatch: EtagCondition): Promise<void> {
    const params = moduleParams(this.box, module);
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
      `UPDATE twins SET etag = ?, version = ?, tags = ?, desired = ?, desired_meta = ?, desired_version = ?, reported = ?, reported_meta = ?, reported_version = ?, model_id = ?, configurations = ?
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

  async getDeviceTwins(deviceIds: readonly string[]): Promise<TwinState[]> {
    if (deviceIds.length === 0) return [];
    const rows = await this.db.all(`SELECT ${TWIN_COLUMNS} FROM twins WHERE module_id = '' AND device_id IN (${deviceIds.map(() => '?').join(', ')})`, [...deviceIds]);
    return rows.map(twinFromRow);
  }

  async writeServiceSections(writes: readonly { twin: TwinState; expectedEtag: string }[]): Promise<boolean[]> {
    if (writes.length === 0) return [];
    return this.db.transaction(async (tx) => {
      const made: boolean[] = [];
      for (const { twin: t, expectedEtag } of writes) {
        const changed = await tx.run(
          'UPDATE twins SET etag = ?, version = ?, tags = ?, desired = ?, desired_meta = ?, desired_version = ? WHERE device_id = ? AND module_id = ? AND etag = ?',
          [t.etag, t.version, JSON.stringify(t.tags), JSON.stringify(t.desired), JSON.stringify(t.desiredMeta), t.desiredVersion, t.deviceId, t.moduleId ?? '', expectedEtag],
        );
        made.push(changed > 0);
      }
      return made;
    });
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
      return rows.map((r) => ({ twin: twinFromRow(prefixed(r, 't_')), device: deviceFromRow(this.box, prefixed(r, 'd_')) }));
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
      device: deviceFromRow(this.box, prefixed(r, 'd_')),
      module: moduleFromRow(this.box, prefixed(r, 'm_')),
    }));
  }

  // ---------------------------------------------------------------- policies

  async listPolicies(): Promise<SharedAccessPolicy[]> {
    const rows = await this.db.all('SELECT name, primary_key, secondary_key, rights, etag FROM policies ORDER BY name');
    return rows.map((r) => policyFromRow(this.box, r));
  }

  async getPolicy(name: string): Promise<SharedAccessPolicy | undefined> {
    const rows = await this.db.all('SELECT name, primary_key, secondary_key, rights, etag FROM policies WHERE name = ?', [name]);
    return rows[0] === undefined ? undefined : policyFromRow(this.box, rows[0]);
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
        if (this.db.isUniqueViolation(err)) throw new HubError('PolicyAlreadyExists', `Policy ${policy.name} already exists.`);
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

  async deletePolicy(name: string, ifMatch: EtagCondition): Promise<void> {
    const changed = await this.db.run(`DELETE FROM policies WHERE name = ? AND (? = '*' OR etag = ?)`, [name, ifMatch, ifMatch]);
    if (changed === 0) {
      const exists = await this.getPolicy(name);
      throw exists === undefined ? new HubError('PolicyNotFound', `No shared access policy named ${name}.`) : new HubError('PreconditionFailed', 'The policy etag does not match.');
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

  async insertMetaIfAbsent(key: string, value: string): Promise<string> {
    await this.db.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING', [key, value]);
    const kept = await this.getMeta(key);
    // Only a delete between the two statements leaves nothing; the caller's start fails loudly.
    if (kept === undefined) throw new Error(`meta ${key} vanished right after it was written`);
    return kept;
  }

  async compareAndSetMeta(key: string, expected: string | undefined, value: string): Promise<boolean> {
    if (expected === undefined) {
      return (await this.db.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING', [key, value])) === 1;
    }
    return (await this.db.run('UPDATE meta SET value = ? WHERE key = ? AND value = ?', [value, key, expected])) === 1;
  }

  async insertSecretMetaIfAbsent(key: string, value: string): Promise<string> {
    return this.box.open(await this.insertMetaIfAbsent(`secret:${key}`, this.box.seal(value, `meta:${key}`)), `meta:${key}`);
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

}

/** Devices per connection-state UPDATE (3 parameters each, far under either database's limit). */
const CONNECTION_STATE_ROWS = 500;

/** Devices' connection states in one UPDATE joined to a VALUES list (an identity once each). */
async function writeDeviceStates(db: SqlExecutor, changes: readonly ConnectionStateChange[]): Promise<void> {
  await db.run(
    `UPDATE devices SET connection_state = v.column2, connection_state_updated_time = v.column3, last_activity_time = v.column3
     FROM (VALUES ${changes.map(() => '(?, ?, ?)').join(', ')}) AS v WHERE devices.device_id = v.column1`,
    changes.flatMap((c) => [c.deviceId, c.state, c.at]),
  );
}

async function writeConnectionState(db: SqlExecutor, c: ConnectionStateChange): Promise<void> {
  if (c.moduleId === null) {
    await db.run('UPDATE devices SET connection_state = ?, connection_state_updated_time = ?, last_activity_time = ? WHERE device_id = ?', [c.state, c.at, c.at, c.deviceId]);
  } else {
    await db.run('UPDATE modules SET connection_state = ?, connection_state_updated_time = ?, last_activity_time = ? WHERE device_id = ? AND module_id = ?', [
      c.state,
      c.at,
      c.at,
      c.deviceId,
      c.moduleId,
    ]);
  }
}
