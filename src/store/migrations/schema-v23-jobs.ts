import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 23: jobs (issue 18 item 1). `jobs` holds what a job does (`doc`: query condition,
 * twin patch or method call, maximum execution time), its status and times, whether its device
 * rows exist (`expanded`), and the lease of the node running it (`owner`, `lease_until` in ms).
 * `device_jobs` is one row per targeted device (Azure's `devices.jobs`); its primary key serves the
 * runner (a job's devices by id), the second index the `devices.jobs` query (by device).
 */
export function schemaV23(d: SchemaDialect): string {
  return `
CREATE TABLE jobs (
  id ${d.id} PRIMARY KEY,
  type TEXT NOT NULL,
  doc TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at TEXT NOT NULL,
  start_time TEXT NOT NULL,
  start_ms ${d.bigint} NOT NULL,
  end_time TEXT,
  failure_reason TEXT,
  status_message TEXT,
  expanded INTEGER NOT NULL DEFAULT 0,
  owner TEXT,
  lease_until ${d.bigint} NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_created ON jobs (created_at, id);
CREATE INDEX jobs_by_status ON jobs (status, start_ms);
CREATE TABLE device_jobs (
  job_id ${d.id} NOT NULL,
  device_id ${d.id} NOT NULL,
  job_type TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at TEXT NOT NULL,
  start_time TEXT,
  end_time TEXT,
  updated_at TEXT NOT NULL,
  outcome TEXT,
  error TEXT,
  PRIMARY KEY (job_id, device_id)
);
CREATE INDEX device_jobs_by_device ON device_jobs (device_id, job_id);
`;
}
