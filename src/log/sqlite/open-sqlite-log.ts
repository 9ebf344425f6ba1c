/**
 * The event log on SQLite (decision 0008): in a file of its own (`log.db` in the data dir),
 * written by a worker thread that owns the write connection (log-worker.ts), read on the main
 * thread through a second connection (WAL: readers never wait for the writer, nor it for them).
 * A commit and its fdatasync cost the writer thread, never the event loop that serves the sockets;
 * a second connection writing the store's file instead would make the store's own writes on the
 * main thread sleep in SQLite's busy handler whenever the log held the lock.
 *
 * Numbering, reads, tails, wake-ups and retention are the SQL log's (sql/sql-log.ts): it is that
 * log with its writes handed to the thread. The thread's answer arrives after the commit (and the
 * sync), so tails woken then read what was appended.
 */
import type { Worker } from 'node:worker_threads';
import { SqliteDriver } from '../../store/sqlite/sqlite-driver.js';
import { openSqlEventLog, type SqlEventLog, type SqlEventLogOptions, type SqlLogWriter } from '../sql/sql-log.js';
import { moveLogFromStore, prepareLogFile } from './log-file.js';
import type { WriterEvent } from './log-worker-protocol.js';
import { LogWorkerClient } from './log-worker-client.js';

/** The log's file name in the data dir. */
export const LOG_FILE = 'log.db';

export interface SqliteLogOptions extends Omit<SqlEventLogOptions, 'writer'> {
  /** The log's database file. */
  file: string;
  /** A hub made before kept its log in the store's file: moved from there at the first start. */
  store?: { driver: SqliteDriver; file: string };
  /** Records moved from the store's file (once, at the first start after an upgrade). */
  onMoved?: (records: number) => void;
  /** The writer thread stopped unasked: its pending appends failed with ServiceUnavailable. */
  onWriterFailure?: (err: Error) => void;
  /** Tests: each commit and sync of the writer thread, before the appends they made durable resolve. */
  observe?: (event: WriterEvent) => void;
  /** Tests: each writer thread started. */
  onWriterStart?: (worker: Worker) => void;
}

export async function openSqliteLog(opts: SqliteLogOptions): Promise<SqlEventLog> {
  const reader = new SqliteDriver(opts.file);
  try {
    await prepareLogFile(reader);
    if (opts.store !== undefined) {
      const moved = await moveLogFromStore(reader, opts.store.driver, opts.store.file);
      if (moved > 0) opts.onMoved?.(moved);
    }
    const client = new LogWorkerClient({
      file: opts.file,
      sync: opts.sync !== false,
      ...(opts.observe === undefined ? {} : { observe: opts.observe }),
      ...(opts.onWriterFailure === undefined ? {} : { onFailure: opts.onWriterFailure }),
      ...(opts.onWriterStart === undefined ? {} : { onStart: opts.onWriterStart }),
    });
    const writer: SqlLogWriter = {
      append: (messages, partitions, now) => client.append(messages, partitions, now),
      deleteRange: (partition, from, to) => client.deleteRange(partition, from, to),
      // The log closes its writer last: then the reading connection can go too.
      close: async () => {
        await client.close();
        await reader.close();
      },
    };
    // Creating the partitions' rows goes through `reader`: the writer thread starts with the first write.
    return await openSqlEventLog(reader, { ...opts, writer });
  } catch (err) {
    await reader.close();
    throw err;
  }
}
