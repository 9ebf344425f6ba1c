/**
 * Connection refusals in the audit log: an IP-filtered connection or a refused TLS handshake
 * carries no identity, costs a client next to nothing to repeat, and comes in floods from
 * scanners. The audit log writes the first of a kind (address, protocol, reason code) at once and
 * folds the rest of that interval into one summary row ("… (57 more like this from 192.0.2.7 in
 * 60 s)") written when the interval ends or the log stops. Metrics and alert rules read the event
 * stream, so they still count every one.
 *
 * Memory is bounded: at most MAX_KEYS kinds are tracked; beyond that, refusals of new kinds are
 * folded into one hub-wide summary per interval.
 */
import type { AuthEvent } from '../core/security-events.js';

const MAX_KEYS = 10_000;
const OVERFLOW = '\0overflow';

interface Fold {
  /** When the interval of this kind started (the clock's ms). */
  start: number;
  first: AuthEvent;
  /** Refusals after the first in this interval, not written yet, and when the last came. */
  more: number;
  lastAt: number;
  /** Distinct addresses in the overflow fold (bounded count, for the summary). */
  addresses?: Set<string>;
}

/** Whether an event is a connection-level refusal the audit log folds. */
export function isConnectionRefusal(e: AuthEvent): boolean {
  return e.subject === 'connection' && e.outcome === 'failure';
}

export class ConnectionRefusals {
  readonly #folds = new Map<string, Fold>();

  constructor(readonly intervalMs: number) {}

  /**
   * The entries to write now for a refusal: the summary of its kind's last interval if that is
   * over, then the refusal itself if it is the first of its kind this interval.
   */
  take(e: AuthEvent, now: number): AuthEvent[] {
    const out: AuthEvent[] = [];
    let key = `${e.remote}\0${e.protocol}\0${e.reasonCode ?? ''}`;
    let f = this.#current(key, now, out);
    if (f === undefined && this.#folds.size >= MAX_KEYS) {
      key = OVERFLOW;
      f = this.#current(key, now, out);
    }
    if (f !== undefined) {
      f.more += 1;
      f.lastAt = e.at;
      if (f.addresses !== undefined && f.addresses.size < MAX_KEYS) f.addresses.add(e.remote);
      return out;
    }
    if (key === OVERFLOW) {
      this.#folds.set(key, { start: now, first: e, more: 1, lastAt: e.at, addresses: new Set([e.remote]) });
      return out;
    }
    this.#folds.set(key, { start: now, first: e, more: 0, lastAt: e.at });
    out.push(e);
    return out;
  }

  /** The fold of `key` if its interval still runs; an ended one is removed (its summary into `out`). */
  #current(key: string, now: number, out: AuthEvent[]): Fold | undefined {
    const f = this.#folds.get(key);
    if (f === undefined || now - f.start < this.intervalMs) return f;
    this.#folds.delete(key);
    if (f.more > 0) out.push(this.#summary(key, f));
    return undefined;
  }

  /** Summaries of the intervals that have ended by `now` (every one with `all`, when the log stops). */
  drain(now: number, all = false): AuthEvent[] {
    return all ? this.#ended(Number.POSITIVE_INFINITY) : this.#ended(now);
  }

  #ended(now: number): AuthEvent[] {
    const out: AuthEvent[] = [];
    for (const [key, f] of this.#folds) {
      if (now - f.start < this.intervalMs) continue;
      this.#folds.delete(key);
      if (f.more > 0) out.push(this.#summary(key, f));
    }
    return out;
  }

  #summary(key: string, f: Fold): AuthEvent {
    const seconds = Math.round(this.intervalMs / 1000);
    if (key === OVERFLOW) {
      const n = f.addresses?.size ?? 0;
      return { ...f.first, at: f.lastAt, remote: '', reason: `${f.more} connection refusals from ${n >= MAX_KEYS ? `${MAX_KEYS} or more` : n} addresses in ${seconds} s, too many kinds to record each (the first: ${f.first.reason ?? ''})` };
    }
    return { ...f.first, at: f.lastAt, reason: `${f.first.reason ?? ''} (${f.more} more like this from ${f.first.remote} in ${seconds} s)` };
  }
}
