/**
 * A device (or module) on AMQP, as `azure-iot-device-amqp` uses it (wire doc Appendix A):
 *
 * - `/devices/{id}/messages/events` (client sender): telemetry, accepted once durable;
 * - `/devices/{id}/messages/devicebound` (client receiver): C2D; the device's disposition settles
 *   the message: accepted = complete, rejected = reject, released or modified = abandon;
 * - `/devices/{id}/methods/devicebound` (both directions): requests carry `IoThub-methodname` and
 *   the request id as correlation id; responses carry `IoThub-status`;
 * - `/devices/{id}/twin` (both directions): requests with `operation` (GET, PATCH on
 *   `/properties/reported`, PUT/DELETE on `/notifications/twin/properties/desired`) and a
 *   correlation id; answers with `status` (and `version`); desired patches without a correlation id.
 *
 * The session is a LiveSession: C2D mail, method calls and desired patches find it through the
 * connection table, and a newer session of the same identity takes over.
 *
 * Twin requests are answered one at a time, in order, each once the connection's output has
 * drained (amqp-backpressure.ts). Every message it sends goes out only on link credit the device
 * gave (rhea would otherwise queue it, and throws once 2048 wait on one session); twin answers
 * wait for credit here, a bounded few.
 */
import type { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import rhea, { type Delivery, type EventContext, type Message, type Receiver, type Sender } from 'rhea';
import { HubError } from '../../core/errors.js';
import { isDtmi, printable } from '../../core/ids.js';
import type { Clock } from '../../core/clock.js';
import type { JsonObject, JsonValue } from '../../core/json.js';
import type { DeviceIdentity } from '../../auth/device-authenticator.js';
import type { ConnectionTable, LiveSession } from '../../hub/connections.js';
import type { C2dService } from '../../hub/c2d/c2d-service.js';
import type { MethodService } from '../../hub/methods/method-service.js';
import type { TwinService } from '../../hub/twins/twin-service.js';
import { telemetryEvent } from '../../hub/telemetry/telemetry-event.js';
import type { TelemetrySink } from '../transport/device-ports.js';
import { amqpBody, amqpId } from './amqp-message.js';
import type { ConnectionPressure } from './amqp-backpressure.js';
import { remoteAttach } from './rhea-link.js';

type Link = Sender | Receiver;

/** Twin answers that may wait for the device's link credit; one more and it is not taking them. */
export const MAX_TWIN_ANSWERS_WITHOUT_CREDIT = 64;

export type DeviceLinkKind = 'events' | 'c2d' | 'methods' | 'twin';

export interface DeviceLinkDeps {
  connections: ConnectionTable;
  telemetry: TelemetrySink;
  twins: TwinService;
  methods: MethodService;
  c2d: C2dService;
  clock: Clock;
  logger: Logger;
  maxMessageBytes: number;
  c2dInFlight: number;
  c2dLockMs: number;
  /** The connection's backpressure: operations in flight, its output draining. */
  pressure: ConnectionPressure;
  /** Connection state and session events, as for MQTT. */
  onConnected(session: AmqpDeviceSession): void;
  onDisconnected(session: AmqpDeviceSession, wasCurrent: boolean): void;
}

/** `/devices/{id}[/modules/{mid}]/(messages/events|messages/devicebound|methods/devicebound|twin)`. */
export function parseDeviceAddress(address: string): { deviceId: string; moduleId: string | null; kind: DeviceLinkKind } | undefined {
  const m = /^\/devices\/([^/]+)(?:\/modules\/([^/]+))?\/(messages\/events|messages\/devicebound|methods\/devicebound|twin)\/?$/i.exec(address);
  if (m === null || m[1] === undefined || m[3] === undefined) return undefined;
  let deviceId: string;
  let moduleId: string | null;
  try {
    deviceId = decodeURIComponent(m[1]);
    moduleId = m[2] === undefined ? null : decodeURIComponent(m[2]);
  } catch {
    return undefined;
  }
  const tail = m[3].toLowerCase();
  const kind: DeviceLinkKind = tail === 'messages/events' ? 'events' : tail === 'messages/devicebound' ? 'c2d' : tail === 'methods/devicebound' ? 'methods' : 'twin';
  return { deviceId, moduleId, kind };
}

function system(m: Message): Record<string, string> {
  const out: Record<string, string> = {};
  const set = (k: string, v: unknown) => {
    const s = amqpId(v);
    if (s !== undefined) out[k] = s;
  };
  set('message-id', m.message_id);
  set('correlation-id', m.correlation_id);
  set('user-id', m.user_id);
  if (typeof m.content_type === 'string') out['content-type'] = m.content_type;
  if (typeof m.content_encoding === 'string') out['content-encoding'] = m.content_encoding;
  // System properties a device sets as message annotations: its component (IoT Plug and Play),
  // the distributed tracing state, the interface id of the PnP preview.
  const ann = (m.message_annotations ?? {}) as Record<string, unknown>;
  for (const k of ANNOTATED_SYSTEM_PROPERTIES) if (typeof ann[k] === 'string') out[k] = ann[k];
  return out;
}

const ANNOTATED_SYSTEM_PROPERTIES = ['dt-subject', 'tracestate', 'iothub-interface-id'] as const;

/** The model id an IoT Plug and Play device announces on a link it attaches (the .NET and C SDKs). */
export const MODEL_ID_PROPERTY = 'com.microsoft:model-id';

function appProps(m: Message): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries((m.application_properties ?? {}) as Record<string, unknown>)) {
    if (v !== undefined && v !== null) out[k] = typeof v === 'string' ? v : v instanceof Date ? v.toISOString() : String(v);
  }
  return out;
}

