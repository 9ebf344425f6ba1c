/**
 * AMQP inputs (AMQPS and AMQP over WebSocket alike). Real sessions are recorded from rhea (the
 * library the Azure SDKs use) talking to the hub under test: every write rhea makes on its TLS
 * socket is one chunk. A device session (SASL ANONYMOUS, open, CBS put-token with the device's
 * SAS, telemetry, C2D, twin GET and PATCH, methods) and a service session (CBS put-token with
 * iothubowner's SAS, a C2D send, the feedback receiver) are recorded; their chunks up to and
 * including the put-token are the authenticating prefix, the rest is what gets mutated after
 * authentication. Before authentication the whole recording is mutated, and hand-made frames
 * (test/support/amqp-frames) add what rhea never sends.
 */
import fc from 'fast-check';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import rhea from 'rhea';
import { generateSasToken } from '../src/auth/sas.js';
import { AMQP_HEADER, SASL_HEADER, attachSender, begin, EMPTY_FRAME, open, saslInitAnonymous, transfer } from '../test/support/amqp-frames.js';
import type { FuzzInput, Protocol } from './input.js';
import { applyMutations, mutationOps } from './mutate.js';
import type { PrefixChunk } from './transport.js';

export interface AmqpRecording {
  /**
   * Chunks up to and including the CBS put-token: sent unmutated to authenticate, each once the
   * hub has sent about as many bytes as it had when rhea wrote it (the AMQP header waits for the
   * SASL outcome).
   */
  prefix: PrefixChunk[];
  /** What the client did after it was authenticated. */
  rest: Buffer[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Records rhea's writes while `script` runs on an authenticated connection. `name` and `token`
 * are the CBS put-token's audience and SAS token.
 */
export async function recordAmqp(host: string, ca: string, name: string, token: string, script: (conn: rhea.Connection) => Promise<void>, localAddress?: string): Promise<AmqpRecording> {
  const writes: PrefixChunk[] = [];
  let received = 0;
  let prefixEnd = -1;
  const container = rhea.create_container({ id: 'fuzz-recorder' });
  const conn = container.connect({
    host,
    port: 5671,
    transport: 'tls',
    ca,
    username: 'anonymous',
    reconnect: false,
    idle_time_out: 0,
    ...(localAddress === undefined ? {} : { localAddress }),
    connect: (port: number, h: string, options: ConnectionOptions, callback: () => void) => {
      const socket = tlsConnect(port, h, options, callback);
      socket.on('data', (c: Buffer) => (received += c.length));
      const write = socket.write.bind(socket) as (chunk: unknown, ...rest: unknown[]) => boolean;
      (socket as unknown as { write: typeof write }).write = (chunk: unknown, ...rest: unknown[]) => {
        writes.push({ bytes: Buffer.from(chunk as Buffer), after: received });
        return write(chunk, ...rest);
      };
      return socket;
    },
  } as never);
  conn.on('error', () => undefined);
  conn.on('disconnected', () => undefined);
  await new Promise<void>((resolve, reject) => {
    conn.once('connection_open', () => resolve());
    conn.once('disconnected', (ctx: rhea.EventContext & { error?: Error }) => reject(ctx.error ?? new Error('recording: disconnected')));
  });
  const cbsIn = conn.open_receiver({ source: { address: '$cbs' } });
  const cbsOut = conn.open_sender({ target: { address: '$cbs' } });
  await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
  const status = new Promise<number>((resolve) => cbsIn.once('message', (ctx: rhea.EventContext) => resolve(Number(ctx.message?.application_properties?.['status-code']))));
  cbsOut.send({ message_id: 'put-1', reply_to: 'cbs', to: '$cbs', application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name }, body: token });
  await sleep(50);
  prefixEnd = writes.length;
  const code = await status;
  if (code !== 200) throw new Error(`recording: put-token answered ${code}`);
  await script(conn);
  await sleep(300);
  conn.close();
  await sleep(200);
  return { prefix: writes.slice(0, prefixEnd), rest: writes.slice(prefixEnd).map((w) => w.bytes) };
}

/** A device's session after CBS: telemetry, C2D receiver, twin GET and reported PATCH, methods links. */
export async function deviceScript(conn: rhea.Connection, deviceId: string): Promise<void> {
  const base = `/devices/${deviceId}`;
  const events = conn.open_sender({ target: { address: `${base}/messages/events` } });
  await new Promise<void>((resolve) => events.once('sendable', () => resolve()));
  events.send({ message_id: 'm1', content_type: 'application/json', application_properties: { alert: true, n: 1 }, body: rhea.message.data_section(Buffer.from('{"t":21}')) });
  conn.open_receiver({ source: { address: `${base}/messages/devicebound` } });
  const twinIn = conn.open_receiver({ source: { address: `${base}/twin` }, properties: { 'com.microsoft:api-version': '2021-04-12', 'com.microsoft:channel-correlation-id': 'twin:1' } });
  const twinOut = conn.open_sender({ target: { address: `${base}/twin` }, properties: { 'com.microsoft:api-version': '2021-04-12', 'com.microsoft:channel-correlation-id': 'twin:1' } });
  await new Promise<void>((resolve) => twinOut.once('sendable', () => resolve()));
  twinOut.send({ correlation_id: 'r1', message_annotations: { operation: 'GET' }, body: rhea.message.data_section(Buffer.alloc(0)) });
  twinOut.send({ correlation_id: 'r2', message_annotations: { operation: 'PATCH', resource: '/properties/reported' }, body: rhea.message.data_section(Buffer.from('{"fw":"1.0"}')) });
  conn.open_receiver({ source: { address: `${base}/methods/devicebound` }, properties: { 'com.microsoft:api-version': '2021-04-12', 'com.microsoft:channel-correlation-id': 'methods:1' } });
  conn.open_sender({ target: { address: `${base}/methods/devicebound` }, properties: { 'com.microsoft:api-version': '2021-04-12', 'com.microsoft:channel-correlation-id': 'methods:1' } });
  await sleep(200);
  await new Promise<void>((resolve) => {
    twinIn.once('receiver_close', () => resolve());
    twinIn.close();
    setTimeout(resolve, 300);
  });
}

/** The back end's session after CBS: a C2D message to `deviceId` and the feedback receiver. */
export async function serviceScript(conn: rhea.Connection, deviceId: string): Promise<void> {
  const c2d = conn.open_sender({ target: { address: '/messages/devicebound' } });
  await new Promise<void>((resolve) => c2d.once('sendable', () => resolve()));
  c2d.send({ to: `/devices/${deviceId}/messages/devicebound`, message_id: 'c1', application_properties: { 'iothub-ack': 'full' }, body: rhea.message.data_section(Buffer.from('hello')) });
  conn.open_receiver({ source: { address: '/messages/serviceBound/feedback' } });
  await sleep(200);
}

export async function recordDeviceSession(host: string, ca: string, deviceId: string, key: string, localAddress?: string): Promise<AmqpRecording> {
  const name = `${host}/devices/${deviceId}`;
  const token = generateSasToken({ resource: name, key, expiry: Math.floor(Date.now() / 1000) + 86_400 });
  return recordAmqp(host, ca, name, token, (c) => deviceScript(c, deviceId), localAddress);
}

export async function recordServiceSession(host: string, ca: string, ownerKey: string, deviceId: string, localAddress?: string): Promise<AmqpRecording> {
  const token = generateSasToken({ resource: host, key: ownerKey, keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 86_400 });
  return recordAmqp(host, ca, host, token, (c) => serviceScript(c, deviceId), localAddress);
}

/** Sessions rhea would not send: SASL ANONYMOUS by hand, a message in many `more` transfers, heartbeats. */
function handMade(): Buffer[][] {
  const piece = Buffer.alloc(100, 0x61);
  return [
    [SASL_HEADER, saslInitAnonymous(), AMQP_HEADER, open('c'), begin(), attachSender('l', 0, '/devices/x/messages/events'), transfer(0, piece, { deliveryId: 0, more: true }), transfer(0, piece, { more: true }), transfer(0, piece, { more: false })],
    [AMQP_HEADER, open('c'), EMPTY_FRAME, EMPTY_FRAME, begin(), begin(), attachSender('$cbs', 0, '$cbs')],
  ];
}

export interface AmqpInputs {
  pre: fc.Arbitrary<FuzzInput>;
  post: fc.Arbitrary<FuzzInput>;
}

export function amqpInputs(protocol: Extract<Protocol, 'amqp' | 'amqp-ws'>, device: AmqpRecording, service: AmqpRecording): AmqpInputs {
  const whole = [[...device.prefix.map((p) => p.bytes), ...device.rest], [...service.prefix.map((p) => p.bytes), ...service.rest], ...handMade()];
  const after: Array<{ auth: 'device' | 'service'; chunks: Buffer[] }> = [
    { auth: 'device', chunks: device.rest },
    { auth: 'service', chunks: service.rest },
  ];
  return {
    pre: fc.record({ s: fc.nat(), ops: mutationOps }).map(({ s, ops }): FuzzInput => ({ protocol, auth: 'none', kind: `mutated session ${s % whole.length}`, chunks: applyMutations(whole[s % whole.length]!, ops, 'amqp', whole) })),
    post: fc.record({ s: fc.nat(), ops: mutationOps }).map(({ s, ops }): FuzzInput => {
      const seed = after[s % after.length]!;
      return { protocol, auth: seed.auth, kind: `mutated ${seed.auth} session`, chunks: applyMutations(seed.chunks, ops, 'amqp', after.map((a) => a.chunks)) };
    }),
  };
}
