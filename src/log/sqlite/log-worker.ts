/**
 * The SQLite event log's writer thread (decision 0008): it owns the one write connection to the
 * log's file, so no commit, insert or fsync of the log ever runs on the hub's event loop.
 *
 * Group commit: when a request arrives, the thread also takes every request already waiting on its
 * port (receiveMessageOnPort), numbers and inserts all their batches in one transaction (a
 * savepoint each, so a bad batch fails alone), commits, fdatasyncs the WAL (unless the hub runs
 * with --telemetry-durability os-cache) and answers them all in one message. Batches that arrive
 * during the commit and the sync wait on the port and go together in the next round.
 *
 * The sync runs on this thread, not on the thread pool: a pool sync cost two more wake-ups of a
 * sleeping thread per commit (the pool's thread, then this one at its completion), which on a VM
 * cost more than the overlap of one round's commit with the previous round's sync bought
 * (docs/benchmarks.md, "The log writer syncs on its own thread").
 *
 * Numbering is the SQL log's (sql-log.ts): per partition, in ascending partition order, one
 * UPDATE ... RETURNING that bumps the partition's counters and clamps the enqueued time, then the
 * records in multi-row INSERTs.
 */
import { closeSync, fdatasyncSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { recordSize } from '../log-ports.js';
import { PLACED_PER_MESSAGE, STRS_PER_MESSAGE, type AppendRequest, type Outcome, type WorkerConfig, type WorkerReply, type WorkerRequest } from './log-worker-protocol.js';

/** Rows per INSERT (11 parameters each, far below SQLite's 32766). */
const ROWS_PER_INSERT = 500;

const { config, port } = workerData as { config: WorkerConfig; port: MessagePort };
const db = new Database(config.file);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
const bump = db.prepare(
  `UPDATE log_partitions SET next_seq = next_seq + ?, next_pos = next_pos + ?, last_pos = next_pos + ?, last_ms = MAX(last_ms, ?)
   WHERE part = ? RETURNING next_seq, next_pos, last_ms`,
);
const inserts = new Map<number, Database.Statement>();
const prune = db.prepare('DELETE FROM log_records WHERE part = ? AND seq >= ? AND seq < ?');
let walFd: number | undefined;
let dirSynced = false;

function post(reply: WorkerReply, transfer: ArrayBuffer[] = []): void {
  port.postMessage(reply, transfer);
}

function insertStatement(rows: number): Database.Statement {
  let st = inserts.get(rows);
  if (st === undefined) {
    st = db.prepare(
      `INSERT INTO log_records (part, seq, pos, enqueued_ms, size, device_id, module_id, body, properties, system_properties, endpoints) VALUES ${Array.from({ length: rows }, () => '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`,
    );
    if (inserts.size > 32) inserts.clear();
    inserts.set(rows, st);
  }
  return st;
}

/** Numbers and inserts one batch (inside the round's transaction); returns its placements. */
function numberAndInsert(req: AppendRequest): Float64Array {
  const n = req.parts.length;
  const byPartition = new Map<number, number[]>();
  for (let i = 0; i < n; i++) {
    const p = req.parts[i] as number;
    const list = byPartition.get(p);
    if (list === undefined) byPartition.set(p, [i]);
    else list.push(i);
  }
  const start = (i: number) => (i === 0 ? 0 : (req.ends[i - 1] as number));
  const sizes = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = i * STRS_PER_MESSAGE;
    sizes[i] = recordSize((req.ends[i] as number) - start(i), req.strs[s] as string, req.strs[s + 1] as string, req.strs[s + 2] as string, req.strs[s + 3] as string);
  }
  const placed = new Float64Array(n * PLACED_PER_MESSAGE);
  const params: unknown[] = [];
  let rows = 0;
  const flush = () => {
    if (rows > 0) insertStatement(rows).run(params);
    params.length = 0;
    rows = 0;
  };
  for (const p of [...byPartition.keys()].sort((a, b) => a - b)) {
    const idx = byPartition.get(p) as number[];
    let total = 0;
    for (const i of idx) total += sizes[i] as number;
    const lastSize = sizes[idx.at(-1) as number] as number;
    const head = bump.get(idx.length, total, total - lastSize, req.now, p) as { next_seq: number; next_pos: number; last_ms: number } | undefined;
    if (head === undefined) throw new Error(`event log partition ${p} has no row`);
    let seq = head.next_seq - idx.length;
    let pos = head.next_pos - total;
    const ms = head.last_ms;
    for (const i of idx) {
      const s = i * STRS_PER_MESSAGE;
      placed[i * PLACED_PER_MESSAGE] = seq;
      placed[i * PLACED_PER_MESSAGE + 1] = pos;
      placed[i * PLACED_PER_MESSAGE + 2] = ms;
      const body = Buffer.from(req.bodies, start(i), (req.ends[i] as number) - start(i));
      params.push(p, seq, pos, ms, sizes[i], req.strs[s], req.strs[s + 1], body, req.strs[s + 2], req.strs[s + 3], req.strs[s + 4]);
      if (++rows === ROWS_PER_INSERT) flush();
      seq++;
      pos += sizes[i] as number;
    }
  }
  flush();
  return placed;
}

