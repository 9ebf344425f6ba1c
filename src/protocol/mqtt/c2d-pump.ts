/**
 * Delivers a device's C2D queue over its MQTT connection (wire doc §3.4): QoS 1 PUBLISH per
 * message, the device's PUBACK completes it (the SDK acks on receipt). Messages in flight when the
 * connection drops are abandoned, so they are delivered again after the device reconnects.
 */
import type { C2dMessage } from '../../store/c2d-ports.js';
import type { MqttConnection } from './connection.js';
import { buildPropertyBag, c2dFilter } from './topics.js';

export class C2dPump {
  /** Packet id → lock token of the messages sent and not yet acknowledged; made on the first delivery. */
  #inFlight: Map<number, string> | undefined;
  #nextId = 1;
  #running = false;
  #again = false;
  #stopped = false;

  constructor(private readonly conn: MqttConnection) {}

  kick(): void {
    if (this.#stopped || this.conn.state !== 'connected' || this.conn.deps.c2d === undefined) return;
    if (this.conn.identity === undefined || !this.conn.subscribed(c2dFilter(this.conn.identity))) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    // Never rejects: #pump catches what fails inside it (no extra promise per PUBACK).
    void this.#pump().finally(() => {
      this.#running = false;
      if (this.#again) {
        this.#again = false;
        this.kick();
      }
    });
  }

  async #pump(): Promise<void> {
    try {
      const c2d = this.conn.deps.c2d;
      const id = this.conn.identity;
      if (c2d === undefined || id === undefined) return;
      const room = this.conn.deps.limits.c2dInFlight - (this.#inFlight?.size ?? 0);
      if (room <= 0) return;
      let messages: C2dMessage[];
      try {
        messages = await c2d.lockNext(id.deviceId, room, this.conn.deps.limits.c2dLockMs, 'session');
      } catch (err) {
        this.conn.deps.logger.error({ err, deviceId: id.deviceId }, 'C2D lock failed');
        return;
      }
      for (const m of messages) {
        if (this.#stopped || m.lockToken === null) {
          if (m.lockToken !== null) void c2d.abandon(id.deviceId, m.lockToken).catch(() => undefined);
          continue;
        }
        const packetId = this.#allocate();
        (this.#inFlight ??= new Map()).set(packetId, m.lockToken);
        const bag = buildPropertyBag(
          [
            ['$.mid', m.messageId],
            ['$.to', m.to],
            ['$.cid', m.correlationId],
            ['$.uid', m.userId],
            ['$.exp', m.expiryTime],
            ['$.ct', m.contentType],
            ['$.ce', m.contentEncoding],
            // Azure puts the acknowledgement mode in the bag only when the sender asked for one;
            // the Node SDK turns every key it does not know into an application property.
            ['iothub-ack', m.ack === 'none' ? null : m.ack],
          ],
          m.properties,
        );
        this.conn.send({
          cmd: 'publish',
          topic: `devices/${id.deviceId}/messages/devicebound/${bag}`,
          payload: m.body,
          qos: 1,
          messageId: packetId,
          retain: false,
          dup: m.deliveryCount > 1,
        });
      }
      if (messages.length === room) this.#again = true;
    } catch (err) {
      // A message the broker cannot send (mqtt-packet throws on what it cannot encode): this
      // connection goes, not the process (a rejection nobody handles ends it).
      this.conn.deps.logger.error({ err, deviceId: this.conn.deviceId }, 'C2D delivery failed');
      this.conn.close('C2D delivery failed');
    }
  }

  #allocate(): number {
    for (;;) {
      const id = this.#nextId;
      this.#nextId = this.#nextId >= 65535 ? 1 : this.#nextId + 1;
      if (this.#inFlight?.has(id) !== true) return id;
    }
  }

  /** PUBACK for a C2D delivery: complete it, then send more. */
  async acked(packetId: number): Promise<boolean> {
    const lockToken = this.#inFlight?.get(packetId);
    const c2d = this.conn.deps.c2d;
    if (lockToken === undefined || c2d === undefined || this.conn.identity === undefined) return false;
    this.#inFlight?.delete(packetId);
    try {
      await c2d.complete(this.conn.identity.deviceId, lockToken);
    } catch (err) {
      // Lock lost (expired while the device sat on it): the message will be delivered again.
      this.conn.deps.logger.warn({ deviceId: this.conn.identity.deviceId, err: (err as Error).message }, 'C2D completion refused');
    }
    this.kick();
    return true;
  }

  stop(): void {
    this.#stopped = true;
    const c2d = this.conn.deps.c2d;
    const deviceId = this.conn.identity?.deviceId;
    if (c2d === undefined || deviceId === undefined || this.#inFlight === undefined) return;
    for (const lockToken of this.#inFlight.values()) void c2d.abandon(deviceId, lockToken).catch(() => undefined);
    this.#inFlight = undefined;
  }
}
