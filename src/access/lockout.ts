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
 * Across a cluster the counters live in the store (CounterStore, schema v15; why not the bus:
 * docs/decisions/0004-shared-counters.md), so N nodes count like one: a verified failure is counted
 * in one transaction on the shared rows, which first asks whether another node has locked the key
 * meanwhile (then the attempt is not counted, as on one node). Each node keeps a copy of the
 * counters that hold anything: its own writes land in it at once, the other nodes' within
 * `syncMs` (a poll of what changed since the last one). `check` reads only that copy, and a
 * success clears a counter in the store only when the copy has one, so a correct credential from
 * an address with no failures costs no database round trip. If the store cannot be reached, the
 * failure is counted in the copy alone: the lockout keeps working on this node.
 *
 * Memory is bounded: at most MAX_KEYS counters. When full, counters with nothing in the window go
 * first, then unlocked ones, oldest first; locks go last, so a flood of one-off guesses cannot push
 * out the lock of the address that made them.
 */
import { isIPv6 } from 'node:net';
import type { Clock } from '../core/clock.js';
import type { CounterStore } from '../store/ports.js';
import { normalizeAddress } from './ip-filter.js';
import type { HubSettingsBody } from '../core/settings.js';

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
  /** When it was last written (ms): a copy never takes an older version over a newer one. */
  writtenAt: number;
}

/** Counter keys in the store: `lockout:a|<address>`, `lockout:p|<address>|<identity>`. */
const PREFIX = 'lockout:';
/** Clock difference between nodes the change feed tolerates (each poll re-reads this much). */
const SKEW_MS = 2000;
const SYNC_BATCH = 5000;
const PURGE_EVERY_MS = 60_000;

