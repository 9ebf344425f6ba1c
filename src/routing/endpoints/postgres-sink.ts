/**
 * The PostgreSQL table endpoint: each message one row, the table (and its schema) created on the
 * first deliver if absent, with this layout (docs/routing-endpoints.md shows it too):
 *
 *   iothub text, partition integer, sequence_number bigint   -- the key: where the hub's log put it
 *   log_offset text, enqueued_time timestamptz,
 *   device_id text, module_id text,
 *   body bytea,                 -- the exact bytes
 *   body_json jsonb,            -- the body parsed, when it is UTF-8 JSON (else NULL), for queries
 *   properties jsonb, system_properties jsonb, enrichments jsonb,
 *   delivered_at timestamptz DEFAULT now(),
 *   PRIMARY KEY (iothub, partition, sequence_number)
 *
 * Inserts are `ON CONFLICT DO NOTHING` on the key, so a batch delivered again (a retry after a
 * lost answer, a restart) adds no row twice. The hub's name is part of the key so that two hubs
 * may share a table. Each session runs with `synchronous_commit = on`: deliver resolves when the
 * rows are on disk, whatever the server's default.
 *
 * jsonb cannot hold U+0000: in `properties`, `system_properties` and `enrichments` a NUL
 * character is stored as U+FFFD, and a body holding one is left out of `body_json` (`body` keeps
 * the exact bytes). An existing table with other columns makes deliver reject with PostgreSQL's
 * reason; a table dropped while the hub runs is created again at the next deliver.
 */
import pg from 'pg';
import { postgresTableEndpoint, type PostgresTableEndpoint } from '../routing-config.js';
import { configError, parseEndpointConfig } from './config-check.js';
import { reasonOf, redact } from './envelope.js';
import type { EndpointSink, RoutedMessage } from './sink.js';
import { timeoutOf, type SinkDeps } from './sink-deps.js';

const COLUMNS = [
  'iothub',
  'partition',
  'sequence_number',
  'log_offset',
  'enqueued_time',
  'device_id',
  'module_id',
  'body',
  'body_json',
  'properties',
  'system_properties',
  'enrichments',
] as const;
/** Rows per INSERT: PostgreSQL takes at most 65,535 parameters in one statement. */
const ROWS_PER_INSERT = 1000;

export function createTableSql(schema: string | undefined, table: string): string[] {
  const name = qualified(schema, table);
  return [
    ...(schema !== undefined ? [`CREATE SCHEMA IF NOT EXISTS "${schema}"`] : []),
    `CREATE TABLE IF NOT EXISTS ${name} (
      iothub text NOT NULL,
      partition integer NOT NULL,
      sequence_number bigint NOT NULL,
      log_offset text NOT NULL,
      enqueued_time timestamptz NOT NULL,
      device_id text NOT NULL,
      module_id text,
      body bytea NOT NULL,
      body_json jsonb,
      properties jsonb NOT NULL,
      system_properties jsonb NOT NULL,
      enrichments jsonb NOT NULL,
      delivered_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (iothub, partition, sequence_number)
    )`,
  ];
}

function qualified(schema: string | undefined, table: string): string {
  return schema !== undefined ? `"${schema}"."${table}"` : `"${table}"`;
}

function noNul(o: Record<string, string>): string {
  return JSON.stringify(o).replace(/\\u0000/g, '\\ufffd');
}

function bodyJson(body: Buffer): string | null {
  if (body.length === 0 || body.includes(0)) return null;
  const text = body.toString('utf8');
  if (Buffer.byteLength(text) !== body.length || text.includes('\ufffd')) return null;
  try {
    JSON.parse(text);
  } catch {
    return null;
  }
  return /\\u0000/.test(text) ? null : text;
}

function checkConfig(raw: PostgresTableEndpoint): { config: PostgresTableEndpoint; schema: string | undefined; table: string; url: URL } {
  const config = parseEndpointConfig(postgresTableEndpoint, raw, 'postgresTables');
  let url: URL;
  try {
    url = new URL(config.connectionString);
  } catch {
    throw configError('postgresTables', config.name, 'connectionString is not a URL');
  }
  const [a, b] = config.table.split('.');
  return { config, schema: b === undefined ? undefined : a, table: b ?? a!, url };
}

