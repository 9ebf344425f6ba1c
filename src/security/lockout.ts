/**
 * Brute-force defence that nobody can turn against a credential holder.
 *
 * Failures are counted per source address (an IPv6 address by its /64, what one subscriber
 * holds) and per (address, claimed identity). Never per claimed identity alone: the identity in a
 * SAS token's `skn`, a JWT's `sub` or a CONNECT's client id is read before the signature is
 * checked, so anyone can name it, and a lock keyed by it alone would let anyone lock its holder
 * out from everywhere. Nor per presented credential: a guesser never repeats one, so such keys
 * would only fill the table (a holder's own credential is never a failure).
 *
 * - (address, identity) locks after `maxFailures` failures in the window: that address's attempts
 *   at that identity are refused unverified. The holder at any other address is not affected.
 * - The address locks after `maxFailuresPerAddress` failures in the window (guessing across
 *   names). While it is locked, attempts at an identity that failed from it are refused
 *   unverified; an identity that did not (a device behind the same NAT as the guesser) is still
 *   verified, until `maxFailuresPerAddress` more failures close the address for the rest of the lock.
 * - An attempt refused by a lock is not counted: a lock ends when it was set to end, whatever
 *   arrives meanwhile. Each further lock of the same key within a day doubles, up to
 *   `maxLockoutSeconds`.
 * - A success clears its (address, identity) counter, never the address's.
 *
 * So one address makes at most about maxFailures guesses per identity and 2 x maxFailuresPerAddress
 * guesses in all per lock period. Guessing from many addresses is bounded by the keys' size and
 * watched by the per-identity alert (docs/threat-model.md).
 *
 * Memory is bounded: at most MAX_KEYS counters. When full, counters with nothing in the window go
 * first, then unlocked ones, oldest first; locks go last, so a flood of one-off guesses cannot push
 * out the lock of the address that made them.
 */
import { isIPv6 } from 'node:net';
import type { Clock } from '../core/clock.js';
import { normalizeAddress } from './ip-filter.js';
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
  /** Address counters: failures verified while the address was locked (identities that had not failed from it). */
  failuresWhileLocked: number;
}

export interface AttemptKeys {
  /** The source address as the socket reports it. */
  address: string;
  /** `device:d1`, `policy:service`, `operator:alice`, as claimed (unverified); undefined when none was named. */
  identity?: string | undefined;
}

export type LockScope = 'address' | 'identity';

export type LockState = { locked: false } | { locked: true; scope: LockScope; until: number };

/** A lock a failure set: for the log and the audit log, never for the caller. */
export interface NewLock {
  scope: LockScope;
  /** The counted address (`a.b.c.d`, or an IPv6 `/64`). */
  address: string;
  identity?: string;
  until: number;
  seconds: number;
}

