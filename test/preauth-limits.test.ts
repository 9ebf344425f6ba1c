/**
 * What a client holding no credential can cost the hub (issue 14 items 1 and 6), attacked over
 * real TLS on a real hub process:
 *
 * - memory: a second AMQP protocol header (rhea read it as a frame of 0x414D5150 bytes and
 *   buffered everything after it), the AMQP header pipelined behind a SASL init (the same frame
 *   size, read by the SASL layer), the same over WebSocket, and a message of endless `more`
 *   transfer frames on `$cbs` before any token: each is closed, and the hub's resident memory
 *   stays where it was while the client pushes 64 MiB;
 * - connections: the per-address cap refuses the next socket on every port while another address
 *   connects, and the cap on unauthenticated AMQP connections (per address and per listener)
 *   refuses the next one until one of them authenticates.
 *
 * A client that negotiates SASL ANONYMOUS (as the .NET and Java SDKs do) still authenticates.
 * After each attack the hub answers GET /health.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import rhea from 'rhea';
import { WebSocket } from 'ws';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { policyKey, restClient, type Rest } from './support/rest.js';
import { generateSasToken } from '../src/auth/sas.js';
import { AMQP_HEADER, EMPTY_FRAME, SASL_HEADER, attachSender, begin, open, saslInitAnonymous, transfer } from './support/amqp-frames.js';

const HOST = '127.0.60.100';
const PER_ADDRESS = 4;
let hub: HubProcess;
let ca: string;
let rest: Rest;
let deviceKey: string;

before(async () => {
  hub = await startHubProcess({
    address: HOST,
    extraArgs: ['--max-connections-per-address', String(PER_ADDRESS), '--amqp-max-unauthenticated', '3', '--amqp-max-unauthenticated-per-address', '2'],
  });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  const r = await rest('PUT', '/devices/pre-dev', { deviceId: 'pre-dev' });
  assert.equal(r.status, 200);
  deviceKey = (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The hub process's resident set (VmRSS), in bytes. */
function hubRss(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${hub.proc.pid ?? 0}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

async function healthy(): Promise<void> {
  const r = await rest('GET', '/health', undefined, { auth: false, apiVersion: false });
  assert.equal(r.status, 200);
}

/** Resolves true once `closed()` holds, false after `ms`. */
async function within(ms: number, closed: () => boolean): Promise<boolean> {
  const until = Date.now() + ms;
  while (!closed()) {
    if (Date.now() > until) return false;
    await sleep(20);
  }
  return true;
}

/** 64 KiB of empty AMQP frames: each a valid 8-byte frame, so a guard that only checks sizes lets them through. */
const EMPTY_FRAMES = Buffer.concat(Array.from({ length: 8192 }, () => EMPTY_FRAME));
const ATTACK_BYTES = 64 * 1024 * 1024;
/** Far below the 64 MiB pushed: what the hub may grow by while a refused connection is torn down. */
const RSS_SLACK = 24 * 1024 * 1024;

interface Attack {
  closed(): boolean;
  write(b: Buffer): Promise<void>;
  destroy(): void;
}

async function tlsAttack(localAddress: string): Promise<Attack> {
  const socket = tlsConnect({ socket: netConnect({ host: HOST, port: 5671, localAddress }), host: HOST, ca });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  let closed = false;
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  return {
    closed: () => closed,
    write: (b) =>
      new Promise<void>((resolve) => {
        if (closed || socket.write(b)) return resolve();
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      }),
    destroy: () => socket.destroy(),
  };
}

async function wsAttack(localAddress: string): Promise<Attack> {
  const ws = new WebSocket(`wss://${HOST}/$iothub/websocket`, 'AMQPWSB10', { ca, localAddress });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let closed = false;
  ws.on('close', () => (closed = true));
  ws.on('error', () => undefined);
  return {
    closed: () => closed,
    write: (b) =>
      new Promise<void>((resolve) => {
        if (closed) return resolve();
        ws.send(b, () => resolve());
      }),
    destroy: () => ws.terminate(),
  };
}

/**
 * Sends the prelude in one write, then 64 MiB of filler while the hub keeps the connection open;
 * asserts the hub closed it and its resident memory did not grow with what was sent.
 */
async function assertBounded(attack: Attack, prelude: Buffer, filler: Buffer): Promise<void> {
  const before = hubRss();
  let sent = 0;
  try {
    await attack.write(prelude);
    while (!attack.closed() && sent < ATTACK_BYTES) {
      await attack.write(filler);
      sent += filler.length;
    }
    const closed = await within(3000, attack.closed);
    const grown = hubRss() - before;
    assert.ok(closed, `the hub kept the connection open after ${sent} bytes (its RSS grew by ${Math.round(grown / 1048576)} MiB)`);
    assert.ok(grown < RSS_SLACK, `the hub's RSS grew by ${Math.round(grown / 1048576)} MiB after ${sent} bytes`);
  } finally {
    attack.destroy();
  }
  await healthy();
}

describe('pre-authentication memory bounds on AMQP', () => {
  it('a second AMQP header (read by rhea as a 1 GiB frame) is refused; memory stays bounded', async () => {
    await assertBounded(await tlsAttack('127.0.60.10'), Buffer.concat([AMQP_HEADER, AMQP_HEADER]), EMPTY_FRAMES);
  });

  it('the AMQP header pipelined behind a SASL init, before the outcome, is refused; memory stays bounded', async () => {
    await assertBounded(await tlsAttack('127.0.60.11'), Buffer.concat([SASL_HEADER, saslInitAnonymous(), AMQP_HEADER]), EMPTY_FRAMES);
  });

  it('a message of endless transfer frames on $cbs before any token is cut at the pre-authentication budget', async () => {
    const chunk = Buffer.alloc(4 * 1024, 0x61);
    const prelude = Buffer.concat([AMQP_HEADER, open('attacker'), begin(), attachSender('cbs-attack', 0, '$cbs'), transfer(0, chunk, { deliveryId: 0, more: true })]);
    const more = transfer(0, chunk, { more: true });
    await assertBounded(await tlsAttack('127.0.60.12'), prelude, Buffer.concat(Array.from({ length: 16 }, () => more)));
  });

  it('over WebSocket (AMQPWSB10), a second AMQP header is refused the same way', async () => {
    await assertBounded(await wsAttack('127.0.60.13'), Buffer.concat([AMQP_HEADER, AMQP_HEADER]), EMPTY_FRAMES);
  });

  it('a client that negotiates SASL ANONYMOUS still puts a token and attaches', async () => {
    const conn = await amqpOpen('127.0.60.14', { username: 'anonymous' });
    try {
      assert.equal(await putDeviceToken(conn), 200);
    } finally {
      conn.close();
    }
  });
});

/** An AMQP connection (rhea) from a local address; rejects when the hub closes it before the open. */
function amqpOpen(localAddress: string, extra: Record<string, unknown> = {}): Promise<rhea.Connection> {
  return new Promise<rhea.Connection>((resolve, reject) => {
    const container = rhea.create_container();
    const conn = container.connect({ host: HOST, port: 5671, transport: 'tls', ca, localAddress, reconnect: false, ...extra } as never);
    conn.once('connection_open', () => resolve(conn));
    conn.once('disconnected', (ctx: rhea.EventContext & { error?: Error }) => reject(ctx.error ?? new Error('disconnected')));
    conn.on('error', () => undefined);
  });
}

/** Asserts the hub closed the connection before its open (and closes it if it did not). */
async function refused(attempt: Promise<rhea.Connection>, what: string): Promise<void> {
  const conn = await attempt.catch(() => undefined);
  conn?.close();
  assert.equal(conn, undefined, `${what} is refused`);
}

/** Puts the device's SAS token on $cbs; resolves with the status code of the reply. */
async function putDeviceToken(conn: rhea.Connection): Promise<number> {
  const cbsIn = conn.open_receiver('$cbs');
  const cbsOut = conn.open_sender('$cbs');
  const status = new Promise<number>((resolve) => cbsIn.once('message', (ctx: rhea.EventContext) => resolve(Number(ctx.message?.application_properties?.['status-code']))));
  await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
  const name = `${HOST}/devices/pre-dev`;
  const token = generateSasToken({ resource: name, key: deviceKey, expiry: Math.floor(Date.now() / 1000) + 600 });
  cbsOut.send({ to: '$cbs', reply_to: 'cbs', message_id: 'put', application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name }, body: token });
  return status;
}

