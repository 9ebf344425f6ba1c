/**
 * A queue with competing consumers over numbered records, shared by every node (issue 16 item 4):
 * each batch of records goes to one receiver in the cluster, under a lock; the receiver completes
 * it (gone for everyone) or releases it (handed out again at once), and a batch whose lock lapses
 * unsettled (the receiver died, or its node did) is handed out again, to whichever receiver asks
 * next, as Azure's service-bound queues do after their lock duration. The C2D feedback queue
 * (c2d/feedback-queue.ts) and the file upload notifications (files/file-notifications.ts) are two.
 *
 * The state is one shared counter (store/counter-ports.ts, a row locked for each read-modify-write)
 * holding the frontier, the highest record seq already put into a batch, and the batches not yet
 * completed, each a seq range (after, last] with its lock and how often it went out. The records
 * stay where their owner writes them; a batch is only a range over them. Why not a table of its
 * own: the state is a handful of ranges, written only when a receiver takes or settles a batch,
 * and the counter store already gives the row lock every node needs (docs/cluster.md).
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import type { CounterStore } from '../store/counter-ports.js';

/** The state never expires by itself: losing it would hand out every retained record again. */
const NEVER = Number.MAX_SAFE_INTEGER;

interface Batch {
  after: number;
  last: number;
  token: string;
  lockedUntil: number;
  /** How often it was handed out (absent in states written before delivery counts: 1). */
  deliveries?: number;
}

interface State {
  frontier: number;
  batches: Batch[];
}

export interface SharedQueueDeps<R extends { seq: number }> {
  counters: CounterStore;
  /** The counter holding this queue's state. */
  key: string;
  /** Records with seq > after, oldest first. */
  read(after: number, limit: number): Promise<R[]>;
  clock: Clock;
  /** How long a receiver holds a batch before it is handed out again. */
  lockMs: number;
  /** Where the frontier starts when there is no state yet. */
  start?: () => Promise<number>;
  /** A batch handed out this often and still not completed is dropped (Azure's max delivery count). */
  maxDeliveries?: () => number;
  /** Records never handed out (their time to live passed): skipped. */
  expired?: (record: R, now: number) => boolean;
}

export interface QueueBatch<R> {
  token: string;
  records: R[];
}

export class SharedQueue<R extends { seq: number }> {
  constructor(private readonly deps: SharedQueueDeps<R>) {}

  /**
   * The next batch for a receiver, locked to it: one whose lock lapsed or that was released first
   * (oldest first), else up to `max` records no batch holds yet. Undefined when there is none.
   */
  async claim(max: number): Promise<QueueBatch<R> | undefined> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const now = this.deps.clock.now();
      const token = randomUUID();
      const start = await this.#start();
      const limit = this.deps.maxDeliveries?.() ?? Infinity;
      const taken = await this.#update<{ frontier: number } | { batch: Batch }>(now, start, (s) => {
        let dropped = false;
        for (;;) {
          const free = s.batches.filter((b) => b.lockedUntil <= now).sort((x, y) => x.after - y.after)[0];
          if (free === undefined) return { ...(dropped ? { state: s } : {}), result: { frontier: s.frontier } };
          const deliveries = (free.deliveries ?? 1) + 1;
          if (deliveries > limit) {
            // Delivered as often as allowed and never completed: dropped (dead-lettered).
            s.batches.splice(s.batches.indexOf(free), 1);
            dropped = true;
            continue;
          }
          free.token = token;
          free.lockedUntil = now + this.deps.lockMs;
          free.deliveries = deliveries;
          return { state: s, result: { batch: { ...free } } };
        }
      });
      if ('batch' in taken) {
        const { after, last } = taken.batch;
        const records = this.#live(await this.deps.read(after, Math.min(Math.max(1, last - after), 10_000)), now).filter((r) => r.seq <= last);
        // Its records may have aged out meanwhile: nothing left to hand out.
        if (records.length > 0) return { token, records };
        await this.complete(token);
        continue;
      }
      const raw = await this.deps.read(taken.frontier, max);
      const last = raw.at(-1)?.seq;
      if (last === undefined) return undefined;
      const records = this.#live(raw, now);
      const won = await this.#update(this.deps.clock.now(), start, (s) => {
        // Another node put these records into a batch first: look again.
        if (s.frontier !== taken.frontier) return { result: false };
        if (records.length > 0) s.batches.push({ after: s.frontier, last, token, lockedUntil: this.deps.clock.now() + this.deps.lockMs, deliveries: 1 });
        s.frontier = last;
        return { state: s, result: true };
      });
      if (won && records.length > 0) return { token, records };
    }
    return undefined;
  }

  /** The receiver accepted (or rejected) the batch: it is gone. False when its lock was lost. */
  complete(token: string): Promise<boolean> {
    return this.#settle(token, (s, i) => void s.batches.splice(i, 1));
  }

  /** The receiver gave the batch back: it is handed out again at once. False when its lock was lost. */
  release(token: string): Promise<boolean> {
    return this.#settle(token, (s, i) => {
      const b = s.batches[i];
      if (b !== undefined) b.lockedUntil = 0;
    });
  }

  #live(records: R[], now: number): R[] {
    const expired = this.deps.expired;
    return expired === undefined ? records : records.filter((r) => !expired(r, now));
  }

  #settle(token: string, change: (s: State, index: number) => void): Promise<boolean> {
    return this.#update(this.deps.clock.now(), 0, (s) => {
      const i = s.batches.findIndex((b) => b.token === token);
      if (i < 0) return { result: false };
      change(s, i);
      return { state: s, result: true };
    });
  }

  #startAt: number | undefined;

  async #start(): Promise<number> {
    this.#startAt ??= (await this.deps.start?.()) ?? 0;
    return this.#startAt;
  }

  #update<T>(now: number, start: number, decide: (s: State) => { state?: State; result: T }): Promise<T> {
    const key = this.deps.key;
    return this.deps.counters.update([key], now, (current) => {
      const raw = current.get(key);
      const s: State = raw === undefined ? { frontier: start, batches: [] } : (JSON.parse(raw) as State);
      const { state, result } = decide(s);
      return { writes: state === undefined ? new Map() : new Map([[key, { value: JSON.stringify(state), expiresAt: NEVER }]]), result };
    });
  }
}
