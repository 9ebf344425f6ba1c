/**
 * C2D queues and feedback over the SqlDriver. Each queue-changing call is one transaction; on
 * PostgreSQL it first takes a transaction-scoped advisory lock on the device id, so two sends
 * cannot both pass the depth check at 49 and two receivers cannot lock the same message. (SQLite
 * transactions are serial already: BEGIN IMMEDIATE behind a promise chain.)
 *
 * Removing messages and recording their feedback is set-based: one INSERT ... SELECT for the
 * messages whose ack asks for that outcome, one DELETE, under the same WHERE.
 */
import { randomUUID } from 'node:crypto';
import { HubError } from '../../core/errors.js';
import type { SecretBox } from '../../core/secret-box.js';
import type {
  AckMode,
  C2dDrop,
  C2dMessage,
  C2dStore,
  C2dSweepResult,
  FeedbackRecord,
  FeedbackStatus,
  NewC2dMessage,
} from '../c2d-ports.js';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue } from './driver.js';
import { str as text, strOrNull as textOrNull, bytes } from './rows.js';

const COLUMNS =
  'seq, device_id, message_id, correlation_id, user_id, to_path, ack, content_type, content_encoding, properties, body, enqueued_time, expiry_time, delivery_count, lock_token, locked_until';
const INSERT_COLUMNS =
  'device_id, generation_id, message_id, correlation_id, user_id, to_path, ack, content_type, content_encoding, properties, body, enqueued_time, expiry_time, delivery_count';
const FEEDBACK_COLUMNS = 'seq, original_message_id, device_generation_id, device_id, enqueued_time_utc, status_code, description';

/**
 * Our advisory locks: (7270661, schema) migrations, (7270663, device) a C2D queue, 7270664 C2D
 * feedback, 7270665 file notifications, (7270666, schema) creating the event log's partitions.
 */
const QUEUE_LOCK_CLASS = 7270663;
/**
 * Taken (after the queue's lock, never before one) by a transaction about to write feedback, held
 * until it commits: feedback seqs then commit in seq order across nodes, so a reader that saw seq N
 * never later finds a smaller one appear, and the shared feedback queue (hub/c2d/feedback-queue.ts)
 * can hand out ranges of seqs without skipping a record that committed late.
 */
const FEEDBACK_LOCK = 7270664;

const DESCRIPTIONS: Record<FeedbackStatus, string> = {
  Success: 'Success',
  Expired: 'Message expired',
  DeliveryCountExceeded: 'Message delivery count exceeded',
  Rejected: 'Message rejected',
  Purged: 'Message purged',
};

/** The ack modes that ask for feedback with this status [DOCS: Send cloud-to-device messages from IoT Hub]. */
export function acksWanting(status: FeedbackStatus): AckMode[] {
  return status === 'Success' ? ['positive', 'full'] : ['negative', 'full'];
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function messageFromRow(r: SqlRow): C2dMessage {
  const lockedUntil = r.locked_until;
  return {
    deviceId: text(r, 'device_id'),
    seq: Number(r.seq),
    messageId: text(r, 'message_id'),
    correlationId: textOrNull(r, 'correlation_id'),
    userId: textOrNull(r, 'user_id'),
    to: text(r, 'to_path'),
    ack: text(r, 'ack') as AckMode,
    contentType: textOrNull(r, 'content_type'),
    contentEncoding: textOrNull(r, 'content_encoding'),
    properties: JSON.parse(text(r, 'properties')) as Record<string, string>,
    body: bytes(r.body),
    enqueuedTime: text(r, 'enqueued_time'),
    expiryTime: iso(Number(r.expiry_time)),
    deliveryCount: Number(r.delivery_count),
    lockToken: textOrNull(r, 'lock_token'),
    lockedUntil: lockedUntil === null || lockedUntil === undefined ? null : iso(Number(lockedUntil)),
  };
}

function feedbackFromRow(r: SqlRow): FeedbackRecord {
  return {
    seq: Number(r.seq),
    originalMessageId: text(r, 'original_message_id'),
    deviceGenerationId: text(r, 'device_generation_id'),
    deviceId: text(r, 'device_id'),
    enqueuedTimeUtc: text(r, 'enqueued_time_utc'),
    statusCode: text(r, 'status_code') as FeedbackStatus,
    description: text(r, 'description'),
  };
}

function isForeignKeyViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY';
}

