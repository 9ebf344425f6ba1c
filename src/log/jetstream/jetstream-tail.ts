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
 *
 * Faults: making the consumer is a JetStream API request; one that times out or finds no
 * responder (a busy or restarting server) is tried again with backoff instead of ending every
 * reader of the partition; a refusal by the server (the stream is gone) ends the tail at once. A
 * pull the server never answers is noticed by missed heartbeats: the client sends them every
 * PULL_EXPIRES_MS / 2 and pulls again after two missed, so a lost pull stalls a tail for seconds,
 * not the library's default half minute.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DeliverPolicy, JetStreamApiError, type Consumer, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import { DEFAULT_TAIL_BATCH } from '../tail.js';
import type { LogRecord, TailOptions } from '../log-ports.js';
import { decodeRecord } from './record-codec.js';

const NONE = Symbol('none');
/** How long one pull request lives; the idle heartbeat is half of it. */
const PULL_EXPIRES_MS = 5_000;
/** Attempts at making the consumer before the tail fails (backoff 0.25, 0.5, 1, 2, 4, 4, 4 s between them). */
const CREATE_ATTEMPTS = 8;

/** The ordered consumer from `start`, tried again while the failure is transient; undefined once stopped. */
async function orderedConsumer(js: JetStreamClient, stream: string, start: number, stop: AbortSignal): Promise<Consumer | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await js.consumers.get(stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start + 1 });
    } catch (err) {
      // The server answered (no such stream, a bad start): waiting changes nothing.
      if (err instanceof JetStreamApiError || attempt >= CREATE_ATTEMPTS || stop.aborted) throw err;
      try {
        await sleep(Math.min(250 * 2 ** (attempt - 1), 4_000), undefined, { signal: stop });
      } catch {
        return undefined;
      }
    }
  }
}

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
  const consumer = await orderedConsumer(js, stream, start, opts.signal === undefined ? closed : AbortSignal.any([opts.signal, closed]));
  if (consumer === undefined) return;
  const messages = await consumer.consume({ max_messages: Math.min(4 * maxBatch, 4096), expires: PULL_EXPIRES_MS });
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