function jsonBody(m: Message): unknown {
  const b = amqpBody(m.body);
  if (b.length === 0 || b.toString('utf8').trim() === '') return undefined;
  return JSON.parse(b.toString('utf8')) as unknown;
}

export class AmqpDeviceSession implements LiveSession {
  readonly deviceId: string;
  readonly moduleId: string | null;
  readonly links = new Map<DeviceLinkKind, { in?: Receiver; out?: Sender }>();
  readonly #c2dInflight = new Map<Delivery, string>();
  /** Twin requests taken in and not yet answered, in order; one is handled at a time. */
  readonly #twinRequests: Message[] = [];
  #twinBusy = false;
  /** Twin answers waiting for link credit, in order. */
  readonly #twinAnswers: Message[] = [];
  #desired = false;
  #closed = false;
  /** The IoT Plug and Play model id the device announced on a link. */
  modelId: string | undefined;
  #pumping = false;
  #again = false;

  constructor(
    public identity: DeviceIdentity,
    /** `certificate`: the TLS client leaf this session authenticated with (not a CBS token). */
    readonly peer: { remote: string; protocol: 'amqp' | 'amqp-ws'; tls: string | undefined; certificate?: X509Certificate | undefined },
    private readonly deps: DeviceLinkDeps,
  ) {
    this.deviceId = identity.deviceId;
    this.moduleId = identity.moduleId;
  }

  get remoteAddress(): string {
    return this.peer.remote;
  }
  /** Lower-case hex serial of the client certificate, so that revoking it drops this session. */
  get certificateSerial(): string | undefined {
    return this.peer.certificate?.serialNumber.toLowerCase();
  }
  /** Its SHA-1 and SHA-256, so that a thumbprint rotation keeps this session only while it is listed. */
  get certificateThumbprints(): string[] | undefined {
    const leaf = this.peer.certificate;
    return leaf === undefined ? undefined : [leaf.fingerprint.replace(/:/g, ''), leaf.fingerprint256.replace(/:/g, '')];
  }
  get tlsVersion(): string | undefined {
    return this.peer.tls;
  }
  get authMethod(): string | undefined {
    return this.identity.method;
  }
  get keyFingerprint(): string | undefined {
    return this.identity.keyFingerprint;
  }

  get policyName(): string | undefined {
    return this.identity.policyName;
  }
  get protocol(): string {
    return this.peer.protocol;
  }
  get closed(): boolean {
    return this.#closed;
  }

  attach(kind: DeviceLinkKind, link: Link, direction: 'in' | 'out'): void {
    this.#announceModel(link);
    const entry = this.links.get(kind) ?? {};
    if (direction === 'in') entry.in = link as Receiver;
    else entry.out = link as Sender;
    this.links.set(kind, entry);
    if (kind === 'c2d') this.notifyC2d();
    this.deps.connections.changed(this);
  }

