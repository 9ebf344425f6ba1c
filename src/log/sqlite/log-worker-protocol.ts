/**
 * What the main thread and the SQLite log's writer thread (log-worker.ts) say to each other over
 * one MessageChannel. A batch goes over as flat arrays: per message its partition, five strings
 * (device id, module id, the two property maps and the endpoint set as stored JSON text, the
 * endpoint set null when absent) and the end of its body in one buffer of bodies, which is
 * transferred, not copied. The answer for a batch is one Float64Array, three numbers per message
 * (sequence number, byte position, enqueued time in epoch ms), also transferred; one `done`
 * message answers everything the writer committed (and synced) together.
 */

/** Strings per message in AppendRequest.strs. */
export const STRS_PER_MESSAGE = 5;
/** Numbers per message in Outcome.placed. */
export const PLACED_PER_MESSAGE = 3;

export interface AppendRequest {
  t: 'append';
  id: number;
  /** Epoch milliseconds: the enqueued time, unless the partition's last one is later. */
  now: number;
  parts: Uint8Array;
  strs: (string | null)[];
  /** Where each message's body ends in `bodies`. */
  ends: Uint32Array;
  bodies: ArrayBuffer;
}

/** Retention: deletes a partition's records with from <= seq < to. */
export interface DeleteRequest {
  t: 'delete';
  id: number;
  part: number;
  from: number;
  to: number;
}

export interface CloseRequest {
  t: 'close';
}

export type WorkerRequest = AppendRequest | DeleteRequest | CloseRequest;

export interface Outcome {
  id: number;
  placed?: Float64Array;
  deleted?: number;
  error?: { message: string; code?: string };
}

/** What the writer did, for tests that hold the log to its durability (only when asked for). */
export type WriterEvent = { kind: 'commit' } | { kind: 'synced'; file: 'wal' | 'dir' };

export type WorkerReply = { t: 'done'; outcomes: Outcome[] } | { t: 'observed'; event: WriterEvent } | { t: 'closed' };

export interface WorkerConfig {
  file: string;
  sync: boolean;
  observe: boolean;
}
