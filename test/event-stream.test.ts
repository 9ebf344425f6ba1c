/**
 * The hub's one event stream, the partitioned log: ingestion's group commit (LogWriter) and the
 * retention flags on a real SQLite log, the built-in reader that merges every partition with
 * resumable positions (log-feed.ts), then GET /events over HTTPS and `gatehouse monitor-events`
 * against a hub started in-process.
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
import { openHubEventLog } from '../src/hub/event-log.js';
import { formatCursor, openLogFeed, parseCursor, type FeedOptions } from '../src/hub/telemetry/log-feed.js';
import { LogWriter } from '../src/hub/telemetry/log-writer.js';
import { renderEvent } from '../src/hub/telemetry/render-event.js';
import { startHub, type RunningHub } from '../src/hub.js';
import { createLogger } from '../src/log.js';
import { devicesIn, makeMessage } from '../src/log/log.case.js';
import type { EventLog, LogMessage, LogPlacement, LogRecord } from '../src/log/log-ports.js';
import { openSqlEventLog, type SqlEventLog } from '../src/log/sql/sql-log.js';
import { openSqliteLog } from '../src/log/sqlite/open-sqlite-log.js';
import type { SqlStore } from '../src/store/sql/sql-store.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { BIN, removeDir, tempDir } from './support/hub-process.js';
import { testBus } from './support/test-bus.js';

const silent = createLogger('silent');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(5);
  }
}

/** A log behind a wrapper that counts append transactions and can slow or break them. */
function wrapped(inner: EventLog, o: { writeMs?: number } = {}) {
  const stats = { appendCalls: 0, failNext: 0 };
  const log: EventLog = {
    partitionCount: inner.partitionCount,
    partitionOf: (id) => inner.partitionOf(id),
    async append(messages) {
      stats.appendCalls++;
      if (o.writeMs !== undefined) await sleep(o.writeMs);
      if (stats.failNext > 0) {
        stats.failNext--;
        throw new Error('disk full');
      }
      return inner.append(messages);
    },
    read: (p, pos, limit) => inner.read(p, pos, limit),
    tail: (p, pos, opts) => inner.tail(p, pos, opts),
    partitionProperties: (p) => inner.partitionProperties(p),
    enforceRetention: () => inner.enforceRetention(),
    close: async () => undefined,
  };
  return { log, stats };
}

const label = (r: LogRecord) => `${r.deviceId}:${r.properties.n}`;

