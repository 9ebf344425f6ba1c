/**
 * What the fuzz suite found, each as the input that showed it: the hub must answer a bad request
 * with a precise 4xx and close a connection that sent something malformed with a reason, never
 * fail inside (a 500, an error-level "handler failed" line) and never keep reading what it can
 * no longer decode. The MQTT findings, which need no TLS, run on the in-memory harness:
 * fuzz-findings-mqtt.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type ConnectionOptions } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { generateSasToken } from '../src/auth/sas.js';
import { recordAmqp } from '../fuzz/amqp-inputs.js';
import { AMQP_HEADER, bool, described, frame, nul, str, uint } from './support/amqp-frames.js';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { connectPacket, connectRaw, deviceToken, type RawMqtt } from './support/raw-mqtt.js';
import { errorCode, policyKey, restClient, type Rest } from './support/rest.js';
import { sleep } from './support/attack.js';

const HOST = '127.0.142.1';
let hub: HubProcess;
let ca: string;
let rest: Rest;
const keys = new Map<string, string>();

async function device(id: string): Promise<string> {
  const r = await rest('PUT', `/devices/${id}`, { deviceId: id });
  assert.equal(r.status, 200, r.raw.toString());
  const key = String((r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey);
  keys.set(id, key);
  return key;
}

async function connected(id: string): Promise<RawMqtt> {
  const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, id, deviceToken(HOST, id, keys.get(id) ?? (await device(id)))));
  assert.equal(code, 0);
  return client;
}

/** The hub's log lines (JSON) from `mark` on. */
function logSince(mark: number): Array<Record<string, unknown>> {
  return hub
    .output()
    .slice(mark)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function waitForLog(mark: number, pred: (l: Record<string, unknown>) => boolean, ms = 3000): Promise<Record<string, unknown> | undefined> {
  for (let t = 0; t < ms; t += 50) {
    const hit = logSince(mark).find(pred);
    if (hit !== undefined) return hit;
    await sleep(50);
  }
  return undefined;
}

const failedInside = (l: Record<string, unknown>) => Number(l.level) >= 50;

before(async () => {
  hub = await startHubProcess({ address: HOST, extraArgs: ['--log-level', 'info'] });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('EST', () => {
  it('an enrollment request without a body is 400 ArgumentNull, not a 500', async () => {
    for (const path of ['/.well-known/est/line-a/simpleenroll', '/.well-known/est/line-a/simplereenroll']) {
      const r = await rest('POST', path, undefined, { auth: false, apiVersion: false, headers: { authorization: `Basic ${Buffer.from('cred:pw').toString('base64')}` } });
      assert.equal(r.status, 400, `${path}: ${r.raw.toString()}`);
      assert.equal(errorCode(r), 'ArgumentNull', path);
    }
  });
});

describe('AMQP: an array of a zero-width type with a huge count, before authentication', () => {
  it('is a protocol error that cuts that connection, not gigabytes of nulls', async () => {
    // An open whose container-id is an array32 (0xf0) of 0xffffffff nulls (0x40): 10 bytes of
    // value, no bytes per element. rhea's decoder pushed one null per element.
    const bomb = Buffer.from([0xf0, 0x00, 0x00, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0x40]);
    // From an address of its own: the hub logs one refusal of a kind per address a minute.
    const socket = connect({ host: HOST, port: 5671, ca, localAddress: '127.0.142.21' } as ConnectionOptions);
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
    });
    socket.on('error', () => undefined);
    socket.resume();
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const mark = hub.output().length;
    socket.write(AMQP_HEADER);
    socket.write(frame(Buffer.concat([Buffer.from([0x00, 0x53, 0x10, 0xc0, bomb.length + 1, 0x01]), bomb])));
    const cut = await Promise.race([closed.then(() => true), sleep(5000).then(() => false)]);
    socket.destroy();
    assert.ok(cut, `the hub closed the connection:\n${JSON.stringify(logSince(mark)).slice(0, 3000)}`);
    const line = await waitForLog(mark, (l) => l.event === 'connection.refused' && /array of 4294967295 elements/.test(String(l.detail)));
    assert.ok(line !== undefined, JSON.stringify(logSince(mark)).slice(0, 2000));
    const health = await rest('GET', '/health', undefined, { auth: false, apiVersion: false });
    assert.equal(health.status, 200);
  });
});

describe('AMQP: a frame rhea cannot decode after authentication', () => {
  it('cuts the connection with the reason, however much the client goes on sending', async () => {
    const id = 'amqp-undecodable';
    const key = await device(id);
    const name = `${HOST}/devices/${id}`;
    const recording = await recordAmqp(HOST, ca, name, generateSasToken({ resource: name, key, expiry: Math.floor(Date.now() / 1000) + 600 }), async () => undefined);
    // A client that keeps its side open whatever the hub does (allowHalfOpen), as an attacker's would.
    const socket = connect({ host: HOST, port: 5671, ca, allowHalfOpen: true } as ConnectionOptions);
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
    });
    socket.on('error', () => undefined);
    let closed = false;
    socket.once('close', () => (closed = true));
    let answered = 0;
    socket.on('data', (c: Buffer) => (answered += c.length));
    for (const c of recording.prefix) {
      for (let t = 0; t < 2000 && answered < c.after - 32; t += 10) await sleep(10);
      socket.write(c.bytes);
    }
    await sleep(500);
    assert.ok(answered > 200, `the hub answered the put-token (${answered} bytes)`);
    const mark = hub.output().length;
    // A begin whose fields list has an unknown type code (0xff): a valid frame, an undecodable body.
    socket.write(frame(Buffer.from([0x00, 0x53, 0x11, 0xc0, 0x03, 0x01, 0xff, 0xff]), { channel: 3 }));
    // Then frames the guard allows after authentication, as fast as the socket takes them.
    const filler = frame(Buffer.alloc(60_000, 0x41));
    const t0 = Date.now();
    while (!closed && Date.now() - t0 < 3000) {
      if (!socket.write(filler)) await Promise.race([new Promise((r) => socket.once('drain', r)), sleep(100)]);
      else await new Promise((r) => setImmediate(r));
    }
    await Promise.race([new Promise((r) => socket.once('close', r)), sleep(1000)]);
    const wasClosed = closed;
    socket.destroy();
    assert.ok(wasClosed, `the hub closed the socket (answered ${answered} bytes):\n${JSON.stringify(logSince(mark)).slice(0, 3000)}`);
    const line = await waitForLog(mark, (l) => l.event === 'connection.refused' && l.reason === 'protocol_violation' && /decode|frame/.test(String(l.detail)));
    assert.ok(line !== undefined, `the close is logged with its reason:\n${JSON.stringify(logSince(mark)).slice(0, 2000)}`);
    assert.deepEqual(logSince(mark).filter(failedInside), []);
  });
});

