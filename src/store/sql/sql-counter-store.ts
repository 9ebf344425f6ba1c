/**
 * CounterStore over a SqlDriver (schema v15, table `shared_counters`); see counter-store.case.ts.
 *
 * An update first inserts a placeholder row for each key it does not have (INSERT ... ON CONFLICT
 * DO NOTHING: a concurrent insert of the same key waits for the first to commit), then reads the
 * rows locked (PostgreSQL: SELECT ... FOR UPDATE; both steps in key order, so two updates never
 * wait on each other in a circle), then writes what the owner decided, all in one transaction.
 * On SQLite the transaction itself is the lock (BEGIN IMMEDIATE: one writer at a time).
 */
import type { CounterEntry, CounterStore, CounterWrite } from '../counter-ports.js';
import type { SqlDriver, SqlRow } from './driver.js';

/** How long a removed counter stays visible as a tombstone (other nodes poll every second or so). */
export const TOMBSTONE_MS = 60_000;

function entry(r: SqlRow): CounterEntry {
  return { key: String(r.key), value: r.value === null || r.value === undefined ? null : String(r.value), expiresAt: Number(r.expires_at), updatedAt: Number(r.updated_at) };
}

export class SqlCounterStore implements CounterStore {
  constructor(private readonly db: SqlDriver) {}

  update<T>(keys: readonly string[], now: number, decide: (current: ReadonlyMap<string, string>) => { writes: ReadonlyMap<string, CounterWrite>; result: T }): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    return this.db.transaction(async (tx) => {
      if (sorted.length > 0) {
        await tx.run(`INSERT INTO shared_counters (key, value, expires_at, updated_at) VALUES ${sorted.map(() => '(?, NULL, 0, 0)').join(', ')} ON CONFLICT (key) DO NOTHING`, sorted);
      }
      const lock = this.db.dialect === 'postgres' ? ' FOR UPDATE' : '';
      const rows = sorted.length === 0 ? [] : await tx.all(`SELECT key, value, expires_at FROM shared_counters WHERE key IN (${sorted.map(() => '?').join(', ')}) ORDER BY key${lock}`, sorted);
      const current = new Map<string, string>();
      for (const r of rows) if (r.value !== null && r.value !== undefined && Number(r.expires_at) > now) current.set(String(r.key), String(r.value));
      const { writes, result } = decide(current);
      for (const [key, w] of writes) {
        if (!sorted.includes(key)) throw new Error(`counter ${key} was not named in the update`);
        await tx.run('UPDATE shared_counters SET value = ?, expires_at = ?, updated_at = ? WHERE key = ?', [w.value, w.value === null ? now + TOMBSTONE_MS : w.expiresAt, now, key]);
      }
      return result;
    });
  }

  async changedSince(prefix: string, since: number, limit: number): Promise<CounterEntry[]> {
    const rows = await this.db.all(
      'SELECT key, value, expires_at, updated_at FROM shared_counters WHERE updated_at >= ? AND substr(key, 1, ?) = ? ORDER BY updated_at, key LIMIT ?',
      [since, prefix.length, prefix, limit],
    );
    return rows.map(entry);
  }

  async clear(prefix: string, now: number): Promise<void> {
    await this.db.run('UPDATE shared_counters SET value = NULL, expires_at = ?, updated_at = ? WHERE substr(key, 1, ?) = ? AND value IS NOT NULL', [now + TOMBSTONE_MS, now, prefix.length, prefix]);
  }

  purgeExpired(now: number): Promise<number> {
    return this.db.run('DELETE FROM shared_counters WHERE expires_at < ?', [now]);
  }
}
