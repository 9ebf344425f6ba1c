import { schemaV1, type Migration } from './schema-v1.js';
import { schemaV2 } from './schema-v2-events.js';
import { schemaV3 } from './schema-v3-c2d.js';
import { schemaV4 } from './schema-v4-certificates.js';
import { schemaV5 } from './schema-v5-sessions.js';
import { schemaV6 } from './schema-v6-enrollments.js';
import { schemaV7 } from './schema-v7-authority.js';
import { schemaV8 } from './schema-v8-est.js';
import { schemaV9 } from './schema-v9-audit.js';
import { schemaV10 } from './schema-v10-alerts.js';
import { schemaV11 } from './schema-v11-c2d-lock-owner.js';
import { schemaV12 } from './schema-v12-alert-reasons.js';
import { schemaV13 } from './schema-v13-origin.js';
import { schemaV14 } from './schema-v14-operators.js';
import { schemaV15 } from './schema-v15-counters.js';
import { schemaV16 } from './schema-v16-log.js';
import { schemaV17 } from './schema-v17-one-log.js';
import { schemaV18 } from './schema-v18-log-endpoints.js';
import { schemaV20 } from './schema-v20-configurations.js';
import { schemaV22 } from './schema-v22-log-indexes.js';
import { schemaV23 } from './schema-v23-jobs.js';
import { schemaV24 } from './schema-v24-file-notifications.js';
import { schemaV25 } from './schema-v25-device-job-status.js';
import { SQLITE } from './dialect.js';

/** SQLite migrations, applied in order; never edit one that has shipped, add the next. */
export const sqliteMigrations: readonly Migration[] = [
  { version: 1, name: 'registry, twins, policies, meta', sql: schemaV1(SQLITE.id) },
  { version: 2, name: 'event stream', sql: schemaV2(SQLITE) },
  { version: 3, name: 'cloud-to-device queues and feedback', sql: schemaV3(SQLITE) },
  { version: 4, name: 'X.509 CA certificates', sql: schemaV4(SQLITE) },
  { version: 5, name: 'persistent MQTT sessions', sql: schemaV5(SQLITE) },
  { version: 6, name: 'DPS enrollments and registration states', sql: schemaV6(SQLITE) },
  { version: 7, name: 'device CA keys and issued certificates', sql: schemaV7(SQLITE) },
  { version: 8, name: 'EST factory credentials', sql: schemaV8(SQLITE) },
  { version: 9, name: 'tamper-evident audit log', sql: schemaV9(SQLITE) },
  { version: 10, name: 'alert rules and history', sql: schemaV10(SQLITE) },
  { version: 11, name: 'C2D lock owner', sql: schemaV11(SQLITE) },
  { version: 12, name: 'alert rules by failure reason', sql: schemaV12() },
  { version: 13, name: 'device origin and EST registration-id scopes', sql: schemaV13() },
  { version: 14, name: 'operators and role assignments as rows', sql: schemaV14(SQLITE) },
  { version: 15, name: 'counters shared by the nodes', sql: schemaV15(SQLITE) },
  { version: 16, name: 'partitioned event log', sql: schemaV16(SQLITE) },
  { version: 17, name: 'the partitioned log is the only event stream: events table dropped', sql: schemaV17(true) },
  { version: 18, name: 'routed endpoints of log records', sql: schemaV18() },
  // PostgreSQL's 19 is its log_append function (schema-v19-log-append.ts); SQLite appends in process, so
  // its 19 does nothing and both lists name the same versions.
  { version: 19, name: 'the log append as one server-side call (PostgreSQL only: nothing here)', sql: '' },
  { version: 20, name: 'automatic device and module configurations', sql: schemaV20(SQLITE) },
  { version: 21, name: 'the log append says whether it waits for the WAL flush (PostgreSQL only: nothing here)', sql: '' },
  { version: 22, name: 'the event log found by its primary key only', sql: schemaV22() },
  { version: 23, name: 'jobs and device jobs', sql: schemaV23(SQLITE) },
  { version: 24, name: 'file upload notifications', sql: schemaV24(SQLITE) },
  { version: 25, name: 'device jobs counted by status from an index', sql: schemaV25() },
];
