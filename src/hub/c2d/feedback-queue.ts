/**
 * The service-bound feedback queue as competing consumers (issue 16 item 4), shared by every node:
 * each batch of feedback records goes to one receiver in the cluster, under a lock; the receiver
 * completes it (gone for everyone) or releases it (handed out again at once), and a batch whose
 * lock lapses unsettled (the receiver died, or its node did) is handed out again, to whichever
 * receiver asks next, as Azure's feedback queue does after its lock duration.
 *
 * The state is one shared counter (store/counter-ports.ts, a row locked for each read-modify-write)
 * holding the frontier, the highest feedback seq already put into a batch, and the batches not yet
 * completed, each a seq range (after, last] with its lock. The records stay where the C2D service
 * writes them (c2d_feedback); a batch is only a range over them. Why not a table of its own: the
 * state is a handful of ranges, written only when a receiver takes or settles a batch, and the
 * counter store already gives the row lock every node needs (docs/cluster.md).
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import type { CounterStore } from '../../store/counter-ports.js';
import type { FeedbackRecord } from '../../store/c2d-ports.js';
import type { MetaStore } from '../../store/ports.js';

const KEY = 'c2d-feedback:amqp';
/** Where the cursor of a single node lived before the queue was shared: a start point, read once. */
const LEGACY_CURSOR_KEY = 'c2d.feedback.amqp-cursor';
/** The state never expires by itself: losing it would hand out every retained record again. */
const NEVER = Number.MAX_SAFE_INTEGER;

interface Batch {
  after: number;
  last: number;
  token: string;
  lockedUntil: number;
}

interface State {
  frontier: number;
  batches: Batch[];
}

export interface FeedbackQueueDeps {
  counters: CounterStore;
  meta: MetaStore;
  /** Feedback records with seq > after, oldest first. */
  readFeedback(after: number, limit: number): Promise<FeedbackRecord[]>;
  clock: Clock;
  /** How long a receiver holds a batch before it is handed out again. */
  lockMs: number;
}

export interface FeedbackBatch {
  token: string;
  records: FeedbackRecord[];
}

export class FeedbackQueue {
  constructor(private readonly deps: FeedbackQueueDeps) {}

  /**
   * The next batch for a receiver, locked to it: one whose lock lapsed or that was released first
   * (oldest first), else up to `max` records no batch holds yet. Undefined when there is none.
   */
  async claim(max: number): Promise<FeedbackBatch | undefined> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const now = this.deps.clock.now();
      const token = randomUUID();
      const legacy = await this.#legacyFrontier();
      const taken = await this.#update<{ frontier: number } | { batch: Batch }>(now, legacy, (s) => {
        const free = s.batches.filter((b) => b.lockedUntil <= now).sort((x, y) => x.after - y.after)[0];
        if (free === undefined) return { result: { frontier: s.frontier } };
        free.token = token;
        free.lockedUntil = now + this.deps.lockMs;
        return { state: s, result: { batch: { ...free } } };
      });
      if ('batch' in taken) {
        const { after, last } = taken.batch;
        const records = (await this.deps.readFeedback(after, Math.min(Math.max(1, last - after), 10_000))).filter((r) => r.seq <= last);
        // Its records may have aged out of retention meanwhile: nothing left to hand out.
        if (records.length > 0) return { token, records };
        await this.complete(token);
        continue;
      }
      const records = await this.deps.readFeedback(taken.frontier, max);
      const last = records.at(-1)?.seq;
      if (last === undefined) return undefined;
      const won = await this.#update(this.deps.clock.now(), legacy, (s) => {
        // Another node put these records into a batch first: look again.
        if (s.frontier !== taken.frontier) return { result: false };
        s.batches.push({ after: s.frontier, last, token, lockedUntil: this.deps.clock.now() + this.deps.lockMs });
        s.frontier = last;
        return { state: s, result: true };
      });
      if (won) return { token, records };
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

  #settle(token: string, change: (s: State, index: number) => void): Promise<boolean> {
    return this.#update(this.deps.clock.now(), 0, (s) => {
      const i = s.batches.findIndex((b) => b.token === token);
      if (i < 0) return { result: false };
      change(s, i);
      return { state: s, result: true };
    });
  }

  #legacyStart: number | undefined;

  async #legacyFrontier(): Promise<number> {
    this.#legacyStart ??= Number((await this.deps.meta.getMeta(LEGACY_CURSOR_KEY)) ?? '0') || 0;
    return this.#legacyStart;
  }

  #update<T>(now: number, start: number, decide: (s: State) => { state?: State; result: T }): Promise<T> {
    return this.deps.counters.update([KEY], now, (current) => {
      const raw = current.get(KEY);
      const s: State = raw === undefined ? { frontier: start, batches: [] } : (JSON.parse(raw) as State);
      const { state, result } = decide(s);
      return { writes: state === undefined ? new Map() : new Map([[KEY, { value: JSON.stringify(state), expiresAt: NEVER }]]), result };
    });
  }
}
