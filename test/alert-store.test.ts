// The AlertStore conformance suite on both backends: SQLite in a temp dir, PostgreSQL in a schema
// of its own per test (127.0.0.1:5432 or GATEHOUSE_TEST_DATABASE_URL).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { SecretBox } from '../src/core/secret-box.js';
import { alertStoreConformance, type AlertStoreHarness } from '../src/store/alert-store.case.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { openPostgresStore } from '../src/store/postgres/open-postgres-store.js';

const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function openSqlite(): Promise<AlertStoreHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-alerts-'));
  const file = join(dir, 'hub.db');
  const store = await openSqliteStore(file, new SecretBox(randomBytes(32)));
  return {
    store,
    async rawContent() {
      return [file, `${file}-wal`]
        .filter((f) => existsSync(f))
        .map((f) => readFileSync(f).toString('latin1'))
        .join('\n');
    },
    async close() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function openPostgres(): Promise<AlertStoreHarness> {
  const schema = `gh_test_${randomBytes(6).toString('hex')}`;
  const url = new URL(DATABASE_URL);
  url.searchParams.set('schema', schema);
  const store = await openPostgresStore(url.toString(), new SecretBox(randomBytes(32)));
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  return {
    store,
    async rawContent() {
      const res = await admin.query(`SELECT * FROM "${schema}"."alert_rules"`);
      return JSON.stringify(res.rows);
    },
    async close() {
      await store.close();
      await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
      await admin.end();
    },
  };
}

alertStoreConformance('sqlite', openSqlite);
alertStoreConformance('postgres', openPostgres);
