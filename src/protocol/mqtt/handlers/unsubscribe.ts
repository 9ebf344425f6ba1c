import type { IUnsubscribePacket } from 'mqtt-packet';
import type { MqttConnection } from '../connection.js';

/** UNSUBSCRIBE: always answered with UNSUBACK, which the SDKs wait for (wire doc §3.2, §4.1). */
export async function handleUnsubscribe(conn: MqttConnection, packet: IUnsubscribePacket): Promise<void> {
  for (const topic of packet.unsubscriptions) conn.subscriptions.delete(topic);
  if (!conn.cleanSession) await conn.deps.sessions.setSubscriptions(conn.clientId, [...conn.subscriptions.values()]);
  conn.send({ cmd: 'unsuback', messageId: packet.messageId ?? 0, granted: [] });
}
