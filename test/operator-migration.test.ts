/**
 * Schema v14 moves the operators and role assignments an earlier Gatehouse kept as two JSON
 * documents in `meta` into rows with etags, on SQLite and PostgreSQL alike: every field kept, each
 * row its own etag, an assignment of no operator dropped, the documents gone.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { SecretBox } from '../src/core/secret-box.js';
import { postgresMigrations } from '../src/store/migrations/postgres.js';
import { sqliteMigrations } from '../src/store/migrations/sqlite.js';
import { openPostgresStore } from '../src/store/postgres/open-postgres-store.js';
import { PostgresDriver } from '../src/store/postgres/postgres-driver.js';
import { migrate } from '../src/store/sql/migrate.js';
import type { SqlDriver, SqlExecutor } from '../src/store/sql/driver.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { SqliteDriver } from '../src/store/sqlite/sqlite-driver.js';
import type { Store } from '../src/store/ports.js';

const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const ids = { alice: randomUUID(), bob: randomUUID(), ghost: randomUUID() };
const OPERATORS = [
  { id: 'Alice', displayName: 'Alice A.', enabled: true, createdAt: '2026-03-01T10:00:00.000Z', tokensValidAfter: 1_767_225_600_000 },
  { id: 'bob', displayName: 'bob', enabled: false, createdAt: '2026-03-02T10:00:00.000Z', tokensValidAfter: 0 },
];
const ASSIGNMENTS = [
  { id: ids.alice, principalId: 'alice', roleDefinitionName: 'Owner', scope: '/', createdAt: '2026-03-01T10:01:00.000Z', createdBy: 'policy:iothubowner' },
  { id: ids.bob, principalId: 'bob', roleDefinitionName: 'IoT Hub Data Reader', scope: '/', createdAt: '2026-03-02T10:01:00.000Z', createdBy: 'operator:Alice' },
  { id: ids.ghost, principalId: 'ghost', roleDefinitionName: 'Owner', scope: '/', createdAt: '2026-03-02T10:02:00.000Z', createdBy: 'policy:iothubowner' },
];

/** A database as Gatehouse left it at schema v13, with the two documents. */
async function atV13(driver: SqlDriver, exec: (tx: SqlExecutor, sql: string) => Promise<void>, migrations: typeof sqliteMigrations): Promise<void> {
  assert.equal(migrations[12]?.version, 13);
  await migrate(driver, migrations.slice(0, 13), exec);
  await driver.run('INSERT INTO meta (key, value) VALUES (?, ?), (?, ?)', ['operators', JSON.stringify(OPERATORS), 'role-assignments', JSON.stringify(ASSIGNMENTS)]);
}

async function checkMoved(store: Store): Promise<void> {
  const ops = await store.operators.listOperators();
  assert.deepEqual(
    ops.map(({ etag: _etag, ...rest }) => rest),
    OPERATORS,
  );
  for (const o of ops) assert.ok(o.etag.length > 0);
  assert.equal(new Set(ops.map((o) => o.etag)).size, ops.length, 'each row its own etag');
  const assignments = await store.operators.listAssignments();
  assert.deepEqual(
    assignments.map(({ etag: _etag, ...rest }) => rest),
    [
      { ...ASSIGNMENTS[0], principalId: 'Alice' },
      ASSIGNMENTS[1],
    ],
  );
  assert.equal(await store.getMeta('operators'), undefined);
  assert.equal(await store.getMeta('role-assignments'), undefined);
  // The moved rows take etag-guarded writes like new ones.
  const bob = ops.find((o) => o.id === 'bob');
  assert.ok(bob !== undefined);
  await store.operators.replaceOperator({ ...bob, enabled: true, etag: 'next' }, bob.etag);
  await assert.rejects(store.operators.replaceOperator({ ...bob, etag: 'again' }, bob.etag), /etag does not match/);
}

describe('schema v14: operators and role assignments move from documents to rows', () => {
  it('on SQLite', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-v14-'));
    const file = join(dir, 'hub.db');
    try {
      const old = new SqliteDriver(file);
      await atV13(old, async (_tx, sql) => old.exec(sql), sqliteMigrations);
      await old.close();
      const store = await openSqliteStore(file, new SecretBox(randomBytes(32)));
      try {
        await checkMoved(store);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('on PostgreSQL', async () => {
    const schema = `gh_v14_${randomBytes(5).toString('hex')}`;
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    try {
      await admin.query(`CREATE SCHEMA "${schema}"`);
      const old = new PostgresDriver({ connectionString: DATABASE_URL, schema });
      await atV13(old, async (tx, sql) => void (await tx.run(sql)), postgresMigrations);
      await old.close();
      const url = new URL(DATABASE_URL);
      url.searchParams.set('schema', schema);
      const store = await openPostgresStore(url.toString(), new SecretBox(randomBytes(32)));
      try {
        await checkMoved(store);
      } finally {
        await store.close();
      }
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  });
});
