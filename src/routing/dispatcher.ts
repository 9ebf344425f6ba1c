/**
 * Delivery to one custom endpoint from one partition of the log (decision 0006): read the
 * partition from the durable cursor, keep the records routed to the endpoint, add its
 * enrichments, hand them to the endpoint's sink in batches, and advance the cursor only once a
 * batch is delivered: at least once, in order per partition (hence per device).
 *
 * A failed batch is tried again, the same batch, after a jittered exponential backoff (1 s
 * doubling to 60 s). Health follows Azure's states: `unknown` before the first attempt,
 * `healthy` after a success, `unhealthy` while failing, `dead` once failing for longer than the
 * log keeps messages.
 *
 * In a cluster exactly one node runs the dispatcher of an (endpoint, partition): it holds a lease
 * in the shared counters (decision 0004), renewed while it runs, taken over by another node when
 * it lapses. The cursor and the health live beside the lease, written in the same transaction
 * that checks the lease is still held, so a node that lost its lease cannot move the cursor.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { LatencySeries } from '../core/delivery-latency.js';
import type { LogPosition, LogRecord } from '../log/log-ports.js';
import { isRoutedTo, type EventLog } from '../log/log-ports.js';
import type { CounterStore } from '../store/counter-ports.js';
import type { EndpointSink, RoutedMessage } from './endpoints/sink.js';
import { maskUrl } from './routing-secrets.js';

export type HealthStatus = 'unknown' | 'healthy' | 'unhealthy' | 'dead';

/** What the cursor key holds (JSON): the next sequence number to deliver, and the health. */
export interface CursorState {
  /** The next record's sequence number to look at. */
  next: number;
  status: HealthStatus;
  lastKnownError?: string;
  lastKnownErrorTime?: string;
  lastSuccessfulSendAttemptTime?: string;
  lastSendAttemptTime?: string;
  /** When the current run of failures began (ms). */
  failingSince?: number;
}

export interface DispatchTiming {
  /** Lease lifetime; renewed every third of it. */
  leaseMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Failing this long makes an endpoint dead (the hub passes the log's retention: its messages are gone by then; 24 h when not given). */
  deadAfterMs: number;
  /** Records per batch read from the log, and handed to a sink that sets no maxBatch of its own, at most. */
  maxBatch: number;
}

export const DEFAULT_TIMING: DispatchTiming = { leaseMs: 15_000, backoffBaseMs: 1000, backoffMaxMs: 60_000, deadAfterMs: 24 * 3600_000, maxBatch: 100 };

/** Cursors are kept this long after their last write (an endpoint removed and made again resumes). */
const CURSOR_KEEP_MS = 30 * 24 * 3600_000;
/**
 * How far the nodes' clocks may disagree: a record routed to a new endpoint was stored after the
 * routing that names it was saved, but its enqueued time comes from the clock of the node that
 * stored it, and `since` from the one that saved the routing.
 */
export const CLOCK_ALLOWANCE_MS = 5 * 60_000;
/**
 * With records gathered and no linger, how long the dispatcher waits for the tail's next batch
 * after a full one before it delivers what it has (a full batch usually means more at once: a
 * backlog is read from memory or the database within milliseconds).
 */
const READ_ON_MS = 50;
/** A cursor moved only past records for other endpoints is written at most this often. */
const SKIP_WRITE_MS = 2000;

export const leaseKey = (endpoint: string, partition: number): string => `routing-lease:${endpoint}:${partition}`;
export const cursorKey = (endpoint: string, partition: number): string => `routing-cursor:${endpoint}:${partition}`;

export interface DispatcherDeps {
  endpoint: string;
  partition: number;
  log: EventLog;
  counters: CounterStore;
  sink: EndpointSink;
  /** The endpoint's enrichments for a record (twin read at delivery time). */
  enrich(record: LogRecord): Promise<Record<string, string>>;
  nodeId: string;
  now(): number;
  /**
   * When the endpoint first appeared in the routing (ms): with no cursor yet, delivery starts at
   * records enqueued from CLOCK_ALLOWANCE_MS before it, not at the oldest record retained.
   */
  since?: number;
  timing: DispatchTiming;
  /** Observes each delivered record's time from enqueue to the sink's acknowledgement. */
  latency?: LatencySeries;
  onError(err: unknown, what: string): void;
}

/** The backoff before retry `n` (1-based): base * 2^(n-1), at most max, jittered to 50-100%. */
export function backoffMs(n: number, base: number, max: number, random: () => number = Math.random): number {
  const full = Math.min(max, base * 2 ** Math.min(30, n - 1));
  return Math.round(full * (0.5 + 0.5 * random()));
}

/** An error as health shows it: one line, no password of a URL in it, at most 500 characters. */
export function describeError(err: unknown): string {
  const text = err instanceof Error ? err.message || err.name : String(err);
  return maskUrl(text.replace(/\s+/g, ' ')).replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@/\s]*@/gi, '$1****@').slice(0, 500);
}

