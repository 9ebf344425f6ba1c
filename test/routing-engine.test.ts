/**
 * The routing engine in process, on a real SQLite store and SQL event log, delivering to a real
 * HTTP receiver this test runs (the sink is the simplest HTTP POST one, written here): the routing
 * document (etag, validation, sealed and masked secrets), evaluation (conditions, fallback,
 * `$twin` with its cache), and the dispatchers (order, at least once across the receiver going
 * down and up, health, cursors kept across a restart, an endpoint removed stops).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { SUBJECTS, type HubBus } from '../src/bus/subjects.js';
import { systemClock } from '../src/core/clock.js';
import { HubError } from '../src/core/errors.js';
import type { JsonObject } from '../src/core/json.js';
import { SecretBox } from '../src/core/secret-box.js';
import type { LogMessage, LogPosition, LogRecord } from '../src/log/log-ports.js';
import type { SqlEventLog } from '../src/log/sql/sql-log.js';
import type { SinkFactory } from '../src/routing/dispatch.js';
import type { EndpointSink, RoutedMessage } from '../src/routing/endpoints/sink.js';
import { DEFAULT_TIMING, Dispatcher } from '../src/routing/dispatcher.js';
import { RoutingEngine } from '../src/routing/routing-engine.js';
import type { SqlStore } from '../src/store/sql/sql-store.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { SqlLogNodes } from './support/log-harness.js';
import { testBus } from './support/test-bus.js';

const logger = pino({ level: 'silent' });

/** An HTTP receiver that can be stopped and started again on the same port. */
class Receiver {
  readonly got: Array<{ deviceId: string; n: number; enrichments: Record<string, string> }> = [];
  /** POSTs answered (each one the sink's delivery of a batch). */
  requests = 0;
  /** Messages in each POST, in order. */
  readonly sizes: number[] = [];
  server: Server | undefined;
  port = 0;

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const batch = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Array<{ deviceId: string; body: string; enrichments: Record<string, string> }>;
        for (const m of batch) this.got.push({ deviceId: m.deviceId, n: (JSON.parse(m.body) as { n: number }).n, enrichments: m.enrichments });
        this.requests++;
        this.sizes.push(batch.length);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s !== undefined) await new Promise<void>((resolve) => s.close(() => resolve()));
    s?.closeAllConnections();
  }
}

/** Endpoints named so get a sink that asks its dispatchers to linger this long (ms), as the file sink does. */
const LINGER_PREFIX = 'linger';
const LINGER_MS = 1000;
/** Endpoints named so get a sink that takes up to this many records per delivery, as the file sink does. */
const BIG_PREFIX = 'big';
const BIG_BATCH = 300;

/** The test's sink: POSTs the batch as JSON to the endpoint's url, resolves on a 2xx. */
const httpSinks: SinkFactory = (endpoint) => {
  if (endpoint.type !== 'webhooks') throw new Error(`this test has no ${endpoint.type} sink`);
  const url = endpoint.config.url;
  const sink: EndpointSink = {
    ...(endpoint.config.name.startsWith(LINGER_PREFIX) ? { lingerMs: LINGER_MS } : {}),
    ...(endpoint.config.name.startsWith(BIG_PREFIX) ? { maxBatch: BIG_BATCH } : {}),
    async deliver(batch: readonly RoutedMessage[]) {
      const body = JSON.stringify(batch.map((m) => ({ deviceId: m.record.deviceId, body: m.record.body.toString('utf8'), enrichments: m.enrichments })));
      const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(2000) });
      if (res.status >= 300) throw new Error(`the receiver answered ${res.status}`);
    },
    async close() {},
  };
  return sink;
};

interface Rig {
  store: SqlStore;
  log: SqlEventLog;
  engine: RoutingEngine;
  twins: Map<string, JsonObject>;
  lookups: string[];
  bus: HubBus;
  /** The log's clock (the enqueued time of what is appended). */
  nodes: SqlLogNodes;
  close(): Promise<void>;
  /** Ingestion as hub.ts does it: evaluate, skip when routed nowhere, append with the set. */
  ingest(deviceId: string, n: number, over?: Partial<LogMessage>): Promise<string[]>;
}

