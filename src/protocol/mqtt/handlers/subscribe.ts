/**
 * SUBSCRIBE: only the identity's own fixed filters (wire doc §3.2); anything else closes the
 * connection (a SUBACK failure code would be ignored by the SDK, §3.2). QoS 2 is granted as 1.
 * Subscriptions persist for CleanSession=0: the SDK does not re-subscribe after a token renewal.
 */
import type { ISubscribePacket } from 'mqtt-packet';
import type { MqttConnection } from '../connection.js';
import { allowedFilters, c2dFilter, topicDenial } from '../topics.js';

/** A device may hold at most 5 subscriptions [DOCS: Understand and invoke direct methods]. */
export const MAX_SUBSCRIPTIONS = 5;

export async function handleSubscribe(conn: MqttConnection, packet: ISubscribePacket): Promise<void> {
  const id = conn.identity;
  if (id === undefined) return conn.close('SUBSCRIBE without identity');
  const allowed = allowedFilters(id);
  const granted: number[] = [];
  // The SDKs subscribe to the same topics again after every reconnect; a persistent session's
  // stored set is written only when this SUBSCRIBE changes it (a reconnect storm writes nothing).
  let changed = false;
  for (const s of packet.subscriptions) {
    if (!allowed.has(s.topic)) {
      conn.deps.authenticator.deviceDenied(id, topicDenial('subscription to', s.topic, id), { remote: conn.peer.remoteAddress, protocol: conn.peer.transport, tls: conn.peer.tlsVersion });
      return conn.close(`subscription to a topic outside the device's own: ${s.topic.slice(0, 200)}`);
    }
    const qos = s.qos >= 1 ? 1 : 0;
    if (conn.subscriptions.get(s.topic)?.qos !== qos) changed = true;
    conn.subscriptions.set(s.topic, { topic: s.topic, qos });
    granted.push(qos);
  }
  if (conn.subscriptions.size > MAX_SUBSCRIPTIONS) return conn.close('more than 5 subscriptions');
  if (changed && !conn.cleanSession) await conn.deps.sessions.setSubscriptions(conn.clientId, [...conn.subscriptions.values()]);
  conn.send({ cmd: 'suback', messageId: packet.messageId, granted });
  conn.deps.connections.changed(conn);
  if (packet.subscriptions.some((s) => s.topic === c2dFilter(id))) conn.c2d.kick();
}
