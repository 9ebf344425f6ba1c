/**
 * The PostgreSQL table endpoint against the real server (GATEHOUSE_TEST_DATABASE_URL, database
 * `test`): each test its own schema (dropped afterwards), reached through a TCP forwarder the test
 * can cut. Rows are read back in the order they were inserted (ctid of a fresh table).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import pg from 'pg';
import { createPostgresSink } from '../src/routing/endpoints/postgres-sink.js';
import { EndpointConfigError } from '../src/routing/endpoints/sink.js';
import { CASE_HUB, endpointSinkConformance, routedBatch, type Delivered } from '../src/routing/endpoints/sink.case.js';
import type { PostgresTableEndpoint } from '../src/routing/routing-config.js';
import { TcpProxy } from './support/tcp-proxy.js';

const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** Never checked by a trust-auth server, so never sent: it must still never show in an error. */
const PASSWORD = `pw-${randomBytes(10).toString('hex')}`;

interface Target {
  schema: string;
  admin: pg.Client;
  proxy: TcpProxy;
  config: PostgresTableEndpoint;
  rows(): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

async function target(): Promise<Target> {
  const schema = `gh_route_${randomBytes(6).toString('hex')}`;
  const db = new URL(DATABASE_URL);
  const proxy = new TcpProxy(db.hostname, Number(db.port || 5432));
  await proxy.up();
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  const via = new URL(DATABASE_URL);
  via.hostname = '127.0.0.1';
  via.port = String(proxy.port);
  via.password = PASSWORD;
  if (via.username === '') via.username = 'postgres';
  return {
    schema,
    admin,
    proxy,
    config: { name: `pg-${schema}`, connectionString: via.toString(), table: `${schema}.telemetry` },
    rows: async () => (await admin.query(`SELECT * FROM "${schema}".telemetry ORDER BY ctid`)).rows as Record<string, unknown>[],
    async close() {
      await proxy.down();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    },
  };
}

const deps = { hubName: CASE_HUB, timeoutMs: 3000 };

endpointSinkConformance('PostgreSQL table', async () => {
  const t = await target();
  return {
    open: (over) => createPostgresSink(t.config, { ...deps, ...over }),
    received: async (): Promise<Delivered[]> =>
      (await t.rows()).map((r) => ({
        partition: r.partition as number,
        sequenceNumber: Number(r.sequence_number),
        deviceId: r.device_id as string,
        body: r.body as Buffer,
        properties: { ...(r.properties as Record<string, string>), ...(r.enrichments as Record<string, string>) },
        systemProperties: r.system_properties as Record<string, string>,
      })),
    dedupes: true,
    down: () => t.proxy.down(),
    up: () => t.proxy.up(),
    downReason: /ECONNREFUSED|Connection terminated|ECONNRESET|timeout/i,
    endpointName: t.config.name,
    secrets: [PASSWORD],
    close: () => t.close(),
  };
});

describe('PostgreSQL table endpoint', () => {
  it('creates the schema and table as documented, with body_json for JSON bodies', async () => {
    const t = await target();
    const sink = createPostgresSink(t.config, deps);
    try {
      await sink.deliver(routedBatch(0, 0, 2));
      const cols = await t.admin.query(
        `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'telemetry' ORDER BY ordinal_position`,
        [t.schema],
      );
      assert.deepEqual(
        cols.rows.map((c: { column_name: string; data_type: string }) => `${c.column_name} ${c.data_type}`),
        [
          'iothub text',
          'partition integer',
          'sequence_number bigint',
          'log_offset text',
          'enqueued_time timestamp with time zone',
          'device_id text',
          'module_id text',
          'body bytea',
          'body_json jsonb',
          'properties jsonb',
          'system_properties jsonb',
          'enrichments jsonb',
          'delivered_at timestamp with time zone',
        ],
      );
      const rows = await t.rows();
      assert.deepEqual(rows[0]!.body_json, { temp: 21.5, n: 0, text: 'é ü line1\nline2' });
      assert.equal(rows[1]!.body_json, null, 'a binary body has no body_json');
      assert.equal(rows[0]!.iothub, CASE_HUB);
      assert.equal(rows[0]!.log_offset, '0');
      assert.equal((rows[0]!.enqueued_time as Date).toISOString(), routedBatch(0, 0, 1)[0]!.record.enqueuedTime);
      // A query on the body, the point of body_json.
      const hot = await t.admin.query(`SELECT sequence_number FROM "${t.schema}".telemetry WHERE (body_json->>'temp')::float > 20`);
      assert.deepEqual(hot.rows.map((r: { sequence_number: string }) => Number(r.sequence_number)), [0]);
    } finally {
      await sink.close();
      await t.close();
    }
  });

  it('two sinks creating the table at once both deliver; a table dropped meanwhile is created again', async () => {
    const t = await target();
    const a = createPostgresSink(t.config, deps);
    const b = createPostgresSink(t.config, deps);
    try {
      await Promise.all([a.deliver(routedBatch(0, 0, 3)), b.deliver(routedBatch(1, 0, 3))]);
      assert.equal((await t.rows()).length, 6);
      await t.admin.query(`DROP TABLE "${t.schema}".telemetry`);
      await assert.rejects(a.deliver(routedBatch(0, 3, 1)), /does not exist/);
      await a.deliver(routedBatch(0, 3, 1));
      assert.deepEqual(
        (await t.rows()).map((r) => `${String(r.partition)}/${String(r.sequence_number)}`),
        ['0/3'],
      );
    } finally {
      await a.close();
      await b.close();
      await t.close();
    }
  });

  it('the dispatchers of two nodes creating one new table at once all deliver (40 new tables)', async () => {
    // Each of two nodes' sinks delivers four partitions at once to a table nobody made yet: one
    // CREATE TABLE IF NOT EXISTS wins, the others lose a race PostgreSQL reports as an error (seen
    // in CI: 42710, the table's row type "already exists"). A lost race is not a failed delivery.
    const t = await target();
    try {
      for (let i = 0; i < 40; i++) {
        const config = { ...t.config, table: `${t.schema}.telemetry_${i}` };
        const sinks = [createPostgresSink(config, deps), createPostgresSink(config, deps)];
        try {
          const results = await Promise.allSettled([0, 1, 2, 3].flatMap((p) => sinks.map((s, n) => s.deliver(routedBatch(p, n * 10, 2)))));
          assert.deepEqual(results.filter((r) => r.status === 'rejected'), [], `table ${i}`);
          const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM "${t.schema}".telemetry_${i}`);
          assert.equal((rows[0] as { n: number }).n, 16);
        } finally {
          for (const s of sinks) await s.close();
        }
      }
    } finally {
      await t.close();
    }
  });

  it("rejects with PostgreSQL's reason when an existing table has other columns", async () => {
    const t = await target();
    await t.admin.query(`CREATE SCHEMA "${t.schema}"`);
    await t.admin.query(`CREATE TABLE "${t.schema}".telemetry (id serial primary key, payload text)`);
    const sink = createPostgresSink(t.config, deps);
    try {
      await assert.rejects(sink.deliver(routedBatch(0, 0, 1)), /column "iothub" of relation "telemetry" does not exist/);
    } finally {
      await sink.close();
      await t.close();
    }
  });

  it('refuses bad configs with the reason', () => {
    const base: PostgresTableEndpoint = { name: 'p', connectionString: 'postgres://u@127.0.0.1/db', table: 'telemetry' };
    const refused = (over: Record<string, unknown>, why: RegExp) =>
      assert.throws(
        () => createPostgresSink({ ...base, ...over } as PostgresTableEndpoint, deps),
        (e: unknown) => e instanceof EndpointConfigError && why.test(e.message),
      );
    refused({ table: 'Telemetry' }, /table: a lower-case table name/);
    refused({ table: 'a.b.c' }, /table: /);
    refused({ table: 'x; drop table y' }, /table: /);
    refused({ connectionString: 'mysql://u@h/db' }, /connectionString: a postgres:\/\/ URL/);
  });
});
