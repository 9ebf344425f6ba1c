/**
 * The unmodified azure-iot-device Client and ModuleClient against a real hub, over Mqtt and
 * MqttWs, with device SAS, policy SAS and module SAS: twin round trips, desired notifications,
 * direct methods (and DeviceNotOnline when offline), a short token renewal that keeps methods
 * working (the SDK does not re-subscribe after it, wire doc §2.4).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';

const { Registry, Client: ServiceClient } = iothub;
const { Client, ModuleClient } = deviceSdk;
const { Mqtt, MqttWs } = deviceMqtt;
type DeviceClient = InstanceType<typeof Client>;
type Twin = Awaited<ReturnType<DeviceClient['getTwin']>>;

const HOST = '127.0.27.1';
let hub: HubProcess;
let ca: string;
let registry: InstanceType<typeof Registry>;
let service: InstanceType<typeof ServiceClient>;

async function createDevice(id: string): Promise<string> {
  const { responseBody } = await registry.create({ deviceId: id });
  return String(responseBody.authentication?.symmetricKey?.primaryKey);
}

async function reportedRoundTrip(twin: Twin, id: string, value: number): Promise<void> {
  await new Promise<void>((resolve, reject) => twin.properties.reported.update({ temp: value, nested: { ok: true } }, (e?: Error) => (e ? reject(e) : resolve())));
  const { responseBody } = await registry.getTwin(id);
  assert.equal(responseBody.properties.reported.temp, value);
  assert.deepEqual(responseBody.properties.reported.nested, { ok: true });
}

async function desiredArrives(twin: Twin, id: string): Promise<void> {
  // The SDK subscribes when a listener is attached, then re-reads the twin and emits it once;
  // the hub pushes only to subscribed devices (as Azure does), so wait for that first event.
  const events: Array<Record<string, unknown>> = [];
  let wake: (() => void) | undefined;
  twin.on('properties.desired', (patch: Record<string, unknown>) => {
    events.push(patch);
    wake?.();
  });
  const until = async (pred: () => boolean) => {
    const deadline = Date.now() + 5000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error('timed out waiting for a desired-properties event');
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 100);
      });
    }
  };
  await until(() => events.length > 0);
  // The first event comes from the SDK's cache, possibly before its SUBSCRIBE reached the hub:
  // PATCH again until a push arrives (each PATCH is a new desired version).
  for (let i = 0; i < 20 && !events.some((p) => typeof p.interval === 'number'); i++) {
    await registry.updateTwin(id, { properties: { desired: { interval: 42 + i } } }, '*');
    await until(() => true);
    await new Promise((r) => setTimeout(r, 250));
  }
  const patch = events.find((p) => typeof p.interval === 'number');
  assert.ok(patch, 'a desired-properties push arrived');
  assert.equal(typeof patch.$version, 'number');
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  registry = Registry.fromConnectionString(hub.connectionString);
  service = ServiceClient.fromConnectionString(hub.connectionString);
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

for (const [name, transport] of [
  ['Mqtt', Mqtt],
  ['MqttWs', MqttWs],
] as const) {
  describe(`device over ${name}`, () => {
    it('device SAS: twin round trip, desired notification, a direct method, connection state', async () => {
      const id = `sdk-${name}-sas`;
      const key = await createDevice(id);
      const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, transport);
      await client.setOptions({ ca });
      await client.open();
      try {
        client.onDeviceMethod('reboot', (req, res) => {
          res.send(201, { delay: (req.payload as { delay: number }).delay, by: id }, () => undefined);
        });
        const twin = await client.getTwin();
        await reportedRoundTrip(twin, id, 21);
        await desiredArrives(twin, id);
        const { result } = await service.invokeDeviceMethod(id, { methodName: 'reboot', payload: { delay: 3 }, responseTimeoutInSeconds: 10 });
        assert.deepEqual(result, { status: 201, payload: { delay: 3, by: id } });
        assert.equal((await registry.get(id)).responseBody.connectionState, 'Connected');
      } finally {
        await client.close();
      }
    });
  });
}

describe('other credentials', () => {
  it('policy SAS (the device policy acting as a device)', async () => {
    const id = 'sdk-policy';
    await createDevice(id);
    const { stdout } = await import('./support/hub-process.js').then((m) => m.cli(['connection-string', '--data-dir', hub.dataDir, '--policy', 'device']));
    const devicePolicyKey = /SharedAccessKey=([^;\s]+)/.exec(stdout)?.[1];
    assert.ok(devicePolicyKey);
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKeyName=device;SharedAccessKey=${devicePolicyKey}`, Mqtt);
    await client.setOptions({ ca });
    await client.open();
    try {
      const twin = await client.getTwin();
      await reportedRoundTrip(twin, id, 7);
    } finally {
      await client.close();
    }
  });

  it('module SAS: module twin and a module method', async () => {
    await createDevice('sdk-mod-host');
    const { responseBody: m } = await registry.addModule({ deviceId: 'sdk-mod-host', moduleId: 'filter' });
    const client = ModuleClient.fromConnectionString(
      `HostName=${HOST};DeviceId=sdk-mod-host;ModuleId=filter;SharedAccessKey=${String(m.authentication?.symmetricKey?.primaryKey)}`,
      Mqtt,
    );
    await client.setOptions({ ca });
    await client.open();
    try {
      client.onMethod('ping', (_req, res) => res?.send(200, 'pong', () => undefined));
      const twin = await client.getTwin();
      await new Promise<void>((resolve, reject) => twin.properties.reported.update({ stage: 'filter' }, (e?: Error) => (e ? reject(e) : resolve())));
      const { responseBody } = await registry.getModuleTwin('sdk-mod-host', 'filter');
      assert.equal(responseBody.properties.reported.stage, 'filter');
      const { result } = await service.invokeDeviceMethod('sdk-mod-host', 'filter', { methodName: 'ping', payload: null, responseTimeoutInSeconds: 10 });
      assert.deepEqual(result, { status: 200, payload: 'pong' });
    } finally {
      await client.close();
    }
  });
});

describe('direct methods when the device is away', () => {
  it('fails with 404 DeviceNotOnline, and connectTimeoutInSeconds waits for the device', async () => {
    const id = 'sdk-offline';
    const key = await createDevice(id);
    const err = await service.invokeDeviceMethod(id, { methodName: 'x', payload: null, responseTimeoutInSeconds: 5 }).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.ok(err);
    assert.equal((err as { response?: { statusCode?: number } }).response?.statusCode, 404);
    assert.match(String((err as { responseBody?: string }).responseBody), /DeviceNotOnline/);

    const call = service.invokeDeviceMethod(id, { methodName: 'late', payload: 1, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10 });
    await new Promise((r) => setTimeout(r, 500));
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, Mqtt);
    await client.setOptions({ ca });
    client.onDeviceMethod('late', (_req, res) => res.send(200, 'here', () => undefined));
    await client.open();
    try {
      const { result } = await call;
      assert.deepEqual(result, { status: 200, payload: 'here' });
    } finally {
      await client.close();
    }
  });
});

describe('token renewal', () => {
  it('a short tokenRenewal reconnects with new tokens and methods keep working', async () => {
    const id = 'sdk-renew';
    const key = await createDevice(id);
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, Mqtt);
    await client.setOptions({ ca, tokenRenewal: { tokenValidTimeInSeconds: 6, tokenRenewalMarginInSeconds: 4 } });
    let calls = 0;
    client.onDeviceMethod('count', (_req, res) => {
      calls++;
      res.send(200, calls, () => undefined);
    });
    await client.open();
    try {
      // Several renewals pass (every ~2 s); each is a DISCONNECT + CONNECT without SUBSCRIBE.
      await new Promise((r) => setTimeout(r, 7000));
      const { result } = await service.invokeDeviceMethod(id, { methodName: 'count', payload: null, responseTimeoutInSeconds: 5 });
      assert.equal(result.status, 200);
      const twin = await client.getTwin();
      await reportedRoundTrip(twin, id, 99);
    } finally {
      await client.close();
    }
  });
});
