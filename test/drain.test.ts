/**
 * Readiness and drain, as a load balancer sees a node (issue 16 item 7): `/health/ready` answers
 * 200 while the node serves and 503 from the moment SIGTERM arrives; during --drain-seconds the
 * device's session keeps working; then the hub closes it (so the device reconnects elsewhere) and
 * exits 0, and every message it acknowledged is in the event stream after a restart.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { after, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import { Lifecycle } from '../src/hub/lifecycle.js';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { connectPacket, connectRaw, deviceToken } from './support/raw-mqtt.js';
import { monitorEvents } from './support/monitor.js';

const HOST = '127.0.34.1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function ready(ca: string): Promise<{ status: number; body: { status: string } }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port: 443, path: '/health/ready', ca }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { status: string } }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('readiness and drain', () => {
  let dataDir: string | undefined;
  after(() => {
    if (dataDir !== undefined) removeDir(dataDir);
  });

  it('a phase only moves forward', () => {
    const l = new Lifecycle();
    assert.equal(l.phase, 'starting');
    l.advance('ready');
    l.advance('draining');
    l.advance('ready');
    assert.equal(l.phase, 'draining');
  });

  it('SIGTERM: 503 at once, the session still served while draining, then closed; nothing acknowledged lost', async () => {
    let hub: HubProcess = await startHubProcess({ address: HOST, extraArgs: ['--drain-seconds', '2'] });
    dataDir = hub.dataDir;
    const ca = readFileSync(hub.caFile, 'utf8');
    assert.deepEqual(await ready(ca), { status: 200, body: { status: 'ready' } });

    const registry = iothub.Registry.fromConnectionString(hub.connectionString);
    const { responseBody } = await registry.create({ deviceId: 'drain-dev' });
    const key = responseBody.authentication?.symmetricKey?.primaryKey ?? '';
    const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, 'drain-dev', deviceToken(HOST, 'drain-dev', key)));
    assert.equal(code, 0);

    const topic = 'devices/drain-dev/messages/events/';
    let acked = 0;
    const publish = async (n: number, from: number) => {
      for (let i = 0; i < n; i++) client.send({ cmd: 'publish', topic, payload: Buffer.from(`m${from + i}`), qos: 1, messageId: from + i + 1, retain: false, dup: false });
      for (let i = 0; i < n; i++) {
        const p = await client.next(5000);
        if (p?.cmd === 'puback') acked++;
      }
    };
    await publish(20, 0);

    const exited = new Promise<number | null>((r) => hub.proc.once('exit', (c) => r(c)));
    const started = Date.now();
    hub.proc.kill('SIGTERM');
    await sleep(300);
    const during = await ready(ca);
    assert.equal(during.status, 503);
    assert.equal(during.body.status, 'draining');
    assert.equal(client.isClosed(), false, 'the session is still served while the node drains');
    await publish(20, 20);
    assert.equal(acked, 40, 'messages sent while draining are acknowledged');

    await client.closed;
    assert.ok(Date.now() - started >= 1900, 'closed only after the drain time');
    assert.equal(await exited, 0);
    assert.ok(Date.now() - started < 10_000);

    hub = await startHubProcess({ address: HOST, dataDir });
    try {
      const bodies = monitorEvents(dataDir, { deviceId: 'drain-dev' }).map((e) => String(e.payload));
      assert.equal(bodies.length, 40);
      assert.deepEqual(new Set(bodies), new Set(Array.from({ length: 40 }, (_, i) => `m${i}`)));
    } finally {
      await hub.stop();
    }
  });
});