async function rig(): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-routing-'));
  const box = new SecretBox(randomBytes(32));
  const store = await openSqliteStore(join(dir, 'hub.db'), box);
  const nodes = new SqlLogNodes();
  nodes.now = Date.now();
  const log = await nodes.open(store.sqlDriver, { partitionCount: 2 });
  const bus = testBus('node-a');
  const twins = new Map<string, JsonObject>();
  const lookups: string[] = [];
  const engine = await RoutingEngine.open({
    meta: store,
    box,
    bus,
    clock: systemClock,
    logger,
    log,
    counters: store.counters,
    twin: async (id) => {
      lookups.push(id);
      return twins.get(id);
    },
    sinks: httpSinks,
    hubName: 'testhub',
    timing: { backoffBaseMs: 50, backoffMaxMs: 300, leaseMs: 3000 },
  });
  await engine.start();
  return {
    store,
    log,
    engine,
    twins,
    lookups,
    bus,
    nodes,
    async ingest(deviceId, n, over = {}) {
      const m: LogMessage = {
        deviceId,
        moduleId: null,
        body: Buffer.from(JSON.stringify({ n, temp: n % 50 })),
        properties: { level: n % 2 === 0 ? 'even' : 'odd' },
        systemProperties: { 'content-type': 'application/json', 'content-encoding': 'utf-8', 'iothub-connection-device-id': deviceId, 'iothub-message-source': 'Telemetry' },
        ...over,
      };
      const endpoints = await engine.router.endpointsFor(m);
      if (endpoints.length > 0) await log.append([{ ...m, endpoints }]);
      return endpoints;
    },
    async close() {
      await engine.stop();
      await log.close();
      await bus.bus.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`never happened: ${what}`);
    await sleep(50);
  }
}

/** `count` JSON messages of one device, `n` numbered from `from`, every tenth hot (`temp` 30), each with the endpoints the routing gives it. */
async function numbered(r: Rig, deviceId: string, from: number, count: number): Promise<LogMessage[]> {
  const out: LogMessage[] = [];
  for (let n = from; n < from + count; n++) {
    const m: LogMessage = {
      deviceId,
      moduleId: null,
      body: Buffer.from(JSON.stringify({ n, temp: n % 10 === 0 ? 30 : 0 })),
      properties: {},
      systemProperties: { 'content-type': 'application/json', 'content-encoding': 'utf-8', 'iothub-connection-device-id': deviceId, 'iothub-message-source': 'Telemetry' },
    };
    out.push({ ...m, endpoints: await r.engine.router.endpointsFor(m) });
  }
  return out;
}

/** Routing with one webhook endpoint that every device message goes to, and no fallback. */
async function everythingTo(r: Rig, name: string, url: string): Promise<void> {
  await r.engine.service.replace(
    {
      endpoints: { webhooks: [{ name, url, secret: 's3cret-s3cret-s3cret' }] },
      routes: [{ name: 'all', source: 'DeviceMessages', condition: 'true', endpointNames: [name], isEnabled: true }],
      fallbackRoute: { isEnabled: false },
    },
    undefined,
    'test',
  );
}

function routingDoc(url: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    endpoints: { webhooks: [{ name: 'hook', url, secret: 's3cret-s3cret-s3cret' }] },
    routes: [{ name: 'hot', source: 'DeviceMessages', condition: '$body.temp > 20', endpointNames: ['hook'], isEnabled: true }],
    fallbackRoute: { isEnabled: true },
    ...over,
  };
}

