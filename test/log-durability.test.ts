/**
 * An acknowledged message is on disk (issue 19): the log's append resolves, and so the PUBACK or
 * 204 goes out, only after a commit that synced to disk. On SQLite the log's writer thread
 * (decision 0008) commits and fdatasyncs the WAL, and reports each commit and each completed sync
 * back before the answers they made durable: each append must see its transaction's commit, then a
 * completed sync of the WAL file, then its resolution. On PostgreSQL a driver spy sees the p_sync
 * argument of log_append, and the function is held to set synchronous_commit from it whatever the
 * session's setting. With `--telemetry-durability os-cache` (sync: false) the same hooks see
 * commits that do not sync, so the guarantee cannot silently regress either way.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { SecretBox } from '../src/core/secret-box.js';
import { makeMessage } from '../src/log/log.case.js';
import { openSqlEventLog, type SqlEventLog } from '../src/log/sql/sql-log.js';
import { openSqliteLog } from '../src/log/sqlite/open-sqlite-log.js';
import type { SqlDriver, SqlExecutor, SqlValue, TransactionOptions } from '../src/store/sql/driver.js';
import { openPostgresStore } from '../src/store/postgres/open-postgres-store.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import type { SqlStore } from '../src/store/sql/sql-store.js';
import { DEFAULT_TEST_RETENTION } from './support/log-harness.js';

const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

type Seen = { kind: 'commit'; synced: boolean } | { kind: 'ack' } | { kind: 'statements' } | { kind: 'synced'; file: string };

/** The store's driver, recording each commit and whether it synced to disk. */
function spy(inner: SqlDriver, seen: Seen[]): SqlDriver {
  return {
    dialect: inner.dialect,
    isUniqueViolation: (e) => inner.isUniqueViolation(e),
    close: () => inner.close(),
    run: (sql, params) => inner.run(sql, params),
    async all(sql: string, params?: readonly SqlValue[]) {
      const rows = await inner.all(sql, params);
      // PostgreSQL: the append is one autocommitted call; its last argument is p_sync ('true' or 'false').
      if (sql.includes('FROM log_append(')) seen.push({ kind: 'commit', synced: params?.at(-1) === 'true' });
      return rows;
    },
    transaction<T>(fn: (tx: SqlExecutor) => Promise<T>, opts?: TransactionOptions): Promise<T> {
      return inner.transaction(async (tx) => {
        const r = await fn(tx);
        seen.push({ kind: 'statements' }); // COMMIT follows at once
        return r;
      }, opts);
    },
  };
}

describe('the log acknowledges only what a synced commit holds', () => {
  const schema = `gh_logdur_${randomBytes(6).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'gh-logdur-'));
  const stores: SqlStore[] = [];
  const logs: SqlEventLog[] = [];

  before(async () => {
    const box = new SecretBox(randomBytes(32));
    const url = new URL(DATABASE_URL);
    url.searchParams.set('schema', schema);
    stores.push(await openSqliteStore(join(dir, 'hub.db'), box), await openPostgresStore(url.toString(), box));
  });

  after(async () => {
    for (const l of logs) await l.close();
    for (const s of stores) await s.close();
    rmSync(dir, { recursive: true, force: true });
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  async function appendThrough(driver: SqlDriver, sync: boolean | undefined, seen: Seen[] = []): Promise<Seen[]> {
    const log = await openSqlEventLog(spy(driver, seen), { retention: DEFAULT_TEST_RETENTION, pollMs: 60_000, ...(sync === undefined ? {} : { sync }) });
    logs.push(log);
    seen.length = 0; // opening the log commits its partition rows
    return appendTo(log, seen);
  }

  async function appendTo(log: SqlEventLog, seen: Seen[]): Promise<Seen[]> {
    for (let b = 0; b < 3; b++) {
      const batch = Array.from({ length: 10 }, (_, i) => makeMessage(`dev-${i}`, b * 10 + i));
      const placed = await log.append(batch);
      assert.equal(placed.length, 10);
      seen.push({ kind: 'ack' });
    }
    return seen;
  }

  const synced = [
    { kind: 'commit', synced: true },
    { kind: 'ack' },
    { kind: 'commit', synced: true },
    { kind: 'ack' },
    { kind: 'commit', synced: true },
    { kind: 'ack' },
  ];

  /**
   * The SQLite log as the hub opens it (its own file, written by its worker thread), whose commits
   * and WAL syncs (the real fdatasync, in the thread) are reported back in order.
   */
  let files = 0;
  async function sqliteLogWithSyncs(sync: boolean | undefined, seen: Seen[]): Promise<SqlEventLog> {
    const log = await openSqliteLog({
      file: join(dir, `log-${++files}.db`),
      retention: DEFAULT_TEST_RETENTION,
      pollMs: 60_000,
      ...(sync === undefined ? {} : { sync }),
      observe: (e) => seen.push(e.kind === 'commit' ? { kind: 'statements' } : { kind: 'synced', file: e.file }),
    });
    logs.push(log);
    return log;
  }

  it('SQLite: every append resolves after its commit and a sync of the WAL file (the default)', async () => {
    const seen: Seen[] = [];
    await appendTo(await sqliteLogWithSyncs(undefined, seen), seen);
    assert.deepEqual(seen, [
      { kind: 'statements' },
      { kind: 'synced', file: 'wal' },
      { kind: 'synced', file: 'dir' }, // once: the WAL file's directory entry
      { kind: 'ack' },
      { kind: 'statements' },
      { kind: 'synced', file: 'wal' },
      { kind: 'ack' },
      { kind: 'statements' },
      { kind: 'synced', file: 'wal' },
      { kind: 'ack' },
    ]);
  });

  it('PostgreSQL: every append is a log_append call that asks for a synced commit (the default)', async () => {
    assert.deepEqual(await appendThrough((stores[1] as SqlStore).sqlDriver, undefined), synced);
  });

  it('os-cache: the same appends commit without a sync, on both stores', async () => {
    const seen: Seen[] = [];
    await appendTo(await sqliteLogWithSyncs(false, seen), seen);
    assert.deepEqual(seen, [{ kind: 'statements' }, { kind: 'ack' }, { kind: 'statements' }, { kind: 'ack' }, { kind: 'statements' }, { kind: 'ack' }]);
    const relaxed = synced.map((s) => (s.kind === 'commit' ? { kind: 'commit', synced: false } : s));
    assert.deepEqual(await appendThrough((stores[1] as SqlStore).sqlDriver, false), relaxed);
  });

  it('PostgreSQL: log_append sets synchronous_commit from p_sync, whatever the session had', async () => {
    const db = (stores[1] as SqlStore).sqlDriver;
    const call = 'SELECT o_part FROM log_append(?, ?, ?, ?, ?, ?, ?, ?, ?::boolean)';
    const args = (sync: boolean): SqlValue[] => [[0], ['dev-x'], [''], [Buffer.from('{}')], '[{}]', '[{}]', '[null]', Date.now(), String(sync)];
    const within = async (session: 'on' | 'off', sync: boolean) =>
      db.transaction(async (tx) => {
        await tx.run(`SET LOCAL synchronous_commit = ${session}`);
        await tx.all(call, args(sync));
        return (await tx.all('SHOW synchronous_commit'))[0]?.synchronous_commit;
      });
    assert.equal(await within('off', true), 'on');
    assert.equal(await within('on', false), 'off');
  });
});