describe('AMQP: a C2D receiver given a link credit that is not a whole number', () => {
  it('gets nothing, and the hub does not fail asking its store for 1.5 messages', async () => {
    const id = 'amqp-credit';
    const key = await device(id);
    const name = `${HOST}/devices/${id}`;
    const recording = await recordAmqp(HOST, ca, name, generateSasToken({ resource: name, key, expiry: Math.floor(Date.now() / 1000) + 600 }), async () => undefined);
    const socket = connect({ host: HOST, port: 5671, ca, localAddress: '127.0.142.22' } as ConnectionOptions);
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
    });
    socket.on('error', () => undefined);
    let answered = 0;
    socket.on('data', (c: Buffer) => (answered += c.length));
    for (const c of recording.prefix) {
      for (let t = 0; t < 2000 && answered < c.after - 32; t += 10) await sleep(10);
      socket.write(c.bytes);
    }
    await sleep(500);
    const mark = hub.output().length;
    // Attach a receiver (role true) to the device's C2D source, then a flow whose link-credit is a double (0x82) 1.5.
    socket.write(frame(described(0x12, [str('c2d'), uint(5), bool(true), nul, nul, described(0x28, [str(`/devices/${id}/messages/devicebound`)]), described(0x29, [nul])])));
    const double = Buffer.alloc(9);
    double[0] = 0x82;
    double.writeDoubleBE(1.5, 1);
    socket.write(frame(described(0x13, [uint(1), uint(2048), uint(1), uint(2048), uint(5), uint(0), double])));
    await sleep(300);
    const sent = await rest('POST', `/devices/${id}/messages/deviceBound`, undefined, { raw: 'hello' });
    assert.equal(sent.status, 204, sent.raw.toString());
    await sleep(1500);
    socket.destroy();
    assert.deepEqual(logSince(mark).filter(failedInside), [], 'nothing failed inside the hub');
  });
});

describe('the hub after all of the above', () => {
  it('still serves a device', async () => {
    const client = await connected('after-all');
    client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] });
    assert.equal((await client.next())?.cmd, 'suback');
    client.end();
  });
});