describe('routing document', () => {
  let r: Rig;
  before(async () => (r = await rig()));
  after(() => r.close());

  it('starts with no routes and the fallback route on, and stores a change under a new etag', async () => {
    const first = r.engine.service.view();
    assert.deepEqual(first.routing.routes, []);
    assert.equal(first.routing.fallbackRoute.isEnabled, true);
    assert.deepEqual(first.routing.fallbackRoute.endpointNames, ['events']);
    const changed = await r.engine.service.replace(routingDoc('http://127.0.0.1:9/x'), undefined, 'test');
    assert.notEqual(changed.etag, first.etag);
    assert.equal(r.engine.service.view().etag, changed.etag);
    await assert.rejects(r.engine.service.replace(routingDoc('http://127.0.0.1:9/y'), first.etag, 'test'), (e: unknown) => e instanceof HubError && e.code === 'PreconditionFailed');
    await r.engine.service.replace(routingDoc('http://127.0.0.1:9/y'), `"${changed.etag}"`, 'test');
  });

  it('seals endpoint secrets at rest, masks them in what it shows, and keeps them when sent back masked', async () => {
    const raw = (await r.store.getMeta('routing')) as string;
    assert.doesNotMatch(raw, /s3cret-s3cret/);
    const view = r.engine.service.view();
    assert.equal(view.routing.endpoints.webhooks[0]?.secret, '****');
    await r.engine.service.replace(view.routing, view.etag, 'test');
    assert.equal(r.engine.service.current.routing.endpoints.webhooks[0]?.secret, 's3cret-s3cret-s3cret');
    const pg = { name: 'pg', connectionString: 'postgres://app:pa55word@127.0.0.1:5432/test', table: 'telemetry' };
    await r.engine.service.replace({ ...view.routing, endpoints: { ...view.routing.endpoints, postgresTables: [pg] } }, undefined, 'test');
    assert.equal(r.engine.service.view().routing.endpoints.postgresTables[0]?.connectionString, 'postgres://app:****@127.0.0.1:5432/test');
    assert.doesNotMatch((await r.store.getMeta('routing')) as string, /pa55word/);
    // A masked secret for an endpoint with nothing stored is refused, not stored as ****.
    await assert.rejects(
      r.engine.service.replace({ endpoints: { webhooks: [{ name: 'other', url: 'http://127.0.0.1:9/', secret: '****' }] } }, undefined, 'test'),
      (e: unknown) => e instanceof HubError && e.code === 'RoutingInvalid',
    );
  });

  it('refuses what Azure refuses, naming the problem', async () => {
    const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
      ['events is reserved', { endpoints: { webhooks: [{ name: 'events', url: 'http://127.0.0.1:9/' }] } }, 'RoutingInvalid', /events is reserved/],
      ['names unique across types', { endpoints: { webhooks: [{ name: 'a', url: 'http://127.0.0.1:9/' }], files: [{ name: 'A', directory: '/tmp/x' }] } }, 'RoutingInvalid', /used by another endpoint/],
      ['route to a missing endpoint', { routes: [{ name: 'r', source: 'DeviceMessages', condition: 'true', endpointNames: ['nope'], isEnabled: true }] }, 'RoutingInvalid', /no endpoint named nope/],
      ['unknown source', { routes: [{ name: 'r', source: 'Bogus', condition: 'true', endpointNames: ['events'], isEnabled: true }] }, 'RoutingInvalid', /source/],
      ['101 routes', { routes: Array.from({ length: 101 }, (_, i) => ({ name: `r${i}`, source: 'DeviceMessages', condition: 'true', endpointNames: ['events'], isEnabled: true })) }, 'RoutingInvalid', /routes/],
      ['11 endpoints of a type', { endpoints: { webhooks: Array.from({ length: 11 }, (_, i) => ({ name: `h${i}`, url: 'http://127.0.0.1:9/' })) } }, 'RoutingInvalid', /webhooks/],
      ['a condition that does not compile', { routes: [{ name: 'bad', source: 'DeviceMessages', condition: '$body.temp >', endpointNames: ['events'], isEnabled: true }] }, 'RoutingQueryInvalid', /routes\.bad\.condition/],
      ['an enrichment value that is not one', { enrichments: [{ key: 'k', value: '$body.x', endpointNames: ['events'] }] }, 'RoutingQueryInvalid', /enrichments\.k\.value/],
    ];
    for (const [what, doc, code, message] of cases) {
      await assert.rejects(r.engine.service.replace(doc, undefined, 'test'), (e: unknown) => e instanceof HubError && e.code === code && message.test(e.message), what);
    }
  });
});

