/**
 * Sender links that hand out a SharedQueue (hub/shared-queue.ts) to the service's receivers: the
 * C2D feedback link and the file upload notification link (service-links.ts). The receivers of
 * every node compete for one queue: each link holds one batch at a time, locked to it; accepted or
 * rejected completes the batch (never delivered again, anywhere), released or modified hands it
 * out again at once, and a batch left unsettled is handed out again once its lock lapses. A link
 * that goes (or its connection) gives its batch back at once.
 */
import type { Logger } from 'pino';
import type { Delivery, EventContext, Message, Sender } from 'rhea';
import type { QueueBatch } from '../../hub/shared-queue.js';

const POLL_MS = 500;

export interface QueueSource<R> {
  claim(max: number): Promise<QueueBatch<R> | undefined>;
  complete(token: string): Promise<boolean>;
  release(token: string): Promise<boolean>;
}

export class QueueSenders<R> {
  readonly #links = new Set<Sender>();
  /** The batch each link holds (one at a time, as a receiver of Azure's service-bound queues does). */
  readonly #inflight = new Map<Sender, { delivery: Delivery; token: string }>();
  readonly #claiming = new Set<Sender>();
  #poll: NodeJS.Timeout | undefined;

  constructor(
    private readonly queue: QueueSource<R>,
    private readonly opts: { name: string; batch: number; render(records: R[]): Message },
    private readonly logger: Logger,
  ) {}

  has(sender: Sender): boolean {
    return this.#links.has(sender);
  }

  attach(sender: Sender): void {
    this.#links.add(sender);
    if (this.#poll === undefined) {
      this.#poll = setInterval(() => this.#pump(), POLL_MS);
      this.#poll.unref();
    }
    this.#pump();
  }

  sendable(sender: Sender): void {
    if (this.#links.has(sender)) this.#pump();
  }

  detached(sender: Sender): void {
    if (!this.#links.delete(sender)) return;
    // The batch it held goes to another receiver at once rather than after its lock lapses.
    const held = this.#inflight.get(sender);
    this.#inflight.delete(sender);
    if (held !== undefined) this.#settleInStore(held.token, 'released');
    if (this.#links.size === 0 && this.#poll !== undefined) {
      clearInterval(this.#poll);
      this.#poll = undefined;
    }
  }

  settled(ctx: EventContext, outcome: 'accepted' | 'released' | 'rejected'): void {
    const sender = ctx.sender;
    const held = sender === undefined ? undefined : this.#inflight.get(sender);
    if (sender === undefined || held === undefined || ctx.delivery !== held.delivery) return;
    this.#inflight.delete(sender);
    this.#settleInStore(held.token, outcome);
  }

  stop(): void {
    if (this.#poll !== undefined) clearInterval(this.#poll);
    this.#poll = undefined;
    this.#links.clear();
    this.#inflight.clear();
  }

  #settleInStore(token: string, outcome: 'accepted' | 'released' | 'rejected'): void {
    // Never rejects: a store failure is logged (the batch's lock lapses and it goes out again).
    void (outcome === 'released' ? this.queue.release(token) : this.queue.complete(token))
      .then((held) => {
        if (!held) this.logger.warn({ event: `${this.opts.name}-lock-lost`, outcome }, 'a batch was settled after its lock lapsed; it was handed out again');
      })
      .catch((err: unknown) => this.logger.error({ err, queue: this.opts.name }, 'could not settle the batch'))
      .finally(() => this.#pump());
  }

  #pump(): void {
    for (const sender of this.#links) {
      if (this.#inflight.has(sender) || this.#claiming.has(sender) || !sender.sendable()) continue;
      this.#claiming.add(sender);
      // Never rejects: a failure is logged and the next poll tries again.
      void this.#next(sender)
        .catch((err: unknown) => this.logger.error({ err, queue: this.opts.name }, 'delivery failed'))
        .finally(() => this.#claiming.delete(sender));
    }
  }

  async #next(sender: Sender): Promise<void> {
    const batch = await this.queue.claim(this.opts.batch);
    if (batch === undefined) return;
    if (!this.#links.has(sender) || !sender.sendable()) {
      // The link went while the batch was taken: give it back for another receiver.
      this.#settleInStore(batch.token, 'released');
      return;
    }
    const delivery = sender.send(this.opts.render(batch.records));
    this.#inflight.set(sender, { delivery, token: batch.token });
  }
}
