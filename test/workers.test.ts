/**
 * `gatehouse start --workers N` (issue 16 item 6): two hub processes share the ports; devices
 * spread over them and every call reaches its device whichever worker took it (the workers talk
 * over NATS); SIGTERM stops them all; without PostgreSQL and NATS it is a one-line start-up error.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { childPids, cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { readFileSync } from 'node:fs';
import { DATABASE_URL, NATS_URL } from './support/cluster.js';
import { restClient } from './support/rest.js';
import { parsePrometheusText, sampleValue } from './support/prometheus.js';

const HOST = '127.0.37.1';
const schema = `gh_workers_${randomBytes(4).toString('hex')}`;

describe('--workers', () => {
  after(async () => {
    const db = new pg.Client({ connectionString: DATABASE_URL });
    await db.connect();
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await db.end();
  });

  it('more than one worker without PostgreSQL and NATS is a clear start-up error', () => {
    const dir = tempDir('workers-bad');
    try {
      const r = cli(['start', '--workers', '2', '--data-dir', dir, '--bind', HOST, '--hostname', HOST]);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr.trim(), /^error: ConfigInvalid: --workers: more than one worker needs PostgreSQL \(--database-url\) and NATS \(--nats-url\)/);
    } finally {
      removeDir(dir);
    }
  });

  it('two workers share the ports, serve devices whichever worker holds them, and stop together', async () => {
    const url = new URL(DATABASE_URL);
    url.searchParams.set('schema', schema);
    const hub: HubProcess = await startHubProcess({ address: HOST, extraArgs: ['--workers', '2', '--database-url', url.toString(), '--nats-url', NATS_URL] });
    const devices: InstanceType<typeof deviceSdk.Client>[] = [];
    try {
      assert.match(hub.output(), /2 workers\)/);
      const workers = childPids(hub.proc.pid ?? 0);
      assert.equal(workers.length, 2, 'a primary and two workers');

      const registry = iothub.Registry.fromConnectionString(hub.connectionString);
      const service = iothub.Client.fromConnectionString(hub.connectionString);
      await service.open();
      const received = new Map<string, string>();
      for (let i = 0; i < 6; i++) {
        const id = `w-${i}`;
        const { responseBody } = await registry.create({ deviceId: id });
        const c = deviceSdk.Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${responseBody.authentication?.symmetricKey?.primaryKey ?? ''}`, deviceMqtt.Mqtt);
        c.on('message', (m) => {
          received.set(id, m.data.toString());
          c.complete(m, () => undefined);
        });
        await c.open();
        c.onDeviceMethod('where', (_req, res) => res.send(200, { pid: process.pid }, () => undefined));
        devices.push(c);
      }
      // Connections alternate between the workers: each call below lands on one worker and its
      // device is on either; every one must arrive.
      for (let i = 0; i < 6; i++) {
        await service.send(`w-${i}`, `hello ${i}`);
        const r = await service.invokeDeviceMethod(`w-${i}`, { methodName: 'where', payload: null, responseTimeoutInSeconds: 10 });
        assert.equal(r.result.status, 200);
      }
      const deadline = Date.now() + 10_000;
      while (received.size < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual([...received.entries()].sort(), Array.from({ length: 6 }, (_, i) => [`w-${i}`, `hello ${i}`]));
      // Two messages wait for a device that is not connected: the node's C2D queue depth.
      await registry.create({ deviceId: 'w-offline' });
      await service.send('w-offline', 'one');
      await service.send('w-offline', 'two');
      await service.close();

      // /metrics answers for the node whichever worker takes the scrape: the six sessions are on
      // both workers, the six C2D sends were taken by either; every scrape counts all of them.
      const key = /SharedAccessKey=([^;]+)/.exec(hub.connectionString)?.[1] ?? '';
      const rest = restClient(HOST, readFileSync(hub.caFile, 'utf8'), key);
      for (let scrape = 0; scrape < 4; scrape++) {
        const r = await rest('GET', '/metrics', undefined, { apiVersion: false });
        assert.equal(r.status, 200);
        const text = r.raw.toString('utf8');
        assert.doesNotMatch(text, /this worker's metrics only/);
        const m = parsePrometheusText(text);
        const sessions = m.get('gatehouse_connections')?.samples.reduce((n, x) => n + x.value, 0);
        assert.equal(sessions, 6, `scrape ${scrape}: live sessions of the node`);
        assert.equal(sampleValue(m, 'gatehouse_messages_total', { direction: 'out', kind: 'c2d' }), 8, `scrape ${scrape}: C2D messages out`);
        assert.equal(sampleValue(m, 'gatehouse_auth_successes_total', { protocol: 'mqtt', method: 'sas' }), 6, `scrape ${scrape}: device authentications`);
        // Counted by one worker of the node, the same in every scrape.
        assert.equal(sampleValue(m, 'gatehouse_c2d_queue_depth', {}), 2, `scrape ${scrape}: C2D messages pending`);
      }
    } finally {
      await Promise.all(devices.map((d) => d.close().catch(() => undefined)));
      const workers = childPids(hub.proc.pid ?? 0);
      assert.equal(await hub.stop(), 0);
      for (const pid of workers) assert.throws(() => process.kill(pid, 0), 'the workers stopped too');
      removeDir(hub.dataDir);
    }
  });
});
