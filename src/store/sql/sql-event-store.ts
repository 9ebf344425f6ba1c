/**
 * The event stream's store over a SqlDriver (schema v2, table `events`).
 *
 * Seqs: SQLite's AUTOINCREMENT rowid and PostgreSQL's sequence both hand out increasing values that
 * are never reused, even after pruning. On PostgreSQL an append also takes a transaction-scoped
 * advisory lock before it draws its seqs, held until its commit is visible (PostgreSQL releases a
 * transaction's locks after it left the running set), so appends of several nodes sharing one
 * database commit in seq order: a reader that has seen seq N never later finds a smaller seq
 * appear. This is what lets every node's live readers merge the cluster's telemetry in order
 * (event-stream.ts); a sequence alone would not (nextval is not transactional: a later seq can
 * commit first).
 *
 * Bodies are bound as Buffers (BLOB / BYTEA) and read back as Buffers. Appends are one multi-row
 * INSERT ... RETURNING per chunk on both dialects: the group-committed batch is one statement.
 */
import type { EventStore, NewEvent, StoredEvent } from '../event-ports.js';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue } from './driver.js';
import { str as text, bytes } from './rows.js';

const COLUMNS = 'seq, device_id, module_id, enqueued_time, body, properties, system_properties';
const INSERT_COLUMNS = 'device_id, module_id, enqueued_time, body, properties, system_properties';
/** Rows per INSERT (6 parameters each: far below SQLite's 32766 and PostgreSQL's 65535). */
const ROWS_PER_INSERT = 500;
/** Rows per DELETE while pruning, so a large prune never holds the write lock for long. */
const PRUNE_CHUNK = 5000;
/** Serializes event appends across hubs sharing one PostgreSQL database. */
const PG_APPEND_LOCK = 7270662;

function rowParams(e: NewEvent): SqlValue[] {
  return [
    e.deviceId,
    e.moduleId ?? '',
    e.enqueuedTime,
    e.body,
    JSON.stringify(e.properties),
    JSON.stringify(e.systemProperties),
  ];
}

function stringMap(row: SqlRow, col: string): Record<string, string> {
  const parsed = JSON.parse(text(row, col)) as unknown;
  const out: Record<string, string> = {};
  if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
    for (const [k, v] of Object.entries(parsed)) if (typeof v === 'string') out[k] = v;
  }
  return out;
}

function eventFromRow(r: SqlRow): StoredEvent {
  const moduleId = text(r, 'module_id');
  return {
    seq: Number(r.seq),
    deviceId: text(r, 'device_id'),
    moduleId: moduleId === '' ? null : moduleId,
    enqueuedTime: text(r, 'enqueued_time'),
    body: bytes(r.body),
    properties: stringMap(r, 'properties'),
    systemProperties: stringMap(r, 'system_properties'),
  };
}

export class SqlEventStore implements EventStore {
  constructor(private readonly db: SqlDriver) {}

  async appendEvents(events: readonly NewEvent[]): Promise<number[]> {
    if (events.length === 0) return [];
    return this.db.transaction((tx) => (this.db.dialect === 'postgres' ? appendPostgres(tx, events) : appendSqlite(tx, events)));
  }

  async readEvents(opts: { after: number; limit: number; deviceId?: string }): Promise<StoredEvent[]> {
    const limit = Math.max(0, Math.floor(opts.limit));
    if (limit === 0) return [];
    const rows =
      opts.deviceId === undefined
        ? await this.db.all(`SELECT ${COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?`, [opts.after, limit])
        : await this.db.all(`SELECT ${COLUMNS} FROM events WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?`, [
            opts.deviceId,
            opts.after,
            limit,
          ]);
    return rows.map(eventFromRow);
  }

  async lastEventSeq(): Promise<number> {
    // The sequence, not MAX(seq): pruning every event must not move the stream position back.
    if (this.db.dialect === 'postgres') {
      const rows = await this.db.all('SELECT last_value, is_called FROM events_seq_seq');
      const r = rows[0];
      return r === undefined || r.is_called !== true ? 0 : Number(r.last_value);
    }
    const rows = await this.db.all(`SELECT seq FROM sqlite_sequence WHERE name = 'events'`);
    return Number(rows[0]?.seq ?? 0);
  }

  async committedHead(): Promise<number> {
    const rows = await this.db.all('SELECT MAX(seq) AS hi FROM events');
    const hi = rows[0]?.hi;
    return hi === null || hi === undefined ? 0 : Number(hi);
  }

  async pruneEvents(opts: { before: string; keepAtMost: number }): Promise<number> {
    let deleted = 0;
    for (;;) {
      const n = await this.db.run(
        'DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE enqueued_time < ? ORDER BY seq LIMIT ?)',
        [opts.before, PRUNE_CHUNK],
      );
      deleted += n;
      if (n < PRUNE_CHUNK) break;
    }
    const keep = Math.max(0, Math.floor(opts.keepAtMost));
    // Seqs are distinct integers: when the span fits, so does the count (no index walk each minute).
    const span = await this.db.all('SELECT MIN(seq) AS lo, MAX(seq) AS hi FROM events');
    const lo = span[0]?.lo;
    const hi = span[0]?.hi;
    if (lo === null || lo === undefined || Number(hi) - Number(lo) + 1 <= keep) return deleted;
    // The newest seq beyond the ones to keep; it and everything older goes.
    const cut = await this.db.all('SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?', [keep]);
    if (cut[0] === undefined) return deleted;
    const upTo = Number(cut[0].seq);
    for (;;) {
      const n = await this.db.run('DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq <= ? ORDER BY seq LIMIT ?)', [
        upTo,
        PRUNE_CHUNK,
      ]);
      deleted += n;
      if (n < PRUNE_CHUNK) break;
    }
    return deleted;
  }
}

async function appendSqlite(tx: SqlExecutor, events: readonly NewEvent[]): Promise<number[]> {
  // SQLite 3.35+ has RETURNING; appends are serialized, so the seqs of one batch are its own.
  return insertReturning(tx, events, '(?, ?, ?, ?, ?, ?)');
}

async function insertReturning(tx: SqlExecutor, events: readonly NewEvent[], row: string): Promise<number[]> {
  const seqs: number[] = [];
  for (let i = 0; i < events.length; i += ROWS_PER_INSERT) {
    const chunk = events.slice(i, i + ROWS_PER_INSERT);
    const rows = await tx.all(`INSERT INTO events (${INSERT_COLUMNS}) VALUES ${chunk.map(() => row).join(', ')} RETURNING seq`, chunk.flatMap(rowParams));
    // Seqs are handed out row by row in VALUES order; RETURNING order is not promised, so sort.
    seqs.push(...rows.map((r) => Number(r.seq)).sort((a, b) => a - b));
  }
  return seqs;
}

async function appendPostgres(tx: SqlExecutor, events: readonly NewEvent[]): Promise<number[]> {
  await tx.all(`SELECT pg_advisory_xact_lock(${PG_APPEND_LOCK})`);
  return insertReturning(tx, events, '(?, ?, ?, ?, ?, ?)');
}