/** The address failures are counted under: IPv4 as is, IPv6 by its /64. */
export function lockoutAddress(address: string): string {
  const a = normalizeAddress(address).replace(/%.*$/, '');
  if (!isIPv6(a)) return a;
  const [head = '', tail] = a.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...new Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => (Number.parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
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

  #keys(k: AttemptKeys): { address: string; addressKey: string; pairKey: string | undefined } {
    const address = lockoutAddress(k.address);
    const pairKey = k.identity === undefined || k.identity === '' ? undefined : `p\0${address}\0${k.identity}`;
    return { address, addressKey: `a\0${address}`, pairKey };
  }

  /** Whether the attempt is refused unverified (and so not counted). */
  check(k: AttemptKeys): LockState {
    if (!this.#settings.enabled) return { locked: false };
    const now = this.clock.now();
    const { addressKey, pairKey } = this.#keys(k);
    const pair = pairKey === undefined ? undefined : this.#counters.get(pairKey);
    if (pair !== undefined && pair.lockedUntil > now) return { locked: true, scope: 'identity', until: pair.lockedUntil };
    const addr = this.#counters.get(addressKey);
    if (addr !== undefined && addr.lockedUntil > now) {
      const pairFailed = pair !== undefined && this.#recent(pair, now) > 0;
      if (pairFailed || pairKey === undefined || addr.failuresWhileLocked >= this.#settings.maxFailuresPerAddress) {
        return { locked: true, scope: 'address', until: addr.lockedUntil };
      }
    }
    return { locked: false };
  }

  /** Counts a verified failure; returns the locks it set. An attempt a lock refuses counts nothing. */
  fail(k: AttemptKeys): NewLock[] {
    if (!this.#settings.enabled || this.check(k).locked) return [];
    const now = this.clock.now();
    const s = this.#settings;
    const { address, addressKey, pairKey } = this.#keys(k);
    const out: NewLock[] = [];
    const addr = this.#counter(addressKey, now);
    if (addr.lockedUntil > now) addr.failuresWhileLocked += 1;
    else if (this.#count(addr, s.maxFailuresPerAddress, now)) {
      addr.failuresWhileLocked = 0;
      out.push({ scope: 'address', address, until: addr.lockedUntil, seconds: (addr.lockedUntil - now) / 1000 });
    }
    if (pairKey !== undefined) {
      const pair = this.#counter(pairKey, now);
      if (this.#count(pair, s.maxFailures, now)) {
        out.push({ scope: 'identity', address, ...(k.identity === undefined ? {} : { identity: k.identity }), until: pair.lockedUntil, seconds: (pair.lockedUntil - now) / 1000 });
      }
    }
    return out;
  }

  /** A verified success: this address's count for this identity starts over (the address's does not). */
  succeed(k: AttemptKeys): void {
    const { pairKey } = this.#keys(k);
    if (pairKey !== undefined) this.#counters.delete(pairKey);
  }

  /** Lifts every lockout and forgets every counter (an operator's `unlock`). */
  clear(): void {
    this.#counters.clear();
  }

  get size(): number {
    return this.#counters.size;
  }

  #recent(c: Counter, now: number): number {
    const since = now - this.#settings.windowSeconds * 1000;
    while (c.failures.length > 0 && (c.failures[0] ?? 0) <= since) c.failures.shift();
    return c.failures.length;
  }

  /** Adds a failure to an unlocked counter; true when that locks it. */
  #count(c: Counter, limit: number, now: number): boolean {
    this.#recent(c, now);
    c.failures.push(now);
    if (c.failures.length > limit) c.failures.shift();
    if (c.failures.length < limit) return false;
    if (now - c.lockoutsSince > DAY_MS) {
      c.lockouts = 0;
      c.lockoutsSince = now;
    }
    const ms = Math.min(this.#settings.lockoutSeconds * 1000 * 2 ** c.lockouts, this.#settings.maxLockoutSeconds * 1000);
    c.lockouts += 1;
    c.lockedUntil = now + ms;
    c.failures = [];
    return true;
  }

  #counter(key: string, now: number): Counter {
    let c = this.#counters.get(key);
    if (c === undefined) {
      if (this.#counters.size >= MAX_KEYS) this.#evict(now);
      c = { failures: [], lockedUntil: 0, lockouts: 0, lockoutsSince: now, failuresWhileLocked: 0 };
      this.#counters.set(key, c);
    }
    return c;
  }

  /** Down to 90% of MAX_KEYS: idle counters first, then unlocked ones, then (all locked) the oldest. */
  #evict(now: number): void {
    const target = MAX_KEYS - MAX_KEYS / 10;
    const since = now - this.#settings.windowSeconds * 1000;
    const passes: Array<(c: Counter) => boolean> = [(c) => c.lockedUntil <= now && (c.failures.at(-1) ?? 0) <= since, (c) => c.lockedUntil <= now, () => true];
    for (const drop of passes) {
      for (const [key, c] of this.#counters) {
        if (this.#counters.size <= target) return;
        if (drop(c)) this.#counters.delete(key);
      }
    }
  }
}
