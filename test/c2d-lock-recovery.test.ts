/**
 * C2D locks held by sessions that died with the hub are released when it starts again: a device
 * that received a message over MQTT and had not acknowledged it when the hub was killed gets it
 * again as soon as it reconnects, not after the 60 s delivery lock lapses. A lock a device holds
 * by token over HTTPS is not a session's: it still completes after the restart.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { it } from 'node:test';
import iothub from 'azure-iothub';
import { generateSasToken } from '../src/auth/sas.js';
import { removeDir, startHubProcess } from './support/hub-process.js';
import { connectPacket, connectRaw, deviceToken, type RawMqtt } from './support/raw-mqtt.js';

const { Registry } = iothub;
const HOST = '127.0.73.1';
const API = 'api-version=2021-04-12';
/** The MQTT and AMQP delivery lock (DEFAULT_BROKER_LIMITS.c2dLockMs). */
const LOCK_MS = 60_000;

function https(method: string, path: string, authorization: string, body = ''): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port: 443, method, path, headers: { authorization } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function ownerToken(cs: string): string {
  const key = /SharedAccessKey=([^;]+)/.exec(cs)?.[1] ?? '';
  return generateSasToken({ resource: HOST, key, keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 600 });
}

async function subscribeC2d(client: RawMqtt, deviceId: string): Promise<void> {
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `devices/${deviceId}/messages/devicebound/#`, qos: 1 }] });
}

/** The next C2D PUBLISH within `ms`, skipping the SUBACK. */
async function nextPublish(client: RawMqtt, ms: number): Promise<{ payload: string; messageId: number | undefined; dup: boolean } | undefined> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const p = await client.next(Math.max(1, deadline - Date.now())).catch(() => undefined);
    if (p === undefined) return undefined;
    if (p.cmd === 'publish') return { payload: p.payload.toString(), messageId: p.messageId, dup: p.dup };
  }
  return undefined;
}

it('a C2D message a device held unacknowledged when the hub was killed is delivered again at once after the restart', async () => {
  const first = await startHubProcess({ address: HOST });
  const ca = readFileSync(first.caFile, 'utf8');
  const registry = Registry.fromConnectionString(first.connectionString);
  const mqttKey = String((await registry.create({ deviceId: 'lock-mqtt' })).responseBody.authentication?.symmetricKey?.primaryKey);
  const httpKey = String((await registry.create({ deviceId: 'lock-http' })).responseBody.authentication?.symmetricKey?.primaryKey);
  const owner = ownerToken(first.connectionString);
  for (const [deviceId, body] of [['lock-mqtt', 'held-by-session'], ['lock-http', 'held-by-token']] as const) {
    const sent = await https('POST', `/devices/${deviceId}/messages/deviceBound?${API}`, owner, body);
    assert.equal(sent.status, 204);
  }

  // The MQTT device receives its message and never sends the PUBACK.
  const a = await connectRaw(HOST, ca, connectPacket(HOST, 'lock-mqtt', deviceToken(HOST, 'lock-mqtt', mqttKey)));
  assert.equal(a.code, 0);
  await subscribeC2d(a.client, 'lock-mqtt');
  const held = await nextPublish(a.client, 10_000);
  assert.equal(held?.payload, 'held-by-session');

  // The HTTPS device locks its message by token.
  const httpAuth = deviceToken(HOST, 'lock-http', httpKey);
  const got = await https('GET', `/devices/lock-http/messages/devicebound?${API}`, httpAuth);
  assert.equal(got.status, 200);
  assert.equal(got.body, 'held-by-token');
  const lockToken = String(got.headers.etag).replace(/"/g, '');

  first.proc.kill('SIGKILL');
  await first.stop();
  a.client.end();

  const second = await startHubProcess({ address: HOST, dataDir: first.dataDir });
  try {
    const b = await connectRaw(HOST, ca, connectPacket(HOST, 'lock-mqtt', deviceToken(HOST, 'lock-mqtt', mqttKey)));
    assert.equal(b.code, 0);
    await subscribeC2d(b.client, 'lock-mqtt');
    // Well inside the lock the dead session held: the message is not waiting for it to lapse.
    const again = await nextPublish(b.client, LOCK_MS / 3);
    assert.ok(again !== undefined, `the message held by the killed hub's session was not redelivered within ${LOCK_MS / 3000} s (of the ${LOCK_MS / 1000} s lock)`);
    assert.equal(again.payload, 'held-by-session');
    assert.equal(again.dup, true, 'a second delivery attempt');
    if (again.messageId !== undefined) b.client.send({ cmd: 'puback', messageId: again.messageId });
    b.client.end();

    // The token lock outlives the restart: the device completes its message with it.
    const done = await https('DELETE', `/devices/lock-http/messages/devicebound/${encodeURIComponent(lockToken)}?${API}`, deviceToken(HOST, 'lock-http', httpKey));
    assert.equal(done.status, 204, done.body);
    const empty = await https('GET', `/devices/lock-http/messages/devicebound?${API}`, deviceToken(HOST, 'lock-http', httpKey));
    assert.equal(empty.status, 204, 'completed, not delivered again');
  } finally {
    await second.stop();
    removeDir(first.dataDir);
  }
});
