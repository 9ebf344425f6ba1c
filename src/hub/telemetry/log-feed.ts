/**
 * The built-in endpoint's live reader of the partitioned log (`GET /events`, `gatehouse
 * monitor-events`): every partition tailed at once and merged as records arrive. Order holds per
 * partition, hence per device; partitions interleave as they come.
 *
 * Where a reader stands is a cursor: per partition, the sequence number of the last record it has
 * passed (delivered or filtered out), -1 for none, written `<p0>.<p1>.<p2>...` (one number for a
 * one-partition hub). It is the SSE event id: a client that reconnects with Last-Event-ID resumes
 * every partition right after what it had, so nothing is skipped and nothing comes twice. Records
 * removed by retention meanwhile are passed over (the tail starts at the oldest one kept).
 *
 * A device filter tails only the device's partition; the other partitions keep where they started.
 */
import { HubError } from '../../core/errors.js';
import { BUILTIN_ENDPOINT_NAME, isRoutedTo, type EventLog, type LogRecord, type RecordEnricher } from '../../log/log-ports.js';

/** Where a reader starts: new records only, everything retained, or after a cursor. */
export type FeedStart = 'now' | 'earliest' | LogCursor;

/** Per partition, the last sequence number passed (-1: none). */
export type LogCursor = readonly number[];

export interface FeedOptions {
  from: FeedStart;
  deviceId?: string;
  /**
   * Awaited before reading on after a full batch (the reader is behind: a replay page), so a
   * slow consumer holds the reading back instead of buffering the log in memory.
   */
  ready?: () => Promise<void>;
  /** The feed ended on an error (a log read failed, or onRecord threw); it is closed already. */
  onError?: (err: unknown) => void;
  /** The built-in endpoint's message enrichments, added to each record handed out (none when absent). */
  enrich?: RecordEnricher;
}

export interface LogFeed {
  /** Where the feed stands now (after the last record handed out or passed). */
  cursor(): string;
  close(): void;
}

/** Records per read; a full batch means the reader is behind the head. */
const FEED_BATCH = 256;

export function formatCursor(cursor: LogCursor): string {
  return cursor.join('.');
}

/** `<p0>.<p1>...` with one whole number from -1 up per partition of the hub. */
export function parseCursor(text: string, partitionCount: number, what: string): LogCursor {
  const parts = text.split('.');
  const bad = () =>
    new HubError('ArgumentInvalid', `${what} must be now, earliest or a position with ${partitionCount} sequence number${partitionCount === 1 ? '' : 's'} (p0.p1...) as the stream's event ids give.`);
  if (parts.length !== partitionCount) throw bad();
  return parts.map((p) => {
    if (!/^(-1|\d{1,15})$/.test(p)) throw bad();
    return Number(p);
  });
}

/**
 * Resolves where each partition starts (for 'now': the last record each holds at this moment),
 * then, once `start` is called, hands every record after it to `onRecord` with the cursor that
 * includes it. Resolving first lets a caller answer only once no later record can be missed.
 */
export async function openLogFeed(log: EventLog, opts: FeedOptions): Promise<{ start(onRecord: (r: LogRecord, cursor: string) => void): LogFeed }> {
  const count = log.partitionCount;
  let cursor: number[];
  if (opts.from === 'now') {
    cursor = await Promise.all(Array.from({ length: count }, async (_, p) => (await log.partitionProperties(p)).lastEnqueuedSequenceNumber));
  } else if (opts.from === 'earliest') {
    cursor = new Array<number>(count).fill(-1);
  } else {
    if (opts.from.length !== count) throw new HubError('ArgumentInvalid', `The position has ${opts.from.length} partitions; this hub has ${count}.`);
    cursor = [...opts.from];
  }
  const partitions = opts.deviceId === undefined ? cursor.map((_, p) => p) : [log.partitionOf(opts.deviceId)];
  return {
    start(onRecord) {
      const stop = new AbortController();
      const fail = (err: unknown) => {
        if (stop.signal.aborted) return;
        stop.abort();
        try {
          opts.onError?.(err);
        } catch {
          // Its own handler failing changes nothing: the feed is closed already.
        }
      };
      /** The one place a record is let through or passed over: the built-in endpoint's records (decision 0006), of the device asked for. */
      const accept = (r: LogRecord): boolean => isRoutedTo(r, BUILTIN_ENDPOINT_NAME) && (opts.deviceId === undefined || r.deviceId === opts.deviceId);
      const follow = async (p: number): Promise<void> => {
        const position = { sequenceNumber: cursor[p] as number, inclusive: false };
        for await (const batch of log.tail(p, position, { signal: stop.signal, maxBatch: FEED_BATCH })) {
          const mine = batch.filter(accept);
          const enriched = opts.enrich === undefined || mine.length === 0 ? mine : opts.enrich.enrich(BUILTIN_ENDPOINT_NAME, mine);
          const out = enriched instanceof Promise ? await enriched : enriched;
          // The cursor passes every record, the ones handed out (in order, a subsequence of the batch) included.
          let k = 0;
          for (const r of batch) {
            if (stop.signal.aborted) return;
            cursor[p] = r.sequenceNumber;
            const next = out[k];
            if (next !== undefined && next.sequenceNumber === r.sequenceNumber) {
              k++;
              onRecord(next, formatCursor(cursor));
            }
          }
          if (batch.length >= FEED_BATCH && opts.ready !== undefined) await opts.ready();
        }
      };
      for (const p of partitions) void follow(p).catch(fail);
      return { cursor: () => formatCursor(cursor), close: () => stop.abort() };
    },
  };
}
