/**
 * The event log on NATS JetStream, for the cluster. docs/decisions/0005-partitioned-log.md says why.
 *
 * Mapping: one stream per partition, `gatehouse-<hub>-log-<n>`, capturing the one subject
 * `<prefix>.log.<n>`. A stream's sequence is then the partition's: sequenceNumber = stream seq - 1
 * (Event Hubs numbers from 0, JetStream from 1), and the offset is the sequence number as a
 * string. JetStream keeps its sequence across deletions, so numbers are never reused, and the
 * stream's own MaxAge and MaxBytes (discard old) are the partition's retention: a noisy device
 * fills only its own stream. One stream with a subject per partition would number records
 * across partitions and cap bytes for all partitions together.
 *
 * Appends publish each record and resolve when every publish is acknowledged (the stream stored
 * it; how durable that is depends on the server's sync_interval and the stream's replicas, see the
 * decision). Publishes of one connection reach a stream in the order sent, so a batch keeps its
 * order; several nodes appending to one partition interleave, each record numbered once by the
 * stream. A failed publish fails the append, but records of the batch already acknowledged stay
 * (JetStream 2.9 has no atomic batch): a retry stores those again (at least once).
 *
 * The enqueued time is this node's clock when it published (never going back per partition on this
 * node), carried in the record; reads by enqueued time binary-search the stream on it.
 *
 * Reads fetch records by sequence with direct gets (`allow_direct`), in parallel. Tails are an
 * ordered consumer from the resolved start (jetstream-tail.ts); the shared read loop (tail.ts),
 * woken by `<prefix>.logwake.<n>` (a bodiless core NATS message each append sends after its
 * acknowledgements), remains as an option.
 */
import { jetstream, jetstreamManager, DiscardPolicy, RetentionPolicy, StorageType, JetStreamApiError, type JetStreamClient, type JetStreamManager, type StoredMsg, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
import { nanos, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  DEFAULT_PARTITIONS,
  LogConfigError,
  MAX_PARTITIONS,
  checkPartition,
  checkPartitionCount,
  type EventLog,
  type LogMessage,
  type LogPlacement,
  type LogPosition,
  type LogRecord,
  type LogRetention,
  type PartitionProperties,
  type TailOptions,
} from '../log-ports.js';
import { partitionOf } from '../partition-key.js';
import { checkLimit, checkSequenceNumber, parseEnqueuedTime, parseOffset } from '../positions.js';
import { logCloser, PartitionWakeups, tailLoop, type TailSource } from '../tail.js';
import { decodeEnqueuedMs, encodeRecord } from './record-codec.js';
import { consumerTail, recordFromStored } from './jetstream-tail.js';

export interface JetStreamLogOptions {
  /** Names the streams; letters, digits, '-' and '_' only. */
  hubId: string;
  /** Subject prefix (the hub bus's prefix). */
  prefix: string;
  /** Used when the streams are new; existing streams keep their count. */
  partitionCount?: number;
  retention: LogRetention;
  /** Closing the log drains the connection too (it was opened for the log alone). */
  ownsConnection?: boolean;
  /** Stream replicas: 3 in a NATS cluster, for durability that does not wait on fsync. */
  replicas?: number;
  now?: () => number;
  pollMs?: number;
  /**
   * How tails follow a partition: an ordered consumer (the default: records stream from the
   * server), or direct-get reads woken by `<prefix>.logwake.<n>` (what `read` does, polled).
   */
  tailWith?: 'consumer' | 'reads';
}

const DEFAULT_POLL_MS = 2000;
/** JetStream's default duplicate window; it may not exceed MaxAge. */
const DUPLICATE_WINDOW_MS = 120_000;
const STREAM_NOT_FOUND = 10059;
/** An add of a stream whose name is taken with another config. */
const STREAM_NAME_IN_USE = 10058;

export function logStreamName(hubId: string, partition: number): string {
  return `gatehouse-${hubId}-log-${partition}`;
}

function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === STREAM_NOT_FOUND;
}

function isStreamNameInUse(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === STREAM_NAME_IN_USE;
}

/** JetStream's "subjects overlap with an existing stream" (error code 10065). */
const STREAM_SUBJECTS_OVERLAP = 10065;

function isSubjectsOverlap(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === STREAM_SUBJECTS_OVERLAP;
}

/**
 * The partition count is decided once, by whoever creates partition 0's stream: its description
 * says the count ("... partition 0 of 4"). Creating a stream is atomic on the server (an add that
 * finds the name taken with another config fails), so nodes starting together agree, where counting
 * the streams would let a node count a log that another was still creating and take a part of it
 * for the whole. Logs made before the description count their streams (those were complete).
 */
