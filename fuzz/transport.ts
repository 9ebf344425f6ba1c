/**
 * How one fuzz input reaches the hub: its chunks written in order on a fresh TLS socket (MQTT
 * 8883, AMQP 5671, HTTPS 443) or a fresh WebSocket at `/$iothub/websocket` (one binary message
 * per chunk), after an optional prefix that authenticates (sent unmutated). The connection then
 * gets `settleMs` to answer or close before it is dropped.
 */
import { connect, type TLSSocket } from 'node:tls';
import WebSocket from 'ws';

export interface Endpoint {
  host: string;
  ca: string;
  /** The client's source address (lockout and per-address caps count per address). */
  localAddress?: string;
}

export interface Outcome {
  /** The hub closed (or reset) the connection before the client dropped it. */
  closedByHub: boolean;
  /** First bytes the hub answered, at most 4 KiB. */
  head: Buffer;
  received: number;
  /** The connection could not be made (refused, TLS or upgrade failure). */
  connectError?: string;
}

const HEAD_BYTES = 4096;

/** A chunk of an authenticating prefix, written once the hub has sent `after` bytes (less a little slack), or after a second. */
export interface PrefixChunk {
  bytes: Buffer;
  after: number;
}

export const prefixChunks = (chunks: readonly Buffer[]): PrefixChunk[] => chunks.map((bytes) => ({ bytes, after: 0 }));

async function untilReceived(out: Outcome, n: number, closed: () => boolean): Promise<void> {
  for (let t = 0; t < 1000 && out.received < n - 32 && !closed(); t += 5) await new Promise((r) => setTimeout(r, 5));
}
const tick = () => new Promise<void>((r) => setImmediate(r));

export async function sendTls(ep: Endpoint, port: number, prefix: readonly PrefixChunk[], chunks: readonly Buffer[], settleMs: number, prefixPauseMs = 0): Promise<Outcome> {
  const socket: TLSSocket = connect({ host: ep.host, port, ca: ep.ca, servername: undefined, ...(ep.localAddress === undefined ? {} : { localAddress: ep.localAddress }) });
  const out: Outcome = { closedByHub: false, head: Buffer.alloc(0), received: 0 };
  let closed = false;
  socket.on('data', (c: Buffer) => {
    if (out.head.length < HEAD_BYTES) out.head = Buffer.concat([out.head, c]).subarray(0, HEAD_BYTES);
    out.received += c.length;
  });
  const closedP = new Promise<void>((resolve) => socket.once('close', () => ((closed = true), resolve())));
  socket.on('error', () => undefined);
  const ok = await Promise.race([
    new Promise<boolean>((r) => socket.once('secureConnect', () => r(true))),
    closedP.then(() => false),
    new Promise<boolean>((r) => setTimeout(() => r(false), 5000).unref()),
  ]);
  if (!ok) {
    socket.destroy();
    return { ...out, connectError: 'no TLS session' };
  }
  for (const c of prefix) {
    await untilReceived(out, c.after, () => closed);
    if (!closed) socket.write(c.bytes);
  }
  if (prefixPauseMs > 0) await Promise.race([new Promise((r) => setTimeout(r, prefixPauseMs)), closedP]);
  for (const c of chunks) {
    if (closed) break;
    socket.write(c);
    await tick();
  }
  await Promise.race([closedP, new Promise((r) => setTimeout(r, settleMs))]);
  out.closedByHub = closed;
  socket.destroy();
  return out;
}

export async function sendWs(ep: Endpoint, subprotocol: 'mqtt' | 'AMQPWSB10', prefix: readonly PrefixChunk[], chunks: readonly Buffer[], settleMs: number, prefixPauseMs = 0): Promise<Outcome> {
  const ws = new WebSocket(`wss://${ep.host}:443/$iothub/websocket`, subprotocol, {
    ca: ep.ca,
    handshakeTimeout: 5000,
    ...(ep.localAddress === undefined ? {} : { localAddress: ep.localAddress }),
  });
  const out: Outcome = { closedByHub: false, head: Buffer.alloc(0), received: 0 };
  let closed = false;
  ws.on('message', (c: Buffer) => {
    if (out.head.length < HEAD_BYTES) out.head = Buffer.concat([out.head, c]).subarray(0, HEAD_BYTES);
    out.received += c.length;
  });
  ws.on('error', () => undefined);
  const closedP = new Promise<void>((resolve) => ws.once('close', () => ((closed = true), resolve())));
  const ok = await Promise.race([new Promise<boolean>((r) => ws.once('open', () => r(true))), closedP.then(() => false)]);
  if (!ok) {
    ws.terminate();
    return { ...out, connectError: 'no WebSocket' };
  }
  for (const c of prefix) {
    await untilReceived(out, c.after, () => closed);
    if (!closed) ws.send(c.bytes);
  }
  if (prefixPauseMs > 0) await Promise.race([new Promise((r) => setTimeout(r, prefixPauseMs)), closedP]);
  for (const c of chunks) {
    if (closed) break;
    ws.send(c);
    await tick();
  }
  await Promise.race([closedP, new Promise((r) => setTimeout(r, settleMs))]);
  out.closedByHub = closed;
  ws.terminate();
  return out;
}

/** The status code of the first HTTP answer in `head`, or undefined. */
export function httpStatus(head: Buffer): number | undefined {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head.toString('latin1'));
  return m === null ? undefined : Number(m[1]);
}
