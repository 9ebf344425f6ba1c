/**
 * Prometheus metrics of one hub: a registry of its own (never prom-client's global one, so two
 * hubs in one process never share series), the Node.js process metrics, and the hub's:
 *
 * - `gatehouse_connections{protocol,auth_method}`: live device sessions, counted at scrape;
 * - `gatehouse_auth_failures_total{protocol,reason}` / `gatehouse_auth_successes_total{protocol,method}`,
 *   from the SecurityEvents `auth` events (`reason` is the bounded AuthEvent.reasonCode);
 * - `gatehouse_messages_total{direction,kind}`: device telemetry in, twin reported patches in,
 *   C2D messages, direct-method requests and desired-property pushes out. The edges bump plain
 *   integers in a MessageTally (one increment per message, no label hashing on the hot path);
 *   the counter reads them at scrape;
 * - `gatehouse_c2d_queue_depth`: pending C2D messages of the whole hub, one store count at scrape;
 * - `gatehouse_provisioning_registrations_total{outcome,attestation}`;
 * - `gatehouse_alerts_firing{rule}`: alerts firing per rule, read from the alert engine at scrape;
 * - `gatehouse_connections_refused_total{listener,reason}`: connections closed before they
 *   authenticated, for a cap or a timeout (`RefusalReason`);
 * - `gatehouse_routing_delivery_latency_seconds{endpoint,endpoint_type}`: a histogram of the time
 *   from a message's enqueue to its delivery on each endpoint (delivery-latency.ts).
 *
 * In a node of several worker processes a scrape answers for the node: every worker's series merged
 * by the primary (node-metrics.ts).
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { AuthEvent, SecurityEvents } from '../core/security-events.js';
import type { ListenerName, RefusalReason } from '../access/connection-caps.js';

import { MessageTally } from '../core/tally.js';
import { DeliveryLatency } from '../core/delivery-latency.js';
import { deliveryLatencyMetric } from './delivery-latency.js';
import { countsSharedGauges, isClusterWorker, nodeMetrics, shareWithPrimary } from './node-metrics.js';

export const METRIC_PREFIX = 'gatehouse_';

/**
 * How often the event-loop lag histogram (`gatehouse_nodejs_eventloop_lag_*`) samples, ms. prom-client's
 * default, 10 ms, is a timer that wakes an idle hub 100 times a second: on a VM every wake-up of a
 * sleeping thread costs far more than the sample (bench/idle: an idle hub's main thread woke 102
 * times a second with it, 14 with 100 ms). A stall longer than the interval is always seen (the
 * next sample is late by it); a shorter one is seen when it overlaps a sample.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

const MESSAGE_SERIES: ReadonlyArray<{ direction: 'in' | 'out'; kind: 'telemetry' | 'c2d' | 'method' | 'twin'; field: keyof MessageTally }> = [
  { direction: 'in', kind: 'telemetry', field: 'telemetryIn' },
  { direction: 'in', kind: 'twin', field: 'twinIn' },
  { direction: 'out', kind: 'c2d', field: 'c2dOut' },
  { direction: 'out', kind: 'method', field: 'methodOut' },
  { direction: 'out', kind: 'twin', field: 'twinOut' },
];

export interface MetricsSources {
  events: SecurityEvents;
  /** Live sessions with their transport and auth method. */
  sessions(): Iterable<{ readonly protocol?: string | undefined; readonly authMethod?: string | undefined }>;
  /** Pending C2D messages of the whole hub. */
  c2dQueueDepth(): Promise<number>;
  /** Alerts firing, per rule (every rule, with 0 for the quiet ones). */
  alertsFiring(): ReadonlyMap<string, number>;
  /** Errors while collecting (e.g. the store is down): logged, the scrape still answers. */
  onCollectError?(err: unknown, metric: string): void;
}

export class HubMetrics {
  readonly registry = new Registry();
  readonly messages = new MessageTally();
  /** Observed by the built-in endpoint's readers and the routing dispatchers. */
  readonly deliveries = new DeliveryLatency();
  readonly #authFailures: Counter<'protocol' | 'reason'>;
  readonly #authSuccesses: Counter<'protocol' | 'method'>;
  readonly #registrations: Counter<'outcome' | 'attestation'>;
  readonly #refused: Counter<'listener' | 'reason'>;
  readonly #unsubscribe: () => void;

