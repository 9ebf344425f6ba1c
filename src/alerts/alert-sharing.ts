/**
 * Alert windows counted across the cluster (issue 16 item 4). Each node's alert engine counts the
 * security events it saw, as on one node, and publishes what it counted, batched every 100 ms, on
 * `alerts.counted`; every other node adds those counts to its own windows, so each node's window
 * holds the cluster's sum (late by the bus's delivery time). Two nodes crossing a threshold at
 * about the same moment would both fire: so a firing first claims the (rule, key) in the shared
 * counters (the store's row lock decides), and only the winner records and notifies; the others
 * follow its alert without acting, and it alone resolves it.
 *
 * Why the bus for the counts and not the store, as the lockout does (docs/decisions/0004):
 * an alert informs, it refuses nothing, so a count that lags by a few milliseconds or misses what
 * a node counted while it was cut off from NATS costs nothing an operator relies on; and the
 * events alert rules count come in storms (a disconnect storm is 10,000 sessions ending at once,
 * exactly when the database is busiest with their reconnects), where one store transaction per
 * event would add load at the worst moment. The bus carries one message per node per 100 ms
 * however many events. The store is used only when an alert fires: rare, and one row.
 */
import type { JsonObject } from '../core/json.js';
import type { Clock } from '../core/clock.js';
import type { CounterStore } from '../store/counter-ports.js';
import { SUBJECTS, type AlertsCounted, type HubBus } from '../bus/subjects.js';

const FLUSH_MS = 100;
const PER_MESSAGE = 200;
/** Counts from one node in one batch, at most: beyond that a key's count is dropped (and logged by nobody: it informs). */
const MAX_COUNTS = 10_000;

export type RemoteCount = AlertsCounted['counts'][number];

export class AlertSharing {
  readonly #outbox = new Map<string, RemoteCount>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly bus: HubBus,
    /** Absent on one node: nobody to race for a firing. */
    private readonly counters: CounterStore | undefined,
    private readonly clock: Clock,
  ) {}

  /** Whether firings are claimed in the store (a cluster). */
  get claims(): boolean {
    return this.counters !== undefined;
  }

  /** This node counted `n` events for (rule, key): other nodes hear of it within FLUSH_MS. */
  counted(rule: string, key: string, n: number, at: number, details: JsonObject): void {
    const k = `${rule}\u0000${key}`;
    const c = this.#outbox.get(k);
    if (c !== undefined) {
      c.n += n;
      c.at = at;
      c.details = details;
    } else if (this.#outbox.size < MAX_COUNTS) {
      this.#outbox.set(k, { rule, key, n, at, details });
    }
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), FLUSH_MS);
      this.#timer.unref();
    }
  }

  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#outbox.size === 0) return;
    const counts = [...this.#outbox.values()];
    this.#outbox.clear();
    // In messages of a few hundred counts: details and all, far below NATS's 1 MB payload limit.
    for (let i = 0; i < counts.length; i += PER_MESSAGE) {
      try {
        this.bus.publish(SUBJECTS.alertsCounted, { counts: counts.slice(i, i + PER_MESSAGE) });
      } catch {
        // Runs on a timer: a count the bus would not take is lost (the other nodes count a little
        // lower), never the process.
      }
    }
  }

  /** Counts other nodes made; returns the unsubscribe. */
  onRemote(handler: (c: RemoteCount) => void): () => void {
    const sub = this.bus.subscribe(SUBJECTS.alertsCounted, ({ counts }, meta) => {
      if (!meta.local) for (const c of counts) handler(c);
    });
    return () => sub.unsubscribe();
  }

  /** This node changed the rule `name` in the store: the other nodes reload it. Never throws. */
  ruleChanged(name: string): void {
    try {
      this.bus.publish(SUBJECTS.alertRuleChanged, { name });
    } catch {
      // The bus is closing or away: the other nodes reload every rule when it is back (busResync).
    }
  }

  /**
   * Rule changes on other nodes (`name`), and every rule (undefined) after the bus was away;
   * returns the unsubscribe.
   */
  onRuleChanged(handler: (name: string | undefined) => void): () => void {
    const changed = this.bus.subscribe(SUBJECTS.alertRuleChanged, ({ name }, meta) => {
      if (!meta.local) handler(name);
    });
    const resync = this.bus.subscribe(SUBJECTS.busResync, () => handler(undefined));
    return () => (changed.unsubscribe(), resync.unsubscribe());
  }

  /**
   * Claims the firing of (rule, key) for alert `id`, for at most `holdMs` (a node that dies with it
   * firing frees it then). Resolves with the id that fires: `id` when this node won.
   */
  async claim(rule: string, key: string, id: string, holdMs: number): Promise<string> {
    const counters = this.counters;
    if (counters === undefined) return id;
    const k = claimKey(rule, key);
    const now = this.clock.now();
    return counters.update([k], now, (current) => {
      const held = current.get(k);
      if (held !== undefined) return { writes: new Map(), result: (JSON.parse(held) as { id: string }).id };
      return { writes: new Map([[k, { value: JSON.stringify({ id }), expiresAt: now + holdMs }]]), result: id };
    });
  }

  /** The alert resolved: the next crossing fires anew. */
  async release(rule: string, key: string, id: string): Promise<void> {
    const counters = this.counters;
    if (counters === undefined) return;
    const k = claimKey(rule, key);
    await counters.update([k], this.clock.now(), (current) => {
      const held = current.get(k);
      const mine = held !== undefined && (JSON.parse(held) as { id: string }).id === id;
      return { writes: mine ? new Map([[k, { value: null, expiresAt: 0 }]]) : new Map(), result: undefined };
    });
  }

  stop(): void {
    this.flush();
  }
}

function claimKey(rule: string, key: string): string {
  return `alert:${rule}:${key}`;
}
