/**
 * JobStore over a SqlDriver (schema v23, tables `jobs` and `device_jobs`). The active-job limit and
 * the insert share one transaction (PostgreSQL: the table is locked against other writers first,
 * as for configurations). A lease is one conditional UPDATE, so two nodes never both hold a job.
 */
import { HubError } from '../../core/errors.js';
import type { JsonObject } from '../../core/json.js';
import type { DeviceJobRecord, DeviceJobResult, DeviceJobStatistics, JobRecord, JobStatus, JobStore, JobType } from '../job-ports.js';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue } from './driver.js';

const COLUMNS = 'id, type, doc, status, created_at, start_time, end_time, failure_reason, status_message, expanded';
const UNFINISHED = "status IN ('queued', 'scheduled', 'running')";

interface Doc {
  queryCondition: string;
  updateTwin: JsonObject | null;
  cloudToDeviceMethod: JsonObject | null;
  maxExecutionTimeInSeconds: number;
}

function jobFromRow(r: SqlRow): JobRecord {
  const doc = JSON.parse(String(r.doc)) as Doc;
  return {
    jobId: String(r.id),
    type: String(r.type) as JobType,
    queryCondition: doc.queryCondition,
    updateTwin: doc.updateTwin,
    cloudToDeviceMethod: doc.cloudToDeviceMethod,
    maxExecutionTimeInSeconds: doc.maxExecutionTimeInSeconds,
    status: String(r.status) as JobStatus,
    createdTime: String(r.created_at),
    startTime: String(r.start_time),
    endTime: r.end_time === null || r.end_time === undefined ? null : String(r.end_time),
    failureReason: r.failure_reason === null || r.failure_reason === undefined ? null : String(r.failure_reason),
    statusMessage: r.status_message === null || r.status_message === undefined ? null : String(r.status_message),
    expanded: Number(r.expanded) === 1,
  };
}

function json(v: unknown): JsonObject | null {
  return v === null || v === undefined ? null : (JSON.parse(String(v)) as JsonObject);
}

function text(v: unknown): string | null {
  return v === null || v === undefined ? null : String(v);
}

function deviceJobFromRow(r: SqlRow): DeviceJobRecord {
  return {
    jobId: String(r.job_id),
    deviceId: String(r.device_id),
    jobType: String(r.job_type) as JobType,
    status: String(r.status) as DeviceJobRecord['status'],
    createdDateTimeUtc: String(r.created_at),
    startTimeUtc: text(r.start_time),
    endTimeUtc: text(r.end_time),
    lastUpdatedDateTimeUtc: String(r.updated_at),
    outcome: json(r.outcome),
    error: json(r.error),
  };
}

/** Pending device-job rows, 100 a statement; rows that exist stay as they are (a resumed expansion). */
async function insertPending(tx: SqlExecutor, job: JobRecord, deviceIds: readonly string[], at: string): Promise<void> {
  for (let i = 0; i < deviceIds.length; i += 100) {
    const chunk = deviceIds.slice(i, i + 100);
    const params: SqlValue[] = [];
    for (const d of chunk) params.push(job.jobId, d, job.type, at, at);
    await tx.run(
      `INSERT INTO device_jobs (job_id, device_id, job_type, status, created_at, updated_at) VALUES ${chunk.map(() => "(?, ?, ?, 'pending', ?, ?)").join(', ')} ON CONFLICT (job_id, device_id) DO NOTHING`,
      params,
    );
  }
}

export class SqlJobStore implements JobStore {
  constructor(private readonly db: SqlDriver) {}

