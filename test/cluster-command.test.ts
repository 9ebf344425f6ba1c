/**
 * `gatehouse cluster` as a developer runs it: two nodes behind its balancer, the connection string
 * it prints works with the unmodified SDKs (a device created through it connects over MQTT through
 * the balancer and gets a C2D message), and Ctrl-C stops every node.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, it } from 'node:test';
import pg from 'pg';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { connect } from 'node:net';
import { BIN, removeDir, spawnReaped, tempDir, testCaArgs } from './support/hub-process.js';
import { DATABASE_URL } from './support/cluster.js';

const FRONT = '127.0.36.1';
const schema = `gh_clcmd_${randomBytes(4).toString('hex')}`;
const dir = tempDir('cluster-cmd');

after(async () => {
  removeDir(dir);
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await db.end();
});

it('runs nodes behind a balancer that the SDKs reach with the printed connection string, and stops them on Ctrl-C', async () => {
  const url = new URL(DATABASE_URL);
  url.searchParams.set('schema', schema);
  const run = spawnReaped([BIN, 'cluster', '--nodes', '2', '--address', FRONT, '--data-dir', dir, '--database-url', url.toString(), ...testCaArgs()]);
  const deadline = Date.now() + 60_000;
  while (!run.output().includes('Gatehouse cluster ready') && Date.now() < deadline) {
    if (run.proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.match(run.output(), /Gatehouse cluster ready: 2 nodes behind 127\.0\.36\.1/, run.output());
  assert.match(run.output(), /node-1 {2}127\.0\.36\.11/);
  assert.match(run.output(), /node-2 {2}127\.0\.36\.12/);
  const cs = /connection string {2}(\S+)/.exec(run.output())?.[1] ?? '';
  assert.match(cs, /^HostName=127\.0\.36\.1;SharedAccessKeyName=iothubowner;/);

  // The service SDK takes no CA: the nodes' certificates come from the test CA this process trusts.
  const registry = iothub.Registry.fromConnectionString(cs);
  const { responseBody } = await registry.create({ deviceId: 'cmd-dev' });
  const key = responseBody.authentication?.symmetricKey?.primaryKey ?? '';
  const device = deviceSdk.Client.fromConnectionString(`HostName=${FRONT};DeviceId=cmd-dev;SharedAccessKey=${key}`, deviceMqtt.Mqtt);
  const got = new Promise<string>((resolve) => device.on('message', (m) => resolve(m.data.toString())));
  await device.open();
  const service = iothub.Client.fromConnectionString(cs);
  await service.open();
  await service.send('cmd-dev', 'through the balancer');
  assert.equal(await got, 'through the balancer');
  await service.close();
  await device.close();

  run.proc.kill('SIGINT');
  assert.equal(await run.exited, 0);
  for (const address of [FRONT, '127.0.36.11', '127.0.36.12']) {
    const refused = await new Promise<boolean>((r) => connect({ host: address, port: 443 }).once('connect', () => r(false)).once('error', () => r(true)));
    assert.ok(refused, `nothing listens on ${address}:443 after Ctrl-C`);
  }
});