export async function openJetStreamLog(nc: NatsConnection, opts: JetStreamLogOptions): Promise<JetStreamEventLog> {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(opts.hubId)) throw new LogConfigError(`hub id '${opts.hubId}' cannot name a JetStream stream (letters, digits, - and _)`);
  const wanted = opts.partitionCount === undefined ? undefined : checkPartitionCount(opts.partitionCount);
  const jsm = await jetstreamManager(nc);
  const { maxAgeMs, maxBytesPerPartition } = opts.retention;
  const configOf = (p: number, count: number) => ({
    name: logStreamName(opts.hubId, p),
    description: `Gatehouse hub ${opts.hubId} event log: partition ${p} of ${count}`,
    subjects: [`${opts.prefix}.log.${p}`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(maxAgeMs),
    max_bytes: maxBytesPerPartition,
    num_replicas: opts.replicas ?? 1,
    duplicate_window: nanos(Math.min(DUPLICATE_WINDOW_MS, maxAgeMs)),
    allow_direct: true,
  });

  // Partition 0 proposed with the count asked (or the default): made, or there already with this
  // config, it answers with its info; there with another (another node's count, other limits, no
  // description yet), it refuses, and its info says what stands.
  const first = await ensureStream(jsm, configOf(0, wanted ?? DEFAULT_PARTITIONS), 'add-only');
  const count = countIn(first.config.description) ?? (await countStreams(jsm, opts.hubId));
  if (wanted !== undefined && wanted !== count) {
    throw new LogConfigError(`the event log has ${count} partitions; the count is fixed when the hub is created (asked for ${wanted})`);
  }
  // Every partition takes these limits (retention is a setting, the partitions are not), one
  // another node is adding at this moment too.
  for (let p = 0; p < count; p++) await ensureStream(jsm, configOf(p, count), 'add-or-update');
  return new JetStreamEventLog(nc, jsm, jetstream(nc), count, opts);
}

/**
 * Adds the stream; one there with another config is updated to this one ('add-or-update') or
 * left as it is ('add-only'). Adding a stream that exists with the same config succeeds.
 */
async function ensureStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }, mode: 'add-only' | 'add-or-update'): Promise<StreamInfo> {
  try {
    return await jsm.streams.add(config);
  } catch (err) {
    // Another node's add of this very stream won: the server says the name is taken or, while that
    // stream is being made, that its subjects overlap one (seen in CI, six nodes opening one log).
    // Only the stream of this name counts as that; subjects another stream holds stay an error.
    if (!isStreamNameInUse(err) && !(isSubjectsOverlap(err) && (await streamInfo(jsm, config.name)) !== undefined)) throw err;
    return mode === 'add-only' ? await jsm.streams.info(config.name) : await jsm.streams.update(config.name, config);
  }
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (isStreamNotFound(err)) return undefined;
    throw err;
  }
}

/** The count partition 0's description gives, or undefined for a log made before it did. */
function countIn(description: string | undefined): number | undefined {
  const m = description === undefined ? null : / partition 0 of (\d{1,2})$/.exec(description);
  return m === null ? undefined : checkPartitionCount(Number(m[1]));
}

/** A log made before the description: its streams 0..n-1, counted. */
async function countStreams(jsm: JetStreamManager, hubId: string): Promise<number> {
  let n = 1;
  while (n < MAX_PARTITIONS && (await streamInfo(jsm, logStreamName(hubId, n))) !== undefined) n++;
  return n;
}

