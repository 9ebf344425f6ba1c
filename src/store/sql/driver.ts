/**
 * The smallest interface a SQL backend must offer so one store implementation (sql-store.ts) runs
 * on SQLite and PostgreSQL alike. Statements use `?` placeholders; the PostgreSQL driver numbers
 * them. Values are strings, numbers, Buffers (BLOB / BYTEA) or null; an array of those is a
 * PostgreSQL array parameter (PostgreSQL only: SQLite has no array type).
 */
export type SqlScalar = string | number | Buffer | null;
export type SqlValue = SqlScalar | readonly SqlScalar[];
export type SqlRow = Record<string, unknown>;

export interface SqlExecutor {
  all(sql: string, params?: readonly SqlValue[]): Promise<SqlRow[]>;
  /** Returns the number of rows changed. */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
}

export interface TransactionOptions {
  durable?: boolean;
}

/** One write of a `writeAll`: an INSERT, UPDATE or DELETE without RETURNING. */
export interface SqlWrite {
  sql: string;
  params: readonly SqlValue[];
}

export interface SqlDriver extends SqlExecutor {
  readonly dialect: 'sqlite' | 'postgres';
  /**
   * Runs `fn` in one transaction; statements of concurrent transactions never interleave.
   * `durable`: the commit is on disk when the promise resolves, whatever the connection's default
   * (SQLite: the WAL file fdatasynced after the commit, off the event loop; PostgreSQL:
   * synchronous_commit=on).
   */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>, opts?: TransactionOptions): Promise<T>;
  /**
   * Runs independent writes as one atomic unit and returns the rows each changed. PostgreSQL sends
   * them as one statement (data-modifying CTEs, one round trip, no BEGIN/COMMIT); so no write may
   * depend on another's effect (they all see the snapshot taken before any of them).
   */
  writeAll(writes: readonly SqlWrite[]): Promise<number[]>;
  /** True when `err` is a unique/primary-key violation. */
  isUniqueViolation(err: unknown): boolean;
  close(): Promise<void>;
}
