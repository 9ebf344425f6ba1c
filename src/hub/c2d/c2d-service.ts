/**
 * Cloud-to-device messaging, service side and queue engine [DOCS: Send cloud-to-device messages
 * from IoT Hub]: per-device queues of at most 50 pending messages, TTL (default 1 hour, at most
 * 2 days), at most 10 delivery attempts (then dead-lettered), a lock per delivery attempt, and
 * feedback records as each message's `ack` asks. The protocol edges (service REST, MQTT and
 * device HTTPS delivery) call this; the store keeps the queues durable and consistent.
 *
 * Purge: `purge` (an operator emptying a queue) records `Purged` feedback for messages sent with
 * ack `full` or `negative`; a deleted device's queue goes with the device and gives no feedback
 * (`forget`).
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { HubError } from '../../core/errors.js';
import { printable, validateDeviceId } from '../../core/ids.js';
import type { AckMode, C2dDrop, C2dMessage, FeedbackRecord, Store } from '../../store/ports.js';
import { SUBJECTS, type C2dMailCause, type HubBus } from '../../bus/subjects.js';
import { MessageTally } from '../../core/tally.js';
import { isoDurationMs, type HubSettings } from '../../core/settings.js';
import type { C2dEvent } from '../../core/security-events.js';

export interface C2dSendInput {
  body: Buffer;
  messageId?: string;
  correlationId?: string;
  userId?: string;
  /** ISO-8601 absolute expiry. */
  expiryTime?: string;
  ack?: AckMode;
  contentType?: string;
  contentEncoding?: string;
  properties?: Record<string, string>;
}

export interface C2dLimits {
  maxDepth: number;
  defaultTtlMs: number;
  maxTtlMs: number;
  maxDeliveryCount: number;
  lockMs: number;
}

/** [DOCS: IoT Hub quotas and throttling][DOCS: Send cloud-to-device messages from IoT Hub] */
export const DEFAULT_C2D_LIMITS: C2dLimits = {
  maxDepth: 50,
  defaultTtlMs: 60 * 60 * 1000,
  maxTtlMs: 2 * 24 * 60 * 60 * 1000,
  maxDeliveryCount: 10,
  lockMs: 60 * 1000,
};

/** C2D message size: body plus property names and values [DOCS: IoT Hub quotas and throttling]. */
export const C2D_MAX_MESSAGE_BYTES = 64 * 1024;
export const ACK_MODES: readonly AckMode[] = ['none', 'positive', 'negative', 'full'];
const SWEEP_INTERVAL_MS = 5_000;
const SWEEP_MAX_DEVICES = 500;
/** Feedback stays readable this long (Azure's longest feedback TTL). */
const FEEDBACK_RETENTION_MS = 2 * 24 * 60 * 60 * 1000;

