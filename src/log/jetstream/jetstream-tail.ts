/**
 * A JetStream partition's live tail: an ordered consumer on the partition's stream from the
 * resolved start, so records stream from the server as they are stored instead of being fetched
 * one direct get each. The consumer is ephemeral (the server drops it when the tail stops or its
 * connection goes); the client recreates it from the last delivered sequence if it loses a
 * message, which is what "ordered" means: no gap, no repeat.
 *
 * Batches: each yield is the first record that arrives plus whatever else the client already
 * holds, up to maxBatch; the consumer pulls at most a few batches ahead, so a slow reader holds
 * the server back rather than filling memory.
 */
import { DeliverPolicy, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import { DEFAULT_TAIL_BATCH } from '../tail.js';
import type { LogRecord, TailOptions } from '../log-ports.js';
import { decodeRecord } from './record-codec.js';

const NONE = Symbol('none');

export function recordFromStored(partition: number, seq: number, data: Uint8Array): LogRecord {
  const { enqueuedMs, ...msg } = decodeRecord(data);
  return { ...msg, partition, sequenceNumber: seq - 1, offset: String(seq - 1), enqueuedTime: new Date(enqueuedMs).toISOString() };
}

export async function* consumerTail(
  js: JetStreamClient,
  stream: string,
  partition: number,
  /** The first sequence number to deliver (the partition's, from 0). */
  start: number,
  closed: AbortSignal,
  opts: TailOptions = {},
): AsyncGenerator<LogRecord[]> {
  const maxBatch = Math.max(1, Math.floor(opts.maxBatch ?? DEFAULT_TAIL_BATCH));
  if (opts.signal?.aborted === true || closed.aborted) return;
  const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start + 1 });
  const messages = await consumer.consume({ max_messages: Math.min(4 * maxBatch, 4096) });
  const it = messages[Symbol.asyncIterator]();
  let onAbort!: () => void;
  const aborted = new Promise<typeof NONE>((resolve) => {
    onAbort = () => resolve(NONE);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    closed.addEventListener('abort', onAbort, { once: true });
    // Stopped while the consumer was being made: a listener added now never fires.
    if (opts.signal?.aborted === true || closed.aborted) onAbort();
  });
  const record = (m: JsMsg) => recordFromStored(partition, m.seq, m.data);
  try {
    let pending = it.next();
    for (;;) {
      const first = await Promise.race([pending, aborted]);
      if (first === NONE || first.done === true) return;
      const batch = [record(first.value)];
      pending = it.next();
      while (batch.length < maxBatch) {
        // What the client already holds resolves before a macrotask; anything else waits for the next yield.
        const more = await Promise.race([pending, new Promise<typeof NONE>((r) => setImmediate(() => r(NONE)))]);
        if (more === NONE || more.done === true) break;
        batch.push(record(more.value));
        pending = it.next();
      }
      yield batch;
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    closed.removeEventListener('abort', onAbort);
    await messages.close().catch(() => undefined);
  }
}
