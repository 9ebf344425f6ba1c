/**
 * The built-in event stream: group commit, replay-then-live subscriptions, retention (on a real
 * SQLite store), then GET /events over HTTPS and `gatehouse monitor-events` against a hub started
 * in-process.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSasToken } from '../src/auth/sas.js';
import { loadConfig } from '../src/config/schema.js';
import { SecretBox } from '../src/core/secret-box.js';
import { EventStream, renderEvent } from '../src/hub/telemetry/event-stream.js';
import { startHub, type RunningHub } from '../src/hub.js';
import { createLogger } from '../src/log.js';
import { makeEvent } from '../src/store/event-store.case.js';
import type { EventStore, StoredEvent } from '../src/store/event-ports.js';
import type { Store } from '../src/store/ports.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { BIN, removeDir, tempDir } from './support/hub-process.js';
import { testBus } from './support/test-bus.js';

const silent = createLogger('silent');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The SQLite event store behind a wrapper that counts transactions and can be slowed or broken. */
function wrapped(inner: EventStore, o: { writeMs?: number; readMs?: number } = {}) {
  const stats = { appendCalls: 0, failNext: 0 };
  const store: EventStore = {
    async appendEvents(events) {
      stats.appendCalls++;
      if (o.writeMs !== undefined) await sleep(o.writeMs);
      if (stats.failNext > 0) {
        stats.failNext--;
        throw new Error('disk full');
      }
      return inner.appendEvents(events);
    },
    async readEvents(opts) {
      if (o.readMs !== undefined) await sleep(o.readMs);
      return inner.readEvents(opts);
    },
    lastEventSeq: () => inner.lastEventSeq(),
    committedHead: () => inner.committedHead(),
    pruneEvents: (opts) => inner.pruneEvents(opts),
  };
  return { store, stats };
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(5);
  }
}

function seqsOf(events: readonly StoredEvent[]): number[] {
  return events.map((e) => e.seq);
}

