/**
 * Every listener times out a client that holds a socket without speaking (issue 14 item 6), on a
 * real hub process with the timeouts set to a second or two:
 *
 * - a TCP socket that never starts TLS, on the AMQP, MQTT and HTTPS ports (the TLS handshake
 *   timeout: on the AMQP port it had no effect at all);
 * - AMQP over TLS and over WebSocket that never sends its header (the open timeout), and an
 *   AMQP connection that opens but never authenticates (the authentication timeout); MQTT over
 *   WebSocket that never sends CONNECT;
 * - HTTPS after the handshake with nothing sent, with headers trickling, and with a body that
 *   stops halfway (the header and request timeouts).
 *
 * Each closed connection leaves a log line with its reason and a count in
 * `gatehouse_connections_refused_total`; the hub stays healthy.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import rhea from 'rhea';
import { WebSocket } from 'ws';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { policyKey, restClient, type Rest } from './support/rest.js';
import { parsePrometheusText, sampleValue } from './support/prometheus.js';
import { generateSasToken } from '../src/auth/sas.js';

const HOST = '127.0.61.100';
let hub: HubProcess;
let ca: string;
let rest: Rest;

before(async () => {
  hub = await startHubProcess({
    address: HOST,
    extraArgs: ['--tls-handshake-timeout', '1', '--mqtt-connect-timeout', '1', '--amqp-open-timeout', '1', '--amqp-auth-timeout', '2', '--http-headers-timeout', '1', '--http-request-timeout', '2'],
  });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the ms until `closed()` held, or undefined after `ms`. */
async function closedWithin(ms: number, closed: () => boolean): Promise<number | undefined> {
  const start = Date.now();
  while (!closed()) {
    if (Date.now() - start > ms) return undefined;
    await sleep(20);
  }
  return Date.now() - start;
}

async function healthy(): Promise<void> {
  const r = await rest('GET', '/health', undefined, { auth: false, apiVersion: false });
  assert.equal(r.status, 200);
}

/** Generous against a loaded machine, far below what the hub allowed before (minutes, or never). */
const LIMIT_MS = 8000;

async function tlsSocket(port: number): Promise<{ socket: TLSSocket; closed(): boolean; received(): string }> {
  const socket = tlsConnect({ host: HOST, port, ca });
  let closed = false;
  let data = '';
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  return { socket, closed: () => closed, received: () => data };
}

