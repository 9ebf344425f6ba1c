/**
 * How long device messages take from the hub's event log to an endpoint, per endpoint: the time
 * from a record's enqueued time to its delivery. For the built-in endpoint (`events`) delivery is
 * the transfer handed to an Event Hubs reader's connection (each reader counts: two consumer
 * groups deliver a message twice); for a custom endpoint it is the sink's acknowledgement of the
 * batch (an HTTP 2xx, a JetStream ack, a commit, a confirm, a synced file). What Azure reports as
 * `d2c.endpoints.latency.builtIn.events` and `d2c.endpoints.latency.<type>` (an average), here a
 * histogram, so an operator sees the tail and the client's own waits apart from the hub's.
 *
 * The edges observe into plain numbers (no label hashing per message, as MessageTally); the
 * metrics read them at scrape as `gatehouse_routing_delivery_latency_seconds`
 * (metrics/delivery-latency.ts).
 */

/** Upper bounds in seconds (Prometheus `le`); the last bucket is +Inf. */
export const DELIVERY_LATENCY_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const BOUNDS_MS = DELIVERY_LATENCY_BUCKETS.map((s) => s * 1000);

/** One endpoint's observations: counts per bucket (not cumulative), their sum and count. */
export class LatencySeries {
  readonly counts = new Array<number>(BOUNDS_MS.length + 1).fill(0);
  sumMs = 0;
  count = 0;

  constructor(
    readonly endpoint: string,
    readonly type: string,
  ) {}

  /** One delivery `ms` after its enqueue; a negative span (another node's clock ahead) counts as 0. */
  observe(ms: number): void {
    const v = ms > 0 ? ms : 0;
    let i = 0;
    while (i < BOUNDS_MS.length && v > (BOUNDS_MS[i] as number)) i++;
    (this.counts as number[])[i]!++;
    this.sumMs += v;
    this.count++;
  }
}

export class DeliveryLatency {
  readonly #series = new Map<string, LatencySeries>();

  /** The series of one endpoint, made at first use; the hot path keeps the object it gets. */
  series(endpoint: string, type: string): LatencySeries {
    const key = `${type}\0${endpoint}`;
    let s = this.#series.get(key);
    if (s === undefined) this.#series.set(key, (s = new LatencySeries(endpoint, type)));
    return s;
  }

  /** An endpoint removed from the routing: its series leaves the exposition. */
  forget(endpoint: string, type: string): void {
    this.#series.delete(`${type}\0${endpoint}`);
  }

  all(): Iterable<LatencySeries> {
    return this.#series.values();
  }
}
