/**
 * A hub on the NATS bus (--nats-url): the unmodified SDKs see the same hub, and what crosses
 * parts goes over NATS, where another NATS client can read it. And a hub whose NATS does not
 * answer does not start, saying which server without its password.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import type { BusSubscription } from '../src/bus/bus.js';
import { connectNatsBus, type NatsBus } from '../src/bus/nats/nats-bus.js';
import { BIN, removeDir, spawnReaped, startHubProcess, tempDir, testCaArgs, type HubProcess } from './support/hub-process.js';

const { Registry, Client: ServiceClient } = iothub;
const { Client, Message } = deviceSdk;
const { Mqtt } = deviceMqtt;

const HOST = '127.0.110.1';
const NATS = process.env.GATEHOUSE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a hub on the NATS bus', () => {
  let hub: HubProcess;
  let ca: string;
  let registry: InstanceType<typeof Registry>;
  let service: InstanceType<typeof ServiceClient>;
  let spy: NatsBus;
  let methodSpy: BusSubscription;
  const seen: Array<{ subject: string; body: { node: string; data: Record<string, unknown> } }> = [];

  before(async () => {
    spy = await connectNatsBus({ nodeId: 'spy', url: NATS });
    // Not 'gatehouse.>': a subscriber to the method subjects is a responder to NATS, so a method
    // to a device nobody holds would wait for its timeout instead of failing at once.
    const record = (m: { subject: string; data: Uint8Array }) => void seen.push({ subject: m.subject, body: JSON.parse(new TextDecoder().decode(m.data)) as (typeof seen)[number]['body'] });
    spy.subscribe('gatehouse.*.*.*', record);
    spy.subscribe('gatehouse.*.twin.>', record);
    methodSpy = spy.subscribe('gatehouse.*.method.request.>', record);
    hub = await startHubProcess({ address: HOST, extraArgs: ['--nats-url', NATS, '--node-id', `bus-hub-${randomUUID().slice(0, 8)}`] });
    ca = readFileSync(hub.caFile, 'utf8');
    registry = Registry.fromConnectionString(hub.connectionString);
    service = ServiceClient.fromConnectionString(hub.connectionString);
    await service.open();
  });

  after(async () => {
    await service.close();
    assert.equal(await hub.stop(), 0);
    await spy.close();
    removeDir(hub.dataDir);
  });

  it('delivers C2D, a direct method and a desired patch to an MQTT device, and disabling it drops its session, all through NATS', async () => {
    const id = `bus-${randomUUID().slice(0, 8)}`;
    const { responseBody } = await registry.create({ deviceId: id });
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${String(responseBody.authentication?.symmetricKey?.primaryKey)}`, Mqtt);
    await client.setOptions({ ca });
    // No reconnects: once disabled, the device stays away (the SDK would retry for minutes).
    client.setRetryPolicy({ shouldRetry: () => false, nextRetryTimeout: () => 0 });
    await client.open();
    try {
      const mail: string[] = [];
      client.on('message', (msg: InstanceType<typeof Message>) => {
        mail.push(msg.getBytes().toString());
        client.complete(msg, () => undefined);
      });
      client.onDeviceMethod('ping', (req, res) => void res.send(200, { pong: req.payload }, () => undefined));
      await new Promise((r) => setTimeout(r, 300)); // the SDK subscribes after open

      await service.send(id, new Message('over the bus'));
      await until('the C2D message', () => mail.includes('over the bus'));

      const { result } = await service.invokeDeviceMethod(id, { methodName: 'ping', payload: 7, responseTimeoutInSeconds: 10 });
      assert.deepEqual(result, { status: 200, payload: { pong: 7 } });

      const twin = await client.getTwin();
      const desired: number[] = [];
      twin.on('properties.desired', (p: { interval?: number }) => void (typeof p.interval === 'number' && desired.push(p.interval)));
      for (let i = 0; i < 20 && desired.length === 0; i++) {
        await registry.updateTwin(id, { properties: { desired: { interval: 100 + i } } }, '*');
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.ok(desired.length > 0, 'a desired-properties push arrived');

      const device = (await registry.get(id)).responseBody;
      await registry.update({ deviceId: id, status: 'disabled', etag: device.etag });
      // Dropped at once: the registry shows it (the SDK's reconnects are refused while disabled).
      let state = 'Connected';
      for (let i = 0; i < 50 && state !== 'Disconnected'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        state = String((await registry.get(id)).responseBody.connectionState);
      }
      assert.equal(state, 'Disconnected');

      // What went over NATS, as any NATS client sees it: JSON, with the node that published it.
      const subjects = (suffix: string) => seen.filter((s) => s.subject.endsWith(suffix) && s.body.data.deviceId === id);
      assert.ok(subjects('.c2d.enqueued').length >= 1);
      assert.ok(subjects('.twin.desired.changed').length >= 1);
      assert.ok(subjects('.session.claimed').length >= 1);
      // The create (caches that knew the id as unknown read it again), then the disable (sessions drop).
      assert.deepEqual(subjects('.identity.changed').map((s) => [s.body.data.kind, s.body.data.credentialsOrStatus]), [['device-updated', false], ['device-updated', true]]);
      assert.ok(seen.some((s) => s.subject.includes('.method.request.') && s.body.data.deviceId === id && s.body.data.methodName === 'ping'));
      assert.ok(seen.every((s) => /^gatehouse\.[0-9a-f]+\./.test(s.subject)), 'every subject under the hub id');
    } finally {
      methodSpy.unsubscribe();
      await client.close();
    }
  });

  it('answers DeviceNotOnline for a method to a device no node holds', async () => {
    const id = `bus-off-${randomUUID().slice(0, 8)}`;
    await registry.create({ deviceId: id });
    await assert.rejects(service.invokeDeviceMethod(id, { methodName: 'ping', payload: 1, responseTimeoutInSeconds: 5 }), (err: Error & { responseBody?: string }) => {
      assert.match(String(err.responseBody ?? err.message), /DeviceNotOnline/);
      return true;
    });
  });
});

describe('a hub whose NATS does not answer', () => {
  it('does not start, and names the server without the password', async () => {
    const dataDir = tempDir('bus-down');
    const { output, exited } = spawnReaped([BIN, 'start', '--data-dir', dataDir, '--bind', '127.0.110.2', '--hostname', '127.0.110.2', ...testCaArgs(), '--nats-url', 'nats://gh:hunter2@127.0.0.1:1']);
    const code = await exited;
    assert.notEqual(code, 0);
    assert.match(output(), /nats:\/\/127\.0\.0\.1:1/);
    assert.doesNotMatch(output(), /hunter2/);
    removeDir(dataDir);
  });
});
