import type { Migration } from '../migrations/schema-v1.js';
import type { SqlDriver } from './driver.js';

/**
 * Applies the migrations not yet recorded in schema_migrations, each in its own transaction.
 * Refuses to run on a database newer than this program (a downgrade would corrupt it).
 */
export async function migrate(
  db: SqlDriver,
  migrations: readonly Migration[],
  execScript: (tx: import('./driver.js').SqlExecutor, sql: string) => Promise<void>,
): Promise<number> {
  await db.run('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
  let applied = 0;
  await db.transaction(async (tx) => {
    if (db.dialect === 'postgres') {
      // Several hubs starting on one database at once: one migrates, the others wait.
      await tx.all('SELECT pg_advisory_xact_lock(7270661)');
    }
    const rows = await tx.all('SELECT version FROM schema_migrations ORDER BY version');
    const done = new Set(rows.map((r) => Number(r.version)));
    const latest = migrations.at(-1)?.version ?? 0;
    const newest = Math.max(0, ...done);
    if (newest > latest) {
      throw new Error(`the database schema is version ${newest}, newer than this Gatehouse (${latest}); upgrade Gatehouse`);
    }
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await execScript(tx, m.sql);
      await tx.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [
        m.version,
        m.name,
        new Date().toISOString(),
      ]);
      applied++;
    }
  });
  return applied;
}
