/**
 * Checks of what a reader passes in. A bad position is the reader's mistake (the Event Hubs
 * endpoint will turn it into an AMQP error for the client), so it is a LogPositionError with a
 * message fit to show, never a database error.
 */

export class LogPositionError extends RangeError {}

/** Offsets are decimal integers as strings; '-1' is "before the first record". */
export function parseOffset(offset: string): number {
  if (typeof offset !== 'string' || !/^-?\d{1,15}$/.test(offset)) throw new LogPositionError(`offset '${String(offset).slice(0, 40)}' is not a decimal integer`);
  return Number(offset);
}

export function parseEnqueuedTime(t: string): number {
  const ms = typeof t === 'string' ? Date.parse(t) : NaN;
  if (!Number.isFinite(ms)) throw new LogPositionError(`enqueued time '${String(t).slice(0, 40)}' is not an ISO-8601 time`);
  return ms;
}

/** Sequence numbers from -1 ("before the first record") up. */
export function checkSequenceNumber(n: number): number {
  if (!Number.isSafeInteger(n) || n < -1) throw new LogPositionError(`sequence number ${String(n)} is not a whole number from -1 up`);
  return n;
}

export function checkLimit(limit: number): number {
  if (!Number.isFinite(limit) || limit < 0) throw new LogPositionError(`limit ${String(limit)} is not a count`);
  return Math.floor(limit);
}
