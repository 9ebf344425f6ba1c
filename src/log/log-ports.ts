/**
 * The partitioned event log (issue 17): device messages, partitioned by device, ordered, durable
 * before an append resolves. One port, one conformance suite (log.case.ts), two implementations:
 * the SQL log (SQLite by default, PostgreSQL; sql/sql-log.ts) and NATS JetStream for the cluster
 * (jetstream/jetstream-log.ts).
 *
 * The shape follows what its readers need: the Event Hubs-compatible endpoint (a receiver on
 * `{hub}/ConsumerGroups/{group}/Partitions/{n}` starting at an offset, a sequence number, an
 * enqueued time, the start or `@latest`; `$management` partition properties) and the routing
 * engine (a durable cursor per endpoint = a partition and a sequence number).
 *
 * Numbering, as Event Hubs numbers it: a partition's first record has sequence number 0, and
 * numbers are never reused, also after retention removed records. An empty partition that never
 * held a record reports lastEnqueuedSequenceNumber -1 and lastEnqueuedOffset '-1'.
 *
 * Offsets are opaque decimal strings, strictly increasing within a partition, and only meaningful
 * to the log that issued them: the SQL log uses the record's byte position in its partition (as
 * classic Event Hubs does), JetStream the sequence number. Readers pass them back as positions and
 * never compute with them.
 */

/** What an append takes: one device message (or a routing event) as ingestion built it. */
export interface LogMessage {
  deviceId: string;
  moduleId: string | null;
  body: Buffer;
  /** Application properties. */
  properties: Record<string, string>;
  /** System properties: message-id, content-type, iothub-connection-device-id, iothub-enqueuedtime, ... */
  systemProperties: Record<string, string>;
  /**
   * `JSON.stringify(systemProperties)`, when the producer had it at hand for less (telemetry-event.ts
   * keeps a connection's fixed stamps as text). The stores use it instead of serializing again, so
   * whoever changes systemProperties afterwards must drop it.
   */
  systemJson?: string;
  /**
   * The endpoints the routes in effect at ingestion sent it to (decision 0006): `events` is the
   * built-in endpoint. Absent on records written before routing existed: those count as `events`.
   */
  endpoints?: string[];
}

/** Where an appended message landed. */
export interface LogPlacement {
  /** 0 .. partitionCount-1, from partitionOf(deviceId). */
  partition: number;
  /** Per partition, from 0, consecutive in append order, never reused. */
  sequenceNumber: number;
  /** Opaque decimal string, strictly increasing within the partition. */
  offset: string;
  /** ISO-8601 UTC, milliseconds; never decreases within a partition on one node (SQL: at all). */
  enqueuedTime: string;
}

export interface LogRecord extends LogMessage, LogPlacement {}

/**
 * Where a read starts, as Event Hubs' `apache.org:selector-filter:string` positions:
 * - 'earliest': the oldest record still retained;
 * - 'latest': only records appended after the position was resolved;
 * - a sequence number or an offset, the record itself included or not;
 * - an enqueued time: the first record enqueued strictly after it (Event Hubs' `x-opt-enqueued-time >`).
 * A position past the end waits for records to reach it; one before the oldest retained record
 * starts at the oldest.
 */
export type LogPosition =
  | 'earliest'
  | 'latest'
  | { sequenceNumber: number; inclusive: boolean }
  | { offset: string; inclusive: boolean }
  | { enqueuedTime: string };

/** `$management` partition properties (`com.microsoft:partition`), by Event Hubs' names. */
export interface PartitionProperties {
  partition: number;
  /** The oldest retained record's number; when empty, the number the next record will get. */
  beginningSequenceNumber: number;
  /** -1 when the partition never held a record. */
  lastEnqueuedSequenceNumber: number;
  /** '-1' when the partition never held a record. */
  lastEnqueuedOffset: string;
  /** The last record's enqueued time (ISO-8601); the epoch when the partition never held one. */
  lastEnqueuedTimeUtc: string;
  /** No record is retained (never appended, or all removed by retention). */
  isEmpty: boolean;
}

export interface LogRetention {
  /** Records enqueued longer ago than this go. */
  maxAgeMs: number;
  /** Per partition: the oldest records go until the partition holds at most this many bytes. */
  maxBytesPerPartition: number;
}

export interface TailOptions {
  /** Ends the iteration (the pending `next()` resolves done). */
  signal?: AbortSignal;
  /** Records per yielded batch, at most. */
  maxBatch?: number;
}