describe('EventStream', () => {
  let dir: string;
  let store: Store;
  const now = { t: Date.parse('2030-01-01T00:00:00Z') };
  const clock = { now: () => now.t };
  const stream = (events: EventStore, maxEvents = 1_000_000) => new EventStream(events, clock, { retentionMs: 3_600_000, maxEvents }, silent, testBus());

  before(async () => {
    dir = tempDir('events');
    store = await openSqliteStore(join(dir, 'events.db'), new SecretBox(randomBytes(32)));
  });
  after(async () => {
    await store.close();
    removeDir(dir);
  });

  it('group commit: 500 concurrent appends resolve with increasing seqs in a few transactions', async () => {
    const { store: events, stats } = wrapped(store.events, { writeMs: 5 });
    const s = stream(events);
    const first = s.append(makeEvent('gc', 0));
    await sleep(1); // the first batch is in flight; the rest queue behind it
    const seqs = await Promise.all([first, ...Array.from({ length: 499 }, (_, i) => s.append(makeEvent('gc', i + 1)))]);
    for (let i = 1; i < seqs.length; i++) assert.ok((seqs[i] ?? 0) > (seqs[i - 1] ?? 0));
    assert.ok(stats.appendCalls <= 3, `${stats.appendCalls} transactions`);
    const back = await store.events.readEvents({ after: (seqs[0] ?? 1) - 1, limit: 1000, deviceId: 'gc' });
    assert.deepEqual(seqsOf(back), seqs);
    assert.deepEqual(back.map((e) => e.properties.n), seqs.map((_, i) => String(i)));
    await s.stop();
  });

  it('a failed batch rejects its appends only; later appends go through', async () => {
    const { store: events, stats } = wrapped(store.events);
    const s = stream(events);
    stats.failNext = 1;
    const failed = await Promise.allSettled([s.append(makeEvent('f', 1)), s.append(makeEvent('f', 2))]);
    assert.deepEqual(failed.map((r) => r.status), ['rejected', 'rejected']);
    assert.ok((await s.append(makeEvent('f', 3))) > 0);
    assert.deepEqual((await store.events.readEvents({ after: 0, limit: 10, deviceId: 'f' })).map((e) => e.properties.n), ['3']);
    await s.stop();
  });

  it('subscribe from a seq replays, then goes live without gaps or duplicates (even past the buffer)', async () => {
    const { store: events } = wrapped(store.events, { readMs: 40 });
    const s = stream(events);
    const base = await store.events.lastEventSeq();
    const early = await Promise.all(Array.from({ length: 600 }, (_, i) => s.append(makeEvent('cu', i))));
    const from = early[99] ?? 0;
    const got: StoredEvent[] = [];
    const sub = s.subscribe({ from, deviceId: 'cu' }, (e) => got.push(e));
    // Live appends while the (slow) replay runs: more than the replay buffer holds.
    const late: number[] = [];
    for (let b = 0; b < 12; b++) late.push(...(await Promise.all(Array.from({ length: 1000 }, (_, i) => s.append(makeEvent('cu', 600 + b * 1000 + i))))));
    const expected = [...early.slice(100), ...late];
    await until(() => got.length >= expected.length, 30_000);
    await sleep(50);
    assert.deepEqual(seqsOf(got), expected);
    assert.ok(expected.every((q) => q > base));
    sub.close();
    await s.append(makeEvent('cu', -1));
    assert.equal(got.length, expected.length, 'nothing after close');
    await s.stop();
  });

  it("'now' gets only events appended after the call; a device filter applies live and in replay", async () => {
    const s = stream(store.events);
    const before = await s.append(makeEvent('n1', 1));
    const inFlight = s.append(makeEvent('n1', 2));
    const live: StoredEvent[] = [];
    const filtered: StoredEvent[] = [];
    const replayed: StoredEvent[] = [];
    s.subscribe({ from: 'now' }, (e) => live.push(e));
    s.subscribe({ from: 'now', deviceId: 'n2' }, (e) => filtered.push(e));
    await inFlight;
    const a = await s.append(makeEvent('n2', 3));
    const b = await s.append(makeEvent('n1', 4));
    s.subscribe({ from: before, deviceId: 'n2' }, (e) => replayed.push(e));
    await until(() => replayed.length >= 1);
    assert.deepEqual(seqsOf(live), [a, b]);
    assert.deepEqual(seqsOf(filtered), [a]);
    assert.deepEqual(seqsOf(replayed), [a]);
    await s.stop();
  });

  it('a subscriber that throws is dropped with onError; the others keep receiving', async () => {
    const s = stream(store.events);
    let failed: unknown;
    const good: StoredEvent[] = [];
    s.subscribe({ from: 'now', onError: (err) => (failed = err) }, () => {
      throw new Error('consumer bug');
    });
    s.subscribe({ from: 'now' }, (e) => good.push(e));
    await s.append(makeEvent('t', 1));
    await s.append(makeEvent('t', 2));
    assert.match(String(failed), /consumer bug/);
    assert.equal(good.length, 2);
    await s.stop();
  });

  it('prunes by age and by count, on start and on demand; stop waits for the batch in flight', async () => {
    const dir2 = tempDir('prune');
    const own = await openSqliteStore(join(dir2, 'p.db'), new SecretBox(randomBytes(32)));
    try {
      const { store: events } = wrapped(own.events, { writeMs: 30 });
      const s = stream(events, 5);
      const at = (ms: number) => new Date(now.t + ms).toISOString();
      await Promise.all(Array.from({ length: 10 }, (_, i) => s.append(makeEvent('p', i, { enqueuedTime: at(i * 60_000) }))));
      s.start();
      let left = -1;
      for (let i = 0; i < 200 && left !== 5; i++) {
        await sleep(10);
        left = (await own.events.readEvents({ after: 0, limit: 100 })).length;
      }
      assert.equal(left, 5, 'start prunes to maxEvents');
      now.t += 3_600_000 + 8 * 60_000; // the first 8 events are older than an hour now
      assert.equal(await s.prune(), 3);
      assert.deepEqual((await own.events.readEvents({ after: 0, limit: 100 })).map((e) => e.properties.n), ['8', '9']);
      const pending = s.append(makeEvent('p', 10));
      await s.stop();
      assert.ok((await Promise.race([pending, Promise.resolve(-1)])) > 0, 'stop waited for the batch');
      await assert.rejects(s.append(makeEvent('p', 11)), /stopped/);
    } finally {
      await own.close();
      removeDir(dir2);
    }
  });

  it('renderEvent: JSON, text and binary payloads, moduleId only when set', () => {
    const base = { seq: 7, deviceId: 'd', moduleId: null, enqueuedTime: 'T', properties: { a: '1' }, systemProperties: { 'message-id': 'm' } };
    assert.deepEqual(renderEvent({ ...base, body: Buffer.from('{"t":21.5,"ok":true}') }), {
      deviceId: 'd',
      seq: 7,
      enqueuedTime: 'T',
      payload: { t: 21.5, ok: true },
      properties: { a: '1' },
      systemProperties: { 'message-id': 'm' },
    });
    assert.equal(renderEvent({ ...base, body: Buffer.from('héllo') }).payload, 'héllo');
    assert.equal(renderEvent({ ...base, body: Buffer.alloc(0) }).payload, '');
    assert.deepEqual(renderEvent({ ...base, body: Buffer.from([0xff, 0x00]) }).payload, { base64: '/wA=' });
    assert.equal(renderEvent({ ...base, moduleId: 'm1', body: Buffer.from('1') }).moduleId, 'm1');
  });
});

