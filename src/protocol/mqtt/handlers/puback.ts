import type { IPubackPacket } from 'mqtt-packet';
import type { MqttConnection } from '../connection.js';

/** PUBACK from the device: a C2D delivery arrived; PUBACK = complete (wire doc §3.4). */
export async function handlePuback(conn: MqttConnection, packet: IPubackPacket): Promise<void> {
  if (packet.messageId === undefined) return;
  await conn.c2d.acked(packet.messageId);
}
