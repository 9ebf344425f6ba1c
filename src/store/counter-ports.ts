/**
 * Counters every node of a cluster shares: the brute-force lockout's failure counts and locks, the
 * provisioning service's rate limits (issue 16: N nodes must not give an attacker N times the
 * guesses). Each counter is a small JSON value under a key, with an expiry; the service that owns
 * it (security/lockout.ts, dps/throttle.ts) decides what the value means. Why the store and not
 * the bus: docs/decisions/0004-shared-counters.md.
 *
 * Keys are namespaced by a prefix (`lockout:`, `dps:`). A removed counter leaves a tombstone (value
 * null) for a while, so other nodes' caches learn of the removal through `changedSince`.
 */
export interface CounterWrite {
  /** The new value, or null to remove the counter. */
  value: string | null;
  /** When the counter may be forgotten (ms). Ignored for a removal. */
  expiresAt: number;
}

export interface CounterEntry {
  key: string;
  /** null: removed. */
  value: string | null;
  expiresAt: number;
  /** When it was last written (ms, the writer's clock). */
  updatedAt: number;
}

export interface CounterStore {
  /**
   * Read-modify-write of a few counters as one transaction, their rows locked against every other
   * writer until it commits (PostgreSQL: row locks taken in key order; SQLite: one writer at a
   * time). `decide` gets the live values of `keys` (expired and removed ones absent) and returns
   * what to write; keys it leaves out stay as they are. Returns what `decide` returned as result.
   */
  update<T>(keys: readonly string[], now: number, decide: (current: ReadonlyMap<string, string>) => { writes: ReadonlyMap<string, CounterWrite>; result: T }): Promise<T>;
  /** Counters under `prefix` written at or after `since` (ms), removals included, oldest first. */
  changedSince(prefix: string, since: number, limit: number): Promise<CounterEntry[]>;
  /** Removes every counter under `prefix` (tombstones, so caches hear of it). */
  clear(prefix: string, now: number): Promise<void>;
  /** Deletes counters and tombstones that expired before `now`; returns how many. */
  purgeExpired(now: number): Promise<number>;
}
