/**
 * The Event Hubs-compatible endpoint (issue 17) with the unmodified `@azure/event-hubs` v6
 * `EventHubConsumerClient` and the connection string `gatehouse info` prints: the hub's and the
 * partitions' properties; telemetry from the unmodified azure-iot-device over MQTT, AMQP and HTTPS
 * with Azure's annotations and the message's properties; each starting position; two consumer
 * groups reading independently; an epoch receiver taking a partition over; and refusals (a policy
 * without ServiceConnect, a wrong key, an unknown partition, an unknown consumer group).
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { EventHubConsumerClient, earliestEventPosition, latestEventPosition, type EventPosition, type ReceivedEventData } from '@azure/event-hubs';
import common from 'azure-iot-common';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import deviceAmqp from 'azure-iot-device-amqp';
import deviceHttp from 'azure-iot-device-http';
import rhea from 'rhea';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { restClient, policyKey, type Rest } from './support/rest.js';
import { partitionOf } from '../src/log/partition-key.js';

const { Message } = common;
const HOST = '127.0.117.1';
const PARTITIONS = 4;

let hub: HubProcess;
let ca: string;
let rest: Rest;
let ehcs: string;
const keys = new Map<string, string>();
const clients: EventHubConsumerClient[] = [];

function consumer(group = '$Default', cs = ehcs): EventHubConsumerClient {
  const c = new EventHubConsumerClient(group, cs, { retryOptions: { maxRetries: 0, timeoutInMs: 10_000 } });
  clients.push(c);
  return c;
}

async function createDevice(id: string): Promise<void> {
  const r = await rest('PUT', `/devices/${id}`, { deviceId: id });
  assert.equal(r.status, 200);
  keys.set(id, (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey);
}

type Transport = typeof deviceMqtt.Mqtt | typeof deviceAmqp.Amqp | typeof deviceHttp.Http;

async function send(id: string, transport: Transport, messages: Array<InstanceType<typeof Message>>): Promise<void> {
  const device = deviceSdk.Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${keys.get(id) ?? ''}`, transport);
  // The SDK's Http transport answers setOptions only when a receive policy is among the options.
  await device.setOptions(transport === deviceHttp.Http ? { ca, http: { receivePolicy: { interval: 1 } } } : { ca });
  await device.open();
  try {
    for (const m of messages) await device.sendEvent(m);
  } finally {
    await device.close();
  }
}

function text(n: number, tag: string): InstanceType<typeof Message> {
  const m = new Message(JSON.stringify({ tag, n }));
  m.messageId = `${tag}-${n}`;
  return m;
}

/**
 * Reads one partition from a position until `count` events (of the device, when given) arrived;
 * with `count` 0, what arrives within 3 s.
 */