export class SqlC2dStore implements C2dStore {
  readonly #dropListeners: Array<(drop: C2dDrop) => void> = [];

  constructor(
    private readonly db: SqlDriver,
    // Message bodies are not secrets; kept for the constructor every sub-store shares.
    private readonly box: SecretBox,
  ) {
    void this.box;
  }

  async enqueue(m: NewC2dMessage, opts: { maxDepth: number; now: number }): Promise<C2dMessage> {
    const drops: C2dDrop[] = [];
    try {
      return await this.#committed(drops, async (tx) => {
        await this.#lockQueue(tx, m.deviceId);
        const dev = await tx.all('SELECT generation_id FROM devices WHERE device_id = ?', [m.deviceId]);
        const generationId = dev[0]?.generation_id;
        if (typeof generationId !== 'string') throw new HubError('DeviceNotFound', `Device ${m.deviceId} not found`);
        await this.#expire(tx, m.deviceId, opts.now, drops);
        const rows = await tx.all('SELECT COUNT(*) AS n FROM c2d_messages WHERE device_id = ?', [m.deviceId]);
        if (Number(rows[0]?.n ?? 0) >= opts.maxDepth) {
          throw new HubError(
            'DeviceMaximumQueueDepthExceeded',
            `The cloud-to-device queue of device ${m.deviceId} already holds ${opts.maxDepth} messages.`,
          );
        }
        const params: SqlValue[] = [
          m.deviceId,
          generationId,
          m.messageId,
          m.correlationId,
          m.userId,
          m.to,
          m.ack,
          m.contentType,
          m.contentEncoding,
          JSON.stringify(m.properties),
          // Both drivers bind a Buffer as BLOB / BYTEA; the port's SqlValue does not list it.
          m.body,
          m.enqueuedTime,
          Date.parse(m.expiryTime),
          0,
        ];
        const insert = `INSERT INTO c2d_messages (${INSERT_COLUMNS}) VALUES (${params.map(() => '?').join(', ')})`;
        let seq: number;
        if (this.db.dialect === 'postgres') {
          seq = Number((await tx.all(`${insert} RETURNING seq`, params))[0]?.seq);
        } else {
          await tx.run(insert, params);
          seq = Number((await tx.all('SELECT last_insert_rowid() AS seq'))[0]?.seq);
        }
        return { ...m, seq, deliveryCount: 0, lockToken: null, lockedUntil: null };
      });
    } catch (err) {
      // The device was deleted between our read and the insert (PostgreSQL, read committed).
      if (isForeignKeyViolation(err)) throw new HubError('DeviceNotFound', `Device ${m.deviceId} not found`);
      throw err;
    }
  }

  async lockNext(deviceId: string, opts: { max: number; now: number; lockMs: number; maxDeliveryCount: number; owner?: string }): Promise<C2dMessage[]> {
    // An empty queue, what almost every connecting device has, is one indexed read and not a
    // write transaction (on PostgreSQL that was ten round trips per connect): with no row there
    // is nothing to expire, dead-letter or lock. A message enqueued after this read is followed
    // by its c2d.enqueued notification (sent once it committed), which asks again.
    if ((await this.db.all('SELECT 1 AS x FROM c2d_messages WHERE device_id = ? LIMIT 1', [deviceId])).length === 0) return [];
    const drops: C2dDrop[] = [];
    return this.#committed(drops, async (tx) => {
      await this.#lockQueue(tx, deviceId);
      await this.#expire(tx, deviceId, opts.now, drops);
      await this.#deadLetter(tx, deviceId, opts.now, opts.maxDeliveryCount, drops);
      if (opts.max <= 0) return [];
      const rows = await tx.all(
        `SELECT ${COLUMNS} FROM c2d_messages WHERE device_id = ? AND (lock_token IS NULL OR locked_until <= ?) ORDER BY seq LIMIT ?`,
        [deviceId, opts.now, opts.max],
      );
      const lockedUntil = opts.now + opts.lockMs;
      const out: C2dMessage[] = [];
      for (const row of rows) {
        const m = messageFromRow(row);
        const lockToken = randomUUID();
        await tx.run('UPDATE c2d_messages SET lock_token = ?, locked_until = ?, lock_owner = ?, delivery_count = delivery_count + 1 WHERE seq = ?', [
          lockToken,
          lockedUntil,
          opts.owner ?? null,
          m.seq,
        ]);
        out.push({ ...m, lockToken, lockedUntil: iso(lockedUntil), deliveryCount: m.deliveryCount + 1 });
      }
      return out;
    });
  }

  settle(deviceId: string, lockToken: string, outcome: 'Success' | 'Rejected', now: number): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      await this.#lockQueue(tx, deviceId);
      const n = await this.#remove(tx, 'device_id = ? AND lock_token = ? AND locked_until > ?', [deviceId, lockToken, now], outcome, now);
      return n > 0;
    });
  }

  abandon(deviceId: string, lockToken: string, opts: { now: number; maxDeliveryCount: number }): Promise<boolean> {
    const drops: C2dDrop[] = [];
    return this.#committed(drops, async (tx) => {
      await this.#lockQueue(tx, deviceId);
      const rows = await tx.all('SELECT seq, delivery_count FROM c2d_messages WHERE device_id = ? AND lock_token = ? AND locked_until > ?', [
        deviceId,
        lockToken,
        opts.now,
      ]);
      const row = rows[0];
      if (row === undefined) return false;
      if (Number(row.delivery_count) >= opts.maxDeliveryCount) {
        const n = await this.#remove(tx, 'seq = ?', [Number(row.seq)], 'DeliveryCountExceeded', opts.now);
        if (n > 0) drops.push({ deviceId, status: 'DeliveryCountExceeded', count: n });
      } else {
        await tx.run('UPDATE c2d_messages SET lock_token = NULL, locked_until = NULL, lock_owner = NULL WHERE seq = ?', [Number(row.seq)]);
      }
      return true;
    });
  }

  async countPending(deviceId: string, now: number): Promise<number> {
    const rows = await this.db.all('SELECT COUNT(*) AS n FROM c2d_messages WHERE device_id = ? AND expiry_time > ?', [deviceId, now]);
    return Number(rows[0]?.n ?? 0);
  }

  async countAllPending(now: number): Promise<number> {
    // The expiry index answers this without reading message rows.
    const rows = await this.db.all('SELECT COUNT(*) AS n FROM c2d_messages WHERE expiry_time > ?', [now]);
    return Number(rows[0]?.n ?? 0);
  }

  onDropped(listener: (drop: C2dDrop) => void): void {
    this.#dropListeners.push(listener);
  }

  async recount(deviceId: string): Promise<void> {
    await this.db.run('UPDATE devices SET c2d_count = (SELECT COUNT(*) FROM c2d_messages WHERE device_id = ?) WHERE device_id = ?', [deviceId, deviceId]);
  }

  purge(deviceId: string, opts: { now: number; feedback: boolean }): Promise<number> {
    return this.db.transaction(async (tx) => {
      await this.#lockQueue(tx, deviceId);
      if (opts.feedback) return this.#remove(tx, 'device_id = ?', [deviceId], 'Purged', opts.now);
      return tx.run('DELETE FROM c2d_messages WHERE device_id = ?', [deviceId]);
    });
  }

  async sweep(opts: { now: number; maxDeliveryCount: number; feedbackBefore: number; maxDevices: number }): Promise<C2dSweepResult> {
    const result: C2dSweepResult = { expired: 0, deadLettered: 0, released: [], feedbackPruned: 0 };
    const due = await this.db.all(
      'SELECT DISTINCT device_id FROM c2d_messages WHERE expiry_time <= ? OR locked_until <= ? LIMIT ?',
      [opts.now, opts.now, opts.maxDevices],
    );
    for (const row of due) {
      const deviceId = text(row, 'device_id');
      const drops: C2dDrop[] = [];
      await this.#committed(drops, async (tx) => {
        await this.#lockQueue(tx, deviceId);
        result.expired += await this.#expire(tx, deviceId, opts.now, drops);
        result.deadLettered += await this.#deadLetter(tx, deviceId, opts.now, opts.maxDeliveryCount, drops);
        const released = await tx.run(
          'UPDATE c2d_messages SET lock_token = NULL, locked_until = NULL, lock_owner = NULL WHERE device_id = ? AND locked_until <= ?',
          [deviceId, opts.now],
        );
        if (released > 0) result.released.push(deviceId);
      });
    }
    result.feedbackPruned = await this.db.run('DELETE FROM c2d_feedback WHERE created < ?', [iso(opts.feedbackBefore)]);
    return result;
  }

  async releaseOwnedLocks(owner: string): Promise<string[]> {
    // One statement, no queue lock: on PostgreSQL a row another node relocked meanwhile no longer
    // matches `lock_owner = ?` when the UPDATE re-reads it, so only this owner's locks go.
    return this.db.transaction(async (tx) => {
      const rows = await tx.all('SELECT DISTINCT device_id FROM c2d_messages WHERE lock_owner = ?', [owner]);
      await tx.run('UPDATE c2d_messages SET lock_token = NULL, locked_until = NULL, lock_owner = NULL WHERE lock_owner = ?', [owner]);
      return rows.map((r) => text(r, 'device_id'));
    });
  }

  async releaseOthersLocks(deviceId: string, owner: string): Promise<number> {
    return this.db.run('UPDATE c2d_messages SET lock_token = NULL, locked_until = NULL, lock_owner = NULL WHERE device_id = ? AND lock_owner IS NOT NULL AND lock_owner <> ?', [deviceId, owner]);
  }

  async readFeedback(after: number, limit: number): Promise<FeedbackRecord[]> {
    const rows = await this.db.all(`SELECT ${FEEDBACK_COLUMNS} FROM c2d_feedback WHERE seq > ? ORDER BY seq LIMIT ?`, [after, limit]);
    return rows.map(feedbackFromRow);
  }

  // ---------------------------------------------------------------- helpers

  async #lockQueue(tx: SqlExecutor, deviceId: string): Promise<void> {
    if (this.db.dialect === 'postgres') await tx.all(`SELECT pg_advisory_xact_lock(${QUEUE_LOCK_CLASS}, hashtext(?))`, [deviceId]);
  }

  /**
   * Runs `fn` in one transaction; once it committed, tells the drop listeners what `fn` collected
   * in `drops` (a rolled-back transaction dropped nothing).
   */
  async #committed<T>(drops: C2dDrop[], fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const result = await this.db.transaction(fn);
    for (const drop of drops) {
      for (const l of this.#dropListeners) {
        try {
          l(drop);
        } catch {
          // A drop informs; a failing listener must not fail the queue operation.
        }
      }
    }
    return result;
  }

  async #expire(tx: SqlExecutor, deviceId: string, now: number, drops: C2dDrop[]): Promise<number> {
    const n = await this.#remove(tx, 'device_id = ? AND expiry_time <= ?', [deviceId, now], 'Expired', now);
    if (n > 0) drops.push({ deviceId, status: 'Expired', count: n });
    return n;
  }

  /** Unlocked (or lapsed) messages that used up their delivery attempts. */
  async #deadLetter(tx: SqlExecutor, deviceId: string, now: number, maxDeliveryCount: number, drops: C2dDrop[]): Promise<number> {
    const n = await this.#remove(
      tx,
      'device_id = ? AND delivery_count >= ? AND (lock_token IS NULL OR locked_until <= ?)',
      [deviceId, maxDeliveryCount, now],
      'DeliveryCountExceeded',
      now,
    );
    if (n > 0) drops.push({ deviceId, status: 'DeliveryCountExceeded', count: n });
    return n;
  }

  /** Records `status` feedback for the matching messages whose ack asks for it, then deletes them all. */
  async #remove(tx: SqlExecutor, where: string, params: SqlValue[], status: FeedbackStatus, now: number): Promise<number> {
    const at = iso(now);
    const [a, b] = acksWanting(status);
    if (this.db.dialect === 'postgres' && a !== undefined) {
      const wanting = await tx.all(`SELECT 1 FROM c2d_messages WHERE ${where} AND ack IN (?, ?) LIMIT 1`, [...params, a, b ?? null]);
      if (wanting.length > 0) await tx.all(`SELECT pg_advisory_xact_lock(${FEEDBACK_LOCK})`);
    }
    await tx.run(
      `INSERT INTO c2d_feedback (original_message_id, device_generation_id, device_id, enqueued_time_utc, status_code, description, created)
       SELECT message_id, generation_id, device_id, CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT)
       FROM c2d_messages WHERE ${where} AND ack IN (?, ?) ORDER BY seq`,
      [at, status, DESCRIPTIONS[status], at, ...params, a ?? null, b ?? null],
    );
    return tx.run(`DELETE FROM c2d_messages WHERE ${where}`, params);
  }
}
