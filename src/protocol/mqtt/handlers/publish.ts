/**
 * PUBLISH from a device (wire doc §3.3, §3.6, §3.7): telemetry into the event log, twin GET,
 * reported-properties PATCH, direct-method responses. Anything else, QoS 2, or an oversized
 * message closes the connection.
 *
 * A QoS 1 telemetry PUBACK goes out only once the event is durable in the stream's store, and
 * PUBACKs keep the order of their PUBLISHes [MQTT-4.6.0-2] (ack-queue.ts); appends of one connection
 * overlap so the store can commit them in batches.
 */
import type { IPublishPacket } from 'mqtt-packet';
import { HubError } from '../../../core/errors.js';
import type { JsonValue } from '../../../core/json.js';
import { telemetryEvent } from '../../../hub/telemetry/telemetry-event.js';
import type { MqttConnection } from '../connection.js';
import { classifyPublish, jsonPayload, parseJsonPayload, parsePropertyBag, topicDenial, TWIN_RESPONSE_FILTER } from '../topics.js';

function twinResponse(conn: MqttConnection, status: number, rid: string, body: unknown, version?: number): void {
  if (!conn.subscribed(TWIN_RESPONSE_FILTER)) return;
  const v = version === undefined ? '' : `&$version=${version}`;
  conn.send({
    cmd: 'publish',
    topic: `$iothub/twin/res/${status}/?$rid=${encodeURIComponent(rid)}${v}`,
    payload: body === undefined ? Buffer.alloc(0) : jsonPayload(body),
    qos: 0,
    retain: false,
    dup: false,
  });
}

/** Twin errors carry `errorCode` in JSON or the SDK treats them as success (wire doc §3.6). */
function twinError(conn: MqttConnection, rid: string, err: unknown): void {
  const e = err instanceof HubError ? err : new HubError('ServerError', 'An internal error occurred.');
  if (!(err instanceof HubError)) conn.deps.logger.error({ err, clientId: conn.clientId }, 'twin operation failed');
  twinResponse(conn, e.status, rid, { errorCode: e.number, message: e.message });
}

export async function handlePublish(conn: MqttConnection, packet: IPublishPacket): Promise<void> {
  const id = conn.identity;
  if (id === undefined) return conn.close('PUBLISH without identity');
  if (packet.qos === 2) return conn.close('QoS 2 is not supported (wire doc §3.1)');
  const target = classifyPublish(packet.topic, id);
  if (target.kind !== 'forbidden') conn.activity();
  const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);

  switch (target.kind) {
    case 'forbidden':
      conn.deps.authenticator.deviceDenied(id, topicDenial('publish to', packet.topic, id), { remote: conn.peer.remoteAddress, protocol: conn.peer.transport, tls: conn.peer.tlsVersion });
      return conn.close(`publish to a topic outside the device's own: ${packet.topic.slice(0, 200)}`);

    case 'telemetry': {
      let last = conn.lastBag;
      if (last === undefined || last.text !== target.bag) {
        try {
          last = conn.lastBag = { text: target.bag, bag: parsePropertyBag(target.bag) };
        } catch {
          return conn.close('malformed property bag');
        }
      }
      // The event keeps its application properties object: each message gets its own copy.
      const app: Record<string, string> = {};
      for (const k in last.bag.app) app[k] = last.bag.app[k] as string;
      if (packet.retain) app['mqtt-retain'] = 'true';
      let event;
      try {
        event = telemetryEvent(id, payload, last.bag.system, app, new Date(conn.deps.clock.now()).toISOString(), conn.deps.limits.maxMessageBytes, conn.modelId);
      } catch (err) {
        return conn.close((err as Error).message);
      }
      const slot = conn.acks.expect(packet.qos === 1 ? packet.messageId : undefined);
      conn.deps.telemetry.append(event).then(
        () => conn.acks.settle(slot, true),
        (err: unknown) => {
          // Not durable: no PUBACK. Closing makes the device resend after it reconnects.
          conn.deps.logger.error({ err, clientId: conn.clientId }, 'telemetry append failed');
          conn.acks.settle(slot, false);
        },
      );
      return;
    }

    case 'twin-get':
      try {
        twinResponse(conn, 200, target.rid, await conn.deps.twins.deviceView(id.deviceId, id.moduleId));
      } catch (err) {
        twinError(conn, target.rid, err);
      }
      return;

    case 'twin-reported': {
      let patch: unknown;
      try {
        patch = parseJsonPayload(payload);
      } catch {
        return twinError(conn, target.rid, new HubError('IotHubFormatError', 'The reported properties patch is not valid JSON.'));
      }
      try {
        const version = await conn.deps.twins.updateReported(id.deviceId, id.moduleId, patch);
        twinResponse(conn, 204, target.rid, undefined, version);
      } catch (err) {
        twinError(conn, target.rid, err);
      }
      return;
    }

    case 'method-response': {
      let body: JsonValue;
      try {
        body = parseJsonPayload(payload) as JsonValue;
      } catch {
        body = payload.toString('utf8');
      }
      let rid: string;
      try {
        rid = decodeURIComponent(target.rid);
      } catch {
        return conn.close('method response $rid is not valid percent-encoding');
      }
      conn.deps.methods.respond(id.deviceId, id.moduleId, rid, target.status, body);
      return;
    }
  }
}
