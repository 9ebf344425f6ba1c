import { closeSync, fdatasync as fdatasyncFd, openSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue, TransactionOptions } from '../sql/driver.js';

/**
 * better-sqlite3 behind the async SqlDriver port. WAL journal, synchronous=NORMAL (a process crash
 * loses no committed transaction; a power cut may roll back the last few), foreign keys on,
 * prepared statements cached by text.
 *
 * better-sqlite3 is synchronous, so a transaction would only interleave with another one at an
 * `await` inside `fn`; a promise chain serializes transactions to rule that out.
 *
 * A durable transaction commits like any other (its WAL frames written to the OS), then syncs the
 * WAL file to disk off the event loop (an fdatasync on libuv's thread pool) before it resolves:
 * what synchronous=FULL does at COMMIT, without stalling every connection of the hub for the
 * disk's flush. Durable commits made while a sync runs share the next one (group sync).
 */
export interface SqliteDriverOptions {
  /** Syncs a file to disk (default: fdatasync on a descriptor kept open); tests count the calls. */
  syncFile?: (path: string) => Promise<void>;
}

/**
 * fdatasync on the thread pool, through a descriptor opened once per file: SQLite keeps its WAL
 * file (same inode) for as long as a connection is open, and this driver's is until close().
 */
function fileSyncer(): { sync: (path: string) => Promise<void>; close: () => void } {
  const fds = new Map<string, number>();
  return {
    sync: (path) =>
      new Promise<void>((resolve, reject) => {
        let fd = fds.get(path);
        if (fd === undefined) {
          fd = openSync(path, 'r');
          fds.set(path, fd);
        }
        fdatasyncFd(fd, (err) => (err === null ? resolve() : reject(err)));
      }),
    close: () => {
      for (const fd of fds.values()) closeSync(fd);
      fds.clear();
    },
  };
}

export class SqliteDriver implements SqlDriver {
  readonly dialect = 'sqlite' as const;
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();
  #txChain: Promise<unknown> = Promise.resolve();
  #inTx = false;
  readonly #file: string;
  readonly #syncFile: (path: string) => Promise<void>;
  readonly #closeSyncer: () => void;
  #syncing: Promise<void> | undefined;
  #nextSync: Promise<void> | undefined;
  #dirSynced = false;

  constructor(file: string, opts: SqliteDriverOptions = {}) {
    this.#file = file;
    const syncer = fileSyncer();
    this.#syncFile = opts.syncFile ?? syncer.sync;
    this.#closeSyncer = syncer.close;
    // Created 0600 here, whatever the umask: SQLite gives the -wal and -shm files it creates the
    // database file's mode.
    if (file !== ':memory:') closeSync(openSync(file, 'a', 0o600));
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('foreign_keys = ON');
    this.#db.pragma('busy_timeout = 5000');
  }

  /** The database file (or ':memory:'). */
  get file(): string {
    return this.#file;
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
        this.#db.exec('BEGIN IMMEDIATE');
        const result = await fn(tx);
        this.#db.exec('COMMIT');
        return result;
      } catch (err) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw err;
      } finally {
        this.#inTx = false;
      }
    });
    this.#txChain = next;
    // The next transaction need not wait for this one's sync: only this caller does.
    return opts.durable === true ? next.then(async (r) => (await this.#syncWal(), r)) : next;
  }

  /** Resolves once every commit made before the call is on disk. */
  #syncWal(): Promise<void> {
    if (this.#file === ':memory:') return Promise.resolve();
    if (this.#syncing === undefined) {
      const run = this.#syncOnce().finally(() => {
        if (this.#syncing === run) this.#syncing = undefined;
      });
      this.#syncing = run;
      return run;
    }
    // A sync is running, maybe from before this commit: the next one starts when it ends.
    const again = (): Promise<void> => {
      this.#nextSync = undefined;
      return this.#syncWal();
    };
    this.#nextSync ??= this.#syncing.then(again, again);
    return this.#nextSync;
  }

  async #syncOnce(): Promise<void> {
    await this.#syncFile(`${this.#file}-wal`);
    // The WAL file's directory entry, once: a file created since the last boot is only found
    // after a power cut if its directory was synced too.
    if (!this.#dirSynced) {
      await this.#syncFile(dirname(this.#file));
      this.#dirSynced = true;
    }
  }

  isUniqueViolation(err: unknown): boolean {
    const code = (err as { code?: unknown } | null)?.code;
    return code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
  }

  async close(): Promise<void> {
    await this.#txChain.catch(() => undefined);
    await this.#nextSync?.catch(() => undefined);
    await this.#syncing?.catch(() => undefined);
    this.#closeSyncer();
    this.#db.close();
  }
}
