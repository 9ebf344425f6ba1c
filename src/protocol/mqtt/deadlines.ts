/**
 * The keep-alive and credential-expiry deadlines of every connected MQTT client, checked by one
 * sweep every SWEEP_MS instead of two timers per connection (issue 19). Each timer was a Timeout
 * and its argument array, about 0.15 KB of every idle device, twice; and pushing the keep-alive
 * timer back on every read moved it in Node's timer list, where a read now writes one number.
 *
 * A deadline is acted on at most SWEEP_MS (plus the event loop's delay) after it passed, never
 * before. The sweep runs only while some connection is watched; like the timers it replaces, it
 * keeps the process up meanwhile (a connection that closes leaves the set).
 */
import { Sweep } from '../transport/sweep.js';

/** How often deadlines are checked. */
export const SWEEP_MS = 500;

/** A connection with deadlines: told the monotonic time (performance.now()) at each sweep. */
export interface Deadlined {
  checkDeadlines(now: number): void;
}

/** A connection closed by its check leaves the set as it is iterated. */
const watched = new Sweep<Deadlined>(
  SWEEP_MS,
  (members) => {
    const now = performance.now();
    for (const d of members) d.checkDeadlines(now);
  },
  true,
);

export function watchDeadlines(d: Deadlined): void {
  watched.add(d);
}

export function unwatchDeadlines(d: Deadlined): void {
  watched.delete(d);
}

/** Connections watched (for tests). */
export function watchedConnections(): number {
  return watched.size;
}