  async insert(job: JobRecord, maxActive: number): Promise<void> {
    const doc: Doc = { queryCondition: job.queryCondition, updateTwin: job.updateTwin, cloudToDeviceMethod: job.cloudToDeviceMethod, maxExecutionTimeInSeconds: job.maxExecutionTimeInSeconds };
    const exists = () => new HubError('JobAlreadyExists', `A job with id '${job.jobId}' already exists.`);
    try {
      await this.db.transaction(async (tx) => {
        if (this.db.dialect === 'postgres') await tx.run('LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE');
        if ((await tx.all('SELECT id FROM jobs WHERE id = ?', [job.jobId])).length > 0) throw exists();
        const active = Number((await tx.all(`SELECT COUNT(*) AS n FROM jobs WHERE ${UNFINISHED}`))[0]?.n ?? 0);
        if (active >= maxActive) throw new HubError('JobQuotaExceeded', `The hub holds ${active} unfinished jobs, the maximum is ${maxActive}; wait for some to finish or cancel them.`);
        await tx.run('INSERT INTO jobs (id, type, doc, status, created_at, start_time, start_ms, expanded, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0)', [
          job.jobId,
          job.type,
          JSON.stringify(doc),
          job.status,
          job.createdTime,
          job.startTime,
          Date.parse(job.startTime),
        ]);
      });
    } catch (err) {
      if (this.db.isUniqueViolation(err)) throw exists();
      throw err;
    }
  }

