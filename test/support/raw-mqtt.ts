/**
 * A raw MQTT 3.1.1 client on a TLS socket, for what the official SDK will not send: wrong
 * credentials, foreign topics, QoS 2, garbage. Packets in, packets out, and when the server
 * closed the socket. Tests that need no TLS drive the broker in memory instead
 * (protocol-harness.ts).
 */
import { connect, type TLSSocket } from 'node:tls';
import type { Packet } from 'mqtt-packet';
import { generateSasToken } from '../../src/auth/sas.js';
import { mqttClientOn, type MqttClientEnd } from './mqtt-packets.js';

export { connectPacket } from './mqtt-packets.js';

export interface RawMqtt extends MqttClientEnd {
  socket: TLSSocket;
}

export async function rawMqtt(host: string, opts: { port?: number; ca: string; cert?: string; key?: string; localAddress?: string }): Promise<RawMqtt> {
  // A client presenting a certificate may present a deliberately weak one (RSA 1024): the client
  // side lets it through (security level 0) so that the hub is the one to refuse it.
  const socket = connect({
    host,
    port: opts.port ?? 8883,
    ca: opts.ca,
    ...(opts.localAddress === undefined ? {} : { localAddress: opts.localAddress }),
    ...(opts.cert === undefined ? {} : { cert: opts.cert, key: opts.key, ciphers: 'DEFAULT:@SECLEVEL=0' }),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  return { socket, ...mqttClientOn(socket) };
}

export function deviceToken(host: string, deviceId: string, key: string, expiry = Math.floor(Date.now() / 1000) + 600): string {
  return generateSasToken({ resource: `${host}/devices/${deviceId}`, key, expiry });
}

/** Connects and returns the CONNACK return code (and the client for further use). */
export async function connectRaw(
  host: string,
  ca: string,
  packet: Packet,
  tlsCert?: { cert: string; key: string },
  localAddress?: string,
): Promise<{ code: number | undefined; client: RawMqtt }> {
  const client = await rawMqtt(host, { ca, ...(tlsCert ?? {}), ...(localAddress === undefined ? {} : { localAddress }) });
  client.send(packet);
  const p = await client.next();
  return { code: p?.cmd === 'connack' ? p.returnCode : undefined, client };
}
