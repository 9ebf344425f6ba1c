/**
 * What both logs share for live readers: per-partition wake-ups and the tail loop over `read`.
 *
 * A tail reads from its cursor; when there is nothing, it waits for a wake-up (an append on this
 * node, or another node's announcement) or for the poll interval, whichever comes first. It
 * registers for the wake-up before it reads, so an append that commits between the read and the
 * wait still wakes it. The poll is the safety net for announcements that never arrive (the bus is
 * at most once): a lost one delays a reader by at most the interval, never loses a record,
 * because the records are read from the log, not from the announcement.
 */
import { setMaxListeners } from 'node:events';
import type { LogPosition, LogRecord, TailOptions } from './log-ports.js';

/**
 * The controller of a log's `closed` signal. Every waiting tail listens on that one signal (and
 * stops listening when its wait ends), so dozens at once are expected, not a leak: without this,
 * a hub with a few endpoints and readers printed MaxListenersExceededWarning.
 */
export function logCloser(): AbortController {
  const closer = new AbortController();
  setMaxListeners(0, closer.signal);
  return closer;
}

export class PartitionWakeups {
  readonly #waiters = new Map<number, Set<() => void>>();

  /** A promise that resolves at the next wake(partition), and its cancel. */
  next(partition: number): { promise: Promise<void>; cancel(): void } {
    let set = this.#waiters.get(partition);
    if (set === undefined) this.#waiters.set(partition, (set = new Set()));
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    const waiter = () => resolve();
    set.add(waiter);
    return { promise, cancel: () => set.delete(waiter) };
  }

  wake(partition: number): void {
    const set = this.#waiters.get(partition);
    if (set === undefined || set.size === 0) return;
    const all = [...set];
    set.clear();
    for (const w of all) w();
  }

  wakeAll(): void {
    for (const p of this.#waiters.keys()) this.wake(p);
  }
}

export interface TailSource {
  /** The sequence number the position starts at (the next record to read). */
  startOf(partition: number, position: LogPosition): Promise<number>;
  /** Up to `limit` records with sequence number >= `from`, oldest first. */
  readFrom(partition: number, from: number, limit: number): Promise<LogRecord[]>;
  wakeups: PartitionWakeups;
  /** Stops every tail (the log is closing). */
  closed: AbortSignal;
}

export const DEFAULT_TAIL_BATCH = 256;

export async function* tailLoop(src: TailSource, partition: number, position: LogPosition, pollMs: number, opts: TailOptions = {}): AsyncGenerator<LogRecord[]> {
  const maxBatch = Math.max(1, Math.floor(opts.maxBatch ?? DEFAULT_TAIL_BATCH));
  const stopped = () => opts.signal?.aborted === true || src.closed.aborted;
  let next = await src.startOf(partition, position);
  while (!stopped()) {
    const wake = src.wakeups.next(partition);
    let records: LogRecord[];
    try {
      records = await src.readFrom(partition, next, maxBatch);
    } catch (err) {
      wake.cancel();
      if (stopped()) return;
      throw err;
    }
    if (records.length > 0) {
      wake.cancel();
      next = (records.at(-1) as LogRecord).sequenceNumber + 1;
      yield records;
      continue;
    }
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, pollMs);
      onAbort = resolve;
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      src.closed.addEventListener('abort', onAbort, { once: true });
      // Stopped while it read: a listener added now never fires, and the poll may be long away.
      if (stopped()) resolve();
      void wake.promise.then(resolve);
    });
    clearTimeout(timer);
    wake.cancel();
    if (onAbort !== undefined) {
      opts.signal?.removeEventListener('abort', onAbort);
      src.closed.removeEventListener('abort', onAbort);
    }
  }
}
