import { closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue, TransactionOptions } from '../sql/driver.js';

/**
 * better-sqlite3 behind the async SqlDriver port. WAL journal, synchronous=NORMAL (a process crash
 * loses no committed transaction; a power cut may roll back the last few), foreign keys on,
 * prepared statements cached by text.
 *
 * better-sqlite3 is synchronous, so a transaction would only interleave with another one at an
 * `await` inside `fn`; a promise chain serializes transactions to rule that out.
 */
export class SqliteDriver implements SqlDriver {
  readonly dialect = 'sqlite' as const;
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();
  #txChain: Promise<unknown> = Promise.resolve();
  #inTx = false;

  constructor(file: string) {
    // Created 0600 here, whatever the umask: SQLite gives the -wal and -shm files it creates the
    // database file's mode.
    if (file !== ':memory:') closeSync(openSync(file, 'a', 0o600));
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('foreign_keys = ON');
    this.#db.pragma('busy_timeout = 5000');
  }

  /** Raw access for migrations. */
  exec(sql: string): void {
    this.#db.exec(sql);
  }

  #prepare(sql: string): Database.Statement {
    let st = this.#statements.get(sql);
    if (st === undefined) {
      st = this.#db.prepare(sql);
      if (this.#statements.size > 500) this.#statements.clear();
      this.#statements.set(sql, st);
    }
    return st;
  }

  #allSync(sql: string, params: readonly SqlValue[]): SqlRow[] {
    return this.#prepare(sql).all(...params) as SqlRow[];
  }

  #runSync(sql: string, params: readonly SqlValue[]): number {
    return this.#prepare(sql).run(...params).changes;
  }

  async all(sql: string, params: readonly SqlValue[] = []): Promise<SqlRow[]> {
    // Reads outside a transaction must wait for a running one so they never see half of it.
    if (this.#inTx) await this.#txChain.catch(() => undefined);
    return this.#allSync(sql, params);
  }

  async run(sql: string, params: readonly SqlValue[] = []): Promise<number> {
    if (this.#inTx) await this.#txChain.catch(() => undefined);
    return this.#runSync(sql, params);
  }

  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
    const tx: SqlExecutor = {
      all: async (sql, params = []) => this.#allSync(sql, params),
      run: async (sql, params = []) => this.#runSync(sql, params),
    };
    const next = this.#txChain.catch(() => undefined).then(async () => {
      this.#inTx = true;
      try {
        // WAL with synchronous=NORMAL syncs at checkpoints only; FULL syncs the WAL at this commit
        // (and so every earlier one). The pragma applies to the connection, so it goes back after.
        if (opts.durable === true) this.#db.pragma('synchronous = FULL');
        this.#db.exec('BEGIN IMMEDIATE');
        const result = await fn(tx);
        this.#db.exec('COMMIT');
        return result;
      } catch (err) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw err;
      } finally {
        this.#inTx = false;
        if (opts.durable === true) this.#db.pragma('synchronous = NORMAL');
      }
    });
    this.#txChain = next;
    return next;
  }

  isUniqueViolation(err: unknown): boolean {
    const code = (err as { code?: unknown } | null)?.code;
    return code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
  }

  async close(): Promise<void> {
    await this.#txChain.catch(() => undefined);
    this.#db.close();
  }
}
