/**
 * A raw MQTT 3.1.1 client on a TLS socket, for what the official SDK will not send: wrong
 * credentials, foreign topics, QoS 2, garbage. Packets in, packets out, and when the server
 * closed the socket.
 */
import { connect, type TLSSocket } from 'node:tls';
import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet';
import { generateSasToken } from '../../src/auth/sas.js';

export interface RawMqtt {
  socket: TLSSocket;
  send(packet: Packet): void;
  sendRaw(bytes: Buffer): void;
  /** Next packet from the server, or undefined when the socket closed first. */
  next(timeoutMs?: number): Promise<Packet | undefined>;
  closed: Promise<void>;
  isClosed(): boolean;
  end(): void;
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
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const queue: Packet[] = [];
  const waiters: Array<(p: Packet | undefined) => void> = [];
  let closed = false;
  parser.on('packet', (p: Packet) => {
    const w = waiters.shift();
    if (w !== undefined) w(p);
    else queue.push(p);
  });
  socket.on('data', (c: Buffer) => parser.parse(c));
  const closedP = new Promise<void>((resolve) => {
    socket.once('close', () => {
      closed = true;
      for (const w of waiters.splice(0)) w(undefined);
      resolve();
    });
  });
  socket.on('error', () => undefined);
  return {
    socket,
    send: (p) => socket.write(mqttPacket.generate(p)),
    sendRaw: (b) => socket.write(b),
    next(timeoutMs = 5000) {
      const q = queue.shift();
      if (q !== undefined) return Promise.resolve(q);
      if (closed) return Promise.resolve(undefined);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no packet in time')), timeoutMs);
        waiters.push((p) => {
          clearTimeout(t);
          resolve(p);
        });
      });
    },
    closed: closedP,
    isClosed: () => closed,
    end: () => socket.destroy(),
  };
}

export function connectPacket(host: string, deviceId: string, password: string | undefined, moduleId?: string): IConnectPacket {
  const clientId = moduleId === undefined ? deviceId : `${deviceId}/${moduleId}`;
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: false,
    clientId,
    keepalive: 60,
    username: `${host}/${clientId}/?api-version=2021-04-12`,
    ...(password === undefined ? {} : { password: Buffer.from(password) }),
  };
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
