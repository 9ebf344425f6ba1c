/**
 * The event log on the SQL store's driver (SQLite by default, PostgreSQL), schema v16
 * (migrations/schema-v16-log.ts). docs/decisions/0005-partitioned-log.md says why it is built so.
 *
 * Appends: one durable transaction per batch, synced to disk before it returns unless the hub runs
 * with --telemetry-durability os-cache (on PostgreSQL one call of the server-side log_append,
 * schema v19 and v21, so no lock waits on this process). Per partition it touches, in ascending
 * partition order (two writers never wait on each other crosswise), it bumps the partition's row
 * with UPDATE ... RETURNING, which numbers the records and holds that row's lock until commit: a
 * second writer for the partition (another batch, another node on the same PostgreSQL) numbers its
 * records only after the first committed, so within a partition commit order is sequence order and
 * a reader never sees N+1 before N. The same row clamps enqueued times so they never go back.
 *
 * Live readers: an append wakes this node's tails of its partitions at once and announces itself
 * on the bus (`log.appended`) for the other nodes'; tails also poll, for announcements lost.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { SUBJECTS, type HubBus } from '../../bus/subjects.js';
import type { BusSubscription } from '../../bus/bus.js';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue } from '../../store/sql/driver.js';

/** A partition's first sequence number and byte position in one append, and its enqueued time. */
interface Head {
  seq: number;
  pos: number;
  ms: number;
  /** The sizes of the partition's records in this append, in order. */
  sizes: number[];
}
import { bytes, str } from '../../store/sql/rows.js';
import {
  DEFAULT_PARTITIONS,
  LogConfigError,
  checkPartition,
  checkPartitionCount,
  encodeRecord,
  type EncodedRecord,
  type EventLog,
  type LogMessage,
  type LogPlacement,
  type LogPosition,
  type LogRecord,
  type LogRetention,
  type PartitionProperties,
  type TailOptions,
} from '../log-ports.js';
import { partitionOf } from '../partition-key.js';
import { logCloser, PartitionWakeups, tailLoop, type TailSource } from '../tail.js';
import { FreshRecords } from '../fresh-records.js';
import { checkLimit, checkSequenceNumber, parseEnqueuedTime, parseOffset } from '../positions.js';

export interface SqlEventLogOptions {
  /** Used when the log is new (the hub is being created); an existing log keeps its count. */
  partitionCount?: number;
  retention: LogRetention;
  /** Announces appends to other nodes and hears theirs. */
  bus?: HubBus;
  /** Milliseconds since the epoch; tests move it. */
  now?: () => number;
  /** How long a tail waits for a wake-up before it looks anyway. */
  pollMs?: number;
  /**
   * Whether an append returns only once its commit is synced to disk (default true): SQLite
   * the WAL fdatasynced after the commit, PostgreSQL synchronous_commit=on. False (--telemetry-durability
   * os-cache): once the operating system has it (a process crash loses nothing, a power cut may).
   */
  sync?: boolean;
  /**
   * Who writes (SQLite: the log's writer thread, sqlite/log-worker-client.ts); `db` then only
   * reads. Absent: appends and retention write through `db`.
   */
  writer?: SqlLogWriter;
}

/** Writes the log elsewhere than through the reading driver (the SQLite log's writer thread). */
export interface SqlLogWriter {
  /** Numbers, stores and (when the log syncs) makes durable; per message its seq, pos and enqueued ms. */
  append(messages: readonly LogMessage[], partitions: readonly number[], now: number): Promise<Float64Array>;
  /** Deletes the partition's records with from <= seq < to; returns how many went. */
  deleteRange(partition: number, from: number, to: number): Promise<number>;
  close(): Promise<void>;
}

const COLUMNS = 'part, seq, pos, enqueued_ms, device_id, module_id, body, properties, system_properties, endpoints';
/** Rows per INSERT (11 parameters each: far below SQLite's 32766 and PostgreSQL's 65535). */
const ROWS_PER_INSERT = 500;
/**
 * Rows per DELETE while enforcing retention, so it never holds the write lock for long: on SQLite
 * the writer thread runs a chunk between two commits, and appends wait for it (and for the WAL
 * pages it wrote, synced with their commit). A full log at 10k msgs/s prunes 600,000 rows a
 * minute; bench/log-retention measures appends beside a pass.
 */