describe('routing evaluation and delivery', () => {
  let r: Rig;
  const receiver = new Receiver();
  before(async () => {
    r = await rig();
    await receiver.start();
  });
  after(async () => {
    await r.close();
    await receiver.stop();
  });

  it('routes by condition, falls back to events for the rest, and stores nothing routed nowhere', async () => {
    await r.engine.service.replace(routingDoc(`http://127.0.0.1:${receiver.port}/in`), undefined, 'test');
    assert.deepEqual(await r.ingest('d1', 30), ['hook']);
    assert.deepEqual(await r.ingest('d1', 10), ['events']);
    await r.engine.service.replace(routingDoc(`http://127.0.0.1:${receiver.port}/in`, { fallbackRoute: { isEnabled: false } }), undefined, 'test');
    assert.deepEqual(await r.ingest('d1', 11), []);
    assert.deepEqual(await r.ingest('d1', 31), ['hook']);
    await eventually('both hot messages delivered', () => receiver.got.length >= 2);
    assert.deepEqual(receiver.got.map((g) => g.n), [30, 31]);
  });

  it('reads $twin once per device, again after the twin changed on the bus', async () => {
    r.twins.set('t1', { tags: { site: 'north' }, properties: { desired: {}, reported: {} } });
    await r.engine.service.replace(
      routingDoc(`http://127.0.0.1:${receiver.port}/in`, { routes: [{ name: 'north', source: 'DeviceMessages', condition: "$twin.tags.site = 'north'", endpointNames: ['hook'], isEnabled: true }], fallbackRoute: { isEnabled: false } }),
      undefined,
      'test',
    );
    r.lookups.length = 0;
    assert.deepEqual(await r.ingest('t1', 1), ['hook']);
    assert.deepEqual(await r.ingest('t1', 2), ['hook']);
    assert.deepEqual(r.lookups, ['t1']);
    r.twins.set('t1', { tags: { site: 'south' }, properties: { desired: {}, reported: {} } });
    assert.deepEqual(await r.ingest('t1', 3), ['hook'], 'the cached twin still says north');
    r.bus.publish(SUBJECTS.twinChanged, { deviceId: 't1', moduleId: null });
    await sleep(50);
    assert.deepEqual(await r.ingest('t1', 4), []);
    assert.deepEqual(r.lookups, ['t1', 't1']);
  });

  it('delivers in order per device with enrichments, and loses nothing while the receiver is down', async () => {
    await r.engine.service.replace(
      routingDoc(`http://127.0.0.1:${receiver.port}/in`, {
        routes: [{ name: 'all', source: 'DeviceMessages', condition: 'true', endpointNames: ['hook'], isEnabled: true }],
        enrichments: [
          { key: 'hub', value: '$iothubname', endpointNames: ['hook'] },
          { key: 'fixed', value: 'v1', endpointNames: ['hook'] },
        ],
      }),
      undefined,
      'test',
    );
    receiver.got.length = 0;
    const devices = ['o1', 'o2', 'o3'];
    for (let n = 0; n < 10; n++) for (const d of devices) await r.ingest(d, n);
    await eventually('30 delivered', () => receiver.got.length >= 30);
    await receiver.stop();
    for (let n = 10; n < 30; n++) for (const d of devices) await r.ingest(d, n);
    await eventually('the endpoint is unhealthy', async () => (await r.engine.health()).some((h) => h.endpointId === 'hook' && h.healthStatus === 'unhealthy'));
    const sick = (await r.engine.health()).find((h) => h.endpointId === 'hook');
    assert.match(sick?.lastKnownError ?? '', /fetch failed|ECONNREFUSED/);
    await receiver.start();
    await eventually('90 delivered after the receiver came back', () => receiver.got.length >= 90, 20_000);
    for (const d of devices) {
      const ns = receiver.got.filter((g) => g.deviceId === d).map((g) => g.n);
      const firsts = ns.filter((n, i) => ns.indexOf(n) === i);
      assert.deepEqual(firsts, Array.from({ length: 30 }, (_, i) => i), `${d}: every message, in order`);
    }
    assert.deepEqual(receiver.got[0]?.enrichments, { hub: 'testhub', fixed: 'v1' });
    await eventually('healthy again', async () => (await r.engine.health()).find((h) => h.endpointId === 'hook')?.healthStatus === 'healthy');
  });

  it('resumes from the cursor after a restart of delivery, and an endpoint removed gets nothing more', async () => {
    await r.engine.stop();
    receiver.got.length = 0;
    for (let n = 100; n < 105; n++) await r.ingest('o1', n);
    await r.engine.start();
    await eventually('the 5 new ones delivered', () => receiver.got.length >= 5);
    await sleep(300);
    assert.deepEqual(receiver.got.map((g) => g.n), [100, 101, 102, 103, 104]);
    await r.engine.service.replace({ routes: [], fallbackRoute: { isEnabled: true } }, undefined, 'test');
    assert.deepEqual(await r.ingest('o1', 200), ['events']);
    await sleep(500);
    assert.deepEqual(receiver.got.map((g) => g.n), [100, 101, 102, 103, 104]);
    assert.deepEqual(await r.engine.health(), []);
  });

  it('delivers a busy partition mostly routed elsewhere in full batches, not a few records per read', async () => {
    await r.engine.service.replace(routingDoc(`http://127.0.0.1:${receiver.port}/in`), undefined, 'test');
    await r.engine.stop();
    receiver.got.length = 0;
    receiver.requests = 0;
    // 1,000 messages of one device (one partition) in one append; one in ten is hot (for the hook), the rest fall back to events.
    await r.log.append(await numbered(r, 'busy-1', 1000, 1000));
    await r.engine.start();
    await eventually('the 100 hot ones delivered', () => receiver.got.length >= 100);
    await sleep(300);
    assert.deepEqual(
      receiver.got.map((g) => g.n),
      Array.from({ length: 100 }, (_, i) => 1000 + i * 10),
      'every hot message once, in order',
    );
    // The tail reads 100 records at a time, 10 of them hot: one POST per read would be 10.
    assert.ok(receiver.requests <= 2, `the 100 came in ${receiver.requests} deliveries`);
  });

  it('delivers what a full read batch gathered when the partition then goes quiet, without waiting for the next message', async () => {
    await r.engine.service.replace(routingDoc(`http://127.0.0.1:${receiver.port}/in`), undefined, 'test');
    await r.engine.stop();
    receiver.got.length = 0;
    // Exactly one read batch (100), one in ten for the hook: the tail's batch is full, so the
    // dispatcher reads on for more, and nothing more comes.
    await r.log.append(await numbered(r, 'quiet-1', 3000, DEFAULT_TIMING.maxBatch));
    await r.engine.start();
    await eventually('the 10 hot ones delivered with nothing appended after them', () => receiver.got.length >= 10, 5000);
    assert.deepEqual(
      receiver.got.map((g) => g.n),
      Array.from({ length: 10 }, (_, i) => 3000 + i * 10),
    );
  });

  it("a sink's linger gathers messages that come one by one into one delivery", async () => {
    await everythingTo(r, `${LINGER_PREFIX}-hook`, `http://127.0.0.1:${receiver.port}/in`);
    receiver.got.length = 0;
    receiver.requests = 0;
    // One append each, the tail caught up after each: without the linger, one POST per message.
    for (let n = 0; n < 6; n++) await r.ingest('slow-1', n);
    await eventually('the 6 delivered', () => receiver.got.length >= 6);
    assert.deepEqual(receiver.got.map((g) => g.n), [0, 1, 2, 3, 4, 5]);
    assert.ok(receiver.requests <= 2, `6 messages in ${receiver.requests} deliveries`);
    await r.engine.service.replace({ routes: [], fallbackRoute: { isEnabled: true } }, undefined, 'test');
  });

  it("a sink's own batch size: a backlog goes in batches of up to that many, in order", async () => {
    await everythingTo(r, `${BIG_PREFIX}-hook`, `http://127.0.0.1:${receiver.port}/in`);
    await r.engine.stop();
    receiver.got.length = 0;
    receiver.sizes.length = 0;
    await r.log.append(await numbered(r, 'backlog-1', 0, 1000));
    await r.engine.start();
    await eventually('the 1,000 delivered', () => receiver.got.length >= 1000);
    await sleep(200);
    assert.deepEqual(receiver.got.map((g) => g.n), Array.from({ length: 1000 }, (_, i) => i), 'every message once, in order');
    // The dispatcher's own limit (100) would make it 10 deliveries.
    assert.ok(receiver.sizes.every((n) => n <= BIG_BATCH) && receiver.sizes.length <= 4, `deliveries of ${receiver.sizes.join(', ')}`);
    await r.engine.service.replace({ routes: [], fallbackRoute: { isEnabled: true } }, undefined, 'test');
  });

  it('a dispatcher stopped while it takes its lease stops (a route added and removed at once)', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let asked = 0;
    const d = new Dispatcher({
      endpoint: 'gated',
      partition: 0,
      log: r.log,
      // The lease's transaction answers only once the test lets it: stop() comes in between.
      counters: {
        update: async (keys, now, decide) => (asked++ === 0 ? gate : Promise.resolve()).then(() => r.store.counters.update(keys, now, decide)),
        changedSince: (prefix, since, limit) => r.store.counters.changedSince(prefix, since, limit),
        clear: (prefix, now) => r.store.counters.clear(prefix, now),
        purgeExpired: (now) => r.store.counters.purgeExpired(now),
      },
      sink: { deliver: async () => undefined, close: async () => undefined },
      enrich: async () => ({}),
      nodeId: 'node-a',
      now: Date.now,
      timing: DEFAULT_TIMING,
      onError: (err) => assert.fail(String(err)),
    });
    d.start();
    await sleep(50);
    const stopped = d.stop().then(() => 'stopped');
    release();
    assert.equal(await Promise.race([stopped, sleep(3000).then(() => 'still running after 3 s')]), 'stopped');
  });

  it('applies a change announced by another node', async () => {
    const seen: number[] = [];
    r.engine.service.onChange((s) => seen.push(s.version));
    const before = r.engine.service.current.version;
    // Another node wrote the document: this node hears routing.changed and reads it.
    const doc = JSON.parse((await r.store.getMeta('routing')) as string) as { version: number; etag: string; routing: { fallbackRoute: { isEnabled: boolean } } };
    doc.version += 1;
    doc.etag = 'from-node-b';
    doc.routing.fallbackRoute.isEnabled = false;
    await r.store.setMeta('routing', JSON.stringify(doc));
    await sleep(200);
    assert.notEqual(r.engine.service.current.etag, 'from-node-b', 'nothing applied before the announcement');
    r.bus.publish(SUBJECTS.routingChanged, { etag: doc.etag, version: doc.version });
    await eventually('the new version applied', () => r.engine.service.current.etag === 'from-node-b', 1000);
    assert.deepEqual(seen, [before + 1]);
    assert.deepEqual(await r.ingest('o1', 300), []);
  });
});