function failure(err: unknown): { message: string; code?: string } {
  const e = err as { message?: unknown; code?: unknown };
  return { message: String(e.message ?? err), ...(typeof e.code === 'string' ? { code: e.code } : {}) };
}

/** The WAL's directory entry, once: a file created since the last boot is only found after a power cut if its directory was synced too. */
function syncDirOnce(): void {
  if (dirSynced) return;
  const fd = openSync(dirname(config.file), 'r');
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  dirSynced = true;
  if (config.observe) post({ t: 'observed', event: { kind: 'synced', file: 'dir' } });
}

/** fdatasync of the WAL (what synchronous=FULL does at COMMIT), and of its directory the first time. */
function syncWal(): void {
  walFd ??= openSync(`${config.file}-wal`, 'r');
  fdatasyncSync(walFd);
  if (config.observe) post({ t: 'observed', event: { kind: 'synced', file: 'wal' } });
  syncDirOnce();
}

function answer(outcomes: Outcome[]): void {
  if (outcomes.length > 0) post({ t: 'done', outcomes }, outcomes.flatMap((o) => (o.placed === undefined ? [] : [o.placed.buffer as ArrayBuffer])));
}

function appendAll(appends: AppendRequest[], outcomes: Outcome[]): void {
  const done: Outcome[] = [];
  try {
    db.exec('BEGIN IMMEDIATE');
    for (const req of appends) {
      db.exec('SAVEPOINT batch');
      try {
        done.push({ id: req.id, placed: numberAndInsert(req) });
        db.exec('RELEASE batch');
      } catch (err) {
        db.exec('ROLLBACK TO batch');
        db.exec('RELEASE batch');
        done.push({ id: req.id, error: failure(err) });
      }
    }
    db.exec('COMMIT');
    if (config.observe) post({ t: 'observed', event: { kind: 'commit' } });
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    // Not committed: not acknowledged (a retry may repeat them: at least once).
    outcomes.push(...appends.map((a) => ({ id: a.id, error: failure(err) })));
    return;
  }
  if (config.sync && done.some((o) => o.placed !== undefined)) {
    try {
      syncWal();
    } catch (err) {
      // Committed but maybe not on disk: not acknowledged (a retry may repeat them: at least once).
      outcomes.push(...done.map((o) => (o.placed === undefined ? o : { id: o.id, error: failure(err) })));
      return;
    }
  }
  outcomes.push(...done);
}

function round(first: WorkerRequest): void {
  const requests = [first];
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) requests.push(m.message as WorkerRequest);
  const outcomes: Outcome[] = [];
  const appends = requests.filter((r): r is AppendRequest => r.t === 'append');
  if (appends.length > 0) appendAll(appends, outcomes);
  for (const r of requests) {
    if (r.t !== 'delete') continue;
    try {
      outcomes.push({ id: r.id, deleted: prune.run(r.part, r.from, r.to).changes });
    } catch (err) {
      outcomes.push({ id: r.id, error: failure(err) });
    }
  }
  answer(outcomes);
  if (requests.some((r) => r.t === 'close')) closeNow();
}

function closeNow(): void {
  if (walFd !== undefined) closeSync(walFd);
  db.close();
  post({ t: 'closed' });
  port.close();
}

port.on('message', round);