  constructor(private readonly sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    shareWithPrimary(this.registry);

    const tally = this.messages;
    const countsShared = countsSharedGauges();
    new Gauge({
      name: `${METRIC_PREFIX}connections`,
      help: 'Live device sessions, by transport and authentication method.',
      labelNames: ['protocol', 'auth_method'] as const,
      registers,
      collect() {
        const counts = new Map<string, { protocol: string; auth_method: string; n: number }>();
        for (const s of sources.sessions()) {
          const protocol = s.protocol ?? 'unknown';
          const method = s.authMethod ?? 'unknown';
          const key = `${protocol}\0${method}`;
          const c = counts.get(key);
          if (c === undefined) counts.set(key, { protocol, auth_method: method, n: 1 });
          else c.n++;
        }
        this.reset();
        for (const c of counts.values()) this.set({ protocol: c.protocol, auth_method: c.auth_method }, c.n);
      },
    });
    this.#authFailures = new Counter({
      name: `${METRIC_PREFIX}auth_failures_total`,
      help: 'Failed authentications, by protocol and reason category.',
      labelNames: ['protocol', 'reason'] as const,
      registers,
    });
    this.#authSuccesses = new Counter({
      name: `${METRIC_PREFIX}auth_successes_total`,
      help: 'Successful authentications, by protocol and credential method.',
      labelNames: ['protocol', 'method'] as const,
      registers,
    });
    new Counter({
      name: `${METRIC_PREFIX}messages_total`,
      help: 'Messages: device telemetry and twin reported patches in; C2D, direct-method requests and desired-property pushes out.',
      labelNames: ['direction', 'kind'] as const,
      registers,
      collect() {
        // The tally only grows; the counter shows its totals.
        this.reset();
        for (const s of MESSAGE_SERIES) this.inc({ direction: s.direction, kind: s.kind }, tally[s.field]);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}c2d_queue_depth`,
      help: 'Cloud-to-device messages pending (not expired) across every device queue.',
      registers,
      // Every worker of a node would count the same shared store: one does (the others stay 0).
      aggregator: 'max',
      async collect() {
        if (!countsShared) return;
        try {
          this.set(await sources.c2dQueueDepth());
        } catch (err) {
          sources.onCollectError?.(err, 'c2d_queue_depth');
        }
      },
    });
    this.#registrations = new Counter({
      name: `${METRIC_PREFIX}provisioning_registrations_total`,
      help: 'Completed provisioning registrations, by outcome and attestation.',
      labelNames: ['outcome', 'attestation'] as const,
      registers,
    });
    this.#refused = new Counter({
      name: `${METRIC_PREFIX}connections_refused_total`,
      help: 'Connections closed before they authenticated, by listener and reason (a cap or a timeout).',
      labelNames: ['listener', 'reason'] as const,
      registers,
    });
    new Gauge({
      name: `${METRIC_PREFIX}alerts_firing`,
      help: 'Alerts currently firing, per rule.',
      labelNames: ['rule'] as const,
      registers,
      // The alert engines of a node's workers share their counts over the bus and fire alike.
      aggregator: 'max',
      collect() {
        this.reset();
        for (const [rule, n] of sources.alertsFiring()) this.set({ rule }, n);
      },
    });

    // Our own histogram over plain counts (delivery-latency.ts), as the registry reads a metric.
    this.registry.registerMetric(deliveryLatencyMetric(`${METRIC_PREFIX}routing_delivery_latency_seconds`, this.deliveries) as unknown as Parameters<Registry['registerMetric']>[0]);

    this.#unsubscribe = sources.events.on((e) => {
      if (e.type === 'auth') this.#auth(e);
    });
  }

  #auth(e: AuthEvent): void {
    if (e.outcome === 'failure') this.#authFailures.inc({ protocol: e.protocol, reason: e.reasonCode ?? 'other' });
    else this.#authSuccesses.inc({ protocol: e.protocol, method: e.method ?? 'none' });
  }

  registration(outcome: 'assigned' | 'failed', attestation: string): void {
    this.#registrations.inc({ outcome, attestation });
  }

  connectionRefused(listener: ListenerName, reason: RefusalReason): void {
    this.#refused.inc({ listener, reason });
  }

  /** The text exposition format (version 0.0.4) and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    if (isClusterWorker()) {
      try {
        return { contentType: this.registry.contentType, body: await nodeMetrics() };
      } catch (err) {
        this.sources.onCollectError?.(err, 'node');
        const own = await this.registry.metrics();
        return { contentType: this.registry.contentType, body: `# gatehouse: this worker's metrics only: the node's primary did not answer (${(err as Error).message})\n${own}` };
      }
    }
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Stops listening to security events (the process metrics need no stopping). */
  stop(): void {
    this.#unsubscribe();
  }
}