  async get(jobId: string): Promise<JobRecord | undefined> {
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM jobs WHERE id = ?`, [jobId]);
    return rows[0] === undefined ? undefined : jobFromRow(rows[0]);
  }

  async list(opts: { type?: JobType; status?: JobStatus; after?: { createdTime: string; jobId: string }; limit: number }): Promise<JobRecord[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (opts.type !== undefined) {
      where.push('type = ?');
      params.push(opts.type);
    }
    if (opts.status !== undefined) {
      where.push('status = ?');
      params.push(opts.status);
    }
    if (opts.after !== undefined) {
      where.push('(created_at > ? OR (created_at = ? AND id > ?))');
      params.push(opts.after.createdTime, opts.after.createdTime, opts.after.jobId);
    }
    params.push(opts.limit);
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM jobs ${where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`} ORDER BY created_at, id LIMIT ?`, params);
    return rows.map(jobFromRow);
  }

  async statistics(jobId: string): Promise<DeviceJobStatistics> {
    const rows = await this.db.all('SELECT status, COUNT(*) AS n FROM device_jobs WHERE job_id = ? GROUP BY status', [jobId]);
    const by = new Map(rows.map((r) => [String(r.status), Number(r.n)]));
    const n = (s: string) => by.get(s) ?? 0;
    return {
      deviceCount: [...by.values()].reduce((a, b) => a + b, 0),
      failedCount: n('failed'),
      succeededCount: n('completed'),
      runningCount: n('running'),
      pendingCount: n('pending'),
    };
  }

  async finish(jobId: string, status: 'completed' | 'failed' | 'cancelled', at: string, failureReason: string | null): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const changed = await tx.run(`UPDATE jobs SET status = ?, end_time = ?, failure_reason = ?, owner = NULL, lease_until = 0 WHERE id = ? AND ${UNFINISHED}`, [status, at, failureReason, jobId]);
      if (changed === 0) return false;
      await tx.run("UPDATE device_jobs SET status = 'canceled', updated_at = ? WHERE job_id = ? AND status IN ('pending', 'running')", [at, jobId]);
      return true;
    });
  }

  async setStatus(jobId: string, status: 'queued' | 'scheduled' | 'running'): Promise<void> {
    await this.db.run(`UPDATE jobs SET status = ? WHERE id = ? AND ${UNFINISHED}`, [status, jobId]);
  }

  async due(nowMs: number, owner: string, limit: number): Promise<JobRecord[]> {
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM jobs WHERE ${UNFINISHED} AND start_ms <= ? AND (owner IS NULL OR owner = ? OR lease_until < ?) ORDER BY start_ms, id LIMIT ?`, [
      nowMs,
      owner,
      nowMs,
      limit,
    ]);
    return rows.map(jobFromRow);
  }

  async claim(jobId: string, owner: string, nowMs: number, untilMs: number): Promise<boolean> {
    const changed = await this.db.run(`UPDATE jobs SET owner = ?, lease_until = ? WHERE id = ? AND ${UNFINISHED} AND (owner IS NULL OR owner = ? OR lease_until < ?)`, [owner, untilMs, jobId, owner, nowMs]);
    return changed > 0;
  }

  async release(jobId: string, owner: string): Promise<void> {
    await this.db.run('UPDATE jobs SET owner = NULL, lease_until = 0 WHERE id = ? AND owner = ?', [jobId, owner]);
  }

  async addDevices(job: JobRecord, deviceIds: readonly string[], at: string, last: boolean): Promise<void> {
    await this.db.transaction(async (tx) => {
      await insertPending(tx, job, deviceIds, at);
      if (last) await tx.run('UPDATE jobs SET expanded = 1 WHERE id = ?', [job.jobId]);
    });
  }

  async addRegistryDevices(job: JobRecord, after: string, limit: number, at: string): Promise<string | undefined> {
    return this.db.transaction(async (tx) => {
      const ids = (await tx.all('SELECT device_id FROM devices WHERE device_id > ? ORDER BY device_id LIMIT ?', [after, limit])).map((r) => String(r.device_id));
      await insertPending(tx, job, ids, at);
      return ids[ids.length - 1];
    });
  }

  async nextDevices(jobId: string, limit: number, after = ''): Promise<string[]> {
    const rows = await this.db.all("SELECT device_id FROM device_jobs WHERE job_id = ? AND device_id > ? AND status IN ('pending', 'running') ORDER BY device_id LIMIT ?", [jobId, after, limit]);
    return rows.map((r) => String(r.device_id));
  }

  async markRunning(jobId: string, deviceIds: readonly string[], at: string): Promise<void> {
    if (deviceIds.length === 0) return;
    await this.db.run(`UPDATE device_jobs SET status = 'running', start_time = ?, updated_at = ? WHERE job_id = ? AND status = 'pending' AND device_id IN (${deviceIds.map(() => '?').join(', ')})`, [
      at,
      at,
      jobId,
      ...deviceIds,
    ]);
  }

  async recordResults(jobId: string, results: readonly DeviceJobResult[], at: string): Promise<void> {
    if (results.length === 0) return;
    await this.db.transaction(async (tx) => {
      // Plain successes (twin updates) share one statement; the rest carry their own outcome or error.
      const plain = results.filter((r) => r.status === 'completed' && r.outcome === null);
      const first = plain[0];
      if (first !== undefined) {
        await tx.run(
          `UPDATE device_jobs SET status = 'completed', start_time = ?, end_time = ?, updated_at = ? WHERE job_id = ? AND status IN ('pending', 'running') AND device_id IN (${plain.map(() => '?').join(', ')})`,
          [first.startTimeUtc, at, at, jobId, ...plain.map((r) => r.deviceId)],
        );
      }
      for (const r of results) {
        if (r.status === 'completed' && r.outcome === null) continue;
        await tx.run("UPDATE device_jobs SET status = ?, start_time = ?, end_time = ?, updated_at = ?, outcome = ?, error = ? WHERE job_id = ? AND device_id = ? AND status IN ('pending', 'running')", [
          r.status,
          r.startTimeUtc,
          r.endTimeUtc,
          at,
          r.outcome === null ? null : JSON.stringify(r.outcome),
          r.error === null ? null : JSON.stringify(r.error),
          jobId,
          r.deviceId,
        ]);
      }
    });
  }

  async scanDeviceJobs(opts: { after?: { deviceId: string; jobId: string }; limit: number }): Promise<DeviceJobRecord[]> {
    const after = opts.after ?? { deviceId: '', jobId: '' };
    const rows = await this.db.all(
      `SELECT job_id, device_id, job_type, status, created_at, start_time, end_time, updated_at, outcome, error FROM device_jobs
       WHERE device_id > ? OR (device_id = ? AND job_id > ?) ORDER BY device_id, job_id LIMIT ?`,
      [after.deviceId, after.deviceId, after.jobId, opts.limit],
    );
    return rows.map(deviceJobFromRow);
  }
}
