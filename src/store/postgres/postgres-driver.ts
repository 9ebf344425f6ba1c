import pg from 'pg';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue, SqlWrite, TransactionOptions } from '../sql/driver.js';

/** Numbers `?` placeholders as `$1..$n` (our SQL never has a literal `?`). */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/**
 * Statements prepared by name: each connection parses and plans one once, then only binds and
 * executes it (PostgreSQL keeps the plan). Only statements with parameters are named (the fixed
 * ones a hub repeats); a text with more than MAX_NAMED_PARAMS (multi-row inserts, whose row count
 * varies) or past the first MAX_NAMED texts runs unnamed, so no connection holds an unbounded set.
 * A name is never reused for another text (pg refuses that).
 */
const MAX_NAMED = 256;
const MAX_NAMED_PARAMS = 64;

interface Prepared {
  text: string;
  name: string | undefined;
}

/** pg's default pool size, kept: measured best with the hub and PostgreSQL on one 2-core machine (docs/benchmarks.md). */
const DEFAULT_POOL_SIZE = 10;

export interface PostgresOptions {
  connectionString: string;
  /** Schema to create and use (search_path); lets test runs and several hubs share one database. */
  schema?: string;
  /** Connections in the pool (`?pool_size=N` in the URL); default 10. */
  poolSize?: number;
}

export function quoteIdent(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid PostgreSQL schema name '${name}'`);
  return `"${name}"`;
}

/**
 * Splits `?schema=NAME` and `?pool_size=N` off a database URL; pg does not know those parameters, we do.
 */
export function parsePostgresUrl(url: string): PostgresOptions {
  const u = new URL(url);
  const schema = u.searchParams.get('schema') ?? undefined;
  const pool = u.searchParams.get('pool_size') ?? undefined;
  u.searchParams.delete('schema');
  u.searchParams.delete('pool_size');
  const opts: PostgresOptions = { connectionString: u.toString() };
  if (schema !== undefined) opts.schema = schema;
  if (pool !== undefined) {
    const n = Number(pool);
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new Error(`invalid PostgreSQL pool_size '${pool.slice(0, 20)}': a whole number from 1 to 1000`);
    opts.poolSize = n;
  }
  return opts;
}

export class PostgresDriver implements SqlDriver {
  readonly dialect = 'postgres' as const;
  readonly #pool: pg.Pool;
  readonly schema: string | undefined;
  readonly #prepared = new Map<string, Prepared>();

  constructor(opts: PostgresOptions) {
    this.schema = opts.schema;
    this.#pool = new pg.Pool({
      connectionString: opts.connectionString,
      max: opts.poolSize ?? DEFAULT_POOL_SIZE,
      ...(opts.schema === undefined ? {} : { options: `-c search_path=${quoteIdent(opts.schema)}` }),
    });
    // An idle client losing its connection must not crash the process; the pool replaces it.
    this.#pool.on('error', () => undefined);
  }

  /** The query config for `sql`: numbered placeholders, a statement name when it qualifies. */
  #config(sql: string, params: readonly SqlValue[]): pg.QueryConfig<SqlValue[]> {
    let p = this.#prepared.get(sql);
    if (p === undefined) {
      const named = params.length > 0 && params.length <= MAX_NAMED_PARAMS && this.#prepared.size < MAX_NAMED;
      p = { text: numbered(sql), name: named ? `gh_${this.#prepared.size}` : undefined };
      // Unnamed texts are remembered too (their numbering), up to a bound of their own.
      if (named || this.#prepared.size < MAX_NAMED) this.#prepared.set(sql, p);
    }
    return p.name === undefined ? { text: p.text, values: params as SqlValue[] } : { name: p.name, text: p.text, values: params as SqlValue[] };
  }

  async all(sql: string, params: readonly SqlValue[] = []): Promise<SqlRow[]> {
    const res = await this.#pool.query(this.#config(sql, params));
    return res.rows as SqlRow[];
  }

  async run(sql: string, params: readonly SqlValue[] = []): Promise<number> {
    const res = await this.#pool.query(this.#config(sql, params));
    return res.rowCount ?? 0;
  }

  /** One statement: `WITH w0 AS (write RETURNING 1), ... SELECT count(*) of each`. */
  async writeAll(writes: readonly SqlWrite[]): Promise<number[]> {
    if (writes.length === 1 && writes[0] !== undefined) return [await this.run(writes[0].sql, writes[0].params)];
    const ctes = writes.map((w, i) => `w${i} AS (${w.sql} RETURNING 1)`).join(', ');
    const counts = writes.map((_, i) => `(SELECT count(*) FROM w${i}) AS n${i}`).join(', ');
    const row = (await this.all(`WITH ${ctes} SELECT ${counts}`, writes.flatMap((w) => w.params)))[0] ?? {};
    return writes.map((_, i) => Number(row[`n${i}`] ?? 0));
  }

  async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
    const client = await this.#pool.connect();
    const tx: SqlExecutor = {
      all: async (sql, params = []) => (await client.query(this.#config(sql, params))).rows as SqlRow[],
      run: async (sql, params = []) => (await client.query(this.#config(sql, params))).rowCount ?? 0,
    };
    try {
      await client.query('BEGIN');
      // A server or role configured with synchronous_commit=off would acknowledge before the WAL flush.
      if (opts.durable === true) await client.query('SET LOCAL synchronous_commit = on');
      const result = await fn(tx);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  isUniqueViolation(err: unknown): boolean {
    return (err as { code?: unknown } | null)?.code === '23505';
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