async function readPartition(client: EventHubConsumerClient, partition: string, startPosition: EventPosition, count: number, opts: { ownerLevel?: number; deviceId?: string } = {}): Promise<ReceivedEventData[]> {
  const got: ReceivedEventData[] = [];
  const wanted = (e: ReceivedEventData) => opts.deviceId === undefined || e.systemProperties?.['iothub-connection-device-id'] === opts.deviceId;
  return new Promise<ReceivedEventData[]>((resolve, reject) => {
    const timer = setTimeout(() => void sub.close().then(() => (count === 0 ? resolve(got) : reject(new Error(`timed out with ${got.length} of ${count} events`)))), count === 0 ? 3000 : 20_000);
    const sub = client.subscribe(
      partition,
      {
        processEvents: async (events) => {
          got.push(...events.filter(wanted));
          if (count > 0 && got.length >= count) {
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
      { startPosition, maxBatchSize: 50, maxWaitTimeInSeconds: 1, ...(opts.ownerLevel === undefined ? {} : { ownerLevel: opts.ownerLevel }) },
    );
  });
}

const partitionIdOf = (deviceId: string) => String(partitionOf(deviceId, PARTITIONS));
const bodyOf = (e: ReceivedEventData) => (Buffer.isBuffer(e.body) ? JSON.parse(e.body.toString('utf8')) : e.body) as { tag: string; n: number };

/** An AMQPS connection with a put-token for the Event Hubs audience, as any AMQP 1.0 client would make it. */
async function rawReaderConnection(): Promise<rhea.Connection> {
  const entity = /EntityPath=([^;]+)/.exec(ehcs)?.[1] ?? '';
  const conn = await new Promise<rhea.Connection>((resolve, reject) => {
    const c = rhea.create_container().connect({ host: HOST, port: 5671, transport: 'tls', ca, reconnect: false } as never);
    c.once('connection_open', () => resolve(c));
    c.once('disconnected', (ctx: rhea.EventContext & { error?: Error }) => reject(ctx.error ?? new Error('disconnected')));
  });
  const cbsIn = conn.open_receiver('$cbs');
  const cbsOut = conn.open_sender('$cbs');
  const status = new Promise<number>((resolve) => cbsIn.once('message', (ctx: rhea.EventContext) => resolve(Number(ctx.message?.application_properties?.['status-code']))));
  await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
  const audience = `sb://${HOST}/${entity}`;
  // Signed as Service Bus signs: the key's text itself is the HMAC key.
  const sr = encodeURIComponent(audience);
  const se = Math.floor(Date.now() / 1000) + 600;
  const sig = createHmac('sha256', policyKey(hub.dataDir, 'service')).update(`${sr}\n${se}`).digest('base64');
  const token = `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=service`;
  cbsOut.send({ to: '$cbs', reply_to: 'cbs', message_id: 'eh', application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: audience }, body: token });
  assert.equal(await status, 202);
  return conn;
}

/**
 * Reads a device's partition from the start with a plain rhea receiver until `count` of the
 * device's messages arrived. Settles nothing it did not get settled (as .NET under SettleOnSend);
 * fails if the hub closes the connection or nothing more comes for 30 s.
 */
function readRaw(conn: rhea.Connection, deviceId: string, count: number, opts: { settleMode?: 0 | 1; creditWindow?: number; selector?: string }) {
  const entity = /EntityPath=([^;]+)/.exec(ehcs)?.[1] ?? '';
  return new Promise<{
    attachedSettleMode: number | undefined;
    attachedSource: { address?: string; filter?: Record<string, unknown> } | null;
    settled: number;
    unsettled: number;
    mine: number;
    bodies: Buffer[];
    seqs: number[];
  }>((resolve, reject) => {
    let settled = 0;
    let unsettled = 0;
    const bodies: Buffer[] = [];
    const seqs: number[] = [];
    const r = conn.open_receiver({
      // rhea names the filter jms-selector (as Qpid JMS does); the hub knows it by its descriptor.
      source: { address: `${entity}/ConsumerGroups/$Default/Partitions/${partitionIdOf(deviceId)}`, filter: rhea.filter.selector(opts.selector ?? "amqp.annotation.x-opt-offset > '-1'") },
      autoaccept: false,
      credit_window: opts.creditWindow ?? 500,
      ...(opts.settleMode === undefined ? {} : { snd_settle_mode: opts.settleMode }),
    } as never);
    const fail = (why: string) => {
      clearTimeout(timer);
      conn.removeListener('disconnected', onGone);
      reject(new Error(`${why} after ${bodies.length} of ${count} (${settled} settled, ${unsettled} unsettled)`));
    };
    let timer = setTimeout(() => fail('stalled'), 30_000);
    const onGone = (ctx: rhea.EventContext & { error?: Error }) => fail(`the hub closed the connection (${String(ctx.error ?? ctx.connection.error)})`);
    conn.once('disconnected', onGone);
    r.on('message', (ctx: rhea.EventContext) => {
      clearTimeout(timer);
      timer = setTimeout(() => fail('stalled'), 30_000);
      if (ctx.delivery?.remote_settled === true) {
        settled++;
        ctx.delivery.update(true);
      } else unsettled++;
      if (ctx.message?.message_annotations?.['iothub-connection-device-id'] === deviceId) {
        bodies.push(Buffer.from(ctx.message.body?.content ?? ctx.message.body ?? []));
        seqs.push(Number(ctx.message.message_annotations['x-opt-sequence-number']));
      }
      if (bodies.length === count) {
        clearTimeout(timer);
        conn.removeListener('disconnected', onGone);
        const attach = (r as unknown as { remote: { attach?: { snd_settle_mode?: number; source?: { address?: string; filter?: Record<string, unknown> } | null } } }).remote.attach;
        resolve({ attachedSettleMode: attach?.snd_settle_mode, attachedSource: attach?.source ?? null, settled, unsettled, mine: bodies.length, bodies, seqs });
        r.close();
      }
    });
  });
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  const info = JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { eventHubsConnectionString: string };
  ehcs = info.eventHubsConnectionString;
  for (const id of ['mqtt-dev', 'amqp-dev', 'http-dev', 'pos-dev', 'cg-dev', 'epoch-dev', 'big-dev', 'settle-dev']) await createDevice(id);
});

after(async () => {
  if (process.env.EH_DEBUG !== undefined) console.error(hub.output());
  for (const c of clients) await c.close().catch(() => undefined);
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('the Event Hubs-compatible endpoint', () => {
  it('gatehouse info prints the connection string az prints with --default-eventhub, for the service policy', { timeout: 60_000 }, () => {
    assert.match(ehcs, new RegExp(`^Endpoint=sb://${HOST.replace(/\./g, '\\.')}/;SharedAccessKeyName=service;SharedAccessKey=[^;]+;EntityPath=${HOST.replace(/\./g, '\\.')}$`));
  });

  it('answers getEventHubProperties, getPartitionIds and getPartitionProperties', { timeout: 60_000 }, async () => {
    const c = consumer();
    const props = await c.getEventHubProperties();
    assert.equal(props.name, HOST);
    assert.deepEqual(props.partitionIds, ['0', '1', '2', '3']);
    assert.deepEqual(await c.getPartitionIds(), ['0', '1', '2', '3']);
    const empty = await c.getPartitionProperties('0');
    assert.equal(empty.partitionId, '0');
    assert.equal(empty.eventHubName, HOST);
    assert.equal(typeof empty.lastEnqueuedSequenceNumber, 'number');
    assert.ok(empty.lastEnqueuedOnUtc instanceof Date);

    await send('pos-dev', deviceMqtt.Mqtt, [text(0, 'props'), text(1, 'props')]);
    const p = await c.getPartitionProperties(partitionIdOf('pos-dev'));
    assert.equal(p.isEmpty, false);
    assert.equal(p.beginningSequenceNumber, 0);
    assert.equal(p.lastEnqueuedSequenceNumber, 1);
    assert.match(p.lastEnqueuedOffset, /^\d+$/);
    assert.ok(Date.now() - p.lastEnqueuedOnUtc.getTime() < 60_000);
  });

  for (const [name, transport, auth] of [
    ['MQTT', deviceMqtt.Mqtt, 'mqtt-dev'],
    ['AMQP', deviceAmqp.Amqp, 'amqp-dev'],
    ['HTTPS', deviceHttp.Http, 'http-dev'],
  ] as const) {
    it(`delivers telemetry sent over ${name} with Azure's annotations and the message's properties`, { timeout: 60_000 }, async () => {
      const m = new Message(JSON.stringify({ temperature: 21.5 }));
      m.messageId = `msg-${name}`;
      m.correlationId = `corr-${name}`;
      m.contentType = 'application/json';
      m.contentEncoding = 'utf-8';
      m.properties.add('alert', 'high');
      await send(auth, transport, [m]);
      const [e] = await readPartition(consumer(), partitionIdOf(auth), earliestEventPosition, 1, { deviceId: auth });
      assert.ok(e !== undefined);
      assert.deepEqual(e.body, { temperature: 21.5 });
      assert.equal(e.messageId, `msg-${name}`);
      assert.equal(e.correlationId, `corr-${name}`);
      assert.equal(e.contentType, 'application/json');
      assert.equal(e.systemProperties?.contentEncoding, 'utf-8');
      assert.deepEqual(e.properties, { alert: 'high' });
      const sys = e.systemProperties ?? {};
      assert.equal(sys['iothub-connection-device-id'], auth);
      assert.equal(sys['iothub-connection-module-id'], undefined);
      assert.deepEqual(JSON.parse(String(sys['iothub-connection-auth-method'])), { scope: 'device', type: 'sas', issuer: 'iothub' });
      assert.match(String(sys['iothub-connection-auth-generation-id']), /\S/);
      assert.equal(sys['iothub-message-source'], 'Telemetry');
      assert.equal(typeof sys['iothub-enqueuedtime'], 'number', 'a timestamp, as Azure sends it');
      assert.equal(typeof e.sequenceNumber, 'number');
      assert.match(String(e.offset), /^\d+$/);
      assert.ok(e.enqueuedTimeUtc instanceof Date && Date.now() - e.enqueuedTimeUtc.getTime() < 60_000);
      assert.equal(e.partitionKey, auth);
    });
  }

  it('starts at each position: earliest, latest, a sequence number or an offset with or without it, an enqueued time', { timeout: 60_000 }, async () => {
    const id = 'pos-dev';
    const p = partitionIdOf(id);
    await send(id, deviceMqtt.Mqtt, [0, 1, 2, 3, 4].map((n) => text(n, 'pos')));
    const c = consumer();
    const all = (await readPartition(c, p, earliestEventPosition, 7, { deviceId: id })).filter((e) => bodyOf(e).tag === 'pos');
    assert.deepEqual(all.map((e) => bodyOf(e).n), [0, 1, 2, 3, 4]);
    const third = all[2] as ReceivedEventData;
    const seqs = async (pos: EventPosition, n: number) => (await readPartition(c, p, pos, n)).map((e) => e.sequenceNumber);
    assert.deepEqual(await seqs({ sequenceNumber: third.sequenceNumber, isInclusive: true }, 3), [third.sequenceNumber, third.sequenceNumber + 1, third.sequenceNumber + 2]);
    assert.deepEqual(await seqs({ sequenceNumber: third.sequenceNumber }, 2), [third.sequenceNumber + 1, third.sequenceNumber + 2]);
    assert.deepEqual(await seqs({ offset: third.offset, isInclusive: true }, 3), [third.sequenceNumber, third.sequenceNumber + 1, third.sequenceNumber + 2]);
    assert.deepEqual(await seqs({ offset: third.offset }, 2), [third.sequenceNumber + 1, third.sequenceNumber + 2]);
    const before = new Date(third.enqueuedTimeUtc.getTime() - 1);
    const fromTime = await readPartition(c, p, { enqueuedOn: before }, 1);
    assert.ok((fromTime[0]?.sequenceNumber ?? Infinity) <= third.sequenceNumber, 'an enqueued time just before the third starts at or before it');
    assert.deepEqual(await readPartition(c, p, latestEventPosition, 0), [], 'latest skips what is there');
    const live = readPartition(consumer(), p, latestEventPosition, 1);
    await new Promise((r) => setTimeout(r, 1500));
    await send(id, deviceMqtt.Mqtt, [text(5, 'pos')]);
    const [fresh] = await live;
    assert.deepEqual(fresh === undefined ? undefined : bodyOf(fresh), { tag: 'pos', n: 5 });
  });

  it('hands a reader a backlog of large messages, more than the output cap (4 MiB) in one credit window, without closing it', { timeout: 90_000 }, async () => {
    // 40 messages of 200 KB: the reader's first window of 50 asks for 8 MB at once.
    const big = (n: number) => {
      const m = new Message(JSON.stringify({ tag: 'big', n, pad: 'x'.repeat(200_000) }));
      m.messageId = `big-${n}`;
      return m;
    };
    await send('big-dev', deviceMqtt.Mqtt, Array.from({ length: 40 }, (_, n) => big(n)));
    const got = await readPartition(consumer(), partitionIdOf('big-dev'), earliestEventPosition, 40, { deviceId: 'big-dev' });
    assert.deepEqual(got.map((e) => bodyOf(e).n), Array.from({ length: 40 }, (_, n) => n));
    assert.equal(got[39]?.body === undefined ? 0 : JSON.stringify(got[39].body).length > 200_000, true);
    // A plain AMQP reader giving 500 credits at once (100 MB of these) is paced by the connection's
    // output, not closed as a client that does not read; the SDK above would hide a close by reconnecting.
    const conn = await rawReaderConnection();
    try {
      const raw = await readRaw(conn, 'big-dev', 40, { creditWindow: 500 });
      assert.deepEqual(raw.bodies.map((b) => (JSON.parse(b.toString('utf8')) as { n: number }).n), Array.from({ length: 40 }, (_, n) => n));
    } finally {
      conn.close();
    }
  });

  it('reads in two consumer groups independently; a receiver on an unknown group is refused', { timeout: 60_000 }, async () => {
    const created = await rest('PUT', '/eventHubEndpoints/events/ConsumerGroups/analytics', {});
    assert.equal(created.status, 200);
    const list = await rest('GET', '/eventHubEndpoints/events/ConsumerGroups');
    assert.deepEqual((list.body as { value: Array<{ name: string }> }).value.map((g) => g.name).sort(), ['$Default', 'analytics']);
    const id = 'cg-dev';
    const p = partitionIdOf(id);
    await send(id, deviceMqtt.Mqtt, [0, 1, 2].map((n) => text(n, 'cg')));
    const a = readPartition(consumer('$Default'), p, earliestEventPosition, 3, { ownerLevel: 0, deviceId: id });
    const b = readPartition(consumer('analytics'), p, earliestEventPosition, 3, { ownerLevel: 0, deviceId: id });
    const [ea, eb] = await Promise.all([a, b]);
    const mine = (es: ReceivedEventData[]) => es.filter((e) => e.systemProperties?.['iothub-connection-device-id'] === id).map((e) => bodyOf(e).n);
    assert.deepEqual(mine(ea), [0, 1, 2]);
    assert.deepEqual(mine(eb), [0, 1, 2]);
    await assert.rejects(readPartition(consumer('nosuchgroup'), p, earliestEventPosition, 1), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'MessagingEntityNotFoundError', err.message);
      return true;
    });
  });

  it('sends settled deliveries to a receiver that asks for them, as the .NET Event Hubs client does, and never stalls on one that does not settle', { timeout: 90_000 }, async () => {
    // Event Hubs has no settlement: a reader's place is its position. The .NET client attaches with
    // snd-settle-mode settled and never settles a delivery; unsettled ones would pile up in the hub's
    // session (rhea keeps 2,048) and the reader would stop there.
    const id = 'settle-dev';
    const total = 2_200;
    const device = deviceSdk.Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${keys.get(id) ?? ''}`, deviceMqtt.Mqtt);
    await device.setOptions({ ca });
    await device.open();
    try {
      for (let n = 0; n < total; n += 100) await Promise.all(Array.from({ length: Math.min(100, total - n) }, (_, k) => device.sendEvent(text(n + k, 'settle'))));
    } finally {
      await device.close();
    }
    const conn = await rawReaderConnection();
    try {
      // As .NET asks (SettleOnSend): every delivery settled, all 2,200 read without settling one.
      const asked = await readRaw(conn, id, total, { settleMode: 1 });
      assert.equal(asked.attachedSettleMode, 1, 'the hub attaches as a settled sender');
      // The answer echoes the source and its filter, as Event Hubs does (a null source would mean refused).
      assert.match(String(asked.attachedSource?.address), /\/ConsumerGroups\/\$Default\/Partitions\/\d+$/);
      assert.deepEqual(Object.keys(asked.attachedSource?.filter ?? {}), ['jms-selector'], 'the selector filter is echoed under the name the client gave it');
      assert.equal(asked.unsettled, 0);
      assert.equal(asked.mine, total);
      // As @azure/event-hubs asks (no mode: mixed, the sender's choice): settled too, nothing for the client to send back.
      // From the 2,001st message on, by sequence number: the filter is read whatever the client named it.
      const from = asked.seqs[2000] as number;
      const mixed = await readRaw(conn, id, total - 2000, { selector: `amqp.annotation.x-opt-sequence-number >= ${from}` });
      assert.equal(mixed.unsettled, 0);
      assert.deepEqual(mixed.seqs, asked.seqs.slice(2000));
    } finally {
      conn.close();
    }
  });

  it('creates, lists and deletes consumer groups with the CLI, as az iot hub consumer-group does; $Default stays', { timeout: 60_000 }, () => {
    const gh = (...args: string[]) => cli([...args, '--data-dir', hub.dataDir]);
    assert.equal(gh('consumer-group', 'create', '-n', 'ops').status, 0);
    const names = () => (JSON.parse(gh('consumer-group', 'list').stdout) as Array<{ name: string }>).map((g) => g.name).sort();
    assert.deepEqual(names(), ['$Default', 'analytics', 'ops']);
    assert.equal(gh('consumer-group', 'delete', '-n', 'ops').status, 0);
    assert.deepEqual(names(), ['$Default', 'analytics']);
    const refused = gh('consumer-group', 'delete', '-n', '$Default');
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /cannot be deleted/);
    assert.notEqual(gh('consumer-group', 'show', '-n', 'ops').status, 0);
  });

  it('lets an epoch receiver take a partition over; the older one is told', { timeout: 60_000 }, async () => {
    const id = 'epoch-dev';
    const p = partitionIdOf(id);
    const first = consumer();
    const lost = new Promise<Error & { code?: string }>((resolve) => {
      first.subscribe(p, { processEvents: async () => undefined, processError: async (err) => resolve(err as Error) }, { startPosition: latestEventPosition, ownerLevel: 1, maxWaitTimeInSeconds: 1 });
    });
    await new Promise((r) => setTimeout(r, 1500));
    await send(id, deviceMqtt.Mqtt, [text(0, 'epoch')]);
    const taken = await readPartition(consumer(), p, earliestEventPosition, 1, { ownerLevel: 2 });
    assert.equal(taken.length >= 1, true);
    const err = await lost;
    assert.equal(err.code, 'ReceiverDisconnectedError', err.message);
  });

  it('refuses a policy without ServiceConnect, a wrong key and an unknown partition', { timeout: 60_000 }, async () => {
    const registryKey = policyKey(hub.dataDir, 'registryRead');
    const noRight = consumer('$Default', `Endpoint=sb://${HOST}/;SharedAccessKeyName=registryRead;SharedAccessKey=${registryKey};EntityPath=${HOST}`);
    await assert.rejects(noRight.getPartitionIds(), (err: Error & { code?: string }) => err.code === 'UnauthorizedError');
    const wrongKey = consumer('$Default', ehcs.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 1).toString('base64')}`));
    await assert.rejects(wrongKey.getPartitionIds(), (err: Error & { code?: string }) => err.code === 'UnauthorizedError');
    await assert.rejects(consumer().getPartitionProperties('99'), (err: Error & { code?: string }) => err.code === 'ArgumentOutOfRangeError');
  });
});

describe('the partition count', () => {
  it('is set when the hub is created, kept after, and another count is refused at start', { timeout: 120_000 }, async () => {
    const address = '127.0.117.2';
    const first = await startHubProcess({ address, extraArgs: ['--partitions', '2'] });
    const dataDir = first.dataDir;
    try {
      const cs = (JSON.parse(cli(['info', '--data-dir', dataDir, '--json']).stdout) as { eventHubsConnectionString: string }).eventHubsConnectionString;
      assert.deepEqual(await consumer('$Default', cs).getPartitionIds(), ['0', '1']);
      assert.equal(await first.stop(), 0);
      await assert.rejects(startHubProcess({ address, dataDir, extraArgs: ['--partitions', '3'] }), /the event log has 2 partitions; the count is fixed when the hub is created/);
      const again = await startHubProcess({ address, dataDir });
      try {
        assert.deepEqual(await consumer('$Default', cs).getPartitionIds(), ['0', '1']);
      } finally {
        assert.equal(await again.stop(), 0);
      }
    } finally {
      await first.stop();
      removeDir(dataDir);
    }
  });
});
