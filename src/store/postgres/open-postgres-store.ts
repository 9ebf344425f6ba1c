import type { SecretBox } from '../../core/secret-box.js';
import { postgresMigrations } from '../migrations/postgres.js';
import { MIGRATION_LOCK, migrate } from '../sql/migrate.js';
import { SqlStore } from '../sql/sql-store.js';
import { PostgresDriver, parsePostgresUrl, quoteIdent } from './postgres-driver.js';

/**
 * Connects to PostgreSQL, creates the schema named by `?schema=` if given, and migrates it.
 * Creating the schema takes the migration lock of that schema first: two nodes running CREATE
 * SCHEMA IF NOT EXISTS at the same moment would otherwise see one fail on pg_namespace's unique index.
 */
export async function openPostgresStore(url: string, box: SecretBox): Promise<SqlStore> {
  const opts = parsePostgresUrl(url);
  if (opts.schema !== undefined) {
    const bootstrap = new PostgresDriver({ connectionString: opts.connectionString, poolSize: 1 });
    try {
      const schema = opts.schema;
      await bootstrap.transaction(async (tx) => {
        await tx.all('SELECT pg_advisory_xact_lock(?, hashtext(?))', [MIGRATION_LOCK, schema]);
        await tx.run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
      });
    } finally {
      await bootstrap.close();
    }
  }
  const driver = new PostgresDriver(opts);
  try {
    await migrate(driver, postgresMigrations, async (tx, sql) => {
      await tx.run(sql);
    });
  } catch (err) {
    await driver.close();
    throw err;
  }
  return new SqlStore(driver, box);
}
