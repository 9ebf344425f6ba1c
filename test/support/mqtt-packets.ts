/**
 * MQTT 3.1.1 packets the tests and the fuzz suite send by hand, and a client end that writes
 * them and reads parsed packets back on any stream: a TLS socket (raw-mqtt.ts) or one end of an
 * in-memory pair (protocol-harness.ts).
 */
import type { Duplex } from 'node:stream';
import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet';

/** A CONNECT as the device SDK sends it (clean: false, keep-alive 60 s), any field the caller's. */
export function mqttConnect(clientId: string, username: string | undefined, password: string | Buffer | undefined): IConnectPacket {
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: false,
    clientId,
    keepalive: 60,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password: Buffer.from(password) }),
  };
}

/** A device's (or module's) CONNECT to `host`: username `<host>/<clientId>/?api-version=...`. */
export function connectPacket(host: string, deviceId: string, password: string | undefined, moduleId?: string): IConnectPacket {
  const clientId = moduleId === undefined ? deviceId : `${deviceId}/${moduleId}`;
  return mqttConnect(clientId, `${host}/${clientId}/?api-version=2021-04-12`, password);
}

/** The client side of an MQTT connection under test. */
export interface MqttClientEnd {
  send(packet: Packet): void;
  sendRaw(bytes: Buffer): void;
  /** Next packet from the server, or undefined when the stream closed first. */
  next(timeoutMs?: number): Promise<Packet | undefined>;
  closed: Promise<void>;
  isClosed(): boolean;
  end(): void;
}

/** Writes packets to `stream` and parses what comes back; `stream` is the client's end. */
export function mqttClientOn(stream: Duplex): MqttClientEnd {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const queue: Packet[] = [];
  const waiters: Array<(p: Packet | undefined) => void> = [];
  let closed = false;
  parser.on('packet', (p: Packet) => {
    const w = waiters.shift();
    if (w !== undefined) w(p);
    else queue.push(p);
  });
  stream.on('data', (c: Buffer) => parser.parse(c));
  const closedP = new Promise<void>((resolve) => {
    stream.once('close', () => {
      closed = true;
      for (const w of waiters.splice(0)) w(undefined);
      resolve();
    });
  });
  stream.on('error', () => undefined);
  return {
    send: (p) => stream.write(mqttPacket.generate(p)),
    sendRaw: (b) => stream.write(b),
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
    end: () => stream.destroy(),
  };
}
