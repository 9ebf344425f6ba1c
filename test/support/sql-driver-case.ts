/**
 * What SqlDriver.writeAll promises on both backends: the rows each write changed, and all or
 * nothing (PostgreSQL runs the writes as one statement, SQLite as one transaction).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SqlStore } from '../../src/store/sql/sql-store.js';

export function writeAllConformance(name: string, open: () => Promise<{ store: SqlStore; close(): Promise<void> }>): void {
  describe(`SqlDriver.writeAll: ${name}`, () => {
    it('returns the rows each write changed', async () => {
      const h = await open();
      try {
        const db = h.store.sqlDriver;
        await db.run('INSERT INTO meta (key, value) VALUES (?, ?)', ['wa-1', 'a']);
        const counts = await db.writeAll([
          { sql: 'INSERT INTO meta (key, value) VALUES (?, ?)', params: ['wa-2', 'b'] },
          { sql: 'UPDATE meta SET value = ? WHERE key = ?', params: ['z', 'wa-none'] },
          { sql: 'UPDATE meta SET value = ? WHERE key = ?', params: ['c', 'wa-1'] },
        ]);
        assert.deepEqual(counts, [1, 0, 1]);
        assert.equal(await h.store.getMeta('wa-1'), 'c');
        assert.equal(await h.store.getMeta('wa-2'), 'b');
      } finally {
        await h.close();
      }
    });

    it('writes nothing when one write fails', async () => {
      const h = await open();
      try {
        const db = h.store.sqlDriver;
        await db.run('INSERT INTO meta (key, value) VALUES (?, ?)', ['wa-taken', 'a']);
        const failed = await db
          .writeAll([
            { sql: 'INSERT INTO meta (key, value) VALUES (?, ?)', params: ['wa-new', 'b'] },
            { sql: 'INSERT INTO meta (key, value) VALUES (?, ?)', params: ['wa-taken', 'c'] },
          ])
          .then(() => undefined, (err: unknown) => err);
        assert.ok(db.isUniqueViolation(failed), `expected a unique violation, got ${String(failed)}`);
        assert.equal(await h.store.getMeta('wa-new'), undefined);
        assert.equal(await h.store.getMeta('wa-taken'), 'a');
      } finally {
        await h.close();
      }
    });
  });
}
