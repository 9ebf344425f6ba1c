/**
 * The records this node appended last, kept per partition for the tails that have caught up with
 * the log: a live reader (the Event Hubs endpoint, a routing dispatcher) woken by an append takes
 * the records from here instead of reading them back from the database and parsing their
 * properties again. Profiled at 10k msgs/s with a reader and a files endpoint, those reads were a
 * sixth of the main thread.
 *
 * Only for a log with one writer (SQLite through its writer thread: records reach `add` in
 * sequence order, as they were committed). What is here is always a contiguous run of a partition,
 * [first, first + length), ending at the last record this node knows was committed; a read outside
 * it (a reader behind, or a run broken because no tail was there to want it) goes to the database.
 * Records are kept only while a tail of their partition runs: at most `capacity` per partition and
 * `maxBytes` of bodies (each record its own copy, so dropped records free their bytes), and only
 * until every tail of the partition has read them. Tails that keep up read each record within
 * milliseconds, so a record dies young instead of living through two scavenges into the old
 * generation (at 2.5k msgs/s a partition the 2,048 kept were 0.8 s of records: most of what the
 * hub promoted, and so of its mark-compacts). A tail that has not read a batch yet, or one that
 * falls behind, keeps records up to the capacity as before.
 */
import type { LogMessage, LogPlacement, LogRecord } from './log-ports.js';

/** Where one tail reads next: undefined until its first batch. */
interface TailAt {
  next: number | undefined;
}

interface Run {
  /** Sequence number of records[start]. */
  first: number;
  records: LogRecord[];
  start: number;
  /** Body bytes of records[start..]. */
  bytes: number;
}

export const FRESH_RECORDS_PER_PARTITION = 2048;
/** Body bytes kept per partition: 2,048 messages of 256 KB would otherwise be 512 MiB. */
export const FRESH_BYTES_PER_PARTITION = 4 * 1024 * 1024;

export class FreshRecords {
  readonly #runs = new Map<number, Run>();
  readonly #tails = new Map<number, Set<TailAt>>();
  /** Per partition: every tail has read the records before this sequence number (absent while one has not read yet). */
  readonly #floor = new Map<number, number>();

  constructor(
    private readonly capacity = FRESH_RECORDS_PER_PARTITION,
    private readonly maxBytes = FRESH_BYTES_PER_PARTITION,
  ) {}

  /** Whether a tail of the partition runs (its records are worth keeping). */
  wanted(partition: number): boolean {
    return (this.#tails.get(partition)?.size ?? 0) > 0;
  }

  /**
   * One append's records, in batch order. Partitions nobody tails lose their run: records they
   * skip now would leave a gap that a read at the run's end could not see.
   */
  add(messages: readonly LogMessage[], placements: readonly LogPlacement[]): void {
    for (let i = 0; i < messages.length; i++) {
      const pl = placements[i] as LogPlacement;
      const p = pl.partition;
      if (!this.wanted(p)) {
        this.#runs.delete(p);
        continue;
      }
      const m = messages[i] as LogMessage;
      this.#push(p, {
        partition: p,
        sequenceNumber: pl.sequenceNumber,
        offset: pl.offset,
        enqueuedTime: pl.enqueuedTime,
        deviceId: m.deviceId,
        moduleId: m.moduleId === '' ? null : m.moduleId,
        // A message's body may be a view of a socket's read buffer: the record gets its own copy.
        body: Buffer.from(m.body),
        properties: m.properties,
        systemProperties: m.systemProperties,
        ...(Array.isArray(m.endpoints) ? { endpoints: m.endpoints } : {}),
      });
    }
  }

  #push(p: number, record: LogRecord): void {
    let run = this.#runs.get(p);
    if (run === undefined || run.first + run.records.length - run.start !== record.sequenceNumber) {
      run = { first: record.sequenceNumber, records: [], start: 0, bytes: 0 };
      this.#runs.set(p, run);
    }
    run.records.push(record);
    run.bytes += record.body.length;
    this.#trim(p, run);
  }

  /** Drops the oldest records: those every tail has read, then past the count or the bytes (the newest record always stays). */
  #trim(p: number, run: Run): void {
    const floor = this.#floor.get(p) ?? -1;
    while (run.records.length - run.start > 0 && (run.first < floor || run.records.length - run.start > this.capacity || (run.bytes > this.maxBytes && run.records.length - run.start > 1))) {
      run.bytes -= (run.records[run.start] as LogRecord).body.length;
      run.records[run.start] = undefined as unknown as LogRecord;
      run.start++;
      run.first++;
    }
    // Drop the front in one go once it is as long as what is kept.
    if (run.start > 0 && run.start >= run.records.length - run.start) {
      run.records = run.records.slice(run.start);
      run.start = 0;
    }
  }

  /** A tail of the partition moved: the floor is the least of the tails' positions, none while one has not read yet. */
  #moved(p: number): void {
    let floor = Infinity;
    for (const t of this.#tails.get(p) ?? []) {
      if (t.next === undefined) {
        this.#floor.delete(p);
        return;
      }
      floor = Math.min(floor, t.next);
    }
    if (floor === Infinity) {
      this.#floor.delete(p);
      return;
    }
    this.#floor.set(p, floor);
    const run = this.#runs.get(p);
    if (run !== undefined) this.#trim(p, run);
  }

  /** Up to `limit` records from `from` on, or undefined when the run does not reach back to `from` (read the database). */
  read(partition: number, from: number, limit: number): LogRecord[] | undefined {
    const run = this.#runs.get(partition);
    if (run === undefined) return undefined;
    const end = run.first + run.records.length - run.start;
    if (from < run.first || from > end) return undefined;
    const i = run.start + (from - run.first);
    return run.records.slice(i, i + limit);
  }

  /** The tail, counted while it runs, and where it reads next once it has read a batch. */
  async *counting(partition: number, tail: AsyncGenerator<LogRecord[]>): AsyncGenerator<LogRecord[]> {
    let tails = this.#tails.get(partition);
    if (tails === undefined) this.#tails.set(partition, (tails = new Set()));
    const at: TailAt = { next: undefined };
    tails.add(at);
    this.#floor.delete(partition);
    try {
      for await (const batch of tail) {
        const last = batch.at(-1);
        if (last !== undefined) {
          at.next = last.sequenceNumber + 1;
          this.#moved(partition);
        }
        yield batch;
      }
    } finally {
      tails.delete(at);
      if (tails.size > 0) this.#moved(partition);
      else {
        this.#tails.delete(partition);
        this.#runs.delete(partition);
        this.#floor.delete(partition);
      }
    }
  }
}
