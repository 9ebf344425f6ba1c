/**
 * Brute-force defence: failure counters per address, per identity and per credential in a
 * sliding window; when one passes its limit, that key is locked for a while, and each further
 * lockout within a day doubles the time (up to a maximum). While locked, every attempt on the key
 * is refused with the same answer a bad credential gets, and still counts as a failure.
 *
 * A success clears the identity's and the credential's counters, never the address's: a valid
 * device behind the same NAT as an attacker must not reset the attacker's count.
 *
 * Memory is bounded: at most MAX_KEYS counters; the oldest are dropped first when full.
 */
import type { Clock } from '../core/clock.js';
import type { HubSettingsBody } from './settings.js';

const MAX_KEYS = 100_000;
const DAY_MS = 86_400_000;

interface Counter {
  /** Failure times (ms) inside the window, oldest first. */
  failures: number[];
  lockedUntil: number;
  /** Lockouts in the last day (for backoff) and when the first of them was. */
  lockouts: number;
  lockoutsSince: number;
}

export interface AttemptKeys {
  address: string;
  /** `device:d1`, `policy:service`, `operator:alice`; undefined when the caller named none. */
  identity?: string | undefined;
  /** Hash of the presented credential. */
  credential?: string | undefined;
}

export interface LockState {
  locked: boolean;
  /** Which key is locked and until when (for the log, never for the caller). */
  key?: string;
  until?: number;
}

export class LockoutGuard {
  readonly #counters = new Map<string, Counter>();
  #settings: HubSettingsBody['lockout'];

  constructor(
    settings: HubSettingsBody['lockout'],
    private readonly clock: Clock,
  ) {
    this.#settings = settings;
  }

  configure(settings: HubSettingsBody['lockout']): void {
    this.#settings = settings;
    if (!settings.enabled) this.#counters.clear();
  }

  #keys(k: AttemptKeys): Array<{ key: string; limit: number }> {
    const s = this.#settings;
    const out = [{ key: `addr:${k.address}`, limit: s.maxFailuresPerAddress }];
    if (k.identity !== undefined && k.identity !== '') out.push({ key: `id:${k.identity}`, limit: s.maxFailures });
    if (k.credential !== undefined) out.push({ key: `cred:${k.credential}`, limit: s.maxFailures });
    return out;
  }

  /** Is any of the attempt's keys locked now? */
  check(k: AttemptKeys): LockState {
    if (!this.#settings.enabled) return { locked: false };
    const now = this.clock.now();
    for (const { key } of this.#keys(k)) {
      const c = this.#counters.get(key);
      if (c !== undefined && c.lockedUntil > now) return { locked: true, key, until: c.lockedUntil };
    }
    return { locked: false };
  }

  /** Counts a failure on every key; returns the keys this failure locked. */
  fail(k: AttemptKeys): Array<{ key: string; until: number }> {
    if (!this.#settings.enabled) return [];
    const now = this.clock.now();
    const windowMs = this.#settings.windowSeconds * 1000;
    const locked: Array<{ key: string; until: number }> = [];
    for (const { key, limit } of this.#keys(k)) {
      let c = this.#counters.get(key);
      if (c === undefined) {
        if (this.#counters.size >= MAX_KEYS) this.#evict(now);
        c = { failures: [], lockedUntil: 0, lockouts: 0, lockoutsSince: now };
        this.#counters.set(key, c);
      }
      while (c.failures.length > 0 && (c.failures[0] ?? 0) <= now - windowMs) c.failures.shift();
      c.failures.push(now);
      if (c.failures.length > limit + 1) c.failures.shift();
      if (c.failures.length >= limit && c.lockedUntil <= now) {
        if (now - c.lockoutsSince > DAY_MS) {
          c.lockouts = 0;
          c.lockoutsSince = now;
        }
        const ms = Math.min(this.#settings.lockoutSeconds * 1000 * 2 ** c.lockouts, this.#settings.maxLockoutSeconds * 1000);
        c.lockouts += 1;
        c.lockedUntil = now + ms;
        c.failures = [];
        locked.push({ key, until: c.lockedUntil });
      }
    }
    return locked;
  }

  /** A success: the identity's and credential's counters start over. */
  succeed(k: AttemptKeys): void {
    if (k.identity !== undefined) this.#counters.delete(`id:${k.identity}`);
    if (k.credential !== undefined) this.#counters.delete(`cred:${k.credential}`);
  }

  /** Lifts every lockout and forgets every counter (an operator's `unlock`). */
  clear(): void {
    this.#counters.clear();
  }

  get size(): number {
    return this.#counters.size;
  }

  #evict(now: number): void {
    const windowMs = this.#settings.windowSeconds * 1000;
    for (const [key, c] of this.#counters) {
      if (c.lockedUntil <= now && (c.failures.at(-1) ?? 0) <= now - windowMs) this.#counters.delete(key);
    }
    // Still full: drop the oldest tenth (insertion order).
    if (this.#counters.size >= MAX_KEYS) {
      let n = Math.ceil(MAX_KEYS / 10);
      for (const key of this.#counters.keys()) {
        if (n-- <= 0) break;
        this.#counters.delete(key);
      }
    }
  }
}
