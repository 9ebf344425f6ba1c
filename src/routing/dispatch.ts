/**
 * The dispatchers of every custom endpoint on this node (decision 0006): one per (endpoint,
 * partition), each with its own cursor, so a dead endpoint holds back only itself. Follows the
 * routing: an endpoint added gets its dispatchers at once, one whose configuration changed is
 * restarted with a new sink, one removed is stopped and its sink closed (its cursors stay for a
 * while, so an endpoint removed and made again resumes where it was). A new endpoint, with no
 * cursor yet, starts reading where it first appeared in the routing (RoutingState.endpointsSince).
 */
import type { Logger } from 'pino';
import type { DeliveryLatency } from '../core/delivery-latency.js';
import type { EventLog, LogRecord } from '../log/log-ports.js';
import type { CounterStore } from '../store/counter-ports.js';
import { cursorKey, DEFAULT_TIMING, Dispatcher, endpointHealth, type CursorState, type DispatchTiming, type HealthStatus } from './dispatcher.js';
import type { EndpointSink } from './endpoints/sink.js';
import type { Enricher } from './enricher.js';
import { endpointList, type AnyEndpoint, type RoutingProperties } from './routing-config.js';

/** Builds the sink of an endpoint (the endpoint types' code, src/routing/endpoints/). */
export type SinkFactory = (endpoint: AnyEndpoint, ctx: { hubName: string; logger: Logger }) => EndpointSink | Promise<EndpointSink>;

export interface DispatchDeps {
  log: EventLog;
  counters: CounterStore;
  /** The enrichments of every endpoint (the built-in endpoint's readers use the same). */
  enricher: Enricher;
  sinks: SinkFactory;
  hubName: string;
  nodeId: string;
  now(): number;
  logger: Logger;
  /** Each endpoint's delivery latency series (the metrics' DeliveryLatency). */
  deliveries?: DeliveryLatency;
  timing?: Partial<DispatchTiming>;
}

interface Running {
  key: string;
  type: AnyEndpoint['type'];
  sink: () => Promise<EndpointSink> | undefined;
  dispatchers: Dispatcher[];
}

/** Azure's get-endpoint-health item. */
export interface EndpointHealth {
  endpointId: string;
  healthStatus: HealthStatus;
  lastKnownError?: string;
  lastKnownErrorTime?: string;
  lastSuccessfulSendAttemptTime?: string;
  lastSendAttemptTime?: string;
}

export class Dispatch {
  readonly #running = new Map<string, Running>();
  #routing: RoutingProperties | undefined;
  /** When each endpoint first appeared (RoutingState.endpointsSince). */
  #since: Readonly<Record<string, number>> = {};
  #started = false;
  #chain: Promise<void> = Promise.resolve();
  readonly #timing: DispatchTiming;

  constructor(private readonly d: DispatchDeps) {
    this.#timing = { ...DEFAULT_TIMING, ...d.timing };
  }

  /** Starts the dispatchers of the routing given, and follows `apply` from then on. */
  start(routing: RoutingProperties, since?: Readonly<Record<string, number>>): Promise<void> {
    this.#started = true;
    return this.apply(routing, since);
  }

