/**
 * Cloud-to-device queues and delivery feedback [DOCS: Send cloud-to-device messages from IoT Hub].
 * The rules (depth, TTL, delivery count, lock time) live in src/hub/c2d/c2d-service.ts; the store
 * keeps queues consistent and durable.
 */
export type AckMode = 'none' | 'positive' | 'negative' | 'full';
export type FeedbackStatus = 'Success' | 'Expired' | 'DeliveryCountExceeded' | 'Rejected' | 'Purged';

export interface C2dMessage {
  deviceId: string;
  /** Queue order, assigned by the store. */
  seq: number;
  messageId: string;
  correlationId: string | null;
  userId: string | null;
  /** `/devices/{id}/messages/devicebound`. */
  to: string;
  ack: AckMode;
  contentType: string | null;
  contentEncoding: string | null;
  properties: Record<string, string>;
  body: Buffer;
  enqueuedTime: string;
  expiryTime: string;
  deliveryCount: number;
  /** Set while the message is locked for a delivery attempt. */
  lockToken: string | null;
  lockedUntil: string | null;
}

export interface FeedbackRecord {
  seq: number;
  originalMessageId: string;
  deviceGenerationId: string;
  deviceId: string;
  enqueuedTimeUtc: string;
  statusCode: FeedbackStatus;
  description: string;
}

/** A message as the service hands it over; the store assigns `seq` and the delivery state. */
export type NewC2dMessage = Omit<C2dMessage, 'seq' | 'deliveryCount' | 'lockToken' | 'lockedUntil'>;

/** Messages that left a queue undelivered in one committed transaction. */
export interface C2dDrop {
  deviceId: string;
  /** Expired (TTL passed) or DeliveryCountExceeded (dead-lettered). */
  status: 'Expired' | 'DeliveryCountExceeded';
  count: number;
}

export interface C2dSweepResult {
  expired: number;
  deadLettered: number;
  /** Devices with messages deliverable again because a lapsed lock was released. */
  released: string[];
  feedbackPruned: number;
}

/**
 * Per-device FIFO queues. Every method that changes a device's queue runs in one transaction that
 * also serializes it against the device's other queue transactions, and records the feedback of
 * the messages it removes (as their `ack` asks: positive = Success only, negative = all but
 * Success, full = all, none = nothing) in that same transaction. Times are epoch milliseconds.
 * Deleting a device deletes its queue with it (no feedback).
 */
export interface C2dStore {
  /** Writes the device's queued-message count to its record (`cloudToDeviceMessageCount`). */
  recount(deviceId: string): Promise<void>;
  /**
   * Removes the device's expired messages (Expired), then appends unless `maxDepth` messages are
   * pending. DeviceNotFound / DeviceMaximumQueueDepthExceeded.
   */
  enqueue(message: NewC2dMessage, opts: { maxDepth: number; now: number }): Promise<C2dMessage>;
  /**
   * Removes expired messages (Expired), dead-letters unlocked ones whose delivery count reached
   * `maxDeliveryCount` (DeliveryCountExceeded), then locks up to `max` of the unlocked rest, oldest
   * first, until `now + lockMs`, each under a fresh lock token, counting the delivery attempt.
   * A lock whose time has passed counts as unlocked. `owner` is the node id of the hub whose
   * session takes the locks; without it a lock is held by its token alone (HTTPS receive).
   */
  lockNext(deviceId: string, opts: { max: number; now: number; lockMs: number; maxDeliveryCount: number; owner?: string }): Promise<C2dMessage[]>;
  /**
   * Unlocks every message locked with `owner` (lapsed or not), so it is deliverable at once; its
   * delivery count stays (that attempt happened). Returns the devices whose messages were unlocked.
   * For a hub node at start-up: the sessions that held these locks died with its earlier run.
   */
  releaseOwnedLocks(owner: string): Promise<string[]>;
  /**
   * Unlocks the device's messages that sessions of other owners (nodes) locked; token locks (HTTPS
   * receive) stay. For a node that just took the device's one session: any other session of it is
   * closed or died with its node, and its locks would otherwise hold until they lapse. Returns how
   * many were unlocked.
   */
  releaseOthersLocks(deviceId: string, owner: string): Promise<number>;
  /** Removes the message whose lock still holds, recording `outcome`. False when the lock is lost. */
  settle(deviceId: string, lockToken: string, outcome: 'Success' | 'Rejected', now: number): Promise<boolean>;
  /** Unlocks a held message for redelivery, or dead-letters it at `maxDeliveryCount`. False when the lock is lost. */
  abandon(deviceId: string, lockToken: string, opts: { now: number; maxDeliveryCount: number }): Promise<boolean>;
  /** Messages of the device not expired at `now`, locked or not. */
  countPending(deviceId: string, now: number): Promise<number>;
  /** Messages of every device not expired at `now` (one query, for the queue-depth gauge). */
  countAllPending(now: number): Promise<number>;
  /**
   * Informs `listener` of every expiry and dead-lettering, whichever call caused it (enqueue,
   * lockNext, abandon, sweep), once its transaction committed. Listeners cannot refuse; one that
   * throws does not fail the call.
   */
  onDropped(listener: (drop: C2dDrop) => void): void;
  /** Removes the device's whole queue, with Purged feedback when `feedback`. Returns how many. */
  purge(deviceId: string, opts: { now: number; feedback: boolean }): Promise<number>;
  /**
   * Housekeeping for up to `maxDevices` devices: expires, dead-letters lapsed locks at
   * `maxDeliveryCount`, releases the other lapsed locks; then drops feedback created before
   * `feedbackBefore`.
   */
  sweep(opts: { now: number; maxDeliveryCount: number; feedbackBefore: number; maxDevices: number }): Promise<C2dSweepResult>;
  /** Feedback with seq > `after`, oldest first. */
  readFeedback(after: number, limit: number): Promise<FeedbackRecord[]>;
}