/** Error codes after which the table is checked (and created) again: undefined table or column. */
const TABLE_GONE = new Set(['42P01', '3F000', '42703']);
/**
 * A concurrent CREATE ... IF NOT EXISTS (another node's sink) lost the race: the object exists, which
 * is all we wanted. PostgreSQL says so as a unique violation in its catalog, a duplicate schema or
 * table, or a duplicate object: the table's row type (42710, "type ... already exists").
 */
const CREATE_RACE = new Set(['23505', '42P06', '42P07', '42710']);

export function createPostgresSink(raw: PostgresTableEndpoint, deps: SinkDeps): EndpointSink {
  const { config, schema, table, url } = checkConfig(raw);
  const where = `postgresTables '${config.name}' (${url.hostname}:${url.port || '5432'}${url.pathname}, table ${config.table})`;
  const secrets = [decodeURIComponent(url.password), url.password];
  const timeoutMs = timeoutOf(deps);
  let pool: pg.Pool | undefined;
  let tableReady = false;
  /** The table being checked or created: the partition dispatchers sharing this sink wait for one. */
  let creating: Promise<void> | undefined;
  let closed = false;

  const fail = (err: unknown): Error => new Error(redact(`${where}: ${reasonOf(err)}`, secrets));

  function poolOf(): pg.Pool {
    if (pool !== undefined) return pool;
    const p = new pg.Pool({
      connectionString: config.connectionString,
      // The engine shares one sink among the endpoint's partition dispatchers: a connection each, up to 4.
      max: 4,
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs,
      idleTimeoutMillis: 30_000,
      options: '-c synchronous_commit=on',
    });
    // An idle connection that breaks is dropped by the pool; the next deliver opens another.
    p.on('error', () => undefined);
    // A checked-out connection that breaks also emits 'error' besides failing its query: the query's failure is the report.
    p.on('connect', (client) => client.on('error', () => undefined));
    pool = p;
    return p;
  }

  async function ensureTable(client: pg.PoolClient): Promise<void> {
    if (tableReady) return;
    creating ??= createTable(client).finally(() => (creating = undefined));
    await creating;
  }

  async function createTable(client: pg.PoolClient): Promise<void> {
    for (const sql of createTableSql(schema, table)) {
      try {
        await client.query(sql);
      } catch (err) {
        if (!CREATE_RACE.has((err as { code?: string }).code ?? '')) throw err;
      }
    }
    tableReady = true;
  }

  async function insert(client: pg.PoolClient, batch: readonly RoutedMessage[]): Promise<void> {
    for (let i = 0; i < batch.length; i += ROWS_PER_INSERT) {
      const rows = batch.slice(i, i + ROWS_PER_INSERT);
      const params: unknown[] = [];
      const tuples = rows.map((m) => {
        const r = m.record;
        const base = params.length;
        params.push(
          deps.hubName,
          r.partition,
          r.sequenceNumber,
          r.offset,
          r.enqueuedTime,
          r.deviceId,
          r.moduleId,
          r.body,
          bodyJson(r.body),
          noNul(r.properties),
          noNul(r.systemProperties),
          noNul(m.enrichments),
        );
        return `(${COLUMNS.map((_, j) => `$${base + j + 1}`).join(', ')})`;
      });
      await client.query(
        `INSERT INTO ${qualified(schema, table)} (${COLUMNS.join(', ')}) VALUES ${tuples.join(', ')} ON CONFLICT (iothub, partition, sequence_number) DO NOTHING`,
        params,
      );
    }
  }

  return {
    async deliver(batch: readonly RoutedMessage[]): Promise<void> {
      if (closed) throw new Error(`${where}: closed`);
      if (batch.length === 0) return;
      let client: pg.PoolClient;
      try {
        client = await poolOf().connect();
      } catch (err) {
        throw fail(err);
      }
      try {
        await ensureTable(client);
        await insert(client, batch);
        client.release();
      } catch (err) {
        const code = (err as { code?: string }).code ?? '';
        if (TABLE_GONE.has(code)) tableReady = false;
        // A broken or timed-out connection is destroyed, not put back: the next deliver opens a new one.
        client.release(err instanceof pg.DatabaseError ? undefined : (err as Error));
        throw fail(err);
      }
    },
    async close(): Promise<void> {
      closed = true;
      const p = pool;
      pool = undefined;
      if (p !== undefined) await p.end().catch(() => undefined);
    },
  };
}
