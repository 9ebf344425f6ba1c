/**
 * IoT Plug and Play and the rest of the service surface (issue 18 items 5 and 7), against a real
 * `gatehouse start` process:
 *
 * - the model id a device announces: over MQTT by the unmodified azure-iot-device (`modelId`
 *   option → `&model-id=` in the CONNECT username), over AMQP as the .NET and C SDKs send it (the
 *   `com.microsoft:model-id` link property; the Node SDK's AMQP transport sends none), shown in the
 *   twin's `modelId`, found by `SELECT * FROM devices WHERE modelId = '...'`, stamped on the
 *   device's messages as `dt-dataschema`;
 * - azure-iothub's DigitalTwinClient: getDigitalTwin, updateDigitalTwin (with and without a
 *   matching etag), invokeCommand and invokeComponentCommand, against connected unmodified
 *   azure-iot-device clients over MQTT and AMQP;
 * - Registry.getRegistryStatistics and IoTHubRegistryManager.getServiceStatistics (connected devices);
 * - the distributed tracing `tracestate` a device sets (MQTT `$.tracestate`, an AMQP message
 *   annotation) reaching an EventHubConsumerClient as a system property.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { EventHubConsumerClient, earliestEventPosition, type ReceivedEventData } from '@azure/event-hubs';
import rhea from 'rhea';
import iothub from 'azure-iothub';
import { IoTHubRegistryManager } from 'azure-iothub/dist/cl/iothub_registry_manager.js';
import common from 'azure-iot-common';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import deviceAmqp from 'azure-iot-device-amqp';
import { generateSasToken } from '../src/auth/sas.js';
import { partitionOf } from '../src/log/partition-key.js';
import { desiredPatchFor, parseDigitalTwinPatch } from '../src/hub/twins/digital-twin.js';
import { BIN, cli, removeDir, spawnReaped, startHubProcess, type HubProcess } from './support/hub-process.js';
import { policyKey, restClient, type Rest } from './support/rest.js';

const { Registry, DigitalTwinClient, IoTHubTokenCredentials } = iothub;
const { Client, ModuleClient } = deviceSdk;
const { Message, NoRetry } = common;
type DeviceClient = InstanceType<typeof Client>;
type Transport = typeof deviceMqtt.Mqtt | typeof deviceAmqp.Amqp;

const HOST = '127.0.121.1';
const MODEL = 'dtmi:com:example:TemperatureController;2';
const THERMOSTAT = 'dtmi:com:example:Thermostat;1';

let hub: HubProcess;
let ca: string;
let rest: Rest;
let registry: InstanceType<typeof Registry>;
let digitalTwins: InstanceType<typeof DigitalTwinClient>;
let ehcs: string;
const keys = new Map<string, string>();
const open: DeviceClient[] = [];

async function createDevice(id: string): Promise<void> {
  const { responseBody } = await registry.create({ deviceId: id });
  keys.set(id, String(responseBody.authentication?.symmetricKey?.primaryKey));
}

async function connect(id: string, transport: Transport, modelId?: string): Promise<DeviceClient> {
  const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${keys.get(id) ?? ''}`, transport);
  await client.setOptions(modelId === undefined ? { ca } : { ca, modelId });
  await client.open();
  open.push(client);
  return client;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Events of one device on the Event Hubs-compatible endpoint, read from the start of its partition. */
