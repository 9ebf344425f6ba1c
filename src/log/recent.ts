/**
 * The records this node appended last, per partition, kept in memory for the live readers that keep
 * up (issue 17: device → Event Hubs consumer latency at 10k msgs/s): the Event Hubs-compatible
 * endpoint's receivers, `GET /events` and the custom endpoints' dispatchers read what was just
 * appended from here, instead of reading it back from the store and decoding it again.
 *
 * It answers a read only when it holds the record asked for, and then only records it holds, in
 * order and without a gap; anything else (a reader behind the window, a partition another node
 * appended to meanwhile, a position from before this node started) is read from the store. Records
 * enter once their append committed, in sequence order; a batch that does not continue the window
 * (another node appended in between, or two appends finished out of order) starts a new window, so a
 * window never has a gap and never holds a record the store does not. Bounded per partition by a
 * record count and by body bytes; the oldest go first, and what retention removes from the store goes
 * from here first. The log keeps records here only while a tail runs on it (no reader, no cost on the
 * append path).
 */
import type { LogRecord } from './log-ports.js';

/**
 * Per partition: a reader that keeps up is a commit or a credit window behind (tens to hundreds of
 * records). Kept small: records kept longer outlive the young generation and cost the collector.
 */
export const RECENT_MAX_RECORDS = 512;
export const RECENT_MAX_BYTES = 1024 * 1024;

interface Window {
  /** The first record's sequence number. */
  first: number;
  records: LogRecord[];
  bytes: number;
}

export class RecentRecords {
  readonly #windows: Array<Window | undefined>;

  constructor(
    partitionCount: number,
    private readonly maxRecords = RECENT_MAX_RECORDS,
    private readonly maxBytes = RECENT_MAX_BYTES,
  ) {
    this.#windows = new Array<Window | undefined>(partitionCount).fill(undefined);
  }

  /** A partition's records of one committed append, consecutive sequence numbers, oldest first. */
  add(partition: number, records: readonly LogRecord[]): void {
    const head = records[0];
    if (head === undefined) return;
    let w = this.#windows[partition];
    if (w === undefined || w.first + w.records.length !== head.sequenceNumber) {
      w = { first: head.sequenceNumber, records: [], bytes: 0 };
      this.#windows[partition] = w;
    }
    for (const r of records) {
      w.records.push(r);
      w.bytes += r.body.length;
    }
    let drop = Math.max(0, w.records.length - this.maxRecords);
    let bytes = w.bytes;
    for (let i = 0; i < drop; i++) bytes -= (w.records[i] as LogRecord).body.length;
    while (bytes > this.maxBytes && drop < w.records.length - 1) bytes -= (w.records[drop++] as LogRecord).body.length;
    if (drop > 0) {
      w.records.splice(0, drop);
      w.first += drop;
      w.bytes = bytes;
    }
  }

  /** Up to `limit` records from sequence number `from` on, when the window holds `from`; undefined when not (read the store). */
  read(partition: number, from: number, limit: number): LogRecord[] | undefined {
    const w = this.#windows[partition];
    if (w === undefined || from < w.first || from >= w.first + w.records.length) return undefined;
    const i = from - w.first;
    return w.records.slice(i, i + limit);
  }

  /** Forgets a partition's records before `seq` (retention removes them from the store). */
  dropBefore(partition: number, seq: number): void {
    const w = this.#windows[partition];
    if (w === undefined || seq <= w.first) return;
    const drop = Math.min(seq - w.first, w.records.length);
    for (let i = 0; i < drop; i++) w.bytes -= (w.records[i] as LogRecord).body.length;
    w.records.splice(0, drop);
    w.first += drop;
    if (w.records.length === 0) this.#windows[partition] = undefined;
  }

  /** Forgets everything (no reader left). */
  clear(): void {
    this.#windows.fill(undefined);
  }
}
