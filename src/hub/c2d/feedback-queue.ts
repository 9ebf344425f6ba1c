/**
 * The service-bound feedback queue as competing consumers (issue 16 item 4), shared by every node:
 * a SharedQueue (hub/shared-queue.ts) over the feedback records the C2D service writes
 * (c2d_feedback), batches of up to 100 records a receiver completes or releases.
 */
import type { Clock } from '../../core/clock.js';
import type { CounterStore } from '../../store/counter-ports.js';
import type { FeedbackRecord } from '../../store/c2d-ports.js';
import type { MetaStore } from '../../store/ports.js';
import { SharedQueue, type QueueBatch } from '../shared-queue.js';

const KEY = 'c2d-feedback:amqp';
/** Where the cursor of a single node lived before the queue was shared: a start point, read once. */
const LEGACY_CURSOR_KEY = 'c2d.feedback.amqp-cursor';

export interface FeedbackQueueDeps {
  counters: CounterStore;
  meta: MetaStore;
  /** Feedback records with seq > after, oldest first. */
  readFeedback(after: number, limit: number): Promise<FeedbackRecord[]>;
  clock: Clock;
  /** How long a receiver holds a batch before it is handed out again. */
  lockMs: number;
}

export type FeedbackBatch = QueueBatch<FeedbackRecord>;

export class FeedbackQueue extends SharedQueue<FeedbackRecord> {
  constructor(deps: FeedbackQueueDeps) {
    super({
      counters: deps.counters,
      key: KEY,
      read: (after, limit) => deps.readFeedback(after, limit),
      clock: deps.clock,
      lockMs: deps.lockMs,
      start: async () => Number((await deps.meta.getMeta(LEGACY_CURSOR_KEY)) ?? '0') || 0,
    });
  }
}