class LeaseLost extends Error {}

export class Dispatcher {
  readonly #stop = new AbortController();
  #running: Promise<void> | undefined;
  #lastWrite = 0;

  constructor(private readonly d: DispatcherDeps) {}

  start(): void {
    this.#running ??= this.#run();
  }

  /** Stops reading and delivering; resolves once the loop ended (the sink is the caller's to close). */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#running;
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      let cursor: CursorState | undefined;
      try {
        cursor = await this.#acquire();
      } catch (err) {
        this.d.onError(err, 'lease');
      }
      if (cursor === undefined) {
        await sleep(Math.max(200, this.d.timing.leaseMs / 3), undefined, { signal }).catch(() => undefined);
        continue;
      }
      // Stopped while the lease was taken: an abort listener added now would never fire.
      if (signal.aborted) break;
      const held = new AbortController();
      const onStop = () => held.abort();
      signal.addEventListener('abort', onStop);
      const renewal = this.#renewWhileHeld(held);
      try {
        await this.#resume();
        await this.#deliverFrom(cursor, held.signal);
      } catch (err) {
        if (!(err instanceof LeaseLost) && !held.signal.aborted) this.d.onError(err, 'dispatch');
      } finally {
        held.abort();
        signal.removeEventListener('abort', onStop);
        await renewal;
      }
      if (!signal.aborted) await sleep(200, undefined, { signal }).catch(() => undefined);
    }
    await this.#release().catch(() => undefined);
  }

  /**
   * The partition is ours: the sink finishes what a crashed holder left half done (the file
   * endpoint's unpublished chunks) now, not at the next batch, which may never come. A failure is
   * logged and delivery goes on (the sink does it again before its next batch).
   */
  async #resume(): Promise<void> {
    try {
      await this.d.sink.resume?.(this.d.partition);
    } catch (err) {
      this.d.onError(err, 'resume');
    }
  }

  /** Takes the lease if free (or ours); returns the cursor, or undefined when another node holds it. */
  #acquire(): Promise<CursorState | undefined> {
    const { endpoint, partition, nodeId, timing } = this.d;
    const now = this.d.now();
    const lk = leaseKey(endpoint, partition);
    const ck = cursorKey(endpoint, partition);
    return this.d.counters.update([lk, ck], now, (cur) => {
      const lease = cur.get(lk);
      if (lease !== undefined && (JSON.parse(lease) as { node: string }).node !== nodeId) return { writes: new Map(), result: undefined };
      const raw = cur.get(ck);
      const cursor: CursorState = raw === undefined ? { next: -1, status: 'unknown' } : (JSON.parse(raw) as CursorState);
      return { writes: new Map([[lk, { value: JSON.stringify({ node: nodeId }), expiresAt: now + timing.leaseMs }]]), result: cursor };
    });
  }

  async #renewWhileHeld(held: AbortController): Promise<void> {
    const { endpoint, partition, nodeId, timing } = this.d;
    const lk = leaseKey(endpoint, partition);
    while (!held.signal.aborted) {
      await sleep(timing.leaseMs / 3, undefined, { signal: held.signal }).catch(() => undefined);
      if (held.signal.aborted) return;
      try {
        const now = this.d.now();
        const ours = await this.d.counters.update([lk], now, (cur) => {
          const lease = cur.get(lk);
          if (lease !== undefined && (JSON.parse(lease) as { node: string }).node !== nodeId) return { writes: new Map(), result: false };
          return { writes: new Map([[lk, { value: JSON.stringify({ node: nodeId }), expiresAt: now + timing.leaseMs }]]), result: true };
        });
        if (!ours) held.abort();
      } catch (err) {
        this.d.onError(err, 'lease renewal');
      }
    }
  }

  async #release(): Promise<void> {
    const { endpoint, partition, nodeId } = this.d;
    const lk = leaseKey(endpoint, partition);
    await this.d.counters.update([lk], this.d.now(), (cur) => {
      const lease = cur.get(lk);
      const ours = lease !== undefined && (JSON.parse(lease) as { node: string }).node === nodeId;
      return { writes: ours ? new Map([[lk, { value: null, expiresAt: 0 }]]) : new Map(), result: undefined };
    });
  }

  /** Writes the cursor if the lease is still ours; LeaseLost otherwise. */
  async #save(state: CursorState): Promise<void> {
    const { endpoint, partition, nodeId } = this.d;
    const now = this.d.now();
    const lk = leaseKey(endpoint, partition);
    const ck = cursorKey(endpoint, partition);
    const ok = await this.d.counters.update([lk, ck], now, (cur) => {
      const lease = cur.get(lk);
      if (lease === undefined || (JSON.parse(lease) as { node: string }).node !== nodeId) return { writes: new Map(), result: false };
      return { writes: new Map([[ck, { value: JSON.stringify(state), expiresAt: now + CURSOR_KEEP_MS }]]), result: true };
    });
    if (!ok) throw new LeaseLost(`lost the lease of ${endpoint}/${partition}`);
    this.#lastWrite = now;
  }

  /**
   * Gathers the records routed here across the tail's batches and delivers them at most
   * `maxBatch` at a time (the sink's own, if it sets one): while the tail has more at once (a
   * backlog, or a busy partition whose batches are mostly for other endpoints) it reads on instead
   * of delivering a few records per batch, and a sink with `lingerMs` also waits that long from
   * the first gathered record once the tail has caught up. A busy partition of which one endpoint
   * takes a tenth otherwise cost that endpoint a write (a file append and fdatasync) and a cursor
   * save per ten records.
   *
   * The tail goes on being read while the records linger: a pause in reading would let the
   * records appended meanwhile (2,400 in a 200 ms linger at 12k msgs/s a partition) leave what the
   * log keeps in memory for its readers, and the dispatcher would then read them back from the
   * database (bench/routing (a): 1.6 µs a message of the hub's main thread, and their garbage).
   */
  async #deliverFrom(start: CursorState, signal: AbortSignal): Promise<void> {
    const state: CursorState = { ...start };
    const { maxBatch } = this.d.timing;
    // No cursor: a new endpoint (or one whose cursor expired). Records stored before the endpoint
    // existed cannot be routed to it; reading them all would be a full pass over the retained log.
    const position: LogPosition =
      state.next >= 0
        ? { sequenceNumber: state.next, inclusive: true }
        : this.d.since === undefined
          ? 'earliest'
          : { enqueuedTime: new Date(this.d.since - CLOCK_ALLOWANCE_MS).toISOString() };
    const tail = this.d.log.tail(this.d.partition, position, { signal, maxBatch })[Symbol.asyncIterator]();
    /** The tail's next batch, asked for and not yet taken (kept across a linger that ran out first). */
    let pending: Promise<IteratorResult<LogRecord[]>> | undefined;
    let mine: LogRecord[] = [];
    let firstAt = 0;
    /** The sequence number after the last batch read: every record before it routed here is in `mine` or delivered. */
    let readTo = state.next;
    let caughtUp = false;
    try {
      for (;;) {
        if (mine.length > 0) {
          // Read now: a sink made on first use knows its linger and its batch size only once made.
          const linger = this.d.sink.lingerMs ?? 0;
          const left = linger - (this.d.now() - firstAt);
          const most = this.d.sink.maxBatch ?? maxBatch;
          if (mine.length >= most || (linger === 0 ? caughtUp : left <= 0)) {
            // Gathered a read batch at a time: what is past the sink's limit goes in the next delivery.
            const rest = mine.length > most ? mine.slice(most) : [];
            await this.#deliver(rest.length > 0 ? mine.slice(0, most) : mine, state, signal);
            if (signal.aborted) return;
            state.next = rest.length > 0 ? (rest[0] as LogRecord).sequenceNumber : readTo;
            await this.#save(state);
            mine = rest;
            if (rest.length === 0) firstAt = 0;
            continue;
          }
          // Not yet: the next batch, or the end of the linger (with none, of a moment), whichever
          // comes first. A read batch that was full only by chance, just as the partition went
          // quiet, must not keep what it gathered until the partition's next message.
          pending ??= tail.next();
          if ((await untilOrTimeout(pending, linger > 0 ? left : READ_ON_MS, signal)) === undefined) {
            if (signal.aborted) return;
            caughtUp = true;
            continue;
          }
        }
        pending ??= tail.next();
        const res = await pending;
        pending = undefined;
        if (res.done === true) return;
        const batch = res.value;
        if (batch.length === 0) continue;
        readTo = (batch.at(-1) as LogRecord).sequenceNumber + 1;
        caughtUp = batch.length < maxBatch;
        const before = mine.length;
        for (const r of batch) if (isRoutedTo(r, this.d.endpoint)) mine.push(r);
        if (mine.length === 0) {
          state.next = readTo;
          if (this.d.now() - this.#lastWrite >= SKIP_WRITE_MS) await this.#save(state);
          continue;
        }
        if (before === 0) firstAt = this.d.now();
      }
    } finally {
      // Not awaited: a next() still pending holds the generator until the signal (aborted by the caller) ends it.
      void tail.return?.(undefined).catch(() => undefined);
    }
  }

  /** Delivers the batch, retrying with backoff until it is delivered or the dispatcher stops. */
  async #deliver(records: LogRecord[], state: CursorState, signal: AbortSignal): Promise<void> {
    const batch: RoutedMessage[] = [];
    for (let failures = 0; !signal.aborted; ) {
      const attempt = new Date(this.d.now()).toISOString();
      try {
        if (batch.length === 0) for (const record of records) batch.push({ record, enrichments: await this.d.enrich(record) });
        await this.d.sink.deliver(batch);
        if (this.d.latency !== undefined) {
          const now = this.d.now();
          for (const r of records) this.d.latency.observe(now - Date.parse(r.enqueuedTime));
        }
        state.status = 'healthy';
        state.lastSendAttemptTime = attempt;
        state.lastSuccessfulSendAttemptTime = new Date(this.d.now()).toISOString();
        delete state.failingSince;
        return;
      } catch (err) {
        if (signal.aborted) return;
        failures++;
        const now = this.d.now();
        state.failingSince ??= now;
        state.status = now - state.failingSince >= this.d.timing.deadAfterMs ? 'dead' : 'unhealthy';
        state.lastKnownError = describeError(err);
        state.lastKnownErrorTime = new Date(now).toISOString();
        state.lastSendAttemptTime = attempt;
        await this.#save(state);
        await sleep(backoffMs(failures, this.d.timing.backoffBaseMs, this.d.timing.backoffMaxMs), undefined, { signal }).catch(() => undefined);
      }
    }
  }
}

