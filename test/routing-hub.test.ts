/**
 * Message routing end to end (issue 17): the unmodified azure-iot-device over MQTT sends to a
 * hub process; routes configured by REST (`PUT /routing`) send messages to webhook endpoints
 * served by a real HTTP receiver in this test; the built-in endpoint is read with the unmodified
 * `@azure/event-hubs` consumer. A condition on each kind of field (application property, system
 * property, `$body`, `$twin`) routes what it should and nothing else; enrichments appear; the
 * fallback route works on and off; the built-in endpoint gets only what is routed to it; a
 * receiver stopped and started again loses and reorders nothing; every change applies without a
 * restart; the REST answers Azure's shapes, rights and precise errors.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventHubConsumerClient, earliestEventPosition, type ReceivedEventData } from '@azure/event-hubs';
import common from 'azure-iot-common';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { partitionOf } from '../src/log/partition-key.js';
import { SQLITE_FILE } from '../src/hub/startup.js';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { errorCode, policyKey, restClient, type Rest } from './support/rest.js';
import { parsePrometheusText } from './support/prometheus.js';

const { Message } = common;
const HOST = '127.0.171.1';

interface Envelope {
  deviceId: string;
  body: string;
  properties: Record<string, string>;
  enrichments: Record<string, string>;
}

/** A webhook receiver: every path is an endpoint; can be stopped and started on the same port. */
class Receiver {
  readonly got = new Map<string, Envelope[]>();
  server: Server | undefined;
  port = 0;

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const list = this.got.get(req.url ?? '') ?? [];
        list.push(...(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Envelope[]));
        this.got.set(req.url ?? '', list);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s === undefined) return;
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    s.closeAllConnections();
    await closed;
  }

  tags(path: string): string[] {
    return (this.got.get(path) ?? []).map((e) => (JSON.parse(e.body) as { tag: string }).tag);
  }
}

let hub: HubProcess;
let ca: string;
let rest: Rest;
let serviceRest: Rest;
let ehcs: string;
const receiver = new Receiver();
const keys = new Map<string, string>();

