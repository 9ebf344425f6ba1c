import type { Migration } from '../migrations/schema-v1.js';
import type { SqlDriver } from './driver.js';

/** The advisory lock's first key: Gatehouse migrations (the second is the schema's name, hashed). */
export const MIGRATION_LOCK = 7270661;

/**
 * Applies the migrations not yet recorded in schema_migrations, all in one transaction.
 * Refuses to run on a database newer than this program (a downgrade would corrupt it).
 *
 * Several nodes starting at once on PostgreSQL: each takes a transaction-scoped advisory lock on
 * (MIGRATION_LOCK, its schema) before it so much as creates schema_migrations, so one migrates
 * while the others wait, then find every version recorded and apply nothing. A lock rather than
 * "IF NOT EXISTS" and retries: PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a
 * concurrent create (the loser fails on pg_type's unique index), and a migration that is half
 * applied by two nodes is worse. The lock goes with the transaction, so a node killed mid-way
 * releases it and leaves nothing applied. SQLite: BEGIN IMMEDIATE already makes writers take turns.
 */
export async function migrate(
  db: SqlDriver,
  migrations: readonly Migration[],
  execScript: (tx: import('./driver.js').SqlExecutor, sql: string) => Promise<void>,
): Promise<number> {
  let applied = 0;
  await db.transaction(async (tx) => {
    if (db.dialect === 'postgres') await tx.all('SELECT pg_advisory_xact_lock(?, hashtext(current_schema()))', [MIGRATION_LOCK]);
    await tx.run('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
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