const PRUNE_CHUNK = 1000;
/**
 * Serializes creating the partition rows of one schema (with hashtext(current_schema())). Its own
 * class: it was 7270663, the C2D queue lock's, so a device id hashing like the schema's name
 * shared a lock with the log's start.
 */
const PG_LOG_INIT_LOCK = 7270666;
const DEFAULT_POLL_MS = 2000;

function stringMap(row: SqlRow, col: string): Record<string, string> {
  const parsed = JSON.parse(str(row, col)) as unknown;
  const out: Record<string, string> = {};
  if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
    for (const [k, v] of Object.entries(parsed)) if (typeof v === 'string') out[k] = v;
  }
  return out;
}

function endpointsOf(v: unknown): { endpoints?: string[] } {
  if (typeof v !== 'string') return {};
  const parsed = JSON.parse(v) as unknown;
  return Array.isArray(parsed) ? { endpoints: parsed.filter((e): e is string => typeof e === 'string') } : {};
}

function recordFromRow(r: SqlRow): LogRecord {
  const moduleId = str(r, 'module_id');
  return {
    partition: Number(r.part),
    sequenceNumber: Number(r.seq),
    offset: String(r.pos),
    enqueuedTime: new Date(Number(r.enqueued_ms)).toISOString(),
    deviceId: str(r, 'device_id'),
    moduleId: moduleId === '' ? null : moduleId,
    body: bytes(r.body),
    properties: stringMap(r, 'properties'),
    systemProperties: stringMap(r, 'system_properties'),
    ...endpointsOf(r.endpoints),
  };
}

/** Opens the log in the store's schema, creating its partitions on first use. */
export async function openSqlEventLog(db: SqlDriver, opts: SqlEventLogOptions): Promise<SqlEventLog> {
  const wanted = opts.partitionCount === undefined ? undefined : checkPartitionCount(opts.partitionCount);
  const count = await db.transaction(async (tx) => {
    if (db.dialect === 'postgres') await tx.all('SELECT pg_advisory_xact_lock(?, hashtext(current_schema()))', [PG_LOG_INIT_LOCK]);
    const rows = await tx.all('SELECT COUNT(*) AS n FROM log_partitions');
    const existing = Number(rows[0]?.n ?? 0);
    if (existing > 0) {
      if (wanted !== undefined && wanted !== existing) {
        throw new LogConfigError(`the event log has ${existing} partitions; the count is fixed when the hub is created (asked for ${wanted})`);
      }
      return existing;
    }
    const n = wanted ?? DEFAULT_PARTITIONS;
    for (let p = 0; p < n; p++) await tx.run('INSERT INTO log_partitions (part, next_seq, next_pos, last_pos, last_ms) VALUES (?, 0, 0, -1, 0)', [p]);
    return n;
  });
  return new SqlEventLog(db, count, opts);
}

export class SqlEventLog implements EventLog, TailSource {
  readonly wakeups = new PartitionWakeups();
  readonly #closer = logCloser();
  readonly closed = this.#closer.signal;
  readonly #now: () => number;
  readonly #pollMs: number;
  readonly #subs: BusSubscription[] = [];
  readonly #max: string;
  /** With one writer (the SQLite log's thread): the latest records, for the tails that caught up. */
  readonly #fresh: FreshRecords | undefined;