const HOST = '127.0.40.1';

interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

interface SseStream {
  status: number;
  headers: Record<string, unknown>;
  body: string;
  events: SseEvent[];
  ended: Promise<void>;
  waitFor(n: number): Promise<void>;
  close(): void;
}

/** The hub's CA, trusted explicitly (the shared test CA files may be regenerated by a parallel run). */
let hubCa: Buffer | undefined;

function openSse(path: string, headers: Record<string, string>): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port: 443, method: 'GET', path, headers, ...(hubCa === undefined ? {} : { ca: hubCa }) }, (res) => {
      res.setEncoding('utf8');
      const s: SseStream = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        body: '',
        events: [],
        ended: new Promise((r) => res.on('close', () => r())),
        waitFor: (n) => until(() => s.events.length >= n),
        close: () => req.destroy(),
      };
      res.on('data', (c: string) => {
        s.body += c;
        const blocks = s.body.split('\n\n').slice(0, -1);
        s.events = blocks.flatMap((b) => {
          const f = (name: string) => b.split('\n').find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
          const data = f('data');
          return data === undefined ? [] : [{ id: f('id'), event: f('event') ?? 'message', data }];
        });
      });
      resolve(s);
    });
    req.on('error', reject);
    req.end();
  });
}

function cliAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  // Not cli(): its spawnSync would block this process, which serves the hub the CLI talks to.
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('GET /events and gatehouse monitor-events on a running hub', () => {
  let hub: RunningHub;
  let dataDir: string;
  let seqs: number[];
  const keys = new Map<string, string>();
  const auth = (policy = 'iothubowner') => ({
    authorization: generateSasToken({ resource: HOST, key: keys.get(policy) ?? '', keyName: policy, expiry: Math.floor(Date.now() / 1000) + 600 }),
  });
  const telemetry = (deviceId: string, body: Buffer, moduleId: string | null = null) => {
    const t = new Date().toISOString();
    return { deviceId, moduleId, enqueuedTime: t, body, properties: { site: 'north' }, systemProperties: { 'iothub-connection-device-id': deviceId, 'iothub-enqueuedtime': t } };
  };

  before(async () => {
    dataDir = tempDir('events-hub');
    const config = loadConfig({
      dataDir,
      hostname: HOST,
      bind: HOST,
      logLevel: 'silent',
      tlsCaCert: process.env.GATEHOUSE_TEST_CA_CERT,
      tlsCaKey: process.env.GATEHOUSE_TEST_CA_KEY,
    });
    hub = await startHub(config, silent);
    hubCa = readFileSync(hub.state.caFile);
    for (const p of await hub.store.listPolicies()) keys.set(p.name, p.primaryKey);
    const ev = hub.services.events;
    seqs = await Promise.all([
      ev.append(telemetry('sse-1', Buffer.from('{"temp":21.5}'))),
      ev.append(telemetry('sse-2', Buffer.from('plain text'), 'mod')),
      ev.append(telemetry('sse-1', Buffer.from([0xff, 0x00, 0x01]))),
    ]);
  });

  after(async () => {
    await hub.stop();
    removeDir(dataDir);
  });

  it('replays from a seq as Server-Sent Events with seq ids and renderEvent JSON', async () => {
    const s = await openSse('/events?from=0&api-version=2021-04-12', auth());
    await s.waitFor(3);
    s.close();
    assert.equal(s.status, 200);
    assert.match(String(s.headers['content-type']), /^text\/event-stream/);
    assert.equal(s.headers['cache-control'], 'no-cache');
    assert.deepEqual(s.events.map((e) => e.id), seqs.map(String));
    assert.ok(s.events.every((e) => e.event === 'telemetry'));
    const data = s.events.map((e) => JSON.parse(e.data) as Record<string, unknown>);
    assert.deepEqual(data.map((d) => d.payload), [{ temp: 21.5 }, 'plain text', { base64: '/wAB' }]);
    assert.deepEqual(data.map((d) => d.deviceId), ['sse-1', 'sse-2', 'sse-1']);
    assert.deepEqual(data.map((d) => d.moduleId), [undefined, 'mod', undefined]);
    assert.deepEqual(data[0]?.properties, { site: 'north' });
    assert.equal((data[0]?.systemProperties as Record<string, string>)['iothub-connection-device-id'], 'sse-1');
    assert.equal(data[1]?.seq, seqs[1]);
  });

  it('filters by device and resumes after Last-Event-ID (which wins over from)', async () => {
    const one = await openSse('/events?deviceId=sse-1&from=0', auth());
    await one.waitFor(2);
    const resumed = await openSse('/events?from=now', { ...auth(), 'last-event-id': String(seqs[0]) });
    await resumed.waitFor(2);
    one.close();
    resumed.close();
    assert.deepEqual(one.events.map((e) => Number(e.id)), [seqs[0], seqs[2]]);
    assert.deepEqual(resumed.events.map((e) => Number(e.id)), seqs.slice(1));
  });

  it('from=now delivers live events only', async () => {
    const s = await openSse('/events', auth('service'));
    const seq = await hub.services.events.append(telemetry('sse-live', Buffer.from('"hi"')));
    await s.waitFor(1);
    s.close();
    assert.deepEqual(s.events.map((e) => Number(e.id)), [seq]);
    assert.equal((JSON.parse(s.events[0]?.data ?? '{}') as { payload: unknown }).payload, 'hi');
    seqs.push(seq);
  });

  it('refuses a missing token, a policy without ServiceConnect, and a bad from', async () => {
    const none = await openSse('/events?from=0', {});
    await none.ended;
    assert.equal(none.status, 401);
    assert.match(none.body, /ErrorCode:IotHubUnauthorizedAccess/);
    const reader = await openSse('/events?from=0', auth('registryRead'));
    await reader.ended;
    assert.equal(reader.status, 401);
    const bad = await openSse('/events?from=yesterday', auth());
    await bad.ended;
    assert.equal(bad.status, 400);
    assert.match(bad.body, /ErrorCode:ArgumentInvalid;from must be now/);
  });

  it("gatehouse monitor-events prints one JSON line per event in az's shape and stops after --timeout", async () => {
    const started = Date.now();
    const [all, dev, denied] = await Promise.all([
      cliAsync(['monitor-events', '--data-dir', dataDir, '--from', '0', '--timeout', '2', '--props', 'all']),
      cliAsync(['monitor-events', '--data-dir', dataDir, '--from', '0', '--device', 'sse-2', '--timeout', '2']),
      cliAsync(['monitor-events', '--connection-string', `HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${randomBytes(32).toString('base64')}`, '--ca-file', hub.state.caFile, '--timeout', '2']),
    ]);
    assert.equal(all.status, 0, all.stderr);
    assert.ok(Date.now() - started >= 2000);
    const lines = all.stdout.trim().split('\n');
    assert.equal(lines.length, seqs.length);
    type Line = { event: { origin: string; module: string; payload: unknown; properties: { application: unknown }; annotations: Record<string, unknown> } };
    const parsed = lines.map((l) => (JSON.parse(l) as Line).event);
    assert.deepEqual(parsed.map((p) => p.annotations['x-opt-sequence-number']), seqs);
    assert.equal(parsed[0]?.origin, 'sse-1');
    // No content type: az shows the text; a body that is not UTF-8 is az's placeholder.
    assert.deepEqual(parsed.slice(0, 3).map((p) => p.payload), ['{"temp":21.5}', 'plain text', '{{non-decodable payload}}']);
    assert.deepEqual(parsed.slice(0, 3).map((p) => p.module), ['', 'mod', '']);
    assert.deepEqual(parsed[0]?.properties.application, { site: 'north' });
    assert.equal(parsed[0]?.annotations['iothub-connection-device-id'], 'sse-1');
    assert.equal(dev.status, 0, dev.stderr);
    assert.deepEqual(dev.stdout.trim().split('\n').map((l) => (JSON.parse(l) as Line).event.origin), ['sse-2']);
    assert.equal(denied.status, 1);
    assert.match(denied.stderr, /^error: IotHubUnauthorizedAccess: /);
    assert.equal(denied.stdout, '');
  });

  it('stopping the hub ends open streams instead of waiting for them', async () => {
    const s = await openSse('/events', auth());
    const t0 = Date.now();
    await hub.stop();
    await s.ended;
    assert.ok(Date.now() - t0 < 5000, `stop took ${Date.now() - t0} ms`);
  });
});
