/**
 * Nothing acknowledged is lost to a crash: the hub is killed with SIGKILL while a device streams
 * QoS 1 telemetry and C2D messages wait in a queue; after a restart every PUBACKed message is in
 * the hub's log, once (read as a user reads it: `gatehouse monitor-events --from earliest`), and
 * every accepted C2D message is delivered.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { it } from 'node:test';
import iothub from 'azure-iothub';
import { generateSasToken } from '../src/auth/sas.js';
import { removeDir, startHubProcess } from './support/hub-process.js';
import { monitorEvents } from './support/monitor.js';
import { connectPacket, connectRaw, deviceToken } from './support/raw-mqtt.js';

const { Registry } = iothub;
const HOST = '127.0.29.1';

function sendC2d(cs: string, deviceId: string, body: string): Promise<number> {
  const key = /SharedAccessKey=([^;]+)/.exec(cs)?.[1] ?? '';
  const token = generateSasToken({ resource: HOST, key, keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 600 });
  return new Promise((resolve, reject) => {
    const req = request(
      { host: HOST, port: 443, method: 'POST', path: `/devices/${deviceId}/messages/deviceBound?api-version=2021-04-12`, headers: { authorization: token, 'iothub-messageid': body } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

it('SIGKILL mid-stream loses no PUBACKed telemetry and no accepted C2D message', async () => {
  const first = await startHubProcess({ address: HOST });
  const ca = readFileSync(first.caFile, 'utf8');
  const registry = Registry.fromConnectionString(first.connectionString);
  const sender = String((await registry.create({ deviceId: 'crash-sender' })).responseBody.authentication?.symmetricKey?.primaryKey);
  const receiver = String((await registry.create({ deviceId: 'crash-receiver' })).responseBody.authentication?.symmetricKey?.primaryKey);

  // C2D for an offline device: accepted means durable.
  const accepted: string[] = [];
  for (let i = 0; i < 20; i++) {
    const status = await sendC2d(first.connectionString, 'crash-receiver', `c2d-${i}`);
    if (status === 204) accepted.push(`c2d-${i}`);
  }
  assert.equal(accepted.length, 20);

  // QoS 1 telemetry with a window of 20 in flight, until the hub dies.
  const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, 'crash-sender', deviceToken(HOST, 'crash-sender', sender)));
  assert.equal(code, 0);
  const acked = new Set<number>();
  const inFlight = new Map<number, number>();
  let next = 0;
  const pump = () => {
    while (inFlight.size < 20 && !client.isClosed()) {
      const n = next++;
      const packetId = (n % 60000) + 1;
      inFlight.set(packetId, n);
      client.send({ cmd: 'publish', topic: 'devices/crash-sender/messages/events/', payload: Buffer.from(JSON.stringify({ n })), qos: 1, messageId: packetId, retain: false, dup: false });
    }
  };
  client.socket.on('data', () => undefined);
  const reading = (async () => {
    for (;;) {
      const p = await client.next(30_000).catch(() => undefined);
      if (p === undefined) return;
      if (p.cmd === 'puback' && p.messageId !== undefined) {
        const n = inFlight.get(p.messageId);
        if (n !== undefined) acked.add(n);
        inFlight.delete(p.messageId);
        pump();
      }
    }
  })();
  pump();
  while (acked.size < 300) await new Promise((r) => setTimeout(r, 20));
  first.proc.kill('SIGKILL');
  await first.stop();
  await reading;
  assert.ok(acked.size >= 300);

  const second = await startHubProcess({ address: HOST, dataDir: first.dataDir });
  try {
    const stored = new Map<number, number>();
    for (const e of monitorEvents(second.dataDir, { json: true, timeoutS: 3 })) {
      const n = (e.payload as { n?: unknown } | null)?.n;
      if (e.origin === 'crash-sender' && typeof n === 'number') stored.set(n, (stored.get(n) ?? 0) + 1);
    }
    const lost = [...acked].filter((n) => !stored.has(n));
    assert.deepEqual(lost, [], `${lost.length} PUBACKed messages missing after the crash (acked ${acked.size}, stored ${stored.size})`);
    // The device never resent anything: each message it sent is in the log at most once.
    assert.deepEqual([...stored].filter(([, count]) => count > 1), [], 'messages stored twice');

    // The waiting C2D messages are all delivered after the restart.
    const r = await connectRaw(HOST, ca, connectPacket(HOST, 'crash-receiver', deviceToken(HOST, 'crash-receiver', receiver)));
    assert.equal(r.code, 0);
    r.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'devices/crash-receiver/messages/devicebound/#', qos: 1 }] });
    const got = new Set<string>();
    while (got.size < accepted.length) {
      const p = await r.client.next(10_000);
      if (p?.cmd === 'publish') {
        got.add(p.payload.toString());
        if (p.messageId !== undefined) r.client.send({ cmd: 'puback', messageId: p.messageId });
      }
    }
    assert.deepEqual([...got].sort(), [...accepted].sort());
    r.client.end();
  } finally {
    await second.stop();
    removeDir(first.dataDir);
  }
});

it('a persistent session (CleanSession=0) keeps its subscriptions, and a changed set, across hub restarts', async () => {
  const host = '127.0.29.2';
  const first = await startHubProcess({ address: host });
  const ca = readFileSync(first.caFile, 'utf8');
  const registry = Registry.fromConnectionString(first.connectionString);
  const key = String((await registry.create({ deviceId: 'sticky' })).responseBody.authentication?.symmetricKey?.primaryKey);
  const a = await connectRaw(host, ca, connectPacket(host, 'sticky', deviceToken(host, 'sticky', key)));
  assert.equal(a.code, 0);
  a.client.send({
    cmd: 'subscribe',
    messageId: 1,
    subscriptions: [
      { topic: 'devices/sticky/messages/devicebound/#', qos: 1 },
      { topic: '$iothub/methods/POST/#', qos: 0 },
    ],
  });
  assert.equal((await a.client.next())?.cmd, 'suback');
  a.client.send({ cmd: 'disconnect' });
  await a.client.closed;
  assert.equal(await first.stop(), 0);

  const second = await startHubProcess({ address: host, dataDir: first.dataDir });
  try {
    // Reconnect without subscribing, as the SDK does after a token renewal.
    const b = await rawReconnect(host, ca, key);
    assert.equal(b.sessionPresent, true);
    const sent = sendC2dTo(second.connectionString, host, 'sticky', 'still subscribed');
    const p = await b.client.next(10_000);
    assert.equal(p?.cmd === 'publish' ? p.payload.toString() : '', 'still subscribed');
    if (p?.cmd === 'publish' && p.messageId !== undefined) b.client.send({ cmd: 'puback', messageId: p.messageId });
    assert.equal(await sent, 204);
    // Subscribing again to what the session holds, plus one topic more, as an SDK does when it
    // starts using twins: the new set is what the session keeps.
    b.client.send({
      cmd: 'subscribe',
      messageId: 2,
      subscriptions: [
        { topic: 'devices/sticky/messages/devicebound/#', qos: 1 },
        { topic: '$iothub/twin/res/#', qos: 0 },
      ],
    });
    let ack = await b.client.next(10_000);
    while (ack !== undefined && ack.cmd !== 'suback') ack = await b.client.next(10_000);
    assert.equal(ack?.cmd, 'suback');
    b.client.send({ cmd: 'disconnect' });
    await b.client.closed;
  } finally {
    await second.stop();
  }

  const third = await startHubProcess({ address: host, dataDir: first.dataDir });
  try {
    const c = await rawReconnect(host, ca, key);
    assert.equal(c.sessionPresent, true);
    c.client.send({ cmd: 'publish', topic: '$iothub/twin/GET/?$rid=7', payload: Buffer.alloc(0), qos: 0, dup: false, retain: false });
    const p = await c.client.next(10_000);
    assert.match(p?.cmd === 'publish' ? p.topic : String(p?.cmd), /^\$iothub\/twin\/res\/200\/\?\$rid=7/);
    c.client.end();
  } finally {
    await third.stop();
    removeDir(first.dataDir);
  }
});

async function rawReconnect(host: string, ca: string, key: string) {
  const { rawMqtt } = await import('./support/raw-mqtt.js');
  const client = await rawMqtt(host, { ca });
  client.send(connectPacket(host, 'sticky', deviceToken(host, 'sticky', key)));
  const p = await client.next();
  assert.equal(p?.cmd === 'connack' ? p.returnCode : -1, 0);
  return { client, sessionPresent: p?.cmd === 'connack' ? p.sessionPresent : false };
}

function sendC2dTo(cs: string, host: string, deviceId: string, body: string): Promise<number> {
  const key = /SharedAccessKey=([^;]+)/.exec(cs)?.[1] ?? '';
  const token = generateSasToken({ resource: host, key, keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 600 });
  return new Promise((resolve, reject) => {
    const req = request({ host, port: 443, method: 'POST', path: `/devices/${deviceId}/messages/deviceBound?api-version=2021-04-12`, headers: { authorization: token } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}
