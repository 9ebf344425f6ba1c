/**
 * FileNotificationStore over a SqlDriver (schema v24, table `file_notifications`). On PostgreSQL an
 * append holds an advisory lock until it commits, so seqs commit in order across nodes and the
 * shared queue never skips a row that committed late (as the C2D feedback does, sql-c2d-store.ts).
 */
import type { FileNotificationRecord, FileNotificationStore } from '../file-notification-ports.js';
import type { SqlDriver } from './driver.js';

/** Our advisory locks are listed in sql-c2d-store.ts. */
const APPEND_LOCK = 7270665;

export class SqlFileNotificationStore implements FileNotificationStore {
  constructor(private readonly db: SqlDriver) {}

  append(deviceId: string, body: string, now: number): Promise<number> {
    return this.db.transaction(
      async (tx) => {
        if (this.db.dialect === 'postgres') await tx.all(`SELECT pg_advisory_xact_lock(${APPEND_LOCK})`);
        const rows = await tx.all('INSERT INTO file_notifications (device_id, body, enqueued_at) VALUES (?, ?, ?) RETURNING seq', [deviceId, body, now]);
        return Number(rows[0]?.seq);
      },
      { durable: true },
    );
  }

  async read(after: number, limit: number): Promise<FileNotificationRecord[]> {
    const rows = await this.db.all('SELECT seq, device_id, body, enqueued_at FROM file_notifications WHERE seq > ? ORDER BY seq LIMIT ?', [after, limit]);
    return rows.map((r) => ({ seq: Number(r.seq), deviceId: String(r.device_id), body: String(r.body), enqueuedAt: Number(r.enqueued_at) }));
  }

  prune(before: number): Promise<number> {
    return this.db.run('DELETE FROM file_notifications WHERE enqueued_at < ?', [before]);
  }
}
