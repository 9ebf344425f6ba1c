/**
 * The service-side AMQP links of `azure-iothub`'s Client (wire doc §6.8):
 *
 * - `/messages/devicebound` (client sender): each message goes into the same durable C2D queue as
 *   the REST path; `accepted` once stored, `rejected` with the condition the SDK maps to its errors
 *   (`amqp:not-found`, `amqp:resource-limit-exceeded`, ...).
 * - `/messages/serviceBound/feedback` (client receiver): feedback records in batches, JSON, content
 *   type `application/vnd.microsoft.iothub.feedback.json`, from one shared queue
 *   (hub/c2d/feedback-queue.ts) handed out by QueueSenders (queue-senders.ts).
 * - `/messages/serviceBound/filenotifications` (client receiver): file upload notifications, one
 *   JSON object per message, from their own shared queue (hub/files/file-notifications.ts), the same
 *   way. (azure-iothub's receivers accept each message as it arrives: their complete/abandon/reject
 *   change nothing on the wire.)
 */
import type { Logger } from 'pino';
import rhea, { type EventContext, type Message, type Receiver, type Sender } from 'rhea';

type Link = Sender | Receiver;
import { HubError } from '../../core/errors.js';
import type { C2dSendInput, C2dService } from '../../hub/c2d/c2d-service.js';
import { ACK_MODES } from '../../hub/c2d/c2d-service.js';
import type { AckMode } from '../../store/c2d-ports.js';
import type { FeedbackQueue } from '../../hub/c2d/feedback-queue.js';
import { amqpBody, amqpCondition, amqpId } from './amqp-message.js';
import type { FeedbackRecord } from '../../store/c2d-ports.js';
import type { FileNotificationRecord } from '../../store/file-notification-ports.js';
import { QueueSenders, type QueueSource } from './queue-senders.js';

export const FEEDBACK_CONTENT_TYPE = 'application/vnd.microsoft.iothub.feedback.json';
const BATCH = 100;

export interface ServiceLinkDeps {
  c2d: C2dService;
  feedback: FeedbackQueue;
  /** File upload notifications (hub/files/file-notifications.ts); without it the link is refused. */
  fileNotifications?: QueueSource<FileNotificationRecord>;
}

/** `/devices/<url-encoded id>/messages/devicebound` -> the device id. */
export function deviceboundTarget(to: unknown): string {
  const m = typeof to === 'string' ? /^\/devices\/([^/]+)\/messages\/devicebound\/?$/i.exec(to) : null;
  if (m?.[1] === undefined) throw new HubError('ArgumentInvalid', `The message 'to' must be /devices/{deviceId}/messages/devicebound.`);
  try {
    return decodeURIComponent(m[1]);
  } catch {
    throw new HubError('ArgumentInvalid', "The device id in 'to' is not valid percent-encoding.");
  }
}

export function c2dInputFromAmqp(m: Message): C2dSendInput {
  const app = (m.application_properties ?? {}) as Record<string, unknown>;
  const properties: Record<string, string> = {};
  let ack: AckMode | undefined;
  for (const [k, v] of Object.entries(app)) {
    if (k.toLowerCase() === 'iothub-ack') {
      if (typeof v !== 'string' || !ACK_MODES.includes(v as AckMode)) throw new HubError('ArgumentInvalid', 'iothub-ack must be one of none, positive, negative, full.');
      ack = v as AckMode;
      continue;
    }
    if (v !== undefined && v !== null) properties[k] = typeof v === 'string' ? v : v instanceof Date ? v.toISOString() : String(v);
  }
  const input: C2dSendInput = { body: amqpBody(m.body), properties };
  const messageId = amqpId(m.message_id);
  const correlationId = amqpId(m.correlation_id);
  const userId = amqpId(m.user_id);
  const expiry = m.absolute_expiry_time as unknown;
  if (messageId !== undefined) input.messageId = messageId;
  if (correlationId !== undefined) input.correlationId = correlationId;
  if (userId !== undefined) input.userId = userId;
  if (ack !== undefined) input.ack = ack;
  if (typeof m.content_type === 'string') input.contentType = m.content_type;
  if (typeof m.content_encoding === 'string') input.contentEncoding = m.content_encoding;
  if (expiry instanceof Date) input.expiryTime = expiry.toISOString();
  else if (typeof expiry === 'number') input.expiryTime = new Date(expiry).toISOString();
  return input;
}

export class ServiceLinks {
  readonly #feedback: QueueSenders<FeedbackRecord>;
  readonly #fileNotifications: QueueSenders<FileNotificationRecord> | undefined;

  constructor(
    private readonly deps: ServiceLinkDeps,
    private readonly logger: Logger,
  ) {
    this.#feedback = new QueueSenders(deps.feedback, { name: 'c2d.feedback', batch: BATCH, render: renderFeedback }, logger);
    this.#fileNotifications = deps.fileNotifications === undefined ? undefined : new QueueSenders(deps.fileNotifications, { name: 'files.notification', batch: 1, render: renderFileNotification }, logger);
  }

  onDeviceboundMessage(ctx: EventContext): void {
    const delivery = ctx.delivery;
    const message = ctx.message;
    if (delivery === undefined || message === undefined) return;
    let deviceId: string;
    let input: C2dSendInput;
    try {
      deviceId = deviceboundTarget(message.to);
      input = c2dInputFromAmqp(message);
    } catch (err) {
      delivery.reject(amqpCondition(err));
      return;
    }
    this.deps.c2d.send(deviceId, input).then(
      () => delivery.accept(),
      (err: unknown) => {
        if (!(err instanceof HubError) || err.status >= 500) this.logger.error({ err, deviceId }, 'C2D send over AMQP failed');
        delivery.reject(amqpCondition(err));
      },
    );
  }

  attachFeedback(sender: Sender): void {
    this.#feedback.attach(sender);
  }

  /** False when this hub has no file upload notifications (the link is refused). */
  attachFileNotifications(sender: Sender): boolean {
    if (this.#fileNotifications === undefined) return false;
    this.#fileNotifications.attach(sender);
    return true;
  }

  sendable(sender: Sender): void {
    this.#feedback.sendable(sender);
    this.#fileNotifications?.sendable(sender);
  }

  detached(link: Link): void {
    this.#feedback.detached(link as Sender);
    this.#fileNotifications?.detached(link as Sender);
  }

  settled(ctx: EventContext, outcome: 'accepted' | 'released' | 'rejected'): void {
    this.#feedback.settled(ctx, outcome);
    this.#fileNotifications?.settled(ctx, outcome);
  }

  stop(): void {
    this.#feedback.stop();
    this.#fileNotifications?.stop();
  }
}

function renderFeedback(records: FeedbackRecord[]): Message {
  const body = JSON.stringify(records.map(({ seq: _seq, ...r }) => r));
  return {
    message_id: rhea.generate_uuid(),
    content_type: FEEDBACK_CONTENT_TYPE,
    content_encoding: 'utf-8',
    body: rhea.message.data_section(Buffer.from(body, 'utf8')),
  };
}

/** One notification per message, its JSON body as Azure sends it (deviceId, blobUri, blobName, ...). */
function renderFileNotification(records: FileNotificationRecord[]): Message {
  const r = records[0];
  return {
    message_id: rhea.generate_uuid(),
    content_type: 'application/json',
    content_encoding: 'utf-8',
    ...(r === undefined ? {} : { creation_time: new Date(r.enqueuedAt) }),
    body: rhea.message.data_section(Buffer.from(r?.body ?? '{}', 'utf8')),
  };
}