describe('timeouts on every listener', () => {
  for (const [port, name] of [
    [5671, 'AMQP'],
    [8883, 'MQTT'],
    [443, 'HTTPS'],
  ] as const) {
    it(`${name}: a socket that never starts TLS is closed after the handshake timeout`, async () => {
      const socket = netConnect({ host: HOST, port });
      let closed = false;
      socket.on('close', () => (closed = true));
      socket.on('error', () => undefined);
      try {
        assert.notEqual(await closedWithin(LIMIT_MS, () => closed), undefined, 'the silent socket is still open');
      } finally {
        socket.destroy();
      }
      await healthy();
    });
  }

  it('AMQP over TLS: a connection that never sends its protocol header is closed after the open timeout', async () => {
    const c = await tlsSocket(5671);
    try {
      assert.notEqual(await closedWithin(LIMIT_MS, c.closed), undefined, 'the silent AMQP connection is still open');
    } finally {
      c.socket.destroy();
    }
    await healthy();
  });

  it('AMQP over WebSocket: a connection that never sends its protocol header is closed after the open timeout', async () => {
    const ws = new WebSocket(`wss://${HOST}/$iothub/websocket`, 'AMQPWSB10', { ca });
    let closed = false;
    ws.on('close', () => (closed = true));
    ws.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    try {
      assert.notEqual(await closedWithin(LIMIT_MS, () => closed), undefined, 'the silent AMQP WebSocket is still open');
    } finally {
      ws.terminate();
    }
    await healthy();
  });

  it('MQTT over WebSocket: a connection that never sends CONNECT is closed after the CONNECT timeout', async () => {
    const ws = new WebSocket(`wss://${HOST}/$iothub/websocket`, 'mqtt', { ca });
    let closed = false;
    ws.on('close', () => (closed = true));
    ws.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    try {
      assert.notEqual(await closedWithin(LIMIT_MS, () => closed), undefined, 'the silent MQTT WebSocket is still open');
    } finally {
      ws.terminate();
    }
    await healthy();
  });

  it('AMQP: a connection that opens but never authenticates is closed after the authentication timeout', async () => {
    let closedBy: string | undefined;
    const conn = await new Promise<rhea.Connection>((resolve, reject) => {
      const c = rhea.create_container().connect({ host: HOST, port: 5671, transport: 'tls', ca, reconnect: false } as never);
      c.once('connection_open', () => resolve(c));
      c.once('disconnected', () => {
        closedBy ??= 'disconnected';
        reject(new Error('closed before the open'));
      });
      c.once('connection_close', (ctx: rhea.EventContext) => (closedBy = (ctx.connection.error as { condition?: string } | undefined)?.condition ?? 'closed'));
      c.on('connection_error', () => undefined);
      c.on('error', () => undefined);
    });
    try {
      assert.notEqual(await closedWithin(LIMIT_MS, () => closedBy !== undefined), undefined, 'the unauthenticated AMQP connection is still open');
      assert.equal(closedBy, 'amqp:unauthorized-access');
    } finally {
      conn.close();
    }
    await healthy();
  });

  it('HTTPS: a connection that sends nothing after the handshake is closed after the header timeout', async () => {
    const c = await tlsSocket(443);
    try {
      assert.notEqual(await closedWithin(LIMIT_MS, c.closed), undefined, 'the silent HTTPS connection is still open');
    } finally {
      c.socket.destroy();
    }
    await healthy();
  });

  it('HTTPS: headers that trickle are cut at the header timeout (408)', async () => {
    const c = await tlsSocket(443);
    try {
      c.socket.write(`GET /health HTTP/1.1\r\nHost: ${HOST}\r\n`);
      const timer = setInterval(() => c.socket.write('x-slow: 1\r\n'), 200);
      try {
        assert.notEqual(await closedWithin(LIMIT_MS, c.closed), undefined, 'the slow-header connection is still open');
      } finally {
        clearInterval(timer);
      }
      assert.match(c.received(), /^HTTP\/1\.1 408/);
    } finally {
      c.socket.destroy();
    }
    await healthy();
  });

  it('HTTPS: a body that stops halfway is cut at the request timeout (408)', async () => {
    // Authorized, so the hub waits for the body (a refused request is answered at once).
    const token = generateSasToken({ resource: HOST, key: policyKey(hub.dataDir), keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 600 });
    const c = await tlsSocket(443);
    try {
      c.socket.write(`PUT /devices/slow?api-version=2021-04-12 HTTP/1.1\r\nHost: ${HOST}\r\nauthorization: ${token}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"devi`);
      assert.notEqual(await closedWithin(LIMIT_MS, c.closed), undefined, 'the slow-body connection is still open');
      assert.match(c.received(), /^HTTP\/1\.1 408/);
    } finally {
      c.socket.destroy();
    }
    await healthy();
  });

  it('each closed connection is counted by reason in /metrics and logged', async () => {
    const r = await rest('GET', '/metrics', undefined, { apiVersion: false });
    assert.equal(r.status, 200);
    const m = parsePrometheusText(r.raw.toString('utf8'));
    const count = (listener: string, reason: string) => sampleValue(m, 'gatehouse_connections_refused_total', { listener, reason }) ?? 0;
    for (const listener of ['amqp', 'mqtt', 'https']) assert.ok(count(listener, 'handshake_timeout') >= 1, `${listener} handshake timeout counted`);
    assert.ok(count('amqp', 'open_timeout') >= 1);
    assert.ok(count('amqp-ws', 'open_timeout') >= 1);
    assert.ok(count('amqp', 'auth_timeout') >= 1);
    assert.ok(count('https', 'headers_timeout') >= 2);
    assert.ok(count('https', 'request_timeout') >= 1);
    assert.match(hub.output(), /"reason":"auth_timeout"/);
  });
});
