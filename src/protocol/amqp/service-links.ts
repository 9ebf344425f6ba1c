/**
 * The service-side AMQP links of `azure-iothub`'s Client (wire doc §6.8):
 *
 * - `/messages/devicebound` (client sender): each message goes into the same durable C2D queue as
 *   the REST path; `accepted` once stored, `rejected` with the condition the SDK maps to its errors
 *   (`amqp:not-found`, `amqp:resource-limit-exceeded`, ...).
 * - `/messages/serviceBound/feedback` (client receiver): feedback records in batches, JSON, content
 *   type `application/vnd.microsoft.iothub.feedback.json`. The receivers of every node compete for
 *   one shared queue (hub/c2d/feedback-queue.ts): each link holds one batch at a time, locked to
 *   it; accepted or rejected completes the batch (never delivered again, anywhere), released hands
 *   it out again at once, and a batch left unsettled is handed out again once its lock lapses. A
 *   link that goes (or its connection) gives its batch back at once. (azure-iothub's receiver
 *   accepts each batch as it arrives: its complete/abandon/reject change nothing on the wire.)
 */
import type { Logger } from 'pino';
import rhea, { type Delivery, type EventContext, type Message, type Receiver, type Sender } from 'rhea';

type Link = Sender | Receiver;
import { HubError } from '../../core/errors.js';
import type { C2dSendInput, C2dService } from '../../hub/c2d/c2d-service.js';
import { ACK_MODES } from '../../hub/c2d/c2d-service.js';
import type { AckMode } from '../../store/c2d-ports.js';
import type { FeedbackQueue } from '../../hub/c2d/feedback-queue.js';
import { amqpBody, amqpCondition, amqpId } from './amqp-message.js';

export const FEEDBACK_CONTENT_TYPE = 'application/vnd.microsoft.iothub.feedback.json';
const BATCH = 100;
const POLL_MS = 500;

export interface ServiceLinkDeps {
  c2d: C2dService;
  feedback: FeedbackQueue;
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
  readonly #feedbackLinks = new Set<Sender>();
  /** The batch each link holds (one at a time, as a receiver of Azure's feedback queue does). */
  readonly #inflight = new Map<Sender, { delivery: Delivery; token: string }>();
  readonly #claiming = new Set<Sender>();
  #poll: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: ServiceLinkDeps,
    private readonly logger: Logger,
  ) {}

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
    this.#feedbackLinks.add(sender);
    if (this.#poll === undefined) {
      this.#poll = setInterval(() => this.#pump(), POLL_MS);
      this.#poll.unref();
    }
    this.#pump();
  }

  sendable(sender: Sender): void {
    if (this.#feedbackLinks.has(sender)) this.#pump();
  }

  detached(link: Link): void {
    if (!this.#feedbackLinks.delete(link as Sender)) return;
    // The batch it held goes to another receiver at once rather than after its lock lapses.
    const held = this.#inflight.get(link as Sender);
    this.#inflight.delete(link as Sender);
    if (held !== undefined) this.#settleInStore(held.token, 'released');
    if (this.#feedbackLinks.size === 0 && this.#poll !== undefined) {
      clearInterval(this.#poll);
      this.#poll = undefined;
    }
  }

  settled(ctx: EventContext, outcome: 'accepted' | 'released' | 'rejected'): void {
    const sender = ctx.sender;
    const held = sender === undefined ? undefined : this.#inflight.get(sender);
    if (sender === undefined || held === undefined || ctx.delivery !== held.delivery) return;
    this.#inflight.delete(sender);
    this.#settleInStore(held.token, outcome);
  }

  stop(): void {
    if (this.#poll !== undefined) clearInterval(this.#poll);
    this.#poll = undefined;
    this.#feedbackLinks.clear();
    this.#inflight.clear();
  }

  #settleInStore(token: string, outcome: 'accepted' | 'released' | 'rejected'): void {
    const q = this.deps.feedback;
    // Never rejects: a store failure is logged (the batch's lock lapses and it goes out again).
    void (outcome === 'released' ? q.release(token) : q.complete(token))
      .then((held) => {
        if (!held) this.logger.warn({ event: 'c2d.feedback-lock-lost', outcome }, 'a feedback batch was settled after its lock lapsed; it was handed out again');
      })
      .catch((err: unknown) => this.logger.error({ err }, 'could not settle the feedback batch'))
      .finally(() => this.#pump());
  }

  #pump(): void {
    for (const sender of this.#feedbackLinks) {
      if (this.#inflight.has(sender) || this.#claiming.has(sender) || !sender.sendable()) continue;
      this.#claiming.add(sender);
      // Never rejects: a failure is logged and the next poll tries again.
      void this.#next(sender)
        .catch((err: unknown) => this.logger.error({ err }, 'feedback delivery failed'))
        .finally(() => this.#claiming.delete(sender));
    }
  }

  async #next(sender: Sender): Promise<void> {
    const batch = await this.deps.feedback.claim(BATCH);
    if (batch === undefined) return;
    if (!this.#feedbackLinks.has(sender) || !sender.sendable()) {
      // The link went while the batch was taken: give it back for another receiver.
      this.#settleInStore(batch.token, 'released');
      return;
    }
    const body = JSON.stringify(batch.records.map(({ seq: _seq, ...r }) => r));
    const delivery = sender.send({
      message_id: rhea.generate_uuid(),
      content_type: FEEDBACK_CONTENT_TYPE,
      content_encoding: 'utf-8',
      body: rhea.message.data_section(Buffer.from(body, 'utf8')),
    });
    this.#inflight.set(sender, { delivery, token: batch.token });
  }
}