function parseCounter(text: string | undefined): Counter | undefined {
  if (text === undefined) return undefined;
  const v = JSON.parse(text) as Partial<Counter>;
  return {
    failures: Array.isArray(v.failures) ? v.failures.filter((t): t is number => typeof t === 'number') : [],
    lockedUntil: Number(v.lockedUntil ?? 0),
    lockouts: Number(v.lockouts ?? 0),
    lockoutsSince: Number(v.lockoutsSince ?? 0),
    failuresWhileLocked: Number(v.failuresWhileLocked ?? 0),
    writtenAt: Number(v.writtenAt ?? 0),
  };
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
  /** This node's copy of the counters that hold anything, by store key. */
  readonly #counters = new Map<string, Counter>();
  #settings: HubSettingsBody['lockout'];
  #syncedTo = 0;
  #lastPurge = 0;
  #timer: NodeJS.Timeout | undefined;
  #syncing: Promise<void> | undefined;

  constructor(
    settings: HubSettingsBody['lockout'],
    private readonly clock: Clock,
    private readonly shared: CounterStore,
    opts: { syncMs?: number } = {},
  ) {
    this.#settings = settings;
    const syncMs = opts.syncMs ?? 1000;
    if (syncMs > 0) {
      this.#timer = setInterval(() => void this.sync().catch(() => undefined), syncMs);
      this.#timer.unref();
    }
  }

  /** New settings; turning the lockout off forgets every counter, on every node (every lock lifts). */
  configure(settings: HubSettingsBody['lockout']): void {
    const wasEnabled = this.#settings.enabled;
    this.#settings = settings;
    if (settings.enabled) return;
    this.#counters.clear();
    if (wasEnabled) void this.shared.clear(PREFIX, this.clock.now()).catch(() => undefined);
  }

  /** Stops following the other nodes' counts. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #keys(k: AttemptKeys): { address: string; addressKey: string; pairKey: string | undefined } {
    const address = lockoutAddress(k.address);
    // The identity is a claim read before any check: no control characters reach the store.
    const identity = k.identity?.replace(/[\u0000-\u001f\u007f]/g, '?');
    const pairKey = identity === undefined || identity === '' ? undefined : `${PREFIX}p|${address}|${identity}`;
    return { address, addressKey: `${PREFIX}a|${address}`, pairKey };
  }

  /** Whether the attempt is refused unverified (and so not counted). Reads this node's copy only. */
  check(k: AttemptKeys): LockState {
    if (!this.#settings.enabled) return { locked: false };
    const { addressKey, pairKey } = this.#keys(k);
    return this.#lockState(this.#counters.get(addressKey), pairKey === undefined ? undefined : this.#counters.get(pairKey), pairKey !== undefined, this.clock.now());
  }

  #lockState(addr: Counter | undefined, pair: Counter | undefined, named: boolean, now: number): LockState {
    if (pair !== undefined && pair.lockedUntil > now) return { locked: true, scope: 'identity', until: pair.lockedUntil };
    if (addr !== undefined && addr.lockedUntil > now) {
      const pairFailed = pair !== undefined && this.#recent(pair, now) > 0;
      if (pairFailed || !named || addr.failuresWhileLocked >= this.#settings.maxFailuresPerAddress) {
        return { locked: true, scope: 'address', until: addr.lockedUntil };
      }
    }
    return { locked: false };
  }

  /**
   * Counts a verified failure, on the shared counters; returns the locks it set. An attempt a lock
   * refuses counts nothing, whichever node set the lock.
   */
  async fail(k: AttemptKeys): Promise<NewLock[]> {
    if (!this.#settings.enabled || this.check(k).locked) return [];
    const now = this.clock.now();
    const { address, addressKey, pairKey } = this.#keys(k);
    const names = pairKey === undefined ? [addressKey] : [addressKey, pairKey];
    let outcome: { addr: Counter; pair: Counter | undefined; locks: NewLock[] };
    try {
      outcome = await this.shared.update(names, now, (current) => {
        const o = this.#countFailure(k, address, parseCounter(current.get(addressKey)), pairKey === undefined ? undefined : parseCounter(current.get(pairKey)), now);
        const writes = new Map([[addressKey, this.#write(o.addr, now)]]);
        if (pairKey !== undefined && o.pair !== undefined) writes.set(pairKey, this.#write(o.pair, now));
        return { writes: o.counted ? writes : new Map(), result: o };
      });
    } catch {
      // The store is out of reach: count on this node, so the lockout holds here meanwhile.
      outcome = this.#countFailure(k, address, this.#counters.get(addressKey), pairKey === undefined ? undefined : this.#counters.get(pairKey), now);
    }
    this.#keep(addressKey, outcome.addr);
    if (pairKey !== undefined && outcome.pair !== undefined) this.#keep(pairKey, outcome.pair);
    return outcome.locks;
  }

  /** The failure counted on copies of the counters (fresh from the store, or this node's). */
  #countFailure(k: AttemptKeys, address: string, addrIn: Counter | undefined, pairIn: Counter | undefined, now: number): { addr: Counter; pair: Counter | undefined; locks: NewLock[]; counted: boolean } {
    const s = this.#settings;
    const addr = addrIn === undefined ? this.#fresh(now) : { ...addrIn, failures: [...addrIn.failures] };
    const pair = k.identity === undefined || k.identity === '' ? undefined : pairIn === undefined ? this.#fresh(now) : { ...pairIn, failures: [...pairIn.failures] };
    // Another node may have set a lock since this node's copy was read: then, as on one node, not counted.
    if (this.#lockState(addr, pair, pair !== undefined, now).locked) return { addr, pair, locks: [], counted: false };
    const locks: NewLock[] = [];
    if (addr.lockedUntil > now) addr.failuresWhileLocked += 1;
    else if (this.#count(addr, s.maxFailuresPerAddress, now)) {
      addr.failuresWhileLocked = 0;
      locks.push({ scope: 'address', address, until: addr.lockedUntil, seconds: (addr.lockedUntil - now) / 1000 });
    }
    if (pair !== undefined && this.#count(pair, s.maxFailures, now)) {
      locks.push({ scope: 'identity', address, ...(k.identity === undefined ? {} : { identity: k.identity }), until: pair.lockedUntil, seconds: (pair.lockedUntil - now) / 1000 });
    }
    addr.writtenAt = now;
    if (pair !== undefined) pair.writtenAt = now;
    return { addr, pair, locks, counted: true };
  }

  /** What the store keeps of a counter, until nothing in it counts any more (a day after a lock, for the backoff). */
  #write(c: Counter, now: number): { value: string; expiresAt: number } {
    const lastFailure = c.failures.at(-1) ?? 0;
    const expiresAt = Math.max(c.lockedUntil, lastFailure + this.#settings.windowSeconds * 1000, c.lockouts > 0 ? c.lockoutsSince + DAY_MS : 0, now + 1000);
    return { value: JSON.stringify(c), expiresAt };
  }

  /** A verified success: this address's count for this identity starts over (the address's does not). */
  succeed(k: AttemptKeys): void {
    const { pairKey } = this.#keys(k);
    // The hot path: an identity that has not failed from this address costs nothing.
    if (pairKey === undefined || !this.#counters.has(pairKey)) return;
    this.#counters.delete(pairKey);
    const now = this.clock.now();
    void this.shared.update([pairKey], now, () => ({ writes: new Map([[pairKey, { value: null, expiresAt: 0 }]]), result: undefined })).catch(() => undefined);
  }

  /** Lifts every lockout and forgets every counter, on every node (an operator's `unlock`). */
  async clear(): Promise<void> {
    this.#counters.clear();
    await this.shared.clear(PREFIX, this.clock.now());
  }

  get size(): number {
    return this.#counters.size;
  }

  /**
   * Takes in what every node wrote since the last call (re-reading SKEW_MS before it, for clocks
   * a little apart), and now and then purges what expired. Runs every `syncMs`; callable at will.
   */
  sync(): Promise<void> {
    this.#syncing ??= this.#sync().finally(() => (this.#syncing = undefined));
    return this.#syncing;
  }

  async #sync(): Promise<void> {
    const now = this.clock.now();
    let since = Math.max(0, this.#syncedTo - SKEW_MS);
    for (;;) {
      const batch = await this.shared.changedSince(PREFIX, since, SYNC_BATCH);
      for (const e of batch) {
        const mine = this.#counters.get(e.key);
        if (mine !== undefined && mine.writtenAt > e.updatedAt) continue;
        const c = e.value === null || e.expiresAt <= now || !this.#settings.enabled ? undefined : parseCounter(e.value);
        if (c === undefined) this.#counters.delete(e.key);
        else this.#keep(e.key, { ...c, writtenAt: e.updatedAt });
      }
      const last = batch.at(-1);
      if (batch.length < SYNC_BATCH || last === undefined || last.updatedAt === since) break;
      since = last.updatedAt;
    }
    this.#syncedTo = now;
    if (now - this.#lastPurge >= PURGE_EVERY_MS) {
      this.#lastPurge = now;
      await this.shared.purgeExpired(now);
    }
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

  #fresh(now: number): Counter {
    return { failures: [], lockedUntil: 0, lockouts: 0, lockoutsSince: now, failuresWhileLocked: 0, writtenAt: now };
  }

  /** Into this node's copy, evicting when full. */
  #keep(key: string, c: Counter): void {
    if (!this.#counters.has(key) && this.#counters.size >= MAX_KEYS) this.#evict(this.clock.now());
    this.#counters.set(key, c);
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