async function createDevice(id: string): Promise<void> {
  const r = await rest('PUT', `/devices/${id}`, { deviceId: id });
  assert.equal(r.status, 200);
  keys.set(id, (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey);
}

function msg(tag: string, body: Record<string, unknown> = {}, props: Record<string, string> = {}, json = true): InstanceType<typeof Message> {
  const m = new Message(JSON.stringify({ tag, ...body }));
  if (json) {
    m.contentType = 'application/json';
    m.contentEncoding = 'utf-8';
  }
  for (const [k, v] of Object.entries(props)) m.properties.add(k, v);
  return m;
}

async function send(id: string, messages: Array<InstanceType<typeof Message>>): Promise<void> {
  const device = deviceSdk.Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${keys.get(id) ?? ''}`, deviceMqtt.Mqtt);
  await device.setOptions({ ca });
  await device.open();
  try {
    for (const m of messages) await device.sendEvent(m);
  } finally {
    await device.close();
  }
}

async function putRouting(doc: unknown): Promise<void> {
  const r = await rest('PUT', '/routing', doc);
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

/** The events the built-in endpoint holds for a device, read with the Event Hubs consumer (what arrives within a few seconds). */
async function builtinEvents(deviceId: string): Promise<ReceivedEventData[]> {
  const client = new EventHubConsumerClient('$Default', ehcs, { retryOptions: { maxRetries: 0, timeoutInMs: 10_000 } });
  const got: ReceivedEventData[] = [];
  try {
    const sub = client.subscribe(
      String(partitionOf(deviceId, 4)),
      { processEvents: async (events) => void got.push(...events), processError: async () => undefined },
      { startPosition: earliestEventPosition, maxBatchSize: 100, maxWaitTimeInSeconds: 1 },
    );
    await sleep(3000);
    await sub.close();
  } finally {
    await client.close();
  }
  return got.filter((e) => e.systemProperties?.['iothub-connection-device-id'] === deviceId);
}

// The consumer decodes a JSON body itself (content type application/json); others arrive as bytes.
const tagOf = (e: ReceivedEventData) => (Buffer.isBuffer(e.body) ? (JSON.parse(e.body.toString('utf8')) as { tag: string }) : (e.body as { tag: string })).tag;

/** The tags the built-in endpoint holds for a device, read with the Event Hubs consumer. */
async function builtinTags(deviceId: string): Promise<string[]> {
  return (await builtinEvents(deviceId)).map(tagOf);
}

/** What `gatehouse monitor-events` (GET /events) prints for a device: tag and application properties of each event. */
function monitored(deviceId: string): Array<{ tag: string; application: Record<string, string> }> {
  const r = cli(['monitor-events', '-d', deviceId, '--from', 'earliest', '--props', 'app', '--timeout', '2', '--data-dir', hub.dataDir]);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const e = (JSON.parse(l) as { event: { payload: { tag: string }; properties?: { application?: Record<string, string> } } }).event;
      return { tag: e.payload.tag, application: e.properties?.application ?? {} };
    });
}

async function eventually(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) assert.fail(`never happened: ${what}`);
    await sleep(100);
  }
}

const hook = (name: string) => ({ name, url: `http://127.0.0.1:${receiver.port}/${name}` });
const route = (name: string, condition: string, endpoint: string, source = 'DeviceMessages') => ({ name, source, condition, endpointNames: [endpoint], isEnabled: true });

before(async () => {
  await receiver.start();
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  serviceRest = restClient(HOST, ca, policyKey(hub.dataDir, 'service'), 'service');
  ehcs = (JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { eventHubsConnectionString: string }).eventHubsConnectionString;
  for (const id of ['app-dev', 'sys-dev', 'body-dev', 'twin-dev', 'other-dev', 'order-dev', 'fb-dev', 'enrich-dev']) await createDevice(id);
  assert.equal((await rest('PATCH', '/twins/twin-dev', { tags: { site: 'north' } })).status, 200);
});

after(async () => {
  if (process.env.ROUTING_DEBUG !== undefined) console.error(hub.output());
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
  await receiver.stop();
});

describe('message routing through a hub', () => {
  it('routes on an application property, a system property, the body and the twin, each to its endpoint and nothing else; the rest falls back to events', { timeout: 90_000 }, async () => {
    await putRouting({
      endpoints: { webhooks: [hook('app'), hook('sys'), hook('body'), hook('twin')] },
      routes: [
        route('by-app', "level = 'critical'", 'app'),
        route('by-sys', "$connectionDeviceId = 'sys-dev'", 'sys'),
        route('by-body', '$body.temp > 30', 'body'),
        route('by-twin', "$twin.tags.site = 'north'", 'twin'),
      ],
      fallbackRoute: { isEnabled: true },
      enrichments: [
        { key: 'hub', value: '$iothubname', endpointNames: ['app', 'twin'] },
        { key: 'site', value: '$twin.tags.site', endpointNames: ['twin'] },
        { key: 'fixed', value: 'v1', endpointNames: ['twin'] },
      ],
    });
    await send('app-dev', [msg('app-yes', {}, { level: 'critical' }), msg('app-no', {}, { level: 'info' })]);
    await send('sys-dev', [msg('sys-yes')]);
    // A body is JSON to the router only with contentType application/json and a UTF-8 encoding.
    await send('body-dev', [msg('body-yes', { temp: 31 }), msg('body-no', { temp: 30 }), msg('body-not-json', { temp: 99 }, {}, false)]);
    await send('twin-dev', [msg('twin-yes')]);
    await send('other-dev', [msg('nothing-matches')]);
    await eventually('every routed message arrived', () => ['app', 'sys', 'body', 'twin'].every((p) => receiver.tags(`/${p}`).length >= 1));
    await sleep(1500);
    assert.deepEqual(receiver.tags('/app'), ['app-yes']);
    assert.deepEqual(receiver.tags('/sys'), ['sys-yes']);
    assert.deepEqual(receiver.tags('/body'), ['body-yes']);
    assert.deepEqual(receiver.tags('/twin'), ['twin-yes']);
    const twinMsg = receiver.got.get('/twin')?.[0];
    assert.deepEqual(twinMsg?.enrichments, { hub: HOST, site: 'north', fixed: 'v1' });
    assert.deepEqual(receiver.got.get('/app')?.[0]?.enrichments, { hub: HOST });
    assert.deepEqual(receiver.got.get('/app')?.[0]?.properties, { level: 'critical' });
    // The built-in endpoint got what no route took (fallback), and nothing a route took.
    assert.deepEqual(await builtinTags('app-dev'), ['app-no']);
    assert.deepEqual(await builtinTags('body-dev'), ['body-no', 'body-not-json']);
    assert.deepEqual(await builtinTags('other-dev'), ['nothing-matches']);
    assert.deepEqual(await builtinTags('twin-dev'), []);
  });

  it('drops what no route takes when the fallback route is off, and routes to events only what a route sends there', { timeout: 60_000 }, async () => {
    await putRouting({
      endpoints: { webhooks: [hook('app')] },
      routes: [route('to-builtin', "level = 'keep'", 'events'), route('by-app', "level = 'critical'", 'app')],
      fallbackRoute: { isEnabled: false },
    });
    await send('fb-dev', [msg('fb-keep', {}, { level: 'keep' }), msg('fb-drop', {}, { level: 'info' }), msg('fb-app', {}, { level: 'critical' })]);
    await eventually('the critical one arrived', () => receiver.tags('/app').includes('fb-app'));
    assert.deepEqual(await builtinTags('fb-dev'), ['fb-keep']);
  });

  it('adds the enrichments configured for events to what the Event Hubs consumer and monitor-events read, over a property of the same name', { timeout: 90_000 }, async () => {
    await putRouting({
      routes: [],
      fallbackRoute: { isEnabled: true },
      enrichments: [
        { key: 'hub', value: '$iothubname', endpointNames: ['events'] },
        { key: 'site', value: '$twin.tags.site', endpointNames: ['events'] },
        { key: 'missing', value: '$twin.tags.nothere', endpointNames: ['events'] },
        { key: 'level', value: 'from-hub', endpointNames: ['events'] },
      ],
    });
    assert.equal((await rest('PATCH', '/twins/enrich-dev', { tags: { site: 'south' } })).status, 200);
    await send('enrich-dev', [msg('enriched-1', {}, { level: 'from-device', other: 'kept' })]);
    const expected = { level: 'from-hub', other: 'kept', hub: HOST, site: 'south', missing: '$twin.tags.nothere' };
    const read = await builtinEvents('enrich-dev');
    assert.deepEqual(read.map(tagOf), ['enriched-1']);
    assert.deepEqual(read[0]?.properties, expected);
    assert.deepEqual(monitored('enrich-dev'), [{ tag: 'enriched-1', application: expected }]);
    // A twin change shows in the next message (the twin cache forgets a twin when it changes).
    assert.equal((await rest('PATCH', '/twins/enrich-dev', { tags: { site: 'west' } })).status, 200);
    await send('enrich-dev', [msg('enriched-2')]);
    const again = await builtinEvents('enrich-dev');
    assert.deepEqual(again.map(tagOf), ['enriched-1', 'enriched-2']);
    assert.deepEqual(again[1]?.properties, { hub: HOST, site: 'west', missing: '$twin.tags.nothere', level: 'from-hub' });
    // Enrichments for events only: a custom endpoint's messages do not get them.
    await putRouting({ endpoints: { webhooks: [hook('plain')] }, routes: [route('all', 'true', 'plain')], fallbackRoute: { isEnabled: false }, enrichments: [{ key: 'level', value: 'from-hub', endpointNames: ['events'] }] });
    await send('enrich-dev', [msg('to-plain', {}, { level: 'from-device' })]);
    await eventually('the message reached the webhook', () => receiver.tags('/plain').length >= 1);
    assert.deepEqual(receiver.got.get('/plain')?.[0]?.properties, { level: 'from-device' });
    assert.deepEqual(receiver.got.get('/plain')?.[0]?.enrichments, {});
  });

  it('loses and reorders nothing for a device while its endpoint is down, and shows the endpoint unhealthy meanwhile', { timeout: 120_000 }, async () => {
    await putRouting({ endpoints: { webhooks: [hook('order')] }, routes: [route('all', 'true', 'order')], fallbackRoute: { isEnabled: false } });
    await send('order-dev', Array.from({ length: 10 }, (_, i) => msg(`o${i}`)));
    await eventually('the first 10 arrived', () => receiver.tags('/order').length >= 10);
    await receiver.stop();
    await send('order-dev', Array.from({ length: 20 }, (_, i) => msg(`o${i + 10}`)));
    let health: Array<{ endpointId: string; healthStatus: string; lastKnownError?: string }> = [];
    const until = Date.now() + 20_000;
    while (!health.some((h) => h.endpointId === 'order' && h.healthStatus === 'unhealthy')) {
      if (Date.now() > until) assert.fail(`never unhealthy: ${JSON.stringify(health)}`);
      await sleep(300);
      health = ((await serviceRest('GET', '/routing/endpointsHealth')).body as { value: typeof health }).value;
    }
    assert.ok(health.find((h) => h.endpointId === 'order')?.lastKnownError);
    await receiver.start();
    await eventually('all 30 arrived after the receiver came back', () => new Set(receiver.tags('/order')).size >= 30, 90_000);
    const tags = receiver.tags('/order');
    const firsts = tags.filter((t, i) => tags.indexOf(t) === i);
    assert.deepEqual(firsts, Array.from({ length: 30 }, (_, i) => `o${i}`));
    const after = ((await serviceRest('GET', '/routing/endpointsHealth')).body as { value: typeof health }).value;
    assert.equal(after.find((h) => h.endpointId === 'order')?.healthStatus, 'healthy');
  });
});

describe('delivery latency on /metrics', () => {
  /** The delivery latency histogram's series of one endpoint: cumulative buckets, +Inf, sum and count (undefined when absent). */
  async function latencyOf(endpoint: string, type: string): Promise<{ buckets: Array<[number, number]>; inf: number; sum: number; count: number } | undefined> {
    const r = await rest('GET', '/metrics', undefined, { apiVersion: false });
    assert.equal(r.status, 200);
    const family = parsePrometheusText(r.raw.toString('utf8')).get('gatehouse_routing_delivery_latency_seconds');
    assert.equal(family?.type, 'histogram');
    const mine = family.samples.filter((x) => x.labels.endpoint === endpoint && x.labels.endpoint_type === type);
    if (mine.length === 0) return undefined;
    const one = (name: string) => mine.find((x) => x.name === name)?.value ?? NaN;
    const buckets = mine.filter((x) => x.name.endsWith('_bucket') && x.labels.le !== '+Inf').map((x): [number, number] => [Number(x.labels.le), x.value]);
    return { buckets, inf: mine.find((x) => x.labels.le === '+Inf')?.value ?? NaN, sum: one('gatehouse_routing_delivery_latency_seconds_sum'), count: one('gatehouse_routing_delivery_latency_seconds_count') };
  }

  it("times each delivery from the log's enqueue: the Event Hubs reader's and a webhook's, whose series goes with the endpoint", { timeout: 60_000 }, async () => {
    await createDevice('timed-dev');
    await putRouting({
      endpoints: { webhooks: [hook('timed')] },
      routes: [route('timed-hook', "$connectionDeviceId = 'timed-dev'", 'timed'), route('timed-events', "$connectionDeviceId = 'timed-dev'", 'events')],
      fallbackRoute: { isEnabled: false },
    });
    const builtinBefore = (await latencyOf('events', 'builtin'))?.count ?? 0;
    await send('timed-dev', [1, 2, 3, 4, 5].map((i) => msg(`timed-${i}`)));
    await eventually('the webhook to get the 5 messages', () => receiver.tags('/timed').length === 5);
    assert.equal((await builtinTags('timed-dev')).length, 5);

    const hook5 = await latencyOf('timed', 'webhooks');
    assert.ok(hook5 !== undefined, 'the webhook endpoint has a series');
    assert.equal(hook5.count, 5, 'each delivered message once');
    const builtin = await latencyOf('events', 'builtin');
    assert.ok(builtin !== undefined && builtin.count - builtinBefore >= 5, `the reader's transfers counted: ${builtin?.count} after ${builtinBefore}`);
    for (const series of [hook5, builtin]) {
      assert.equal(series.inf, series.count);
      assert.deepEqual(series.buckets.map(([le]) => le), [...series.buckets.map(([le]) => le)].sort((a, b) => a - b), 'bounds ascend');
      for (let i = 1; i < series.buckets.length; i++) assert.ok(series.buckets[i]![1] >= series.buckets[i - 1]![1], 'buckets are cumulative');
      assert.ok(series.sum >= 0 && series.sum / series.count < 30, `mean ${series.sum / series.count} s`);
      // Delivered within the minute of sending: every observation under the 60 s bound.
      assert.equal(series.buckets.find(([le]) => le === 60)?.[1], series.count);
    }

    await putRouting({ endpoints: {}, routes: [], fallbackRoute: { isEnabled: true } });
    // The change applies at once, the endpoint's stop a moment later.
    let left = await latencyOf('timed', 'webhooks');
    for (let i = 0; i < 100 && left !== undefined; i++) {
      await sleep(100);
      left = await latencyOf('timed', 'webhooks');
    }
    assert.equal(left, undefined, 'a removed endpoint has no series');
  });
});

describe("routing the hub's own events", () => {
  it("sends twin change, device lifecycle and connection state events with Azure's properties to the routes on those sources", { timeout: 90_000 }, async () => {
    await putRouting({
      endpoints: { webhooks: [hook('twins'), hook('lifecycle'), hook('connections')] },
      routes: [
        route('twin-events', "opType = 'updateTwin'", 'twins', 'TwinChangeEvents'),
        route('lifecycle-events', 'true', 'lifecycle', 'DeviceLifecycleEvents'),
        route('connection-events', "$connectionDeviceId = 'src-dev'", 'connections', 'DeviceConnectionStateEvents'),
      ],
      fallbackRoute: { isEnabled: true },
    });
    await createDevice('src-dev');
    assert.equal((await rest('PATCH', '/twins/src-dev', { tags: { floor: 3 } })).status, 200);
    await send('src-dev', [msg('src-telemetry')]);
    assert.equal((await rest('DELETE', '/devices/src-dev', undefined, { headers: { 'if-match': '*' } })).status, 204);
    await eventually('every event arrived', () => (receiver.got.get('/lifecycle')?.length ?? 0) >= 2 && (receiver.got.get('/twins')?.length ?? 0) >= 1 && (receiver.got.get('/connections')?.length ?? 0) >= 2);
    const lifecycle = receiver.got.get('/lifecycle') as Array<Envelope & { systemProperties: Record<string, string> }>;
    assert.deepEqual(lifecycle.map((e) => [e.deviceId, e.properties.opType, e.systemProperties['iothub-message-source']]), [
      ['src-dev', 'createDeviceIdentity', 'deviceLifecycleEvents'],
      ['src-dev', 'deleteDeviceIdentity', 'deviceLifecycleEvents'],
    ]);
    const twin = (receiver.got.get('/twins') as Array<Envelope & { systemProperties: Record<string, string> }>)[0];
    assert.equal(twin?.properties['iothub-message-schema'], 'twinChangeNotification');
    assert.equal(twin?.systemProperties['iothub-message-source'], 'twinChangeEvents');
    assert.deepEqual((JSON.parse(twin?.body ?? '{}') as { tags?: unknown }).tags, { floor: 3 });
    const conn = receiver.got.get('/connections') as Array<Envelope & { systemProperties: Record<string, string> }>;
    assert.deepEqual(conn.map((e) => e.properties.opType), ['deviceConnected', 'deviceDisconnected']);
    // No route on those sources sends them to the built-in endpoint: it holds only the telemetry.
    assert.deepEqual(await builtinTags('src-dev'), ['src-telemetry']);
  });
});

describe('routing over REST', () => {
  it('serves the document with an etag, masks secrets, refuses a stale If-Match with 412', { timeout: 30_000 }, async () => {
    const got = await rest('GET', '/routing');
    assert.equal(got.status, 200);
    const etag = got.headers.etag as string;
    assert.match(etag, /^".+"$/);
    const doc = got.body as { endpoints: { webhooks: Array<Record<string, unknown>> }; routes: unknown[] };
    doc.endpoints.webhooks = [{ ...hook('signed'), secret: 'a-long-signing-secret' }];
    doc.routes = [route('signed', 'true', 'signed')];
    const put = await rest('PUT', '/routing', doc, { headers: { 'if-match': etag } });
    assert.equal(put.status, 200);
    assert.equal((put.body as typeof doc).endpoints.webhooks[0]?.secret, '****');
    // Not in the database file (nor its write-ahead log) in the clear.
    for (const f of readdirSync(hub.dataDir).filter((n) => n.startsWith(SQLITE_FILE))) {
      assert.doesNotMatch(readFileSync(join(hub.dataDir, f)).toString('latin1'), /a-long-signing-secret/, f);
    }
    const stale = await rest('PUT', '/routing', doc, { headers: { 'if-match': etag } });
    assert.equal(stale.status, 412);
    assert.equal(errorCode(stale), 'PreconditionFailed');
    // The change is in the audit log: who, what before and after, the secret masked there too.
    type Entry = { action: string; actor: string; target: string; after: { endpoints: { webhooks: Array<{ name: string; secret?: string }> } } };
    let entry: Entry | undefined;
    for (const end = Date.now() + 10_000; entry === undefined && Date.now() < end; await new Promise((r) => setTimeout(r, 200))) {
      const log = await rest('GET', '/auditLog?type=change&limit=50');
      entry = (log.body as { entries: Entry[] }).entries.find((e) => e.action === 'routing.update' && e.after.endpoints.webhooks.some((w) => w.name === 'signed'));
    }
    assert.ok(entry !== undefined, 'a routing.update entry');
    assert.match(entry.actor, /iothubowner/);
    assert.equal(entry.target, 'routing');
    assert.doesNotMatch(JSON.stringify(entry), /a-long-signing-secret/);
  });

  it('answers precise 400s for a bad document and a bad condition', { timeout: 30_000 }, async () => {
    const reserved = await rest('PUT', '/routing', { endpoints: { webhooks: [{ name: 'events', url: 'http://127.0.0.1:9/' }] } });
    assert.equal(reserved.status, 400);
    assert.equal(errorCode(reserved), 'RoutingInvalid');
    const badQuery = await rest('PUT', '/routing', { routes: [route('bad', "level = 'x", 'events')] });
    assert.equal(badQuery.status, 400);
    assert.equal(errorCode(badQuery), 'RoutingQueryInvalid');
    const remote = await rest('PUT', '/routing', { endpoints: { webhooks: [{ name: 'plain', url: 'http://example.com/x' }] } });
    assert.equal(remote.status, 400);
    assert.equal(errorCode(remote), 'RoutingInvalid');
  });

  it('lets the service policy read and test routes but not change them', { timeout: 30_000 }, async () => {
    assert.equal((await serviceRest('GET', '/routing')).status, 200);
    const put = await serviceRest('PUT', '/routing', { routes: [] });
    assert.equal(put.status, 401);
    await putRouting({ endpoints: { webhooks: [hook('app')] }, routes: [route('crit', "level = 'critical'", 'app'), route('hot', '$body.temp > 30', 'app'), { ...route('off', 'true', 'app'), isEnabled: false }] });
    const all = await serviceRest('POST', '/routing/routes/$testall', {
      routingSource: 'DeviceMessages',
      message: { body: '{"temp": 12}', appProperties: { level: 'critical' }, systemProperties: { contentType: 'application/json', contentEncoding: 'utf-8' } },
    });
    assert.equal(all.status, 200);
    const result = all.body as { routes: Array<{ properties: { name: string } }>; notMatched: Array<{ name: string; reason: string }> };
    assert.deepEqual(result.routes.map((r) => r.properties.name), ['crit']);
    assert.deepEqual(result.notMatched.map((r) => r.name), ['hot', 'off']);
    assert.match(result.notMatched[1]?.reason ?? '', /disabled/);
    const one = await serviceRest('POST', '/routing/routes/$testnew', { route: route('t', "$twin.tags.site = 'north'", 'events'), message: { body: '{}' }, twin: { tags: { site: 'north' } } });
    assert.deepEqual((one.body as { result: string }).result, 'true');
    const broken = await serviceRest('POST', '/routing/routes/$testnew', { route: route('t', 'level = ', 'events'), message: { body: '{}' } });
    assert.equal(broken.status, 200);
    const b = broken.body as { result: string; details: { compilationErrors: Array<{ message: string }> } };
    assert.equal(b.result, 'undefined');
    assert.equal(b.details.compilationErrors.length, 1);
  });
});

describe('routing from the CLI (az iot hub message-route, message-endpoint, message-enrichment)', () => {
  const run = (...args: string[]) => {
    const r = cli([...args, '--data-dir', hub.dataDir]);
    return { ...r, json: r.status === 0 && r.stdout.trim() !== '' ? (JSON.parse(r.stdout) as unknown) : undefined };
  };

  it('creates, lists, shows, updates, tests and deletes endpoints, routes and enrichments; the hub applies each at once', { timeout: 120_000 }, async () => {
    await putRouting({ routes: [], fallbackRoute: { isEnabled: true } });
    const ep = run('message-endpoint', 'create', 'webhook', '-n', 'cli-hook', '--url', `http://127.0.0.1:${receiver.port}/cli`, '--secret', 'a-cli-secret-of-16+');
    assert.equal(ep.status, 0, ep.stderr);
    assert.equal((ep.json as { secret: string }).secret, '****');
    assert.deepEqual((run('message-endpoint', 'list').json as Array<{ name: string; type: string }>).map((e) => [e.name, e.type]), [['cli-hook', 'webhook']]);
    assert.equal(run('message-route', 'create', '-n', 'cli-route', '-s', 'DeviceMessages', '--en', 'cli-hook', '-c', "level = 'cli'").status, 0);
    assert.equal(run('message-enrichment', 'create', '-k', 'origin', '-v', '$iothubname', '-e', 'cli-hook').status, 0);
    const shown = run('message-route', 'show', '-n', 'cli-route').json as { endpointNames: string[]; condition: string; isEnabled: boolean };
    assert.deepEqual(shown, { name: 'cli-route', source: 'DeviceMessages', condition: "level = 'cli'", endpointNames: ['cli-hook'], isEnabled: true });

    await send('app-dev', [msg('cli-1', {}, { level: 'cli' }), msg('cli-0', {}, { level: 'other' })]);
    await eventually('the routed message reached the webhook', () => receiver.tags('/cli').length >= 1);
    assert.deepEqual(receiver.tags('/cli'), ['cli-1']);
    assert.deepEqual(receiver.got.get('/cli')?.[0]?.enrichments, { origin: HOST });

    const tested = run('message-route', 'test', '--ap', '{"level": "other"}');
    assert.equal(tested.status, 0, tested.stderr);
    assert.deepEqual((tested.json as { routes: unknown[]; notMatched: Array<{ name: string }> }).notMatched.map((n) => n.name), ['cli-route']);
    const one = run('message-route', 'test', '-n', 'cli-route', '--ap', '{"level": "cli"}');
    assert.equal((one.json as { result: string }).result, 'true');

    assert.equal(run('message-route', 'update', '-n', 'cli-route', '-c', "level = 'cli2'").status, 0);
    assert.equal(run('message-enrichment', 'update', '-k', 'origin', '-v', 'fixed').status, 0);
    await send('app-dev', [msg('cli-2', {}, { level: 'cli2' }), msg('cli-3', {}, { level: 'cli' })]);
    await eventually('the updated route applied', () => receiver.tags('/cli').length >= 2);
    await sleep(1000);
    assert.deepEqual(receiver.tags('/cli'), ['cli-1', 'cli-2']);
    assert.deepEqual(receiver.got.get('/cli')?.[1]?.enrichments, { origin: 'fixed' });

    assert.equal((run('message-route', 'fallback', 'show').json as { isEnabled: boolean }).isEnabled, true);
    assert.equal(run('message-route', 'fallback', 'set', '-e', 'false').status, 0);
    assert.equal(((await rest('GET', '/routing')).body as { fallbackRoute: { isEnabled: boolean } }).fallbackRoute.isEnabled, false);

    // An endpoint a route names cannot go: the hub refuses with the reason.
    const refused = run('message-endpoint', 'delete', '-n', 'cli-hook');
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /RoutingInvalid/);
    assert.equal(run('message-enrichment', 'delete', '-k', 'origin').status, 0);
    assert.equal(run('message-route', 'delete', '-n', 'cli-route').status, 0);
    assert.equal(run('message-endpoint', 'delete', '-n', 'cli-hook').status, 0);
    const after = (await rest('GET', '/routing')).body as { routes: unknown[]; enrichments: unknown[]; endpoints: { webhooks: unknown[] } };
    assert.deepEqual([after.routes, after.enrichments, after.endpoints.webhooks], [[], [], []]);
    const missing = run('message-route', 'show', '-n', 'cli-route');
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /ResourceNotFound/);
  });
});
