import type { SecretBox } from '../../core/secret-box.js';
import { postgresMigrations } from '../migrations/postgres.js';
import { migrate } from '../sql/migrate.js';
import { SqlStore } from '../sql/sql-store.js';
import { PostgresDriver, parsePostgresUrl, quoteIdent } from './postgres-driver.js';

/**
 * Connects to PostgreSQL, creates the schema named by `?schema=` if given, and migrates it.
 */
export async function openPostgresStore(url: string, box: SecretBox): Promise<SqlStore> {
  const opts = parsePostgresUrl(url);
  if (opts.schema !== undefined) {
    const bootstrap = new PostgresDriver({ connectionString: opts.connectionString, poolSize: 1 });
    try {
      await bootstrap.run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(opts.schema)}`);
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