  constructor(
    private readonly db: SqlDriver,
    readonly partitionCount: number,
    private readonly opts: SqlEventLogOptions,
  ) {
    this.#now = opts.now ?? Date.now;
    this.#pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
    this.#max = db.dialect === 'postgres' ? 'GREATEST' : 'MAX';
    this.#fresh = opts.writer === undefined ? undefined : new FreshRecords();
    const bus = opts.bus;
    if (bus !== undefined) {
      this.#subs.push(
        bus.subscribe(SUBJECTS.logAppended, (data, meta) => {
          if (!meta.local && Number.isInteger(data.partition)) this.wakeups.wake(data.partition);
        }),
        // Announcements made while this node was cut off are lost: look again.
        bus.subscribe(SUBJECTS.busResync, () => this.wakeups.wakeAll()),
      );
    }
  }

  partitionOf(deviceId: string): number {
    return partitionOf(deviceId, this.partitionCount);
  }

  async append(messages: readonly LogMessage[]): Promise<LogPlacement[]> {
    if (this.closed.aborted) throw new Error('the event log is closed');
    if (messages.length === 0) return [];
    if (this.opts.writer !== undefined) return this.#appendThrough(this.opts.writer, messages);
    const byPartition = new Map<number, number[]>();
    messages.forEach((m, i) => {
      const p = this.partitionOf(m.deviceId);
      const list = byPartition.get(p);
      if (list === undefined) byPartition.set(p, [i]);
      else list.push(i);
    });
    const placements: LogPlacement[] = new Array<LogPlacement>(messages.length);
    const last = new Map<number, number>();
    const now = Math.floor(this.#now());
    const heads = this.db.dialect === 'postgres'
      ? await this.#numberAndInsertOnServer(messages, byPartition, now)
      : await this.#numberAndInsert(messages, byPartition, now);
    for (const [p, idx] of byPartition) {
      const h = heads.get(p);
      if (h === undefined) throw new Error(`event log partition ${p} has no row: was the log opened with openSqlEventLog?`);
      let { seq, pos } = h;
      const enqueuedTime = new Date(h.ms).toISOString();
      idx.forEach((i, k) => {
        placements[i] = { partition: p, sequenceNumber: seq, offset: String(pos), enqueuedTime };
        seq++;
        pos += h.sizes[k] as number;
      });
      last.set(p, seq - 1);
    }
    this.#announce(last);
    return placements;
  }

  async #appendThrough(writer: SqlLogWriter, messages: readonly LogMessage[]): Promise<LogPlacement[]> {
    const parts = messages.map((m) => this.partitionOf(m.deviceId));
    const placed = await writer.append(messages, parts, Math.floor(this.#now()));
    const placements: LogPlacement[] = new Array<LogPlacement>(messages.length);
    const last = new Map<number, number>();
    let ms = -1;
    let iso = '';
    for (let i = 0; i < messages.length; i++) {
      const p = parts[i] as number;
      const seq = placed[i * 3] as number;
      if (placed[i * 3 + 2] !== ms) {
        ms = placed[i * 3 + 2] as number;
        iso = new Date(ms).toISOString();
      }
      placements[i] = { partition: p, sequenceNumber: seq, offset: String(placed[i * 3 + 1]), enqueuedTime: iso };
      if ((last.get(p) ?? -1) < seq) last.set(p, seq);
    }
    this.#fresh?.add(messages, placements);
    this.#announce(last);
    return placements;
  }

  #announce(last: Map<number, number>): void {
    for (const [p, seq] of last) {
      this.wakeups.wake(p);
      this.opts.bus?.publish(SUBJECTS.logAppended, { partition: p, lastSequenceNumber: seq });
    }
  }

  /**
   * Numbers and inserts in one durable transaction of statements (SQLite: the driver is synchronous,
   * so the write lock is never held across an event-loop turn). Returns each partition's first
   * sequence number and byte position in this batch, and its enqueued time.
   */
  async #numberAndInsert(messages: readonly LogMessage[], byPartition: Map<number, number[]>, now: number): Promise<Map<number, Head>> {
    const heads = new Map<number, Head>();
    const enc = messages.map(encodeRecord);
    await this.db.transaction(
      async (tx) => {
        const rows: SqlValue[][] = [];
        for (const p of [...byPartition.keys()].sort((a, b) => a - b)) {
          const idx = byPartition.get(p) as number[];
          const total = idx.reduce((s, i) => s + (enc[i] as EncodedRecord).size, 0);
          const lastSize = (enc[idx.at(-1) as number] as EncodedRecord).size;
          // Right-hand sides read the row as it was: last_pos = the old next_pos + the batch's bytes - the last record's.
          const head = await tx.all(
            `UPDATE log_partitions SET next_seq = next_seq + ?, next_pos = next_pos + ?, last_pos = next_pos + ?, last_ms = ${this.#max}(last_ms, ?)
             WHERE part = ? RETURNING next_seq, next_pos, last_ms`,
            [idx.length, total, total - lastSize, now, p],
          );
          const h = head[0];
          if (h === undefined) continue;
          let seq = Number(h.next_seq) - idx.length;
          let pos = Number(h.next_pos) - total;
          const ms = Number(h.last_ms);
          heads.set(p, { seq, pos, ms, sizes: idx.map((i) => (enc[i] as EncodedRecord).size) });
          for (const i of idx) {
            const m = messages[i] as LogMessage;
            const e = enc[i] as EncodedRecord;
            rows.push([p, seq, pos, ms, e.size, m.deviceId, m.moduleId ?? '', m.body, e.properties, e.systemProperties, e.endpoints]);
            seq++;
            pos += e.size;
          }
        }
        await insertRows(tx, rows);
      },
      { durable: this.opts.sync !== false },
    );
    return heads;
  }

  /**
   * PostgreSQL: one autocommitted call of log_append (schema v19), so the partitions' row locks are
   * taken and released inside the server, never held while this process's event loop is busy.
   * Records go in partition order, each partition's in batch order, as the function numbers them;
   * it returns each record's size, which it computes from the stored text.
   */
  async #numberAndInsertOnServer(messages: readonly LogMessage[], byPartition: Map<number, number[]>, now: number): Promise<Map<number, Head>> {
    const parts = [...byPartition.keys()].sort((a, b) => a - b);
    const order = parts.flatMap((p) => (byPartition.get(p) as number[]).map((i) => messages[i] as LogMessage));
    const rows = await this.db.all('SELECT o_part, o_first_seq, o_first_pos, o_ms, o_sizes FROM log_append(?, ?, ?, ?, ?, ?, ?, ?, ?::boolean)', [
      parts.flatMap((p) => (byPartition.get(p) as number[]).map(() => p)),
      order.map((m) => m.deviceId),
      order.map((m) => m.moduleId ?? ''),
      order.map((m) => m.body),
      JSON.stringify(order.map((m) => m.properties)),
      JSON.stringify(order.map((m) => m.systemProperties)),
      JSON.stringify(order.map((m) => m.endpoints ?? null)),
      now,
      this.opts.sync === false ? 'false' : 'true',
    ]);
    return new Map(rows.map((r) => [Number(r.o_part), { seq: Number(r.o_first_seq), pos: Number(r.o_first_pos), ms: Number(r.o_ms), sizes: (r.o_sizes as unknown[]).map(Number) }]));
  }

  async startOf(partition: number, position: LogPosition): Promise<number> {
    checkPartition(this, partition);
    if (position === 'earliest') return 0;
    if (typeof position === 'object' && 'sequenceNumber' in position) {
      const s = checkSequenceNumber(position.sequenceNumber);
      return position.inclusive ? Math.max(0, s) : s + 1;
    }
    // The end first: a record committed after this read gets a number at least this high, so
    // "nothing found, start at the end" never skips one.
    const head = await this.db.all('SELECT next_seq FROM log_partitions WHERE part = ?', [partition]);
    const end = Number(head[0]?.next_seq ?? 0);
    if (position === 'latest') return end;
    if ('offset' in position) {
      const pos = parseOffset(position.offset);
      return this.#firstSeq(partition, end, 'pos', position.inclusive ? pos : pos + 1);
    }
    // Enqueued time: records strictly after it (Event Hubs' rule for a time position).
    return this.#firstSeq(partition, end, 'enqueued_ms', parseEnqueuedTime(position.enqueuedTime) + 1);
  }

  /**
   * The first record of the partition whose `col` is at least `atLeast`, or `end`: a binary search
   * on the primary key (schema v22), as offsets and enqueued times never decrease with the sequence
   * number. A probe that finds no row (retention removed it meanwhile) counts as too early.
   */
  async #firstSeq(partition: number, end: number, col: 'pos' | 'enqueued_ms', atLeast: number): Promise<number> {
    const first = await this.db.all('SELECT MIN(seq) AS seq FROM log_records WHERE part = ?', [partition]);
    let lo = first[0]?.seq === null || first[0]?.seq === undefined ? end : Number(first[0].seq);
    let hi = end;
    while (lo < hi) {
      const mid = lo + Math.floor((hi - lo) / 2);
      const row = await this.db.all(`SELECT ${col} AS v FROM log_records WHERE part = ? AND seq = ?`, [partition, mid]);
      if (row[0] !== undefined && Number(row[0].v) >= atLeast) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  async readFrom(partition: number, from: number, limit: number): Promise<LogRecord[]> {
    const fresh = this.#fresh?.read(partition, from, limit);
    if (fresh !== undefined) return fresh;
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM log_records WHERE part = ? AND seq >= ? ORDER BY seq LIMIT ?`, [partition, from, limit]);
    return rows.map(recordFromRow);
  }

  async read(partition: number, position: LogPosition, limit: number): Promise<LogRecord[]> {
    const n = checkLimit(limit);
    const from = await this.startOf(partition, position);
    return n === 0 ? [] : this.readFrom(partition, from, n);
  }

  tail(partition: number, position: LogPosition, opts: TailOptions = {}): AsyncIterable<LogRecord[]> {
    checkPartition(this, partition);
    const tail = tailLoop(this, partition, position, this.#pollMs, opts);
    return this.#fresh === undefined ? tail : this.#fresh.counting(partition, tail);
  }

  async partitionProperties(partition: number): Promise<PartitionProperties> {
    checkPartition(this, partition);
    // One statement: the counters and the oldest record from one snapshot.
    const rows = await this.db.all(
      'SELECT next_seq, last_pos, last_ms, (SELECT MIN(seq) FROM log_records WHERE part = ?) AS first_seq FROM log_partitions WHERE part = ?',
      [partition, partition],
    );
    const r = rows[0];
    if (r === undefined) throw new Error(`event log partition ${partition} has no row`);
    const next = Number(r.next_seq);
    const empty = r.first_seq === null || r.first_seq === undefined;
    return {
      partition,
      beginningSequenceNumber: empty ? next : Number(r.first_seq),
      lastEnqueuedSequenceNumber: next - 1,
      lastEnqueuedOffset: String(r.last_pos),
      lastEnqueuedTimeUtc: new Date(Number(r.last_ms)).toISOString(),
      isEmpty: empty,
    };
  }

  async enforceRetention(signal?: AbortSignal): Promise<number> {
    const { maxAgeMs, maxBytesPerPartition } = this.opts.retention;
    const cutMs = Math.floor(this.#now()) - maxAgeMs;
    let deleted = 0;
    for (let p = 0; p < this.partitionCount && signal?.aborted !== true; p++) {
      const head = await this.db.all('SELECT next_seq, next_pos FROM log_partitions WHERE part = ?', [p]);
      const end = Number(head[0]?.next_seq ?? 0);
      // A record is kept while it is young enough and it and everything after it fit in the budget:
      // pos >= next_pos - max.
      const keepFromTime = await this.#firstSeq(p, end, 'enqueued_ms', cutMs);
      const cutPos = Number(head[0]?.next_pos ?? 0) - maxBytesPerPartition;
      const keepFromSize = cutPos > 0 ? await this.#firstSeq(p, end, 'pos', cutPos) : 0;
      deleted += await this.#deleteBefore(p, Math.max(keepFromTime, keepFromSize), signal);
    }
    return deleted;
  }

  /** Deletes the partition's records before sequence number `keepFrom`, oldest first, in chunks. */
  async #deleteBefore(partition: number, keepFrom: number, signal: AbortSignal | undefined): Promise<number> {
    const first = await this.db.all('SELECT MIN(seq) AS seq FROM log_records WHERE part = ?', [partition]);
    if (first[0]?.seq === null || first[0]?.seq === undefined) return 0;
    let deleted = 0;
    for (let from = Number(first[0].seq); from < keepFrom && signal?.aborted !== true; from += PRUNE_CHUNK) {
      const to = Math.min(from + PRUNE_CHUNK, keepFrom);
      const writer = this.opts.writer;
      if (writer === undefined) deleted += await this.db.run('DELETE FROM log_records WHERE part = ? AND seq >= ? AND seq < ?', [partition, from, to]);
      else {
        // The writer thread is the appends' too, and a chunk's WAL pages are synced with the next
        // commit: after each chunk the thread is left to the appends for as long as the chunk took.
        const started = performance.now();
        deleted += await writer.deleteRange(partition, from, to);
        await sleep(performance.now() - started, undefined, signal === undefined ? {} : { signal }).catch(() => undefined);
      }
    }
    return deleted;
  }

  async close(): Promise<void> {
    this.#closer.abort();
    for (const s of this.#subs.splice(0)) s.unsubscribe();
    await this.opts.writer?.close();
  }
}

async function insertRows(tx: SqlExecutor, rows: readonly SqlValue[][]): Promise<void> {
  for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) {
    const chunk = rows.slice(i, i + ROWS_PER_INSERT);
    await tx.run(
      `INSERT INTO log_records (part, seq, pos, enqueued_ms, size, device_id, module_id, body, properties, system_properties, endpoints) VALUES ${chunk.map(() => '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`,
      chunk.flat(),
    );
  }
}