/** Application property names and values (HTTPS D2C and all C2D) [DOCS: Create and read IoT Hub messages]. */
const PROPERTY_PATTERN = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]*$/;
/** message-id [DOCS: Create and read IoT Hub messages]. */
const MESSAGE_ID_PATTERN = /^[A-Za-z0-9\-:.+%_#*?!(),=@;$']{1,128}$/;
const PRINTABLE_PATTERN = /^[\x20-\x7e]{1,128}$/;

export function validateC2dProperty(name: string, value: string): void {
  if (name === '' || !PROPERTY_PATTERN.test(name)) {
    throw new HubError('ArgumentInvalid', `The property name '${printable(name)}' is empty or contains a character outside A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ \` | ~`);
  }
  if (!PROPERTY_PATTERN.test(value)) {
    throw new HubError('ArgumentInvalid', `The value of property '${printable(name)}' contains a character outside A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ \` | ~`);
  }
}

function optionalText(value: string | undefined, what: string, pattern: RegExp = PRINTABLE_PATTERN): string | null {
  if (value === undefined) return null;
  if (!pattern.test(value)) throw new HubError('ArgumentInvalid', `The ${what} '${printable(value)}' is empty, too long or has invalid characters.`);
  return value;
}

export type { C2dMailCause } from '../../bus/subjects.js';

/**
 * Who holds a delivery lock: a live MQTT or AMQP session of this node (gone when the node stops
 * or dies), or the device by its lock token (HTTPS receive; it may settle after a restart).
 */
export type C2dLockHolder = 'session' | 'token';

export class C2dService {
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;

  /**
   * The bus's node id is recorded with the locks this node's sessions take. One id per node of a
   * cluster, kept across restarts, so that a node starting again releases exactly the locks of
   * its own earlier run (`releaseSessionLocks`).
   */
  readonly #node: string;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly bus: HubBus,
    private limits: C2dLimits = DEFAULT_C2D_LIMITS,
    private readonly tally: MessageTally = new MessageTally(),
  ) {
    this.#node = bus.nodeId;
    // A deleted device's queue goes with it (the store cascades); this clears any leftover.
    bus.subscribe(SUBJECTS.identityChanged, async (change, meta) => {
      if (change.kind === 'device-deleted' && meta.local) await this.forget(change.deviceId);
    });
    // In a cluster, a device's session taken here ends any other: the messages that session had
    // locked (its node may have died with it) are deliverable now, not when their locks lapse.
    // One node has no other sessions' locks (its own earlier run's go at start), so no write there.
    if (bus.bus.kind !== 'local') {
      bus.subscribe(SUBJECTS.sessionClaimed, async (claim, meta) => {
        if (!meta.local || claim.moduleId !== null) return;
        if ((await this.store.c2d.releaseOthersLocks(claim.deviceId, this.#node)) > 0) this.#emit(claim.deviceId, 'released');
      });
    }
  }

  /**
   * Messages that left a queue undelivered (expired or dead-lettered, once the store committed)
   * join the security event stream (alerts, audit), reported by the node whose sweep or lock
   * found them.
   */
  reportDropsTo(events: { emit(event: C2dEvent): void }): void {
    this.store.c2d.onDropped((d: C2dDrop) =>
      events.emit({ type: 'c2d', at: this.clock.now(), outcome: d.status === 'Expired' ? 'expired' : 'dead-lettered', deviceId: d.deviceId, count: d.count }),
    );
  }

  /** Tells the node holding the device's session that it has mail (new, abandoned, or whose lock lapsed). */
  #emit(deviceId: string, cause: C2dMailCause): void {
    this.bus.publish(SUBJECTS.c2dEnqueued, { deviceId, cause });
  }

  async send(deviceId: string, input: C2dSendInput): Promise<C2dMessage> {
    validateDeviceId(deviceId);
    const now = this.clock.now();
    const properties = input.properties ?? {};
    let size = input.body.length;
    for (const [name, value] of Object.entries(properties)) {
      validateC2dProperty(name, value);
      size += name.length + value.length;
    }
    const messageId = input.messageId ?? randomUUID();
    optionalText(messageId, 'message id', MESSAGE_ID_PATTERN);
    const fields = {
      correlationId: optionalText(input.correlationId, 'correlation id'),
      userId: optionalText(input.userId, 'user id'),
      contentType: optionalText(input.contentType, 'content type'),
      contentEncoding: optionalText(input.contentEncoding, 'content encoding'),
    };
    for (const v of [messageId, ...Object.values(fields)]) size += v?.length ?? 0;
    if (size > C2D_MAX_MESSAGE_BYTES) {
      throw new HubError('MessageTooLarge', `The message is ${size} bytes; cloud-to-device messages are limited to ${C2D_MAX_MESSAGE_BYTES}.`);
    }
    const ack = input.ack ?? 'none';
    if (!ACK_MODES.includes(ack)) throw new HubError('ArgumentInvalid', `The ack mode '${printable(String(ack))}' is not one of none, positive, negative, full.`);
    const message = await this.store.c2d.enqueue(
      {
        deviceId,
        messageId,
        ...fields,
        to: `/devices/${deviceId}/messages/devicebound`,
        ack,
        properties: { ...properties },
        body: input.body,
        enqueuedTime: new Date(now).toISOString(),
        expiryTime: new Date(this.#expiry(input.expiryTime, now)).toISOString(),
      },
      { maxDepth: this.limits.maxDepth, now },
    );
    await this.#recount(deviceId);
    this.tally.c2dOut++;
    this.#emit(deviceId, 'sent');
    return message;
  }

  #expiry(raw: string | undefined, now: number): number {
    if (raw === undefined) return now + this.limits.defaultTtlMs;
    const at = Date.parse(raw);
    if (!Number.isFinite(at)) throw new HubError('ArgumentInvalid', `The expiry '${printable(raw)}' is not an ISO-8601 time.`);
    if (at <= now) throw new HubError('ArgumentInvalid', `The expiry '${printable(raw)}' is in the past.`);
    if (at > now + this.limits.maxTtlMs) {
      throw new HubError('ArgumentInvalid', `The expiry '${printable(raw)}' is more than ${this.limits.maxTtlMs / 3_600_000} hours away.`);
    }
    return at;
  }

  /** Hub settings changed the defaults for messages sent from now on. */
  /** The hub settings' C2D defaults (TTL, delivery count), now and whenever any node changes them. */
  followSettings(initial: HubSettings): void {
    const apply = (s: HubSettings) => this.setDefaults({ defaultTtlMs: isoDurationMs(s.c2d.defaultTtlAsIso8601), maxDeliveryCount: s.c2d.maxDeliveryCount });
    apply(initial);
    this.bus.subscribe(SUBJECTS.settingsChanged, ({ settings }) => apply(settings));
  }

  setDefaults(d: { defaultTtlMs: number; maxDeliveryCount: number }): void {
    this.limits = { ...this.limits, defaultTtlMs: Math.min(d.defaultTtlMs, this.limits.maxTtlMs), maxDeliveryCount: d.maxDeliveryCount };
  }

  /** Locks up to `max` deliverable messages (oldest first) for `lockMs`, increments their delivery count; expired ones are removed with Expired feedback, ones past maxDeliveryCount dead-lettered first. */
  lockNext(deviceId: string, max: number, lockMs: number = this.limits.lockMs, holder: C2dLockHolder = 'token'): Promise<C2dMessage[]> {
    if (!Number.isInteger(max) || max < 0) throw new HubError('ArgumentInvalid', 'max must be a non-negative integer.');
    if (!(lockMs > 0)) throw new HubError('ArgumentInvalid', 'lockMs must be positive.');
    return this.store.c2d.lockNext(deviceId, {
      max,
      now: this.clock.now(),
      lockMs,
      maxDeliveryCount: this.limits.maxDeliveryCount,
      ...(holder === 'session' ? { owner: this.#node } : {}),
    });
  }

  /**
   * At start-up, before any listener: the locks this node's sessions held when it last stopped or
   * died are released, so those messages go out as soon as their devices reconnect rather than
   * when the lock lapses (still at least once: the device may have had one and not settled it).
   * Token locks (HTTPS) stay; their devices may still settle them. Returns how many devices.
   */
  async releaseSessionLocks(): Promise<number> {
    const devices = await this.store.c2d.releaseOwnedLocks(this.#node);
    for (const deviceId of devices) this.#emit(deviceId, 'released');
    return devices.length;
  }

  /** Keeps `cloudToDeviceMessageCount` on the device record current; a failure here only logs. */
  async #recount(deviceId: string): Promise<void> {
    await this.store.c2d.recount(deviceId).catch(() => undefined);
  }

  /** Removes the message; Success feedback. DeviceMessageLockLost when the lock is unknown or lapsed. */
  async complete(deviceId: string, lockToken: string): Promise<void> {
    if (!(await this.store.c2d.settle(deviceId, lockToken, 'Success', this.clock.now()))) throw lockLost(lockToken);
    await this.#recount(deviceId);
  }

  /** Removes the message; Rejected feedback. */
  async reject(deviceId: string, lockToken: string): Promise<void> {
    if (!(await this.store.c2d.settle(deviceId, lockToken, 'Rejected', this.clock.now()))) throw lockLost(lockToken);
    await this.#recount(deviceId);
  }

  /** Unlocks the message for redelivery (dead-letters it when it used its last attempt). */
  async abandon(deviceId: string, lockToken: string): Promise<void> {
    const ok = await this.store.c2d.abandon(deviceId, lockToken, { now: this.clock.now(), maxDeliveryCount: this.limits.maxDeliveryCount });
    if (!ok) throw lockLost(lockToken);
    this.#emit(deviceId, 'abandoned');
  }

  pendingCount(deviceId: string): Promise<number> {
    return this.store.c2d.countPending(deviceId, this.clock.now());
  }

  /** Empties the queue of an existing device (DeviceNotFound otherwise); Purged feedback for ack full/negative. */
  async purge(deviceId: string): Promise<number> {
    validateDeviceId(deviceId);
    if ((await this.store.getDevice(deviceId)) === undefined) throw new HubError('DeviceNotFound', `Device ${deviceId} not found`);
    const n = await this.store.c2d.purge(deviceId, { now: this.clock.now(), feedback: true });
    await this.#recount(deviceId);
    return n;
  }

  /** Drops whatever is left of a deleted device's queue, without feedback. */
  forget(deviceId: string): Promise<number> {
    return this.store.c2d.purge(deviceId, { now: this.clock.now(), feedback: false });
  }

  readFeedback(after: number, limit: number): Promise<FeedbackRecord[]> {
    return this.store.c2d.readFeedback(after, limit);
  }

  /** One housekeeping pass: expiry, dead-lettering of lapsed locks, lock release, feedback retention. */
  async sweep(): Promise<{ expired: number; deadLettered: number; released: number }> {
    const now = this.clock.now();
    const r = await this.store.c2d.sweep({
      now,
      maxDeliveryCount: this.limits.maxDeliveryCount,
      feedbackBefore: now - FEEDBACK_RETENTION_MS,
      maxDevices: SWEEP_MAX_DEVICES,
    });
    for (const deviceId of r.released) this.#emit(deviceId, 'released');
    return { expired: r.expired, deadLettered: r.deadLettered, released: r.released.length };
  }

  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      if (this.#sweeping !== undefined) return;
      this.#sweeping = this.sweep()
        .then(() => undefined)
        .catch(() => undefined) // the next tick tries again; a store outage shows in /health
        .finally(() => {
          this.#sweeping = undefined;
        });
    }, SWEEP_INTERVAL_MS);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#sweeping;
  }
}

function lockLost(lockToken: string): HubError {
  return new HubError('DeviceMessageLockLost', `The lock '${printable(lockToken)}' is unknown or has expired.`);
}
