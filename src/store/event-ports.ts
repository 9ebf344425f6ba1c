/** The built-in event stream's store: telemetry, durable before a QoS 1 PUBACK. */

export interface StoredEvent {
  /** Assigned by the store; strictly increasing in append order. */
  seq: number;
  deviceId: string;
  moduleId: string | null;
  /** ISO-8601, set by the hub at ingestion. */
  enqueuedTime: string;
  body: Buffer;
  /** Application properties. */
  properties: Record<string, string>;
  /** System properties: message-id, content-type, iothub-connection-device-id, iothub-enqueuedtime, ... */
  systemProperties: Record<string, string>;
}

export type NewEvent = Omit<StoredEvent, 'seq'>;

export interface EventStore {
  /** Appends all events in one transaction; resolves (durably) with their seqs, in order. */
  appendEvents(events: readonly NewEvent[]): Promise<number[]>;
  /** Events with seq > after, oldest first, optionally for one device. */
  readEvents(opts: { after: number; limit: number; deviceId?: string }): Promise<StoredEvent[]>;
  /** The highest seq ever assigned (0 when empty). */
  lastEventSeq(): Promise<number>;
  /**
   * The highest seq of a stored (committed) event, 0 when none is stored. Appends commit in seq
   * order, so every event with a lower seq that will ever be readable is readable already: a live
   * reader may start there without missing one still in flight (which lastEventSeq may count).
   */
  committedHead(): Promise<number>;
  /** Deletes events enqueued before `before`, then the oldest beyond `keepAtMost`. Returns how many. */
  pruneEvents(opts: { before: string; keepAtMost: number }): Promise<number>;
}