export class JetStreamEventLog implements EventLog, TailSource {
  readonly wakeups = new PartitionWakeups();
  readonly #closer = logCloser();
  readonly closed = this.#closer.signal;
  readonly #now: () => number;
  readonly #pollMs: number;
  readonly #lastMs: number[];
  readonly #wakeSub: Subscription;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly js: JetStreamClient,
    readonly partitionCount: number,
    private readonly opts: JetStreamLogOptions,
  ) {
    this.#now = opts.now ?? Date.now;
    this.#pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
    this.#lastMs = new Array<number>(partitionCount).fill(0);
    this.#wakeSub = nc.subscribe(`${opts.prefix}.logwake.*`, {
      callback: (err, msg) => {
        if (err !== null) return;
        const p = Number(msg.subject.slice(msg.subject.lastIndexOf('.') + 1));
        if (Number.isInteger(p)) this.wakeups.wake(p);
      },
    });
  }

  #stream(partition: number): string {
    return logStreamName(this.opts.hubId, partition);
  }

  partitionOf(deviceId: string): number {
    return partitionOf(deviceId, this.partitionCount);
  }

  async append(messages: readonly LogMessage[]): Promise<LogPlacement[]> {
    if (this.closed.aborted) throw new Error('the event log is closed');
    if (messages.length === 0) return [];
    const now = Math.floor(this.#now());
    const sends = messages.map((m) => {
      const partition = this.partitionOf(m.deviceId);
      const ms = Math.max(now, this.#lastMs[partition] as number);
      this.#lastMs[partition] = ms;
      return { partition, ms, ack: this.js.publish(`${this.opts.prefix}.log.${partition}`, encodeRecord(m, ms)) };
    });
    const acks = await Promise.all(sends.map((s) => s.ack));
    const touched = new Set<number>();
    const placements = sends.map((s, i): LogPlacement => {
      touched.add(s.partition);
      const sequenceNumber = (acks[i] as { seq: number }).seq - 1;
      return { partition: s.partition, sequenceNumber, offset: String(sequenceNumber), enqueuedTime: new Date(s.ms).toISOString() };
    });
    for (const p of touched) {
      this.wakeups.wake(p);
      this.nc.publish(`${this.opts.prefix}.logwake.${p}`);
    }
    return placements;
  }

  async #state(partition: number): Promise<{ messages: number; first: number; last: number; lastTs: string }> {
    const info = await this.jsm.streams.info(this.#stream(partition));
    return { messages: info.state.messages, first: info.state.first_seq, last: info.state.last_seq, lastTs: info.state.last_ts };
  }

  async #get(partition: number, streamSeq: number): Promise<StoredMsg | null> {
    return this.jsm.direct.getMessage(this.#stream(partition), { seq: streamSeq });
  }

  async startOf(partition: number, position: LogPosition): Promise<number> {
    checkPartition(this, partition);
    if (position === 'earliest') return 0;
    if (typeof position === 'object' && 'sequenceNumber' in position) {
      const s = checkSequenceNumber(position.sequenceNumber);
      return position.inclusive ? Math.max(0, s) : s + 1;
    }
    if (typeof position === 'object' && 'offset' in position) {
      // Offsets are sequence numbers here.
      const o = parseOffset(position.offset);
      return position.inclusive ? Math.max(0, o) : o + 1;
    }
    const ms = position === 'latest' ? undefined : parseEnqueuedTime(position.enqueuedTime);
    const st = await this.#state(partition);
    // The stream's last seq is the partition's next sequence number.
    if (ms === undefined || st.messages === 0) return st.last;
    // The first record enqueued after ms: times never go back within a partition (per node).
    let lo = st.first;
    let hi = st.last + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const msg = await this.#get(partition, mid);
      // Gone (retention took it): it was older than everything left.
      const t = msg === null ? -Infinity : decodeEnqueuedMs(msg.data);
      if (t > ms) hi = mid;
      else lo = mid + 1;
    }
    return lo - 1;
  }

  async readFrom(partition: number, from: number, limit: number): Promise<LogRecord[]> {
    const st = await this.#state(partition);
    const start = Math.max(from + 1, st.first);
    const end = Math.min(start + limit - 1, st.last);
    if (st.messages === 0 || start > end) return [];
    const msgs = await Promise.all(Array.from({ length: end - start + 1 }, (_, i) => this.#get(partition, start + i)));
    // Null: retention removed it after the state was read (only ever the oldest).
    return msgs.flatMap((m) => (m === null ? [] : [recordFromStored(partition, m.seq, m.data)]));
  }

  async read(partition: number, position: LogPosition, limit: number): Promise<LogRecord[]> {
    const n = checkLimit(limit);
    const from = await this.startOf(partition, position);
    return n === 0 ? [] : this.readFrom(partition, from, n);
  }

  tail(partition: number, position: LogPosition, opts: TailOptions = {}): AsyncIterable<LogRecord[]> {
    checkPartition(this, partition);
    if (this.opts.tailWith === 'reads') return tailLoop(this, partition, position, this.#pollMs, opts);
    const stream = this.#stream(partition);
    const js = this.js;
    const closed = this.closed;
    const startOf = () => this.startOf(partition, position);
    return (async function* () {
      yield* consumerTail(js, stream, partition, await startOf(), closed, opts);
    })();
  }

  async partitionProperties(partition: number): Promise<PartitionProperties> {
    checkPartition(this, partition);
    const st = await this.#state(partition);
    const isEmpty = st.messages === 0;
    let lastTime = st.last === 0 ? new Date(0).toISOString() : st.lastTs;
    if (!isEmpty) {
      // The record's own enqueued time (the publishing node's), not the stream's store time.
      const last = await this.#get(partition, st.last);
      if (last !== null) lastTime = new Date(decodeEnqueuedMs(last.data)).toISOString();
    }
    return {
      partition,
      beginningSequenceNumber: isEmpty ? st.last : st.first - 1,
      lastEnqueuedSequenceNumber: st.last - 1,
      lastEnqueuedOffset: String(st.last - 1),
      lastEnqueuedTimeUtc: new Date(lastTime).toISOString(),
      isEmpty,
    };
  }

  /** JetStream applies MaxAge and MaxBytes itself. */
  async enforceRetention(): Promise<number> {
    return 0;
  }

  /** Deletes the partitions' streams and every record in them (tests, and a hub being deleted). */
  async destroy(): Promise<void> {
    await this.close();
    for (let p = 0; p < this.partitionCount; p++) {
      await this.jsm.streams.delete(this.#stream(p)).catch((err: unknown) => {
        if (!isStreamNotFound(err)) throw err;
      });
    }
  }

  async close(): Promise<void> {
    this.#closer.abort();
    if (!this.#wakeSub.isClosed()) this.#wakeSub.unsubscribe();
    if (this.opts.ownsConnection === true && !this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
  }
}
