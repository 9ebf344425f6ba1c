import type { SecretBox } from '../../core/secret-box.js';
import { sqliteMigrations } from '../migrations/sqlite.js';
import { migrate } from '../sql/migrate.js';
import { SqlStore } from '../sql/sql-store.js';
import { SqliteDriver } from './sqlite-driver.js';

/** Opens (creating if needed) the SQLite database file and brings its schema up to date. */
export async function openSqliteStore(file: string, box: SecretBox): Promise<SqlStore> {
  const driver = new SqliteDriver(file);
  try {
    await migrate(driver, sqliteMigrations, async (_tx, sql) => driver.exec(sql));
  } catch (err) {
    await driver.close();
    throw err;
  }
  return new SqlStore(driver, box);
}
