/**
 * The built-in event stream: durable telemetry intake with group commit, live subscribers that can
 * resume from a seq, and retention.
 *
 * Appends: one batch is written at a time (so seqs commit in order); events that arrive while it is
 * in flight wait and go together in the next `appendEvents` call, one transaction. An append
 * resolves only after its batch committed: the MQTT layer PUBACKs then, so no acknowledged message
 * can be lost.
 *
 * Subscribers: `from: N` replays seq > N from the store in pages while buffering live events, then
 * switches to live, dropping what the replay already delivered: no gap, no duplicate.
 *
 * Each committed batch is announced on the bus (`telemetry.appended`, a wake-up: the events are in
 * the store). Live subscribers on every node get every node's events in seq order, once: the node
 * keeps one position in the cluster's stream and hands out its own batches and, read from the
 * store, other nodes' in order (#pump).
 */
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';
import { HubError } from '../../core/errors.js';
import type { JsonObject, JsonValue } from '../../core/json.js';
import type { EventStore, NewEvent, StoredEvent } from '../../store/event-ports.js';
import { SUBJECTS, type HubBus } from '../../bus/subjects.js';

export interface EventStreamOptions {
  /** Events older than this are pruned. */
  retentionMs: number;
  /** At most this many events are kept; the oldest go first. */
  maxEvents: number;
}

export interface SubscribeOptions {
  /** 'now': events appended after the call; a seq: every event with a greater seq, then live. */
  from: 'now' | number;
  deviceId?: string;
  /** Awaited before each replay page, so a slow consumer holds the replay back instead of buffering it all. */
  ready?: () => Promise<void>;
  /** The subscription ended on an error (store read failed, onEvent threw); it is closed already. */
  onError?: (err: unknown) => void;
}

export interface EventSubscription {
  close(): void;
}

const MAX_BATCH_EVENTS = 1000;
const MAX_BATCH_BYTES = 16 * 1024 * 1024;
const REPLAY_PAGE = 256;
/** Live events a replaying subscriber holds; beyond that it drops them and reads them from the store. */
const MAX_REPLAY_BUFFER = 10_000;
const PRUNE_INTERVAL_MS = 60_000;

interface Pending {
  event: NewEvent;
  ticket: number;
  resolve(seq: number): void;
  reject(err: unknown): void;
}

/** One committed batch of this node's appends, with the tickets that tell 'now' subscribers apart. */
interface Committed {
  first: number;
  last: number;
  events: Array<{ event: StoredEvent; ticket: number }>;
}

interface Subscriber {
  deviceId: string | undefined;
  onEvent(e: StoredEvent): void;
  onError: ((err: unknown) => void) | undefined;
  /** Highest seq delivered (or the resume point). */
  cursor: number;
  /** Only events whose append() came after this ticket ('now' subscribers). */
  minTicket: number;
  live: boolean;
  buffer: StoredEvent[];
  overflowed: boolean;
  closed: boolean;
}

