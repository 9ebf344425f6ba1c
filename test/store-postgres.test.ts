import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import pg from 'pg';
import { SecretBox } from '../src/core/secret-box.js';
import { storeConformance, type StoreHarness } from '../src/store/store.case.js';
import { c2dStoreConformance } from '../src/store/c2d-store.case.js';
import { certificateStoreConformance } from '../src/store/certificate-store.case.js';
import { enrollmentStoreConformance } from '../src/store/enrollment-store.case.js';
import { authorityStoreConformance } from '../src/store/authority-store.case.js';
import { auditStoreConformance } from '../src/store/audit-store.case.js';
import { operatorStoreConformance } from '../src/store/operator-store.case.js';
import { counterStoreConformance } from '../src/store/counter-store.case.js';
import { configurationStoreConformance } from '../src/store/configuration-store.case.js';
import { jobStoreConformance } from '../src/store/job-store.case.js';
import { openPostgresStore } from '../src/store/postgres/open-postgres-store.js';
import { postgresMigrations } from '../src/store/migrations/postgres.js';
import { makeDevice, makeTwin } from '../src/store/store.case.js';
import type { SqlStore } from '../src/store/sql/sql-store.js';
import { writeAllConformance } from './support/sql-driver-case.js';

const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A store in a schema of its own, dropped at close, so runs never see each other's rows. */
async function openSqlStore(query: Record<string, string> = {}): Promise<{ store: SqlStore; schema: string; close(): Promise<void> }> {
  const schema = `gh_test_${randomBytes(6).toString('hex')}`;
  const url = new URL(DATABASE_URL);
  url.searchParams.set('schema', schema);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const store = await openPostgresStore(url.toString(), new SecretBox(randomBytes(32)));
  return {
    store,
    schema,
    async close() {
      await store.close();
      const admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
      await admin.end();
    },
  };
}

async function openHarness(): Promise<StoreHarness> {
  const { store, schema, close } = await openSqlStore();
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  return {
    store,
    async rawContent() {
      const parts: string[] = [];
      for (const table of ['devices', 'modules', 'twins', 'policies', 'meta', 'dps_enrollments', 'dps_enrollment_groups', 'dps_registrations', 'ca_keys', 'issued_certificates']) {
        const res = await admin.query(`SELECT * FROM "${schema}"."${table}"`);
        parts.push(JSON.stringify(res.rows));
      }
      return parts.join('\n');
    },
    async close() {
      await admin.end();
      await close();
    },
  };
}

storeConformance('postgres', openHarness);
c2dStoreConformance('postgres', openHarness);
certificateStoreConformance('postgres', openHarness);
enrollmentStoreConformance('postgres', openHarness);
authorityStoreConformance('postgres', openHarness);
auditStoreConformance('postgres', openHarness);
operatorStoreConformance('postgres', openHarness);
counterStoreConformance('postgres', openHarness);
configurationStoreConformance('postgres', openHarness);
jobStoreConformance('postgres', openHarness);

writeAllConformance('postgres', () => openSqlStore());

describe('registry statements on PostgreSQL', () => {
  it('a device create is one statement, and each statement is prepared once per connection', async () => {
    // pool_size=1: every statement below runs on the one connection whose prepared statements we read.
    const h = await openSqlStore({ pool_size: '1' });
    try {
      for (let i = 0; i < 6; i++) {
        await h.store.createDevice(makeDevice(`prep-${i}`), makeTwin(`prep-${i}`));
        assert.equal((await h.store.getDevice(`prep-${i}`))?.deviceId, `prep-${i}`);
      }
      const rows = (await h.store.sqlDriver.all(
        "SELECT statement, generic_plans + custom_plans AS runs FROM pg_prepared_statements WHERE statement LIKE '%devices%'",
      )) as Array<{ statement: string; runs: string }>;
      const runs = (prefix: string) => rows.filter((r) => r.statement.startsWith(prefix)).map((r) => Number(r.runs));
      // Both inserts travel as one statement (no BEGIN/COMMIT round trips), parsed once, run six times.
      assert.deepEqual(runs('WITH w0 AS (INSERT INTO devices'), [6]);
      assert.deepEqual(runs('SELECT device_id, generation_id'), [6]);
    } finally {
      await h.close();
    }
  });

  it('refuses a pool_size that is not a whole number from 1 to 1000', async () => {
    await assert.rejects(openSqlStore({ pool_size: '0' }), /invalid PostgreSQL pool_size '0'/);
    await assert.rejects(openSqlStore({ pool_size: 'ten' }), /invalid PostgreSQL pool_size 'ten'/);
  });
});

describe('migrations on PostgreSQL', () => {
  it('twelve nodes opening one empty schema at once: all open, each migration applied once', async () => {
    const schema = `gh_mig_${randomBytes(6).toString('hex')}`;
    const url = new URL(DATABASE_URL);
    url.searchParams.set('schema', schema);
    const box = new SecretBox(randomBytes(32));
    const opened = await Promise.allSettled(Array.from({ length: 12 }, () => openPostgresStore(url.toString(), box)));
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    try {
      assert.deepEqual(opened.flatMap((o) => (o.status === 'rejected' ? [String(o.reason)] : [])), []);
      const rows = await admin.query(`SELECT version, COUNT(*)::int AS n FROM "${schema}".schema_migrations GROUP BY version ORDER BY version`);
      assert.deepEqual(rows.rows.map((r: { version: number; n: number }) => [r.version, r.n]), postgresMigrations.map((m) => [m.version, 1]));
      // v17: the partitioned log is the only event stream; the old global-seq table is gone.
      const tables = await admin.query<{ events: boolean; log: boolean }>(
        `SELECT to_regclass('"${schema}".events') IS NOT NULL AS events, to_regclass('"${schema}".log_records') IS NOT NULL AS log`,
      );
      assert.deepEqual(tables.rows[0], { events: false, log: true });
    } finally {
      for (const o of opened) if (o.status === 'fulfilled') await o.value.close();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  });
});
