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
import deviceHttp from 'azure-iot-device-http';
import { request } from 'node:https';
import { generateSasToken } from '../src/auth/sas.js';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { monitorEvents, type MonitoredEvent } from './support/monitor.js';

const { Registry, Client: ServiceClient } = iothub;
const { Client, ModuleClient } = deviceSdk;
const { Mqtt, MqttWs } = deviceMqtt;
const { Http } = deviceHttp;
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

    it('a desired patch that repeats the current values is a new $version, and the device gets it', async () => {
      const id = `sdk-${name}-same`;
      const key = await createDevice(id);
      const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, transport);
      await client.setOptions({ ca });
      await client.open();
      try {
        const twin = await client.getTwin();
        await desiredArrives(twin, id);
        const { responseBody: before } = await registry.getTwin(id);
        const v = before.properties.desired.$version as number;
        const pushed: number[] = [];
        twin.on('properties.desired', (p: { $version: number }) => pushed.push(p.$version));
        // The same value again, with etag '*', then null for a key that is not there.
        const { responseBody: same } = await registry.updateTwin(id, { properties: { desired: { interval: before.properties.desired.interval } } }, '*');
        assert.equal(same.properties.desired.$version, v + 1);
        const { responseBody: nulled } = await registry.updateTwin(id, { properties: { desired: { absent: null } } }, '*');
        assert.equal(nulled.properties.desired.$version, v + 2);
        for (let i = 0; i < 50 && !pushed.includes(v + 2); i++) await new Promise((r) => setTimeout(r, 100));
        assert.ok(pushed.includes(v + 1) && pushed.includes(v + 2), `pushes for ${v + 1} and ${v + 2}, got ${pushed.join(',')}`);
        // desired: null removes every desired property, on the service and on the device.
        const { responseBody: cleared } = await registry.updateTwin(id, { properties: { desired: null } } as never, '*');
        assert.equal(cleared.properties.desired.$version, v + 3);
        assert.deepEqual(Object.keys(cleared.properties.desired).filter((k) => !k.startsWith('$')), []);
        for (let i = 0; i < 50 && !pushed.includes(v + 3); i++) await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(Object.keys(twin.properties.desired).filter((k) => !k.startsWith('$')), [], 'the device twin has no desired properties left');
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
    const { stdout } = cli(['connection-string', '--data-dir', hub.dataDir, '--policy', 'device']);
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
      await client.sendEvent(new deviceSdk.Message('from the module'));
      const e = monitorEvents(hub.dataDir, { deviceId: 'sdk-mod-host' })[0];
      assert.equal(e?.module, 'filter');
      assert.equal(e?.payload, 'from the module');
      assert.equal(e?.annotations['iothub-connection-module-id'], 'filter');
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

describe('direct methods when the device does not answer', () => {
  it('504 GatewayTimeout after responseTimeoutInSeconds', async () => {
    const id = 'sdk-silent';
    const key = await createDevice(id);
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, Mqtt);
    await client.setOptions({ ca });
    const requested: string[] = [];
    // Subscribed to methods, never answers.
    client.onDeviceMethod('sleep', (req) => requested.push(req.methodName));
    await client.open();
    try {
      const started = Date.now();
      const err = await service.invokeDeviceMethod(id, { methodName: 'sleep', payload: null, responseTimeoutInSeconds: 5 }).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.ok(err, 'the call fails');
      assert.equal(err.constructor.name, 'GatewayTimeoutError');
      assert.ok(Date.now() - started >= 4900);
      assert.deepEqual(requested, ['sleep'], 'the device did get the request');
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

// ---------------------------------------------------------------- cloud-to-device

function rest(method: string, path: string, body: string | undefined, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const key = /SharedAccessKey=([^;]+)/.exec(hub.connectionString)?.[1] ?? '';
  const token = generateSasToken({ resource: HOST, key, keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 600 });
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port: 443, method, path: `${path}?api-version=2021-04-12`, headers: { authorization: token, ...headers } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function sendC2d(deviceId: string, body: string, headers: Record<string, string> = {}): Promise<void> {
  const r = await rest('POST', `/devices/${deviceId}/messages/deviceBound`, body, headers);
  assert.equal(r.status, 204, r.body);
}

async function feedbackFor(messageId: string): Promise<string[]> {
  const r = await rest('GET', '/messages/serviceBound/feedback', undefined);
  const records = JSON.parse(r.body) as Array<{ originalMessageId: string; statusCode: string }>;
  return records.filter((f) => f.originalMessageId === messageId).map((f) => f.statusCode);
}

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`never happened: ${what}`);
}

describe('cloud-to-device', () => {
  it('a message sent while the device is offline arrives over MQTT after it connects, with its properties; Success feedback', async () => {
    const id = 'c2d-mqtt';
    const key = await createDevice(id);
    await sendC2d(id, 'turn on', { 'iothub-messageid': 'm-1', 'iothub-correlationid': 'c-1', 'iothub-ack': 'full', 'iothub-app-color': 'red', 'content-type': 'text/plain' });
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, Mqtt);
    await client.setOptions({ ca });
    const received = new Promise<InstanceType<typeof deviceSdk.Message>>((resolve) => client.on('message', (m) => resolve(m)));
    await client.open();
    try {
      const m = await received;
      assert.equal(m.data.toString(), 'turn on');
      assert.equal(m.messageId, 'm-1');
      assert.equal(m.correlationId, 'c-1');
      assert.equal(m.properties.getValue('color'), 'red');
      assert.equal(m.properties.getValue('iothub-ack'), 'full');
      await eventually(async () => (await feedbackFor('m-1')).includes('Success'), 'Success feedback');
      assert.equal(await purgeRemaining(id), 0);
    } finally {
      await client.close();
    }
  });

  it('over MQTT a message sent without an acknowledgement carries only the properties its sender set', async () => {
    const id = 'c2d-mqtt-noack';
    const key = await createDevice(id);
    await sendC2d(id, 'plain', { 'iothub-messageid': 'n-1', 'iothub-app-a': 'only-this' });
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, Mqtt);
    await client.setOptions({ ca });
    const received = new Promise<InstanceType<typeof deviceSdk.Message>>((resolve) => client.on('message', (m) => resolve(m)));
    await client.open();
    try {
      const m = await received;
      const props = Array.from({ length: m.properties.count() }, (_, i) => m.properties.getItem(i));
      assert.deepEqual(props.map((p) => [p.key, p.value]), [['a', 'only-this']]);
    } finally {
      await client.close();
    }
  });

  it('over HTTPS: receive, complete, reject (Rejected feedback) and abandon (delivered again)', async () => {
    const id = 'c2d-http';
    const key = await createDevice(id);
    await sendC2d(id, 'first', { 'iothub-messageid': 'h-1', 'iothub-ack': 'full' });
    await sendC2d(id, 'second', { 'iothub-messageid': 'h-2', 'iothub-ack': 'full', 'iothub-app-k': 'v' });
    await sendC2d(id, 'third', { 'iothub-messageid': 'h-3' });
    assert.equal((await registry.get(id)).responseBody.cloudToDeviceMessageCount, 3, 'the device record counts its queue');
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, Http);
    await client.setOptions({ ca, http: { receivePolicy: { interval: 1 } } });
    const messages: Array<InstanceType<typeof deviceSdk.Message>> = [];
    client.on('message', (m) => messages.push(m));
    await client.open();
    try {
      // The SDK polls by itself (every second, draining); each message stays locked until settled.
      const poll = (n: number) => eventually(async () => messages.length >= n, `${n} messages`);
      await poll(1);
      assert.equal(messages[0]?.data.toString(), 'first');
      await client.complete(messages[0]!);
      await poll(2);
      assert.equal(messages[1]?.messageId, 'h-2');
      assert.equal(messages[1]?.properties.getValue('iothub-app-k'), 'v');
      await client.reject(messages[1]!);
      await poll(3);
      assert.equal(messages[2]?.data.toString(), 'third');
      await client.abandon(messages[2]!);
      await poll(4);
      assert.equal(messages[3]?.data.toString(), 'third', 'an abandoned message comes back');
      await client.complete(messages[3]!);
      await eventually(async () => (await feedbackFor('h-1')).includes('Success') && (await feedbackFor('h-2')).includes('Rejected'), 'feedback');
      assert.equal((await registry.get(id)).responseBody.cloudToDeviceMessageCount, 0, 'and shows it drained');
      assert.equal(await purgeRemaining(id), 0);
    } finally {
      await client.close();
    }
  });

  it('a short tokenRenewal keeps C2D flowing (subscriptions survive the reconnects)', async () => {
    const id = 'c2d-renew';
    const key = await createDevice(id);
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, Mqtt);
    await client.setOptions({ ca, tokenRenewal: { tokenValidTimeInSeconds: 6, tokenRenewalMarginInSeconds: 4 } });
    const got: string[] = [];
    client.on('message', (m) => got.push(m.data.toString()));
    await client.open();
    try {
      await new Promise((r) => setTimeout(r, 5000));
      await sendC2d(id, 'after renewal');
      await eventually(async () => got.includes('after renewal'), 'C2D after renewal');
    } finally {
      await client.close();
    }
  });
});

/** Purges the queue and says how many messages were still in it. */
async function purgeRemaining(id: string): Promise<number> {
  const r = await rest('DELETE', `/devices/${id}/commands`, undefined);
  return (JSON.parse(r.body) as { totalMessagesPurged: number }).totalMessagesPurged;
}

// ---------------------------------------------------------------- telemetry

function monitor(deviceId: string): MonitoredEvent[] {
  return monitorEvents(hub.dataDir, { deviceId });
}

describe('telemetry into monitor-events', () => {
  for (const [name, transport] of [
    ['Mqtt', Mqtt],
    ['MqttWs', MqttWs],
    ['Http', Http],
  ] as const) {
    it(`sendEvent over ${name}: payload, application and system properties`, async () => {
      const id = `tel-${name}`;
      const key = await createDevice(id);
      const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, transport);
      // The SDK's Http transport answers setOptions only when a receive policy is among the
      // options (azure-iot-device-http 1.14.4); without one the promise never settles.
      await client.setOptions(name === 'Http' ? { ca, http: { receivePolicy: { interval: 1 } } } : { ca });
      await client.open();
      try {
        const msg = new deviceSdk.Message(JSON.stringify({ temperature: 21.5, via: name }));
        msg.messageId = `mid-${name}`;
        msg.contentType = 'application/json';
        msg.contentEncoding = 'utf-8';
        msg.properties.add('alert', 'high temp');
        await client.sendEvent(msg);
      } finally {
        await client.close();
      }
      const events = monitor(id);
      assert.equal(events.length, 1);
      const e = events[0]!;
      assert.equal(e.origin, id);
      assert.deepEqual(e.payload, { temperature: 21.5, via: name });
      assert.equal(e.properties.application.alert, 'high temp');
      assert.equal(e.properties.system?.message_id, `mid-${name}`);
      assert.equal(e.annotations['iothub-connection-device-id'], id);
      assert.deepEqual(JSON.parse(String(e.annotations['iothub-connection-auth-method'] ?? '{}')), { scope: 'device', type: 'sas', issuer: 'iothub' });
      assert.equal(typeof e.annotations['iothub-enqueuedtime'], 'number');
    });
  }

  it('sendEventBatch over Http stores every message with its properties', async () => {
    const id = 'tel-batch';
    const key = await createDevice(id);
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, Http);
    await client.setOptions({ ca, http: { receivePolicy: { interval: 1 } } });
    await client.open();
    try {
      const batch = [1, 2, 3].map((n) => {
        const m = new deviceSdk.Message(`reading ${n}`);
        m.properties.add('n', String(n));
        return m;
      });
      await client.sendEventBatch(batch);
    } finally {
      await client.close();
    }
    const events = monitor(id);
    assert.deepEqual(
      events.map((e) => [e.payload, e.properties.application.n]),
      [
        ['reading 1', '1'],
        ['reading 2', '2'],
        ['reading 3', '3'],
      ],
    );
  });
});