export class EventStream {
  readonly #queue: Pending[] = [];
  readonly #subscribers = new Set<Subscriber>();
  #tickets = 0;
  #writer: Promise<void> | undefined;
  #pruning: Promise<number> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(
    private readonly store: EventStore,
    private readonly clock: Clock,
    private readonly opts: EventStreamOptions,
    private readonly logger: Logger,
    private readonly bus: HubBus,
  ) {
    bus.subscribe(SUBJECTS.telemetryAppended, (batch, meta) => {
      if (meta.local || batch.lastSeq <= this.#announced) return;
      this.#announced = batch.lastSeq;
      this.#kick();
    });
    // Wake-ups from other nodes may have been lost while the bus was away.
    bus.subscribe(SUBJECTS.busResync, () => {
      this.#resync = true;
      this.#kick();
    });
    this.#kick();
  }

  /**
   * Every seq up to here has been handed to the subscribers (or there were none): the node's place
   * in the cluster's stream. Undefined until the store's committed head is read.
   */
  #position: number | undefined;
  /** The highest seq other nodes announced as committed. */
  #announced = 0;
  /** The bus was away: read whatever is in the store past the position. */
  #resync = false;
  /** This node's committed batches, waiting their turn (behind lower seqs of other nodes). */
  readonly #committed: Committed[] = [];
  #pumping = false;
  #pumpDone: Promise<void> = Promise.resolve();

  #kick(): void {
    if (!this.#pumping) this.#pumpDone = this.#pump();
  }

  /**
   * Hands committed events to the subscribers in seq order, whichever node appended them. Appends
   * commit in seq order across the cluster (sql-event-store.ts), so once seq N is known to be
   * committed every lower seq that will ever exist is readable: before this node's own batch
   * starting at N goes out, the store is read up to N - 1 (another node's batch that committed
   * first, whose wake-up may still be on its way), and another node's announcement of N is
   * followed by a read up to N. A batch with nothing before it that is not yet delivered goes out
   * at once, without a read: the one-node case, and a cluster's common case.
   */
  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (!this.#stopped || this.#committed.length > 0) {
        if (this.#position === undefined && !(await this.#readHead())) return;
        const pos = this.#position ?? 0;
        const next = this.#committed[0];
        if (next !== undefined && next.first <= pos + 1) {
          this.#committed.shift();
          for (const { event, ticket } of next.events) if (event.seq > pos) this.#publish(event, ticket);
          this.#position = Math.max(pos, next.last);
          continue;
        }
        const resync = this.#resync && next === undefined;
        const upTo = next !== undefined ? next.first - 1 : resync ? Infinity : this.#announced;
        if (upTo <= pos) break;
        this.#resync &&= !resync;
        if (this.#subscribers.size === 0) {
          // Nobody to hand them to: move on without reading.
          if (upTo !== Infinity) this.#position = upTo;
          continue;
        }
        await this.#readUpTo(upTo);
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** The committed head, where this node starts; false (every subscriber ended) if the store failed. */
  async #readHead(): Promise<boolean> {
    let head: number;
    try {
      head = await this.store.committedHead();
    } catch (err) {
      this.#failAll(err);
      return false;
    }
    // This node's own batches that committed meanwhile go out from the queue, with their tickets.
    const first = this.#committed[0]?.first;
    this.#position = first === undefined ? head : Math.min(head, first - 1);
    for (const sub of this.#subscribers) if (sub.cursor < 0) sub.cursor = this.#position;
    return true;
  }

  /** Reads the store past the position up to `upTo` (everything when Infinity) and hands it out. */
  async #readUpTo(upTo: number): Promise<void> {
    try {
      for (;;) {
        const after = this.#position ?? 0;
        const page = await this.store.readEvents({ after, limit: REPLAY_PAGE });
        let last = after;
        let beyond = false;
        for (const e of page) {
          if (e.seq > upTo) {
            beyond = true;
            break;
          }
          // Read from the store, it has no ticket: it counts as appended after every subscription.
          this.#publish(e, Infinity);
          last = e.seq;
        }
        this.#position = last;
        if (beyond || page.length < REPLAY_PAGE) break;
      }
      // Seqs that never committed (a failed batch) or were pruned leave holes: they are passed.
      if (upTo !== Infinity) this.#position = Math.max(this.#position ?? 0, upTo);
    } catch (err) {
      this.#failAll(err);
    }
  }

  /** Resolves with the event's seq once it is durable. */
  append(event: NewEvent): Promise<number> {
    if (this.#stopped) return Promise.reject(new HubError('ServiceUnavailable', 'The event stream is stopped.'));
    return new Promise<number>((resolve, reject) => {
      this.#queue.push({ event, ticket: ++this.#tickets, resolve, reject });
      this.#writer ??= this.#drain();
    });
  }

  subscribe(opts: SubscribeOptions, onEvent: (e: StoredEvent) => void): EventSubscription {
    const from = opts.from;
    if (from !== 'now' && (!Number.isSafeInteger(from) || from < 0)) {
      throw new HubError('ArgumentInvalid', 'from must be now or a non-negative integer seq.');
    }
    const sub: Subscriber = {
      deviceId: opts.deviceId,
      onEvent,
      onError: opts.onError,
      // 'now' starts at the node's place in the stream (once known: -1 until then).
      cursor: from === 'now' ? (this.#position ?? -1) : from,
      minTicket: from === 'now' ? this.#tickets : 0,
      live: from === 'now',
      buffer: [],
      overflowed: false,
      closed: this.#stopped,
    };
    if (!sub.closed) this.#subscribers.add(sub);
    // Never rejects: a failed replay ends that subscriber with its error.
    if (!sub.live && !sub.closed) void this.#replay(sub, opts.ready);
    return {
      close: () => {
        sub.closed = true;
        sub.buffer = [];
        this.#subscribers.delete(sub);
      },
    };
  }

  /** Starts retention: a prune now and every minute. */
  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    // prune never rejects: a failure is logged.
    this.#timer = setInterval(() => void this.prune(), PRUNE_INTERVAL_MS);
    this.#timer.unref();
    void this.prune();
  }

  /** Stops retention, writes what is queued, ends every subscription. Appends after this are refused. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#writer;
    await this.#pruning;
    await this.#pumpDone;
    for (const sub of this.#subscribers) sub.closed = true;
    this.#subscribers.clear();
  }

  /** Deletes events older than the retention and beyond the maximum count. Never throws. */
  prune(): Promise<number> {
    this.#pruning ??= (async () => {
      try {
        const before = new Date(this.clock.now() - this.opts.retentionMs).toISOString();
        const n = await this.store.pruneEvents({ before, keepAtMost: this.opts.maxEvents });
        if (n > 0) this.logger.info({ event: 'events.pruned', count: n }, 'pruned old events');
        return n;
      } catch (err) {
        this.logger.error({ err, event: 'events.prune-failed' }, 'event pruning failed');
        return 0;
      } finally {
        this.#pruning = undefined;
      }
    })();
    return this.#pruning;
  }

  async #drain(): Promise<void> {
    try {
      // Group commit: wait one event-loop turn (setImmediate runs after the poll phase), so every
      // socket read of this turn adds its appends before the transaction. A microtask here only
      // gathered one socket's read: ~1.4 events per commit under 100 publishers (bench/mqtt).
      await new Promise<void>((resolve) => setImmediate(resolve));
      while (this.#queue.length > 0) {
        const batch = this.#takeBatch();
        let seqs: number[];
        try {
          seqs = await this.store.appendEvents(batch.map((p) => p.event));
          if (seqs.length !== batch.length) throw new Error(`store returned ${seqs.length} seqs for ${batch.length} events`);
        } catch (err) {
          this.logger.error({ err, event: 'events.append-failed', count: batch.length }, 'event append failed');
          for (const p of batch) p.reject(err);
          continue;
        }
        const events = batch.map((p, i) => ({ event: { seq: seqs[i] ?? 0, ...p.event }, ticket: p.ticket }));
        this.#committed.push({ first: Math.min(...seqs), last: Math.max(...seqs), events });
        this.#kick();
        batch.forEach((p, i) => p.resolve(seqs[i] ?? 0));
        this.bus.publish(SUBJECTS.telemetryAppended, { lastSeq: Math.max(...seqs), count: seqs.length });
        // Let the reads that arrived during the commit join the next one.
        if (this.#queue.length > 0 && this.#queue.length < MAX_BATCH_EVENTS) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.#writer = undefined;
    }
  }

  #takeBatch(): Pending[] {
    let bytes = 0;
    let n = 0;
    while (n < this.#queue.length && n < MAX_BATCH_EVENTS) {
      bytes += this.#queue[n]?.event.body.length ?? 0;
      n++;
      if (bytes >= MAX_BATCH_BYTES) break;
    }
    return this.#queue.splice(0, n);
  }

  #publish(e: StoredEvent, ticket: number): void {
    for (const sub of this.#subscribers) {
      if (sub.closed || ticket <= sub.minTicket) continue;
      if (sub.deviceId !== undefined && sub.deviceId !== e.deviceId) continue;
      if (sub.live) {
        this.#deliver(sub, e);
      } else if (sub.buffer.length < MAX_REPLAY_BUFFER) {
        sub.buffer.push(e);
      } else {
        sub.buffer = [];
        sub.overflowed = true;
      }
    }
  }

  #deliver(sub: Subscriber, e: StoredEvent): void {
    if (sub.closed || e.seq <= sub.cursor) return;
    sub.cursor = e.seq;
    try {
      sub.onEvent(e);
    } catch (err) {
      this.#fail(sub, err);
    }
  }

  async #replay(sub: Subscriber, ready: (() => Promise<void>) | undefined): Promise<void> {
    try {
      for (;;) {
        if (ready !== undefined) await ready();
        if (sub.closed) return;
        // Every event committed after this read started is in the buffer, unless it overflowed.
        sub.overflowed = false;
        const page = await this.store.readEvents({
          after: sub.cursor,
          limit: REPLAY_PAGE,
          ...(sub.deviceId === undefined ? {} : { deviceId: sub.deviceId }),
        });
        for (const e of page) this.#deliver(sub, e);
        if (sub.closed) return;
        if (page.length < REPLAY_PAGE && !sub.overflowed) break;
      }
      const buffered = sub.buffer;
      sub.buffer = [];
      sub.live = true;
      for (const e of buffered) this.#deliver(sub, e);
    } catch (err) {
      this.#fail(sub, err);
    }
  }

  /** The store failed under the node's reader: every subscription ends (clients resume by seq). */
  #failAll(err: unknown): void {
    for (const sub of [...this.#subscribers]) this.#fail(sub, err);
  }

  #fail(sub: Subscriber, err: unknown): void {
    if (sub.closed) return;
    sub.closed = true;
    sub.buffer = [];
    this.#subscribers.delete(sub);
    this.logger.warn({ err, event: 'events.subscriber-failed' }, 'event subscription ended on an error');
    try {
      sub.onError?.(err);
    } catch {
      // The subscriber's own error handler failing changes nothing: it is gone already.
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A body as monitor-events shows it: JSON when it parses, else text when UTF-8, else base64. */
export function renderPayload(body: Buffer): JsonValue {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    return { base64: body.toString('base64') };
  }
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return text;
  }
}

/** The `gatehouse monitor-events` / SSE shape of an event, like `az iot hub monitor-events`. */
export function renderEvent(e: StoredEvent): JsonObject {
  return {
    deviceId: e.deviceId,
    ...(e.moduleId === null ? {} : { moduleId: e.moduleId }),
    seq: e.seq,
    enqueuedTime: e.enqueuedTime,
    payload: renderPayload(e.body),
    properties: { ...e.properties },
    systemProperties: { ...e.systemProperties },
  };
}