describe('the event log on SQLite: group commit, retention flags, the merged reader', () => {
  let dir: string;
  let store: SqlStore;
  let log: SqlEventLog;

  before(async () => {
    dir = tempDir('events');
    store = await openSqliteStore(join(dir, 'events.db'), new SecretBox(randomBytes(32)));
    log = await openSqlEventLog(store.sqlDriver, { partitionCount: 4, retention: { maxAgeMs: 3_600_000, maxBytesPerPartition: 1 << 30 }, bus: testBus(), pollMs: 200 });
  });
  after(async () => {
    await log.close();
    await store.close();
    removeDir(dir);
  });

  it('group commit: 500 concurrent appends land in a few transactions, in order per device', async () => {
    const { log: counted, stats } = wrapped(log, { writeMs: 5 });
    const w = new LogWriter(counted, silent);
    const first = w.append(makeMessage('gc', 0));
    await sleep(1); // the first batch is in flight; the rest queue behind it
    const placed = await Promise.all([first, ...Array.from({ length: 499 }, (_, i) => w.append(makeMessage('gc', i + 1)))]);
    assert.ok(stats.appendCalls <= 3, `${stats.appendCalls} transactions`);
    const p = log.partitionOf('gc');
    assert.ok(placed.every((x) => x.partition === p));
    for (let i = 1; i < placed.length; i++) assert.equal(placed[i]!.sequenceNumber, placed[i - 1]!.sequenceNumber + 1);
    const back = await log.read(p, { sequenceNumber: placed[0]!.sequenceNumber, inclusive: true }, 1000);
    assert.deepEqual(back.map((r) => r.properties.n), placed.map((_, i) => String(i)));
    await w.stop();
  });

  it('a failed batch rejects its appends only; later appends go through; stop waits, then refuses', async () => {
    const { log: flaky, stats } = wrapped(log, { writeMs: 20 });
    const w = new LogWriter(flaky, silent);
    stats.failNext = 1;
    const failed = await Promise.allSettled([w.append(makeMessage('f', 1)), w.append(makeMessage('f', 2))]);
    assert.deepEqual(failed.map((r) => r.status), ['rejected', 'rejected']);
    const ok = await w.append(makeMessage('f', 3));
    const stored = await log.read(ok.partition, 'earliest', 10_000);
    assert.deepEqual(stored.filter((r) => r.deviceId === 'f').map((r) => r.properties.n), ['3']);
    const pending = w.append(makeMessage('f', 4));
    await w.stop();
    assert.ok((await Promise.race([pending, Promise.resolve(undefined)])) !== undefined, 'stop waited for the batch');
    await assert.rejects(w.append(makeMessage('f', 5)), /stopped/);
  });

  it('batches in flight (the SQLite log\'s writer thread): the next batch goes before the first is answered; each device keeps its order', async () => {
    const own = tempDir('inflight');
    const threaded = await openSqliteLog({ file: join(own, 'log.db'), partitionCount: 2, retention: { maxAgeMs: 3_600_000, maxBytesPerPartition: 1 << 30 } });
    let open = 0;
    let most = 0;
    const counting: EventLog = {
      ...wrapped(threaded).log,
      async append(messages) {
        most = Math.max(most, ++open);
        try {
          return await threaded.append(messages);
        } finally {
          open--;
        }
      },
    };
    const w = new LogWriter(counting, silent, { inFlight: 4 });
    try {
      const placed: Promise<LogPlacement>[] = [];
      for (let turn = 0; turn < 20; turn++) {
        for (let i = 0; i < 50; i++) placed.push(w.append(makeMessage(`d${i % 5}`, turn * 50 + i)));
        await new Promise((r) => setImmediate(r));
      }
      const done = await Promise.all(placed);
      assert.ok(most > 1, `at most ${most} batch in flight`);
      for (let d = 0; d < 5; d++) {
        const mine = done.filter((_, k) => k % 5 === d);
        for (let k = 1; k < mine.length; k++) assert.ok(mine[k]!.sequenceNumber > mine[k - 1]!.sequenceNumber, `d${d} in order`);
        const back = await threaded.read(threaded.partitionOf(`d${d}`), 'earliest', 10_000);
        assert.deepEqual(back.filter((r) => r.deviceId === `d${d}`).map((r) => Number(r.properties.n)), mine.map((_, k) => k * 5 + d));
      }
    } finally {
      await w.stop();
      await threaded.close();
      removeDir(own);
    }
  });

  it('stop ends a retention pass that is running instead of waiting for it', { timeout: 10_000 }, async () => {
    let given: AbortSignal | undefined;
    const slow: EventLog = {
      ...wrapped(log).log,
      // A pass over a large backlog: it ends only when told to.
      enforceRetention: (signal) =>
        new Promise<number>((resolve) => {
          given = signal;
          signal?.addEventListener('abort', () => resolve(0));
        }),
    };
    const w = new LogWriter(slow, silent);
    w.start();
    await until(() => given !== undefined);
    await w.stop();
    assert.equal(given?.aborted, true);
  });

  it('a retention pass stops between two deletes when its signal aborts; the next pass finishes the job', { timeout: 60_000 }, async () => {
    const own = tempDir('prune-stop');
    const retention = { maxAgeMs: 24 * 3600_000, maxBytesPerPartition: 1 << 30 };
    const file = await openSqliteLog({ file: join(own, 'log.db'), partitionCount: 1, retention, bus: testBus() });
    try {
      const pad = Buffer.from('z'.repeat(600));
      for (let i = 0; i < 30_000; i += 1000) await file.append(Array.from({ length: 1000 }, (_, k) => makeMessage('prune', i + k, { body: pad })));
      retention.maxBytesPerPartition = 3000 * 700;
      const stop = new AbortController();
      const pass = file.enforceRetention(stop.signal);
      // Abort once the first chunk went.
      let begin = 0;
      while (begin === 0) {
        await sleep(1);
        begin = (await file.partitionProperties(0)).beginningSequenceNumber;
      }
      stop.abort();
      const first = await pass;
      assert.ok(first >= 1000 && first < 20_000, `${first} deleted before the stop`);
      const after = await file.read(0, 'earliest', 1);
      assert.equal(after[0]?.sequenceNumber, first, 'what is left starts where the deletes stopped');
      const second = await file.enforceRetention();
      const kept = await file.read(0, 'earliest', 30_000);
      assert.equal(first + second + kept.length, 30_000);
      assert.ok(kept.length >= 2900 && kept.length <= 3200, `${kept.length} kept`);
      assert.equal(kept.at(-1)?.properties.n, '29999');
    } finally {
      await file.close();
      removeDir(own);
    }
  });

  it('--event-max-count is a byte budget per partition at 1 KiB a message; retention keeps the newest', async () => {
    const own = tempDir('retention');
    const s = await openSqliteStore(join(own, 'r.db'), new SecretBox(randomBytes(32)));
    try {
      const w = await openHubEventLog(s, { partitions: 2, eventRetentionHours: 24, eventMaxCount: 10 }, testBus(), silent);
      const [dev] = devicesIn(2, [1], 'ret');
      // ~1 KiB records: 5 KiB of budget in partition 1 keeps the last 4 or 5.
      const pad = 'y'.repeat(900);
      for (let i = 0; i < 20; i++) await w.append(makeMessage(dev!, i, { body: Buffer.from(pad) }));
      await w.enforceRetention();
      const left = await w.log.read(1, 'earliest', 100);
      assert.ok(left.length >= 4 && left.length <= 5, `${left.length} kept`);
      assert.equal(left.at(-1)?.properties.n, '19');
      assert.equal((await w.log.partitionProperties(1)).lastEnqueuedSequenceNumber, 19, 'numbers are not reused');
      await w.stop();
    } finally {
      await s.close();
      removeDir(own);
    }
  });

  describe('the merged reader (GET /events, monitor-events)', () => {
    const devs = devicesIn(4, [0, 1, 2, 3], 'feed');
    const collect = async (opts: FeedOptions) => {
      const got: Array<{ r: LogRecord; id: string }> = [];
      let failed: unknown;
      const feed = (await openLogFeed(log, { ...opts, onError: (err) => (failed = err) })).start((r, id) => got.push({ r, id }));
      return { got, feed, failed: () => failed };
    };
    const send = (n: number, from = 0) => Promise.all(Array.from({ length: n }, (_, i) => log.append([makeMessage(devs[i % 4]!, from + i)])));

    it('from earliest merges every partition, in order per partition; a resumed id picks up right after it', async () => {
      await send(40);
      const all = await collect({ from: 'earliest' });
      await until(() => all.got.filter((g) => g.r.deviceId.startsWith('feed')).length >= 40);
      const mine = all.got.filter((g) => g.r.deviceId.startsWith('feed'));
      for (const d of devs) {
        const ns = mine.filter((g) => g.r.deviceId === d).map((g) => Number(g.r.properties.n));
        assert.deepEqual(ns, [...ns].sort((a, b) => a - b), `${d} in order`);
        assert.equal(ns.length, 10);
      }
      // Each id is the position after its record: that partition's component is the record's number.
      for (const g of all.got) assert.equal(parseCursor(g.id, 4, 'id')[g.r.partition], g.r.sequenceNumber);
      const cut = mine[17]!;
      const resumed = await collect({ from: parseCursor(cut.id, 4, 'id') });
      await send(8, 100); // live records after the replay
      await until(() => all.got.filter((g) => g.r.deviceId.startsWith('feed')).length >= 48);
      const expected = all.got.slice(all.got.indexOf(cut) + 1).map((g) => label(g.r));
      await until(() => resumed.got.length >= expected.length);
      await sleep(300);
      assert.deepEqual(resumed.got.map((g) => label(g.r)).sort(), [...expected].sort(), 'no gap, no duplicate');
      all.feed.close();
      resumed.feed.close();
    });

    it("'now' gets only later records; a device filter reads its partition only; the ids stay whole", async () => {
      const live = await collect({ from: 'now' });
      const one = await collect({ from: 'now', deviceId: devs[2]! });
      const before = live.feed.cursor();
      await send(8, 200);
      await until(() => live.got.length >= 8 && one.got.length >= 2);
      await sleep(300);
      assert.deepEqual(live.got.map((g) => label(g.r)).sort(), Array.from({ length: 8 }, (_, i) => `${devs[i % 4]}:${200 + i}`).sort());
      assert.deepEqual(one.got.map((g) => label(g.r)), [`${devs[2]}:202`, `${devs[2]}:206`]);
      const id = parseCursor(one.got.at(-1)!.id, 4, 'id');
      const start = parseCursor(before, 4, 'id');
      assert.deepEqual([id[0], id[1], id[3]], [start[0], start[1], start[3]], 'other partitions keep where they started');
      live.feed.close();
      one.feed.close();
      await send(4, 300);
      await sleep(300);
      assert.equal(live.got.length, 8, 'nothing after close');
    });

    it('a consumer that throws ends its feed with onError; positions are checked', async () => {
      let failed: unknown;
      const feed = (await openLogFeed(log, { from: 'now', onError: (err) => (failed = err) })).start(() => {
        throw new Error('consumer bug');
      });
      await send(1, 400);
      await until(() => failed !== undefined);
      assert.match(String(failed), /consumer bug/);
      feed.close();
      assert.deepEqual(parseCursor('3.-1.0.12', 4, 'from'), [3, -1, 0, 12]);
      assert.equal(formatCursor([3, -1, 0, 12]), '3.-1.0.12');
      for (const bad of ['3.-1.0', '1.2.3.4.5', 'a.b.c.d', '-2.0.0.0', '1..2.3', '']) assert.throws(() => parseCursor(bad, 4, 'from'), /from must be now, earliest or a position with 4 sequence numbers/);
    });
  });

  it('renderEvent: JSON, text and binary payloads, moduleId only when set, the record\'s place in the log', () => {
    const base = { partition: 2, sequenceNumber: 7, offset: '1400', deviceId: 'd', moduleId: null, enqueuedTime: 'T', properties: { a: '1' }, systemProperties: { 'message-id': 'm' } };
    assert.deepEqual(renderEvent({ ...base, body: Buffer.from('{"t":21.5,"ok":true}') }), {
      deviceId: 'd',
      partition: 2,
      sequenceNumber: 7,
      offset: '1400',
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

type Data = { deviceId: string; moduleId?: string; partition: number; sequenceNumber: number; offset: string; payload: unknown; properties: unknown; systemProperties: Record<string, string> };
const dataOf = (e: SseEvent) => JSON.parse(e.data) as Data;
const key = (d: { partition: number; sequenceNumber: number }) => `${d.partition}/${d.sequenceNumber}`;

describe('GET /events and gatehouse monitor-events on a running hub', () => {
  let hub: RunningHub;
  let dataDir: string;
  let placed: LogPlacement[];
  const keys = new Map<string, string>();
  const auth = (policy = 'iothubowner') => ({
    authorization: generateSasToken({ resource: HOST, key: keys.get(policy) ?? '', keyName: policy, expiry: Math.floor(Date.now() / 1000) + 600 }),
  });
  const telemetry = (deviceId: string, body: Buffer, moduleId: string | null = null): LogMessage => ({
    deviceId,
    moduleId,
    body,
    properties: { site: 'north' },
    systemProperties: { 'iothub-connection-device-id': deviceId, 'iothub-enqueuedtime': new Date().toISOString() },
  });

  /** With no routes, the fallback route stores every message (telemetry.append says where). */
  const stored = (p: LogPlacement | undefined): LogPlacement => {
    assert.ok(p !== undefined, 'the message was stored');
    return p;
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
    const t = hub.services.telemetry;
    placed = [];
    // One at a time, so the sse-1 records are in send order.
    placed.push(stored(await t.append(telemetry('sse-1', Buffer.from('{"temp":21.5}')))));
    placed.push(stored(await t.append(telemetry('sse-2', Buffer.from('plain text'), 'mod'))));
    placed.push(stored(await t.append(telemetry('sse-1', Buffer.from([0xff, 0x00, 0x01])))));
  });

  after(async () => {
    await hub.stop();
    removeDir(dataDir);
  });

  it('replays from=earliest as Server-Sent Events: position ids, renderEvent JSON with the place in the log', async () => {
    const s = await openSse('/events?from=earliest&api-version=2021-04-12', auth());
    await s.waitFor(3);
    s.close();
    assert.equal(s.status, 200);
    assert.match(String(s.headers['content-type']), /^text\/event-stream/);
    assert.equal(s.headers['cache-control'], 'no-cache');
    assert.ok(s.events.every((e) => e.event === 'telemetry'));
    const data = s.events.map(dataOf);
    assert.deepEqual(data.map(key).sort(), placed.map(key).sort());
    // Each id is the stream's position after the event: per partition the last number passed.
    for (const [i, e] of s.events.entries()) assert.equal(e.id?.split('.')[data[i]!.partition], String(data[i]!.sequenceNumber));
    assert.equal(s.events[0]!.id?.split('.').length, hub.services.eventLog.partitionCount);
    const byDevice = (id: string) => data.filter((d) => d.deviceId === id);
    assert.deepEqual(byDevice('sse-1').map((d) => d.payload), [{ temp: 21.5 }, { base64: '/wAB' }]);
    assert.deepEqual(byDevice('sse-2').map((d) => [d.payload, d.moduleId]), [['plain text', 'mod']]);
    assert.deepEqual(byDevice('sse-1')[0]?.properties, { site: 'north' });
    assert.equal(byDevice('sse-1')[0]?.systemProperties['iothub-connection-device-id'], 'sse-1');
    const second = byDevice('sse-2')[0]!;
    assert.deepEqual([second.partition, second.sequenceNumber, second.offset], [placed[1]!.partition, placed[1]!.sequenceNumber, placed[1]!.offset]);
  });

  it('filters by device and resumes after Last-Event-ID (which wins over from) with no gap and no duplicate', async () => {
    const one = await openSse('/events?deviceId=sse-1&from=earliest', auth());
    await one.waitFor(2);
    const all = await openSse('/events?from=earliest', auth());
    await all.waitFor(3);
    const resumed = await openSse('/events?from=now', { ...auth(), 'last-event-id': all.events[0]!.id! });
    await resumed.waitFor(2);
    const fromQuery = await openSse(`/events?from=${all.events[1]!.id!}`, auth());
    await fromQuery.waitFor(1);
    await sleep(300);
    for (const s of [one, all, resumed, fromQuery]) s.close();
    assert.deepEqual(one.events.map((e) => dataOf(e).payload), [{ temp: 21.5 }, { base64: '/wAB' }]);
    assert.deepEqual(resumed.events.map((e) => e.data), all.events.slice(1).map((e) => e.data));
    assert.deepEqual(fromQuery.events.map((e) => e.data), all.events.slice(2).map((e) => e.data));
  });

  it('from=now (the default) delivers live records only', async () => {
    const s = await openSse('/events', auth('service'));
    const p = stored(await hub.services.telemetry.append(telemetry('sse-live', Buffer.from('"hi"'))));
    await s.waitFor(1);
    await sleep(200);
    s.close();
    assert.deepEqual(s.events.map((e) => key(dataOf(e))), [key(p)]);
    assert.equal(dataOf(s.events[0]!).payload, 'hi');
    placed.push(p);
  });

  it('refuses a missing token, a policy without ServiceConnect, and a bad from or Last-Event-ID', async () => {
    const none = await openSse('/events?from=earliest', {});
    await none.ended;
    assert.equal(none.status, 401);
    assert.match(none.body, /ErrorCode:IotHubUnauthorizedAccess/);
    const reader = await openSse('/events?from=earliest', auth('registryRead'));
    await reader.ended;
    assert.equal(reader.status, 401);
    const n = hub.services.eventLog.partitionCount;
    for (const [path, headers, what] of [
      ['/events?from=yesterday', {}, 'from'],
      ['/events?from=0', {}, 'from'], // an old seq cursor: not a position on this hub
      ['/events', { 'last-event-id': '1.2' }, 'Last-Event-ID'],
    ] as const) {
      const bad = await openSse(path, { ...auth(), ...headers });
      await bad.ended;
      assert.equal(bad.status, 400, path);
      assert.match(bad.body, new RegExp(`ErrorCode:ArgumentInvalid;${what} must be now, earliest or a position with ${n} sequence numbers`));
    }
  });

  it("gatehouse monitor-events prints one JSON line per event in az's shape and stops after --timeout", async () => {
    const started = Date.now();
    const [all, dev, denied, badFrom] = await Promise.all([
      cliAsync(['monitor-events', '--data-dir', dataDir, '--from', 'earliest', '--timeout', '2', '--props', 'all']),
      cliAsync(['monitor-events', '--data-dir', dataDir, '--from', 'earliest', '--device', 'sse-2', '--timeout', '2']),
      cliAsync(['monitor-events', '--connection-string', `HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${randomBytes(32).toString('base64')}`, '--ca-file', hub.state.caFile, '--timeout', '2']),
      cliAsync(['monitor-events', '--data-dir', dataDir, '--from', 'yesterday', '--timeout', '2']),
    ]);
    assert.equal(all.status, 0, all.stderr);
    assert.ok(Date.now() - started >= 2000);
    const lines = all.stdout.trim().split('\n');
    assert.equal(lines.length, placed.length);
    type Line = { event: { origin: string; module: string; payload: unknown; properties: { application: unknown }; annotations: Record<string, unknown> } };
    const parsed = lines.map((l) => (JSON.parse(l) as Line).event);
    // az's annotations carry the record's place in its partition, as an Event Hubs receiver sees it.
    assert.deepEqual(
      parsed.map((p) => `${String(p.annotations['x-opt-sequence-number'])}@${String(p.annotations['x-opt-offset'])}`).sort(),
      placed.map((p) => `${p.sequenceNumber}@${p.offset}`).sort(),
    );
    const sse1 = parsed.filter((p) => p.origin === 'sse-1');
    // No content type: az shows the text; a body that is not UTF-8 is az's placeholder.
    assert.deepEqual(sse1.map((p) => p.payload), ['{"temp":21.5}', '{{non-decodable payload}}']);
    assert.deepEqual(parsed.filter((p) => p.origin === 'sse-2').map((p) => [p.payload, p.module]), [['plain text', 'mod']]);
    assert.deepEqual(sse1[0]?.properties.application, { site: 'north' });
    assert.equal(sse1[0]?.annotations['iothub-connection-device-id'], 'sse-1');
    assert.equal(dev.status, 0, dev.stderr);
    assert.deepEqual(dev.stdout.trim().split('\n').map((l) => (JSON.parse(l) as Line).event.origin), ['sse-2']);
    assert.equal(denied.status, 1);
    assert.match(denied.stderr, /^error: IotHubUnauthorizedAccess: /);
    assert.equal(denied.stdout, '');
    assert.equal(badFrom.status, 2, badFrom.stderr);
    assert.match(badFrom.stderr, /--from must be now, earliest or a position/);
  });

  it('stopping the hub ends open streams instead of waiting for them', async () => {
    const s = await openSse('/events', auth());
    const t0 = Date.now();
    await hub.stop();
    await s.ended;
    assert.ok(Date.now() - t0 < 5000, `stop took ${Date.now() - t0} ms`);
  });
});
