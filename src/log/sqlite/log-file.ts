/**
 * The SQLite event log's own database file (decision 0008): `log.db` beside the store's, written
 * only by the log's writer thread (log-worker.ts), read by the main thread. Its tables are the
 * store's schema v16-v22 log tables unchanged (see migrations/schema-v16-log.ts for what the
 * columns mean), versioned by the file's user_version.
 *
 * Hubs made before kept the log in the store's file: the first start moves it (every retained
 * record, the partitions' counters, so numbers and offsets go on where they stopped) into the new
 * file in one synced transaction, then drops it from the store in another. A crash between the two
 * finds the moved log at the next start and only drops the old copy.
 */
import type { SqliteDriver } from '../../store/sqlite/sqlite-driver.js';

export const LOG_FILE_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS log_partitions (
  part INTEGER PRIMARY KEY,
  next_seq INTEGER NOT NULL,
  next_pos INTEGER NOT NULL,
  last_pos INTEGER NOT NULL,
  last_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_records (
  part INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  pos INTEGER NOT NULL,
  enqueued_ms INTEGER NOT NULL,
  size INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  module_id TEXT NOT NULL DEFAULT '',
  body BLOB NOT NULL,
  properties TEXT NOT NULL,
  system_properties TEXT NOT NULL,
  endpoints TEXT,
  PRIMARY KEY (part, seq)
);
`;

const COLUMNS = 'part, seq, pos, enqueued_ms, size, device_id, module_id, body, properties, system_properties, endpoints';

/** Creates the log's tables in a new file; refuses a file from a newer version of the hub. */
export async function prepareLogFile(db: SqliteDriver): Promise<void> {
  const version = Number((await db.all('PRAGMA user_version'))[0]?.user_version ?? 0);
  if (version > LOG_FILE_VERSION) throw new Error(`the event log file has version ${version}; this hub knows up to ${LOG_FILE_VERSION} (downgrade?)`);
  if (version === LOG_FILE_VERSION) return;
  await db.transaction(async () => {
    db.exec(SCHEMA);
    db.exec(`PRAGMA user_version = ${LOG_FILE_VERSION}`);
  }, { durable: true });
}

async function hasLogTables(db: { all: SqliteDriver['all'] }, schema = 'main'): Promise<boolean> {
  const rows = await db.all(`SELECT name FROM ${schema}.sqlite_master WHERE type = 'table' AND name = 'log_partitions'`);
  return rows.length > 0;
}

/**
 * Moves a log kept in the store's file (`storeFile`, open as `store`) into the log's file (open as
 * `db`). Returns how many records moved (0 when there was nothing to move).
 */
export async function moveLogFromStore(db: SqliteDriver, store: SqliteDriver, storeFile: string): Promise<number> {
  if (!(await hasLogTables(store))) return 0;
  let moved = 0;
  const alreadyMoved = Number((await db.all('SELECT COUNT(*) AS n FROM log_partitions'))[0]?.n ?? 0) > 0;
  if (!alreadyMoved) {
    await db.run('ATTACH DATABASE ? AS store', [storeFile]);
    try {
      moved = await db.transaction(async (tx) => {
        await tx.run('INSERT INTO log_partitions (part, next_seq, next_pos, last_pos, last_ms) SELECT part, next_seq, next_pos, last_pos, last_ms FROM store.log_partitions');
        return tx.run(`INSERT INTO log_records (${COLUMNS}) SELECT ${COLUMNS} FROM store.log_records`);
      }, { durable: true });
    } finally {
      await db.run('DETACH DATABASE store');
    }
  }
  await store.transaction(async (tx) => {
    await tx.run('DROP TABLE log_records');
    await tx.run('DROP TABLE log_partitions');
  }, { durable: true });
  return moved;
}