/**
 * The promise's value, or undefined once `ms` passed or the signal aborted first (the promise goes
 * on). A plain timer: an aborted timers/promises sleep builds an AbortError with its stack, and a
 * lingering dispatcher ends a wait this way at every batch (0.2 µs a message in bench/routing).
 */
function untilOrTimeout<T>(promise: Promise<T>, ms: number, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve) => {
    const done = (value: T | undefined) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(value);
    };
    const onAbort = () => done(undefined);
    const timer = setTimeout(onAbort, ms);
    signal.addEventListener('abort', onAbort, { once: true });
    // A rejection is met again where the caller awaits the promise itself.
    promise.then(done, onAbort);
  });
}

/** Azure's endpoint health of one endpoint from its partitions' cursors: the worst state wins. */
export function endpointHealth(states: readonly (CursorState | undefined)[]): Omit<CursorState, 'next' | 'failingSince'> {
  const rank: Record<HealthStatus, number> = { unknown: 0, healthy: 1, unhealthy: 2, dead: 3 };
  let status: HealthStatus = 'unknown';
  const latest = (k: 'lastKnownErrorTime' | 'lastSuccessfulSendAttemptTime' | 'lastSendAttemptTime') =>
    states.reduce<string | undefined>((m, s) => (s?.[k] !== undefined && (m === undefined || s[k] > m) ? s[k] : m), undefined);
  for (const s of states) if (s !== undefined && rank[s.status] > rank[status]) status = s.status;
  const errorTime = latest('lastKnownErrorTime');
  const withError = states.find((s) => s?.lastKnownErrorTime === errorTime && errorTime !== undefined);
  return {
    status,
    ...(withError?.lastKnownError === undefined ? {} : { lastKnownError: withError.lastKnownError, lastKnownErrorTime: errorTime as string }),
    ...(latest('lastSuccessfulSendAttemptTime') === undefined ? {} : { lastSuccessfulSendAttemptTime: latest('lastSuccessfulSendAttemptTime') as string }),
    ...(latest('lastSendAttemptTime') === undefined ? {} : { lastSendAttemptTime: latest('lastSendAttemptTime') as string }),
  };
}