  /**
   * Brings the dispatchers in line with a routing document (serialized: changes apply in order).
   * `since`: when each endpoint first appeared, where a new one's delivery starts reading.
   */
  apply(routing: RoutingProperties, since: Readonly<Record<string, number>> = {}): Promise<void> {
    this.#routing = routing;
    this.#since = since;
    if (!this.#started) return Promise.resolve();
    this.#chain = this.#chain.then(() => this.#reconcile(routing)).catch((err: unknown) => this.d.logger.error({ err, event: 'routing.dispatch-failed' }, 'applying the routing to the dispatchers failed'));
    return this.#chain;
  }

  async stop(): Promise<void> {
    this.#started = false;
    await this.#chain;
    await Promise.all([...this.#running.keys()].map((name) => this.#stopEndpoint(name)));
  }

  /** Health of every custom endpoint, from the shared cursors (so any node answers for all). */
  async health(): Promise<EndpointHealth[]> {
    const routing = this.#routing;
    if (routing === undefined) return [];
    const names = endpointList(routing).map((e) => e.config.name);
    const parts = this.d.log.partitionCount;
    const keys = names.flatMap((n) => Array.from({ length: parts }, (_, p) => cursorKey(n, p)));
    const current = keys.length === 0 ? new Map<string, string>() : await this.d.counters.update(keys, this.d.now(), (cur) => ({ writes: new Map(), result: new Map(cur) }));
    return names.map((name) => {
      const states = Array.from({ length: parts }, (_, p) => {
        const raw = current.get(cursorKey(name, p));
        return raw === undefined ? undefined : (JSON.parse(raw) as CursorState);
      });
      const { status, ...rest } = endpointHealth(states);
      return { endpointId: name, healthStatus: status, ...rest };
    });
  }

  async #reconcile(routing: RoutingProperties): Promise<void> {
    if (!this.#started) return;
    const wanted = new Map(endpointList(routing).map((e) => [e.config.name, e]));
    for (const name of [...this.#running.keys()]) {
      const e = wanted.get(name);
      const r = this.#running.get(name) as Running;
      if (e === undefined || JSON.stringify(e) !== r.key) await this.#stopEndpoint(name);
      // Gone from the routing (not just changed): its latency series leaves /metrics.
      if (e === undefined || e.type !== r.type) this.d.deliveries?.forget(name, r.type);
    }
    for (const [name, e] of wanted) if (!this.#running.has(name)) this.#startEndpoint(e);
  }

  #startEndpoint(e: AnyEndpoint): void {
    const name = e.config.name;
    const logger = this.d.logger.child({ endpoint: name });
    // Made on first use; one that could not be made (a server down at start) is tried again at the next delivery.
    let made: Promise<EndpointSink> | undefined;
    /** The sink once made (its lingerMs and maxBatch are read as the dispatchers decide, not awaited). */
    let ready: EndpointSink | undefined;
    const sink = (): Promise<EndpointSink> => {
      if (made !== undefined) return made;
      const p = Promise.resolve().then(() => this.d.sinks(e, { hubName: this.d.hubName, logger }));
      made = p;
      p.then(
        (s) => {
          if (made === p) ready = s;
        },
        () => {
          if (made === p) made = undefined;
        },
      );
      return p;
    };
    const running: Running = { key: JSON.stringify(e), type: e.type, sink: () => made, dispatchers: [] };
    const lazySink: EndpointSink = {
      get lingerMs() {
        return ready?.lingerMs;
      },
      get maxBatch() {
        return ready?.maxBatch;
      },
      deliver: async (batch) => (await sink()).deliver(batch),
      resume: async (partition) => (await sink()).resume?.(partition),
      close: async () => {
        if (made !== undefined) await (await made).close();
      },
    };
    const latency = this.d.deliveries?.series(name, e.type);
    for (let p = 0; p < this.d.log.partitionCount; p++) {
      running.dispatchers.push(
        new Dispatcher({
          endpoint: name,
          partition: p,
          log: this.d.log,
          counters: this.d.counters,
          sink: lazySink,
          enrich: async (record) => ({ ...(await this.d.enricher.values(name, record)) }),
          nodeId: this.d.nodeId,
          now: this.d.now,
          ...(this.#since[name] === undefined ? {} : { since: this.#since[name] }),
          timing: this.#timing,
          ...(latency === undefined ? {} : { latency }),
          onError: (err, what) => logger.warn({ err, event: 'routing.dispatcher-error', partition: p, what }, `routing to ${name}: ${what} failed`),
        }),
      );
    }
    this.#running.set(name, running);
    for (const d of running.dispatchers) d.start();
    logger.info({ event: 'routing.endpoint-started', type: e.type }, `routing endpoint ${name} started`);
  }

  async #stopEndpoint(name: string): Promise<void> {
    const r = this.#running.get(name);
    if (r === undefined) return;
    this.#running.delete(name);
    await Promise.all(r.dispatchers.map((d) => d.stop()));
    await r.sink()
      ?.then((s) => s.close())
      .catch((err: unknown) => this.d.logger.warn({ err, endpoint: name, event: 'routing.sink-close-failed' }, 'closing an endpoint sink failed'));
  }

}