export interface EventLog {
  readonly partitionCount: number;
  /** The partition a device's messages land in: partitionOf(deviceId, partitionCount). */
  partitionOf(deviceId: string): number;
  /**
   * Appends the messages (each to its device's partition, in the order given) and resolves once
   * they are durable, with where each landed, in the order given. The SQL log commits a batch all
   * or nothing; on JetStream a failed append may have stored part of it (a retry repeats those:
   * at least once, as ingestion's retries are anyway).
   */
  append(messages: readonly LogMessage[]): Promise<LogPlacement[]>;
  /** Up to `limit` records of the partition from `position`, oldest first. */
  read(partition: number, position: LogPosition, limit: number): Promise<LogRecord[]>;
  /**
   * The partition from `position` on, then live: batches as they are appended, on any node, until
   * the signal aborts or the iteration is returned from. Nothing is skipped that retention kept.
   */
  tail(partition: number, position: LogPosition, opts?: TailOptions): AsyncIterable<LogRecord[]>;
  partitionProperties(partition: number): Promise<PartitionProperties>;
  /**
   * Removes what the retention no longer covers and returns how many records went. The SQL log
   * needs it called now and then; JetStream applies its limits itself and returns 0. A pass stops
   * between two deletes once `signal` aborts (what went stays gone; the next pass goes on).
   */
  enforceRetention(signal?: AbortSignal): Promise<number>;
  close(): Promise<void>;
}

/** Partition counts a hub may be created with (Azure: 2-128 for IoT Hub, 1-32 for Event Hubs standard). */
export const MIN_PARTITIONS = 1;
export const MAX_PARTITIONS = 32;
/** A new Azure IoT hub's default. */
export const DEFAULT_PARTITIONS = 4;

export class LogConfigError extends Error {}

export function checkPartitionCount(n: number): number {
  if (!Number.isInteger(n) || n < MIN_PARTITIONS || n > MAX_PARTITIONS) {
    throw new LogConfigError(`the partition count must be a whole number from ${MIN_PARTITIONS} to ${MAX_PARTITIONS} (got ${String(n)})`);
  }
  return n;
}

export function checkPartition(log: { partitionCount: number }, partition: number): void {
  if (!Number.isInteger(partition) || partition < 0 || partition >= log.partitionCount) {
    throw new RangeError(`partition ${String(partition)} does not exist (0-${log.partitionCount - 1})`);
  }
}

/** A message's property maps and endpoint set as stored (JSON text), and the bytes it counts for. */
export interface EncodedRecord {
  properties: string;
  systemProperties: string;
  endpoints: string | null;
  /** The bytes a record counts for in size-based retention: its body and its encoded properties. */
  size: number;
}

/** A message's system properties as stored: the producer's text when it made one (`systemJson`). */
export function systemPropertiesText(m: LogMessage): string {
  return m.systemJson ?? JSON.stringify(m.systemProperties);
}

/** Encodes a message's maps once: storage and the size both use the text. */
export function encodeRecord(m: LogMessage): EncodedRecord {
  const properties = JSON.stringify(m.properties);
  const systemProperties = systemPropertiesText(m);
  return {
    properties,
    systemProperties,
    endpoints: m.endpoints === undefined ? null : JSON.stringify(m.endpoints),
    size: recordSize(m.body.length, m.deviceId, m.moduleId ?? '', properties, systemProperties),
  };
}

/** The bytes a record counts for in size-based retention (and the SQL log's offsets). */
export function recordSize(bodyLength: number, deviceId: string, moduleId: string, properties: string, systemProperties: string): number {
  return bodyLength + Buffer.byteLength(deviceId) + Buffer.byteLength(moduleId) + Buffer.byteLength(properties) + Buffer.byteLength(systemProperties);
}

/** Store meta keys: where a hub's log lives (`sql` or `jetstream`, fixed at creation) and its JetStream replicas. */
export const LOG_STORE_META = 'log.store';
export const LOG_REPLICAS_META = 'log.replicas';
/** `fsync` or `os-cache`: what an acknowledgement waited for at the last start (--telemetry-durability). */
export const LOG_DURABILITY_META = 'log.durability';

/** The built-in endpoint's name (Azure's `events`). */
export const BUILTIN_ENDPOINT_NAME = 'events';

/**
 * An endpoint's message enrichments (routing, decision 0006) applied to the records a reader hands
 * out: each record with the enrichment values set as application properties, a value replacing a
 * property of the same name the device set; the records themselves are not changed (readers may
 * share them). Synchronous when nothing has to be read first (no `$twin` value, or the twins are
 * cached), so a reader at thousands of records a second makes no promise per record or batch.
 * Routing implements it (routing/enricher.ts); the composition root hands it to the built-in
 * endpoint's readers (the Event Hubs-compatible endpoint, `GET /events`).
 */
export interface RecordEnricher {
  enrich(endpoint: string, records: readonly LogRecord[]): readonly LogRecord[] | Promise<readonly LogRecord[]>;
}

/** Whether the record goes to the endpoint (absent set = the built-in endpoint only). */
export function isRoutedTo(m: LogMessage, endpoint: string): boolean {
  return m.endpoints === undefined ? endpoint === BUILTIN_ENDPOINT_NAME : m.endpoints.includes(endpoint);
}