async function eventsOf(deviceId: string, count: number): Promise<ReceivedEventData[]> {
  const client = new EventHubConsumerClient('$Default', ehcs, { retryOptions: { maxRetries: 0, timeoutInMs: 10_000 } });
  const got: ReceivedEventData[] = [];
  try {
    return await new Promise<ReceivedEventData[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out with ${got.length} of ${count} events of ${deviceId}`)), 20_000);
      const sub = client.subscribe(
        String(partitionOf(deviceId, 4)),
        {
          processEvents: async (events) => {
            got.push(...events.filter((e) => e.systemProperties?.['iothub-connection-device-id'] === deviceId));
            if (got.length >= count) {
              clearTimeout(timer);
              await sub.close();
              resolve(got);
            }
          },
          processError: async (err) => {
            clearTimeout(timer);
            await sub.close();
            reject(err);
          },
        },
        { startPosition: earliestEventPosition, maxBatchSize: 50, maxWaitTimeInSeconds: 1 },
      );
    });
  } finally {
    await client.close();
  }
}

/** The digital twin as the SDK resolves it: the parsed body with `_response` (its declared type says otherwise). */
type DigitalTwinDoc = Record<string, any>;

async function getDigitalTwin(id: string): Promise<{ dt: DigitalTwinDoc; etag: string }> {
  const r = (await digitalTwins.getDigitalTwin(id)) as unknown as DigitalTwinDoc & { _response: { headers: { get(name: string): string | undefined } } };
  return { dt: r, etag: String(r._response.headers.get('etag')) };
}

/** A device on raw AMQP (rhea), authenticated by a CBS put-token, as the .NET and C SDKs connect. */
async function amqpDevice(id: string): Promise<{ conn: rhea.Connection; sender(props: Record<string, unknown>): Promise<rhea.Sender> }> {
  const conn = await new Promise<rhea.Connection>((resolve, reject) => {
    const c = rhea.create_container().connect({ host: HOST, port: 5671, transport: 'tls', ca, reconnect: false } as never);
    c.once('connection_open', () => resolve(c));
    c.once('connection_error', (ctx: rhea.EventContext) => reject(new Error(String(ctx.connection.error))));
    // When the test closes the connection the hub detaches the device's links with an error
    // (amqp:link:detach-forced); unhandled, rhea would throw it.
    c.on('sender_error', () => undefined);
    c.on('receiver_error', () => undefined);
  });
  const cbsIn = conn.open_receiver('$cbs');
  const cbsOut = conn.open_sender('$cbs');
  const status = new Promise<number>((resolve) => cbsIn.once('message', (ctx: rhea.EventContext) => resolve(Number(ctx.message?.application_properties?.['status-code']))));
  await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
  const token = generateSasToken({ resource: `${HOST}/devices/${id}`, key: keys.get(id) ?? '', expiry: Math.floor(Date.now() / 1000) + 600 });
  cbsOut.send({ to: '$cbs', reply_to: 'cbs', message_id: 'put', application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: `${HOST}/devices/${id}` }, body: token });
  assert.equal(await status, 200);
  return {
    conn,
    sender: async (properties) => {
      const s = conn.open_sender({ target: { address: `/devices/${id}/messages/events` }, properties });
      await new Promise<void>((resolve) => s.once('sendable', () => resolve()));
      return s;
    },
  };
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  registry = Registry.fromConnectionString(hub.connectionString);
  digitalTwins = new DigitalTwinClient(new IoTHubTokenCredentials(hub.connectionString));
  ehcs = (JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { eventHubsConnectionString: string }).eventHubsConnectionString;
  const ids = ['pnp-mqtt', 'pnp-amqp', 'plain', 'bad-model', 'stats-1', 'stats-2', 'trace-mqtt'];
  for (const dt of ['dt-mqtt', 'dt-amqp']) ids.push(dt, `${dt}-2`, `${dt}-3`);
  for (const id of ids) await createDevice(id);
});

after(async () => {
  for (const c of open) await c.close().catch(() => undefined);
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('the model id a device announces', () => {
  it('over MQTT (the SDK modelId option): in the twin, in queries, and on its messages as dt-dataschema', { timeout: 60_000 }, async () => {
    const device = await connect('pnp-mqtt', deviceMqtt.Mqtt, MODEL);
    const plain = await connect('plain', deviceMqtt.Mqtt);
    assert.equal((await registry.getTwin('pnp-mqtt')).responseBody.modelId, MODEL, 'the twin shows the model id once the device is connected');
    assert.equal((await registry.getTwin('plain')).responseBody.modelId, '');

    const found = await registry.createQuery(`SELECT * FROM devices WHERE modelId = '${MODEL}'`).nextAsTwin();
    assert.deepEqual(found.result.map((t) => t.deviceId), ['pnp-mqtt']);
    const projected = await registry.createQuery("SELECT deviceId, modelId FROM devices WHERE STARTSWITH(modelId, 'dtmi:com:example')").next();
    assert.deepEqual(projected.result, [{ deviceId: 'pnp-mqtt', modelId: MODEL }]);

    const m = new Message(JSON.stringify({ temperature: 21.5 }));
    m.properties.add('$.sub', 'thermostat1');
    await device.sendEvent(m);
    const [event] = await eventsOf('pnp-mqtt', 1);
    assert.equal(event?.systemProperties?.['dt-dataschema'], MODEL);
    assert.equal(event?.systemProperties?.['dt-subject'], 'thermostat1');
    // Closed, so that their retry policies do not take the next tests' sessions over.
    await device.close();
    await plain.close();
  });

  it('the model id stays when the device connects again without one, and a new one replaces it', { timeout: 60_000 }, async () => {
    const again = await connect('pnp-mqtt', deviceMqtt.Mqtt);
    assert.equal((await registry.getTwin('pnp-mqtt')).responseBody.modelId, MODEL);
    await again.close();
    await connect('pnp-mqtt', deviceMqtt.Mqtt, THERMOSTAT);
    assert.equal((await registry.getTwin('pnp-mqtt')).responseBody.modelId, THERMOSTAT);
  });

  it('a module announces its own model id, kept in the module twin', { timeout: 60_000 }, async () => {
    const { responseBody: m } = await registry.addModule({ deviceId: 'plain', moduleId: 'sensor' });
    const module = ModuleClient.fromConnectionString(`HostName=${HOST};DeviceId=plain;ModuleId=sensor;SharedAccessKey=${String(m.authentication?.symmetricKey?.primaryKey)}`, deviceMqtt.Mqtt);
    await module.setOptions({ ca, modelId: THERMOSTAT });
    await module.open();
    try {
      assert.equal((await registry.getModuleTwin('plain', 'sensor')).responseBody.modelId, THERMOSTAT);
      assert.equal((await registry.getTwin('plain')).responseBody.modelId, '', "the device's twin is its own");
    } finally {
      await module.close();
    }
  });

  it('over AMQP (the com.microsoft:model-id link property): in the twin and on its messages, with the tracestate and dt-subject annotations', { timeout: 60_000 }, async () => {
    const device = await amqpDevice('pnp-amqp');
    try {
      const sender = await device.sender({ 'com.microsoft:model-id': THERMOSTAT });
      await waitFor('the model id in the twin', async () => ((await registry.getTwin('pnp-amqp')).responseBody.modelId === THERMOSTAT ? true : undefined));
      const accepted = new Promise<void>((resolve, reject) => {
        sender.once('accepted', () => resolve());
        sender.once('rejected', (ctx: rhea.EventContext) => reject(new Error(String(ctx.delivery?.remote_state))));
      });
      sender.send({ message_id: 'traced', message_annotations: { tracestate: 'timestamp=1539243209', 'dt-subject': 'thermostat1' }, body: rhea.message.data_section(Buffer.from('{"temperature":20}')) });
      await accepted;
    } finally {
      device.conn.close();
    }
    const [event] = await eventsOf('pnp-amqp', 1);
    assert.equal(event?.messageId, 'traced');
    assert.equal(event?.systemProperties?.tracestate, 'timestamp=1539243209');
    assert.equal(event?.systemProperties?.['dt-subject'], 'thermostat1');
    assert.equal(event?.systemProperties?.['dt-dataschema'], THERMOSTAT);
    assert.deepEqual(event?.properties ?? {}, {});
  });

  it('a model id that is not a DTMI is not kept', { timeout: 60_000 }, async () => {
    const device = await amqpDevice('bad-model');
    try {
      await device.sender({ 'com.microsoft:model-id': '<script>' });
      await waitFor('the warning in the log', async () => (/pnp\.model-id-invalid/.test(hub.output()) ? true : undefined));
    } finally {
      device.conn.close();
    }
    assert.equal((await registry.getTwin('bad-model')).responseBody.modelId, '');
  });
});

describe('distributed tracing', () => {
  it('the tracestate a device sets over MQTT ($.tracestate) reaches the Event Hubs reader as a system property', { timeout: 60_000 }, async () => {
    const device = await connect('trace-mqtt', deviceMqtt.Mqtt);
    const m = new Message('{"n":1}');
    // What the C SDK sends: `%24.tracestate=timestamp%3D<unix seconds>` in the topic.
    m.properties.add('$.tracestate', 'timestamp=1539243209');
    m.properties.add('app', 'kept');
    await device.sendEvent(m);
    const [event] = await eventsOf('trace-mqtt', 1);
    assert.equal(event?.systemProperties?.tracestate, 'timestamp=1539243209');
    assert.deepEqual(event?.properties, { app: 'kept' });
  });
});

/** A device that reports a Temperature Controller's properties and answers its commands. */
async function thermostatDevice(id: string, transport: Transport) {
  const device = await connect(id, transport, MODEL);
  const commands: Array<{ name: string; payload: unknown }> = [];
  const answer = (name: string) => (req: { methodName: string; payload: unknown }, res: { send(status: number, payload?: unknown): Promise<void> }) => {
    commands.push({ name: req.methodName, payload: req.payload });
    void res.send(name === 'reboot' ? 200 : 201, { handled: name, got: req.payload });
  };
  device.onDeviceMethod('reboot', answer('reboot'));
  device.onDeviceMethod('thermostat1*getMaxMinReport', answer('thermostat1*getMaxMinReport'));
  const twin = await device.getTwin();
  const desired: Array<Record<string, unknown>> = [];
  twin.on('properties.desired', (patch: Record<string, unknown>) => desired.push(patch));
  await new Promise<void>((resolve, reject) =>
    twin.properties.reported.update(
      { serialNumber: 'SN-1', thermostat1: { __t: 'c', maxTempSinceLastReboot: 25.3, targetTemperature: { value: 21.8, ac: 200, av: 1, ad: 'Successfully executed patch' } } },
      (e?: Error) => (e ? reject(e) : resolve()),
    ),
  );
  return { commands, desired };
}

for (const [name, transport, id] of [
  ['MQTT', deviceMqtt.Mqtt, 'dt-mqtt'],
  ['AMQP', deviceAmqp.Amqp, 'dt-amqp'],
] as const) {
  describe(`DigitalTwinClient with a device on ${name}`, () => {
    it('getDigitalTwin shows the model, properties and components as Azure shapes them', { timeout: 60_000 }, async () => {
      await thermostatDevice(id, transport);
      const { dt, etag } = await getDigitalTwin(id);
      assert.equal(dt.$dtId, id);
      // The Node SDK's AMQP transport takes the modelId option and sends nothing (as against Azure).
      assert.equal(dt.$metadata.$model, transport === deviceMqtt.Mqtt ? MODEL : undefined);
      assert.equal(dt.serialNumber, 'SN-1');
      assert.match(dt.$metadata.serialNumber.lastUpdateTime, /^\d{4}-\d\d-\d\dT/);
      assert.equal(dt.thermostat1.maxTempSinceLastReboot, 25.3);
      assert.equal(dt.thermostat1.targetTemperature, 21.8);
      assert.deepEqual(
        { ...dt.thermostat1.$metadata.targetTemperature, lastUpdateTime: undefined },
        { ackCode: 200, ackVersion: 1, ackDescription: 'Successfully executed patch', lastUpdateTime: undefined },
      );
      assert.equal(dt.thermostat1.__t, undefined, 'the component marker is the twin\'s, not the digital twin\'s');
      assert.equal(etag, `"${(await registry.getTwin(id)).responseBody.etag}"`);
    });

    it('updateDigitalTwin sets desired properties (a component\'s and a root one) under the etag; a stale etag is refused', { timeout: 60_000 }, async () => {
      const { etag } = await getDigitalTwin(id);
      await digitalTwins.updateDigitalTwin(id, [
        { op: 'add', path: '/thermostat1/targetTemperature', value: 30 },
        { op: 'add', path: '/fanSpeed', value: 2 },
      ], etag);
      const twin = (await registry.getTwin(id)).responseBody;
      assert.notEqual(`"${twin.etag}"`, etag, 'the update moved the etag');
      assert.deepEqual(twin.properties.desired.thermostat1, { __t: 'c', targetTemperature: 30 });
      assert.equal(twin.properties.desired.fanSpeed, 2);
      const { dt: after } = await getDigitalTwin(id);
      assert.equal(after.thermostat1.$metadata.targetTemperature.desiredValue, 30);
      assert.equal(after.thermostat1.$metadata.targetTemperature.desiredVersion, twin.properties.desired.$version);
      assert.equal(after.thermostat1.targetTemperature, 21.8, 'the value is the reported one until the device acknowledges');
      assert.equal(after.$metadata.fanSpeed.desiredValue, 2);

      await assert.rejects(digitalTwins.updateDigitalTwin(id, [{ op: 'replace', path: '/fanSpeed', value: 3 }], etag), (err: Error & { statusCode?: number }) => {
        assert.equal(err.statusCode, 412);
        return true;
      });
      // A component replaced wholesale: the values it leaves out are cleared.
      await digitalTwins.updateDigitalTwin(id, [{ op: 'replace', path: '/thermostat1', value: { mode: 'eco', $metadata: {} } }]);
      assert.deepEqual((await registry.getTwin(id)).responseBody.properties.desired.thermostat1, { __t: 'c', mode: 'eco' });
    });

    it('the device receives the desired patches the digital twin API makes', { timeout: 60_000 }, async () => {
      const { desired } = await thermostatDevice(`${id}-2`, transport);
      // The SDK subscribes to desired patches when the listener is added, and reads the twin once then.
      await sleep(500);
      await digitalTwins.updateDigitalTwin(`${id}-2`, [{ op: 'add', path: '/thermostat1/targetTemperature', value: 42 }]);
      const patch = await waitFor('the desired patch on the device', async () => desired.find((p) => (p.thermostat1 as { targetTemperature?: number } | undefined)?.targetTemperature === 42));
      assert.deepEqual(patch.thermostat1, { __t: 'c', targetTemperature: 42 });
    });

    it('invokeCommand and invokeComponentCommand reach the device as direct methods, with Azure\'s headers', { timeout: 60_000 }, async () => {
      const { commands } = await thermostatDevice(`${id}-3`, transport);
      const root = await digitalTwins.invokeCommand(`${id}-3`, 'reboot', { delay: 5 }, { connectTimeoutInSeconds: 5, responseTimeoutInSeconds: 10 });
      assert.ok(root);
      assert.equal(root._response.status, 200);
      assert.deepEqual(root.body, { handled: 'reboot', got: { delay: 5 } });
      assert.equal(root.xMsCommandStatuscode, 200);
      assert.match(String(root.xMsRequestId), /^[0-9a-f-]{36}$/);

      const comp = await digitalTwins.invokeComponentCommand(`${id}-3`, 'thermostat1', 'getMaxMinReport', '2026-01-01T00:00:00Z', { responseTimeoutInSeconds: 10 });
      assert.ok(comp);
      assert.deepEqual(comp.body, { handled: 'thermostat1*getMaxMinReport', got: '2026-01-01T00:00:00Z' });
      assert.equal(comp.xMsCommandStatuscode, 201);
      assert.deepEqual(commands.map((c) => c.name), ['reboot', 'thermostat1*getMaxMinReport']);
    });
  });
}

describe('digital twin JSON Patch → desired patch (as the service applies it)', () => {
  const desired = { thermostat1: { __t: 'c', targetTemperature: 20, mode: 'eco' }, limits: { low: 1, high: 9 } };
  const reported = { thermostat2: { __t: 'c', maxTemp: 30 }, serialNumber: 'SN' };
  const patchOf = (ops: unknown) => desiredPatchFor(parseDigitalTwinPatch(ops), desired, reported);

  it('a component property, a root property, a component removed, a field of a complex root property', () => {
    assert.deepEqual(patchOf([{ op: 'add', path: '/thermostat1/targetTemperature', value: 21 }]), { thermostat1: { __t: 'c', targetTemperature: 21 } });
    assert.deepEqual(patchOf([{ op: 'add', path: '/thermostat3/targetTemperature', value: 21 }]), { thermostat3: { __t: 'c', targetTemperature: 21 } }, 'an unknown name is a component');
    assert.deepEqual(patchOf([{ op: 'replace', path: '/thermostat2/maxTemp', value: 25 }]), { thermostat2: { __t: 'c', maxTemp: 25 } }, 'a reported component');
    assert.deepEqual(patchOf([{ op: 'add', path: '/fanSpeed', value: 2 }]), { fanSpeed: 2 });
    assert.deepEqual(patchOf([{ op: 'remove', path: '/thermostat1' }]), { thermostat1: null });
    assert.deepEqual(patchOf([{ op: 'replace', path: '/limits/high', value: 8 }]), { limits: { high: 8 } });
    assert.deepEqual(patchOf([{ op: 'replace', path: '/limits', value: { low: 2 } }]), { limits: { high: null, low: 2 } }, 'a replaced object loses the fields it leaves out');
  });

  it('a component added or replaced clears what it leaves out; a removal then an add in one patch', () => {
    assert.deepEqual(patchOf([{ op: 'replace', path: '/thermostat1', value: { mode: 'away', $metadata: {} } }]), { thermostat1: { __t: 'c', targetTemperature: null, mode: 'away' } });
    assert.deepEqual(patchOf([{ op: 'remove', path: '/thermostat1' }, { op: 'add', path: '/thermostat1/mode', value: 'on' }]), { thermostat1: { __t: 'c', targetTemperature: null, mode: 'on' } });
    assert.throws(() => patchOf([{ op: 'replace', path: '/thermostat1', value: { mode: 'away' } }]), /\$metadata/);
  });
});

/** The CLI, run without blocking this process (its devices answer the commands it invokes). */
async function gatehouse(args: string[]): Promise<{ code: number | null; out: string }> {
  const run = spawnReaped([BIN, ...args, '--data-dir', hub.dataDir]);
  const code = await run.exited;
  return { code, out: run.output() };
}

describe('gatehouse pnp twin (az iot pnp twin)', () => {
  it('show, update with a JSON Patch, invoke-command on the root and on a component', { timeout: 60_000 }, async () => {
    const shown = await gatehouse(['pnp', 'twin', 'show', '-d', 'dt-mqtt']);
    assert.equal(shown.code, 0, shown.out);
    assert.equal((JSON.parse(shown.out) as { $dtId: string }).$dtId, 'dt-mqtt');

    const updated = await gatehouse(['pnp', 'twin', 'update', '-d', 'dt-mqtt', '--json-patch', '[{"op": "add", "path": "/fanSpeed", "value": 4}]']);
    assert.equal(updated.code, 0, updated.out);
    assert.equal((JSON.parse(updated.out) as { $metadata: { fanSpeed: { desiredValue: number } } }).$metadata.fanSpeed.desiredValue, 4);

    const root = await gatehouse(['pnp', 'twin', 'invoke-command', '-d', 'dt-mqtt-3', '--cn', 'reboot', '--pl', '{"n": 1}', '--rto', '10']);
    assert.equal(root.code, 0, root.out);
    assert.deepEqual(JSON.parse(root.out), { payload: { handled: 'reboot', got: { n: 1 } }, status: 200 });
    const comp = await gatehouse(['pnp', 'twin', 'invoke-command', '-d', 'dt-mqtt-3', '--cp', 'thermostat1', '--cn', 'getMaxMinReport', '--rto', '10']);
    assert.equal(comp.code, 0, comp.out);
    assert.deepEqual(JSON.parse(comp.out), { payload: { handled: 'thermostat1*getMaxMinReport', got: {} }, status: 201 });

    const offline = await gatehouse(['pnp', 'twin', 'invoke-command', '-d', 'stats-1', '--cn', 'reboot', '--cto', '0', '--rto', '5']);
    assert.notEqual(offline.code, 0);
    assert.match(offline.out, /DeviceNotOnline/);
  });
});

describe('digital twin bad input', () => {
  it('answers precise errors', { timeout: 60_000 }, async () => {
    const missing = await rest('GET', '/digitaltwins/nobody');
    assert.equal(missing.status, 404);
    assert.equal(missing.headers['iothub-errorcode'], 'DeviceNotFound');
    for (const body of [[], {}, [{ op: 'move', from: '/a', path: '/b' }], [{ op: 'add', path: '/1bad', value: 1 }], [{ op: 'add', path: '/a/b/c', value: 1 }], [{ op: 'add', path: '/list', value: [1, 2] }], [{ op: 'add', path: '/x' }], [{ op: 'add', path: '/c', value: { p: 1, $metadata: { not: 'empty' } } }]]) {
      const r = await rest('PATCH', '/digitaltwins/plain', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.headers['iothub-errorcode'], 'ArgumentInvalid', JSON.stringify(body));
    }
    const offline = await rest('POST', '/digitaltwins/stats-1/commands/reboot?responseTimeoutInSeconds=5', null);
    assert.equal(offline.status, 404);
    assert.equal(offline.headers['iothub-errorcode'], 'DeviceNotOnline');
    const badTimeout = await rest('POST', '/digitaltwins/stats-1/commands/reboot?responseTimeoutInSeconds=soon', null);
    assert.equal(badTimeout.status, 400);
    const badComponent = await rest('POST', '/digitaltwins/stats-1/components/_x/commands/reboot', null);
    assert.equal(badComponent.status, 400);
  });
});

describe('statistics', () => {
  it('getServiceStatistics counts the connected devices, whichever protocol; getRegistryStatistics the registry', { timeout: 60_000 }, async () => {
    const manager = new IoTHubRegistryManager(new IoTHubTokenCredentials(hub.connectionString));
    const connected = async () => (await manager.getServiceStatistics()).connectedDeviceCount;
    const start = await connected();
    assert.equal(typeof start, 'number');
    const one = await connect('stats-1', deviceMqtt.Mqtt);
    const two = await connect('stats-2', deviceAmqp.Amqp);
    await waitFor('two more connected devices', async () => ((await connected()) === (start ?? 0) + 2 ? true : undefined));
    await one.close();
    await two.close();
    await waitFor('both gone', async () => ((await connected()) === start ? true : undefined));

    const { responseBody } = await registry.getRegistryStatistics();
    const total = (await rest('GET', '/devices?top=1000')).body as unknown[];
    assert.deepEqual(responseBody, { totalDeviceCount: total.length, enabledDeviceCount: total.length, disabledDeviceCount: 0 });
  });

  it('a restart after a crash forgets the connections the dead process held (SQLite: one process serves the store)', { timeout: 90_000 }, async () => {
    const address = '127.0.121.2';
    const first = await startHubProcess({ address });
    try {
      const key = String((await Registry.fromConnectionString(first.connectionString).create({ deviceId: 'crashed' })).responseBody.authentication?.symmetricKey?.primaryKey);
      const device = Client.fromConnectionString(`HostName=${address};DeviceId=crashed;SharedAccessKey=${key}`, deviceMqtt.Mqtt);
      device.setRetryPolicy(new NoRetry());
      device.on('error', () => undefined);
      await device.setOptions({ ca: readFileSync(first.caFile, 'utf8') });
      await device.open();
      const before = new IoTHubRegistryManager(new IoTHubTokenCredentials(first.connectionString));
      await waitFor('the device connected', async () => ((await before.getServiceStatistics()).connectedDeviceCount === 1 ? true : undefined));
      first.proc.kill('SIGKILL');
      await first.stop();
      await Promise.race([device.close().catch(() => undefined), sleep(3000)]);

      const second = await startHubProcess({ address, dataDir: first.dataDir });
      try {
        const after = new IoTHubRegistryManager(new IoTHubTokenCredentials(second.connectionString));
        assert.equal((await after.getServiceStatistics()).connectedDeviceCount, 0);
        assert.equal((await Registry.fromConnectionString(second.connectionString).get('crashed')).responseBody.connectionState, 'Disconnected');
      } finally {
        await second.stop();
      }
    } finally {
      await first.stop();
      removeDir(first.dataDir);
    }
  });
});
