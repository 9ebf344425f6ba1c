/**
 * Epoch receivers across the cluster. Event Hubs lets one epoch receiver (`com.microsoft:epoch`,
 * the SDK's `ownerLevel`) own a partition of a consumer group: a new one with a higher or equal
 * epoch takes it over and closes the others with `amqp:link:stolen`; a lower epoch or a plain
 * receiver is refused while it holds. `EventHubConsumerClient` instances balancing partitions
 * between processes rely on that; behind a load balancer their links land on different nodes, so
 * the rule has to hold across nodes, not per node.
 *
 * How: the owner of (group, partition) is a claim in the shared counters (the store's row lock
 * orders two claims racing on two nodes), with the epoch and a generation that grows with every
 * claim; the claim is renewed while its receiver lives and lapses CLAIM_MS after a node died with
 * it. A successful claim is announced on the bus (`eventhub.receiver.claimed`); every other node
 * closes its receivers on that partition whose generation is older. On one node (no shared
 * counters) everything is decided locally by the endpoint, as before.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import type { CounterStore } from '../../store/counter-ports.js';
import { SUBJECTS, type HubBus } from '../../bus/subjects.js';

/** How long a claim outlives its last renewal (a node that died holding it). */
const CLAIM_MS = 60_000;
const RENEW_MS = 20_000;

interface Held {
  epoch: number;
  generation: number;
  claimId: string;
}

export type ClaimOutcome = { ok: true; generation: number; claimId: string } | { ok: false; heldEpoch: number };

export class ReceiverClaims {
  readonly #mine = new Map<string, Held>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly bus: HubBus,
    /** Absent on one node. */
    private readonly counters: CounterStore | undefined,
    private readonly clock: Clock,
  ) {}

  get shared(): boolean {
    return this.counters !== undefined;
  }

  /** An epoch receiver asks for (group, partition): refused when another node's receiver holds a higher epoch. */
  async claimEpoch(key: string, epoch: number): Promise<ClaimOutcome> {
    const counters = this.counters;
    if (counters === undefined) return { ok: true, generation: 0, claimId: '' };
    const k = counterKey(key);
    const now = this.clock.now();
    const claimId = randomUUID();
    const outcome = await counters.update([k], now, (current): { writes: Map<string, { value: string; expiresAt: number }>; result: ClaimOutcome } => {
      const held = parse(current.get(k));
      if (held !== undefined && held.epoch > epoch) return { writes: new Map(), result: { ok: false, heldEpoch: held.epoch } };
      const generation = (held?.generation ?? 0) + 1;
      return { writes: new Map([[k, { value: JSON.stringify({ epoch, generation, claimId }), expiresAt: now + CLAIM_MS }]]), result: { ok: true, generation, claimId } };
    });
    if (outcome.ok) {
      this.#mine.set(key, { epoch, generation: outcome.generation, claimId });
      this.#startRenewing();
      this.bus.publish(SUBJECTS.eventHubReceiverClaimed, { key, epoch, generation: outcome.generation });
    }
    return outcome;
  }

  /** The epoch another node's live receiver holds on (group, partition), if any: a plain receiver is refused then. */
  async heldEpoch(key: string): Promise<number | undefined> {
    const counters = this.counters;
    if (counters === undefined) return undefined;
    const k = counterKey(key);
    return counters.update([k], this.clock.now(), (current) => ({ writes: new Map(), result: parse(current.get(k))?.epoch }));
  }

  /** The receiver holding the claim closed: free it, unless a newer claim replaced it. Never rejects. */
  async release(key: string, claimId: string): Promise<void> {
    const counters = this.counters;
    const mine = this.#mine.get(key);
    if (counters === undefined || mine?.claimId !== claimId) return;
    this.#mine.delete(key);
    const k = counterKey(key);
    await counters
      .update([k], this.clock.now(), (current) => ({
        writes: parse(current.get(k))?.claimId === claimId ? new Map([[k, { value: null, expiresAt: 0 }]]) : new Map(),
        result: undefined,
      }))
      .catch(() => undefined); // it lapses after CLAIM_MS
  }

  /** Claims made on other nodes: `handler` closes this node's receivers older than `generation`. */
  onClaimed(handler: (key: string, epoch: number, generation: number) => void): () => void {
    const sub = this.bus.subscribe(SUBJECTS.eventHubReceiverClaimed, (c, meta) => {
      if (meta.local) return;
      const mine = this.#mine.get(c.key);
      if (mine !== undefined && mine.generation < c.generation) this.#mine.delete(c.key);
      handler(c.key, c.epoch, c.generation);
    });
    return () => sub.unsubscribe();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #startRenewing(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => void this.#renew(), RENEW_MS);
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    const counters = this.counters;
    if (counters === undefined || this.#mine.size === 0) return this.stop();
    const now = this.clock.now();
    for (const [key, held] of [...this.#mine]) {
      const k = counterKey(key);
      await counters
        .update([k], now, (current) => {
          const stored = parse(current.get(k));
          // Renew only our own claim; a newer one elsewhere is not ours to extend (its announcement closes ours).
          if (stored !== undefined && stored.claimId !== held.claimId) return { writes: new Map(), result: undefined };
          return { writes: new Map([[k, { value: JSON.stringify(held), expiresAt: now + CLAIM_MS }]]), result: undefined };
        })
        .catch(() => undefined); // the next round tries again; the claim lasts CLAIM_MS
    }
  }
}

function counterKey(key: string): string {
  return `eh-epoch:${key}`;
}

function parse(value: string | undefined): Held | undefined {
  if (value === undefined) return undefined;
  return JSON.parse(value) as Held;
}