describe('a new endpoint', () => {
  it('starts reading the log where the endpoint first appeared, not at the oldest record retained', async () => {
    const r = await rig();
    const receiver = new Receiver();
    await receiver.start();
    try {
      // An hour of telemetry before the endpoint existed: none of it can be routed to the endpoint.
      r.nodes.now = Date.now() - 3600_000;
      for (let n = 0; n < 40; n++) assert.deepEqual(await r.ingest(`old-${n % 4}`, n), ['events']);
      r.nodes.now = Date.now();
      // What the dispatchers' tails start at, and how many records they are handed.
      const starts: LogPosition[] = [];
      let handed = 0;
      const tail = r.log.tail.bind(r.log);
      r.log.tail = (partition, position, opts) => {
        starts.push(position);
        const inner = tail(partition, position, opts);
        return (async function* (): AsyncGenerator<LogRecord[]> {
          for await (const batch of inner) {
            handed += batch.length;
            yield batch;
          }
        })();
      };
      await r.engine.service.replace(routingDoc(`http://127.0.0.1:${receiver.port}/in`), undefined, 'test');
      assert.deepEqual(await r.ingest('new-1', 30), ['hook']);
      await eventually('the new record delivered', () => receiver.got.length >= 1);
      await sleep(200);
      assert.deepEqual(receiver.got.map((g) => g.n), [30]);
      assert.equal(starts.length, 2, 'one tail per partition');
      for (const s of starts) assert.ok(typeof s === 'object' && 'enqueuedTime' in s, `a tail started at ${JSON.stringify(s)}`);
      assert.equal(handed, 1, 'the dispatchers read the one record stored since, not the hour before');
      // A later change of the routing keeps the endpoint's first appearance; delivery goes on from its cursor.
      await r.engine.service.replace(routingDoc(`http://127.0.0.1:${receiver.port}/in`, { fallbackRoute: { isEnabled: false } }), undefined, 'test');
      assert.deepEqual(await r.ingest('new-1', 31), ['hook']);
      await eventually('the next delivered', () => receiver.got.length >= 2);
      assert.deepEqual(receiver.got.map((g) => g.n), [30, 31]);
    } finally {
      await r.close();
      await receiver.stop();
    }
  });
});
