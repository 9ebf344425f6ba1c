import pg from 'pg';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue, TransactionOptions } from '../sql/driver.js';

/** Numbers `?` placeholders as `$1..$n` (our SQL never has a literal `?`). */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

export interface PostgresOptions {
  connectionString: string;
  /** Schema to create and use (search_path); lets test runs and several hubs share one database. */
  schema?: string;
  poolSize?: number;
}

export function quoteIdent(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid PostgreSQL schema name '${name}'`);
  return `"${name}"`;
}

/**
 * Splits `?schema=NAME` off a database URL; pg does not know that parameter, we do.
 */
export function parsePostgresUrl(url: string): PostgresOptions {
  const u = new URL(url);
  const schema = u.searchParams.get('schema') ?? undefined;
  u.searchParams.delete('schema');
  return schema === undefined ? { connectionString: u.toString() } : { connectionString: u.toString(), schema };
}

export class PostgresDriver implements SqlDriver {
  readonly dialect = 'postgres' as const;
  readonly #pool: pg.Pool;
  readonly schema: string | undefined;

  constructor(opts: PostgresOptions) {
    this.schema = opts.schema;
    this.#pool = new pg.Pool({
      connectionString: opts.connectionString,
      max: opts.poolSize ?? 10,
      ...(opts.schema === undefined ? {} : { options: `-c search_path=${quoteIdent(opts.schema)}` }),
    });
    // An idle client losing its connection must not crash the process; the pool replaces it.
    this.#pool.on('error', () => undefined);
  }

  async all(sql: string, params: readonly SqlValue[] = []): Promise<SqlRow[]> {
    const res = await this.#pool.query(numbered(sql), params as SqlValue[]);
    return res.rows as SqlRow[];
  }

  async run(sql: string, params: readonly SqlValue[] = []): Promise<number> {
    const res = await this.#pool.query(numbered(sql), params as SqlValue[]);
    return res.rowCount ?? 0;
  }

  async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
    const client = await this.#pool.connect();
    const tx: SqlExecutor = {
      all: async (sql, params = []) => (await client.query(numbered(sql), params as SqlValue[])).rows as SqlRow[],
      run: async (sql, params = []) => (await client.query(numbered(sql), params as SqlValue[])).rowCount ?? 0,
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