/** A TCP connection from `localAddress`; resolves once connected, `closed()` tells whether the hub closed it. */
async function tcp(port: number, localAddress: string): Promise<{ socket: Socket; closed(): boolean }> {
  const socket = netConnect({ host: HOST, port, localAddress });
  let closed = false;
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return { socket, closed: () => closed };
}

async function tlsHandshake(port: number, localAddress: string): Promise<TLSSocket> {
  const socket = tlsConnect({ socket: netConnect({ host: HOST, port, localAddress }), host: HOST, ca });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before the handshake')));
  });
  return socket;
}

describe('connection caps', () => {
  for (const [port, name] of [
    [443, 'HTTPS'],
    [8883, 'MQTT'],
    [5671, 'AMQP'],
  ] as const) {
    it(`${name}: the connection past the per-address cap is refused before TLS; another address still connects; a freed slot is reused`, async () => {
      const held = await Promise.all(Array.from({ length: PER_ADDRESS }, () => tcp(port, '127.0.60.30')));
      try {
        const extra = await tcp(port, '127.0.60.30');
        held.push(extra);
        assert.ok(await within(2000, extra.closed), `connection ${PER_ADDRESS + 1} from one address is closed`);
        assert.ok(held.slice(0, PER_ADDRESS).every((h) => !h.closed()), 'the first ones stay');
        (await tlsHandshake(port, '127.0.60.31')).destroy();
      } finally {
        for (const h of held) h.socket.destroy();
      }
      await sleep(200);
      (await tlsHandshake(port, '127.0.60.30')).destroy();
      await healthy();
    });
  }

  it('unauthenticated AMQP connections are capped per address and per listener; authenticating frees the slot', async () => {
    const open: rhea.Connection[] = [];
    try {
      open.push(await amqpOpen('127.0.60.40'), await amqpOpen('127.0.60.40'));
      await refused(amqpOpen('127.0.60.40'), 'a third unauthenticated connection from one address');
      open.push(await amqpOpen('127.0.60.41'));
      await refused(amqpOpen('127.0.60.42'), 'a fourth unauthenticated connection on the listener');
      const first = open[0];
      assert.ok(first !== undefined);
      assert.equal(await putDeviceToken(first), 200);
      await sleep(100);
      open.push(await amqpOpen('127.0.60.40'));
    } finally {
      for (const c of open) c.close();
    }
    await healthy();
  });
});