  /** A model id on the link's attach properties goes into the twin (IoT Plug and Play). */
  #announceModel(link: Link): void {
    const props = remoteAttach(link)?.properties;
    const modelId = props?.[MODEL_ID_PROPERTY];
    if (typeof modelId !== 'string' || modelId === this.modelId) return;
    if (!isDtmi(modelId)) {
      this.deps.logger.warn({ event: 'pnp.model-id-invalid', deviceId: this.deviceId, moduleId: this.moduleId, modelId: printable(modelId, 128) }, 'the announced model id is not a DTMI; ignored');
      return;
    }
    this.modelId = modelId;
    this.deps.twins.announceModel(this.deviceId, this.moduleId, modelId).catch((err: unknown) => {
      this.deps.logger.error({ err, deviceId: this.deviceId, moduleId: this.moduleId }, 'the announced model id could not be stored');
    });
  }

  detach(link: Link): void {
    for (const [kind, entry] of this.links) {
      if (entry.in === link) delete entry.in;
      if (entry.out === link) delete entry.out;
      if (entry.in === undefined && entry.out === undefined) this.links.delete(kind);
      if (kind === 'c2d' && entry.out === undefined) this.#abandonInflight();
      // Answers kept for a twin link that went away are not for the next one.
      if (kind === 'twin' && entry.out === undefined) this.#twinAnswers.length = 0;
    }
  }

  owns(link: Link): boolean {
    for (const entry of this.links.values()) if (entry.in === link || entry.out === link) return true;
    return false;
  }

  // ---- LiveSession --------------------------------------------------------------------------

  close(reason: string, level: 'info' | 'warn' = 'info'): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#twinAnswers.length = 0;
    for (let i = 0; i < this.#twinRequests.length; i++) this.deps.pressure.end();
    this.#twinRequests.length = 0;
    this.#abandonInflight();
    for (const entry of this.links.values()) {
      for (const l of [entry.in, entry.out]) {
        try {
          l?.close({ condition: 'amqp:link:detach-forced', description: reason });
        } catch {
          // already gone
        }
      }
    }
    this.links.clear();
    const wasCurrent = this.deps.connections.unregister(this);
    this.deps.onDisconnected(this, wasCurrent);
    this.deps.logger[level]({ event: 'amqp.device-closed', deviceId: this.deviceId, moduleId: this.moduleId, reason }, 'AMQP device session closed');
  }

  pushDesired(patch: JsonObject): boolean {
    const out = this.links.get('twin')?.out;
    if (!this.#desired || out === undefined || !out.sendable()) return false;
    out.send({ body: rhea.message.data_section(Buffer.from(JSON.stringify(patch))) });
    return true;
  }

  sendMethodRequest(name: string, payload: JsonValue, requestId: string): boolean {
    const out = this.links.get('methods')?.out;
    if (out === undefined || !out.sendable()) return false;
    out.send({
      correlation_id: requestId,
      application_properties: { 'IoThub-methodname': name },
      body: rhea.message.data_section(Buffer.from(JSON.stringify(payload))),
    });
    return true;
  }

  acceptsMethods(): boolean {
    const m = this.links.get('methods');
    return m?.out !== undefined && m.in !== undefined;
  }

  notifyC2d(): void {
    if (this.#closed || this.moduleId !== null) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    // Never rejects: #pumpC2d catches what fails inside it.
    void this.#pumpC2d().finally(() => {
      this.#pumping = false;
      if (this.#again) {
        this.#again = false;
        this.notifyC2d();
      }
    });
  }

  // ---- inbound messages ------------------------------------------------------------------------

  onMessage(kind: DeviceLinkKind, ctx: EventContext): void {
    const delivery = ctx.delivery;
    const m = ctx.message;
    if (delivery === undefined || m === undefined) return;
    if (kind === 'events') return this.#telemetry(delivery, m);
    if (kind === 'methods') {
      delivery.accept();
      const rid = amqpId(m.correlation_id) ?? '';
      const status = Number((m.application_properties as Record<string, unknown> | undefined)?.['IoThub-status'] ?? 500);
      let body: JsonValue;
      try {
        body = (jsonBody(m) ?? null) as JsonValue;
      } catch {
        body = amqpBody(m.body).toString('utf8');
      }
      this.deps.methods.respond(this.deviceId, this.moduleId, rid, Number.isInteger(status) ? status : 500, body);
      return;
    }
    if (kind === 'twin') {
      delivery.accept();
      this.deps.pressure.begin();
      this.#twinRequests.push(m);
      // Never rejects: a failed answer closes this session inside the loop.
      if (!this.#twinBusy) void this.#handleTwinRequests();
      return;
    }
    delivery.reject({ condition: 'amqp:not-allowed', description: 'This link does not take messages.' });
  }

  #telemetry(delivery: Delivery, m: Message): void {
    let event;
    try {
      event = telemetryEvent(this.identity, amqpBody(m.body), system(m), appProps(m), new Date(this.deps.clock.now()).toISOString(), this.deps.maxMessageBytes, this.modelId);
    } catch (err) {
      delivery.reject({ condition: err instanceof HubError && err.code === 'MessageTooLarge' ? 'amqp:link:message-size-exceeded' : 'amqp:invalid-field', description: (err as Error).message });
      return;
    }
    this.deps.pressure.begin();
    this.deps.telemetry
      .append(event)
      .then(
        () => delivery.accept(),
        (err: unknown) => {
          this.deps.logger.error({ err, deviceId: this.deviceId }, 'telemetry append failed');
          delivery.release();
        },
      )
      .finally(() => this.deps.pressure.end());
  }

  async #handleTwinRequests(): Promise<void> {
    this.#twinBusy = true;
    for (let m = this.#twinRequests.shift(); m !== undefined; m = this.#twinRequests.shift()) {
      try {
        // An answer that did not drain: the next one waits (and the connection reads nothing more).
        await this.deps.pressure.drained();
        if (!this.#closed) await this.#twin(m);
      } catch (err) {
        this.deps.logger.error({ err, deviceId: this.deviceId }, 'twin answer failed');
        this.close('twin answer failed');
      } finally {
        this.deps.pressure.end();
      }
    }
    this.#twinBusy = false;
  }

  async #twin(m: Message): Promise<void> {
    const ann = (m.message_annotations ?? {}) as Record<string, unknown>;
    const op = String(ann.operation ?? '').toUpperCase();
    const resource = typeof ann.resource === 'string' ? ann.resource : undefined;
    const reply = (status: number, body?: unknown, version?: number) =>
      this.#answerTwin({
        correlation_id: m.correlation_id,
        message_annotations: { status, ...(version === undefined ? {} : { version }) },
        body: rhea.message.data_section(Buffer.from(body === undefined ? '' : JSON.stringify(body))),
      });
    try {
      if (op === 'GET') return reply(200, await this.deps.twins.deviceView(this.deviceId, this.moduleId));
      if (op === 'PATCH' && resource === '/properties/reported') {
        let patch: unknown;
        try {
          patch = jsonBody(m);
        } catch {
          throw new HubError('IotHubFormatError', 'The reported properties patch is not valid JSON.');
        }
        const version = await this.deps.twins.updateReported(this.deviceId, this.moduleId, patch);
        return reply(204, undefined, version);
      }
      if ((op === 'PUT' || op === 'DELETE') && resource === '/notifications/twin/properties/desired') {
        this.#desired = op === 'PUT';
        return reply(200);
      }
      throw new HubError('ArgumentInvalid', `Unknown twin operation ${op.slice(0, 20)} ${String(resource).slice(0, 80)}.`);
    } catch (err) {
      const e = err instanceof HubError ? err : new HubError('ServerError', 'An internal error occurred.');
      if (!(err instanceof HubError)) this.deps.logger.error({ err, deviceId: this.deviceId }, 'twin operation failed');
      reply(e.status, { errorCode: e.number, message: e.message });
    }
  }

  /** Sends a twin answer on the device's credit, or keeps it until the device gives some. */
  #answerTwin(answer: Message): void {
    const out = this.links.get('twin')?.out;
    if (out === undefined || this.#closed) return;
    if (this.#twinAnswers.length === 0 && out.sendable()) {
      out.send(answer);
      return;
    }
    if (this.#twinAnswers.length >= MAX_TWIN_ANSWERS_WITHOUT_CREDIT) {
      this.close(`${MAX_TWIN_ANSWERS_WITHOUT_CREDIT} twin answers wait for link credit: the client is not taking them`, 'warn');
      return;
    }
    this.#twinAnswers.push(answer);
  }

  #flushTwinAnswers(): void {
    const out = this.links.get('twin')?.out;
    if (out === undefined) return;
    while (this.#twinAnswers.length > 0 && out.sendable()) {
      const answer = this.#twinAnswers.shift();
      if (answer !== undefined) out.send(answer);
    }
  }

  // ---- C2D ---------------------------------------------------------------------------------

  async #pumpC2d(): Promise<void> {
    try {
      const out = this.links.get('c2d')?.out;
      if (out === undefined || this.#closed) return;
      // rhea computes the credit from the client's flow as sent: a credit that is not a whole number
      // (a double, a string) is no credit. The fuzzer's flow made the hub ask its store for NaN messages.
      const credit = Number((out as unknown as { credit: unknown }).credit);
      const room = Math.min(this.deps.c2dInFlight - this.#c2dInflight.size, Number.isFinite(credit) ? Math.floor(credit) : 0);
      if (room <= 0) return;
      let messages;
      try {
        messages = await this.deps.c2d.lockNext(this.deviceId, room, this.deps.c2dLockMs, 'session');
      } catch (err) {
        this.deps.logger.error({ err, deviceId: this.deviceId }, 'C2D lock failed');
        return;
      }
      for (const m of messages) {
        if (m.lockToken === null) continue;
        if (this.#closed || !out.sendable()) {
          void this.deps.c2d.abandon(this.deviceId, m.lockToken).catch(() => undefined);
          continue;
        }
        const delivery = out.send({
          message_id: m.messageId,
          to: m.to,
          ...(m.correlationId === null ? {} : { correlation_id: m.correlationId }),
          ...(m.userId === null ? {} : { user_id: m.userId }),
          ...(m.expiryTime === null ? {} : { absolute_expiry_time: new Date(m.expiryTime) }),
          ...(m.contentType === null ? {} : { content_type: m.contentType }),
          ...(m.contentEncoding === null ? {} : { content_encoding: m.contentEncoding }),
          delivery_count: m.deliveryCount - 1,
          application_properties: { ...m.properties, ...(m.ack === 'none' ? {} : { 'iothub-ack': m.ack }) },
          body: rhea.message.data_section(m.body),
        });
        this.#c2dInflight.set(delivery, m.lockToken);
      }
      if (messages.length === room) this.#again = true;
    } catch (err) {
      // What rhea could not send: this session goes, not the process (a rejection nobody handles ends it).
      this.deps.logger.error({ err, deviceId: this.deviceId }, 'C2D delivery failed');
      this.close('C2D delivery failed');
    }
  }

  /** The device settled a C2D delivery. */
  settled(ctx: EventContext, outcome: 'accepted' | 'rejected' | 'released'): void {
    const delivery = ctx.delivery;
    if (delivery === undefined) return;
    const lockToken = this.#c2dInflight.get(delivery);
    if (lockToken === undefined) return;
    this.#c2dInflight.delete(delivery);
    const settle = outcome === 'accepted' ? this.deps.c2d.complete(this.deviceId, lockToken) : outcome === 'rejected' ? this.deps.c2d.reject(this.deviceId, lockToken) : this.deps.c2d.abandon(this.deviceId, lockToken);
    void settle
      .catch((err: unknown) => this.deps.logger.warn({ deviceId: this.deviceId, err: (err as Error).message }, 'C2D settlement refused'))
      .finally(() => this.notifyC2d());
  }

  /** A sender of this session has credit again. */
  sendable(): void {
    this.#flushTwinAnswers();
    this.notifyC2d();
  }

  #abandonInflight(): void {
    for (const lockToken of this.#c2dInflight.values()) void this.deps.c2d.abandon(this.deviceId, lockToken).catch(() => undefined);
    this.#c2dInflight.clear();
  }
}
