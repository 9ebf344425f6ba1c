/**
 * The event log conformance suite on SQLite as the hub runs it: the log in its own file, written by
 * its worker thread, read on the main thread (each test its own file). Then what is particular to
 * it: a restart, the move of a log kept in the store's file by an older version, a writer
 * thread that dies, and many tails waiting at once.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { describe, it } from 'node:test';
import { isHubError } from '../src/core/errors.js';
import { SecretBox } from '../src/core/secret-box.js';
import { devicesIn, eventLogConformance, makeMessage, type LogHarness, type LogOpenOptions } from '../src/log/log.case.js';
import type { EventLog, LogPlacement, LogRecord } from '../src/log/log-ports.js';
import { tailLoop } from '../src/log/tail.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import type { SqliteDriver } from '../src/store/sqlite/sqlite-driver.js';
import { SqlLogNodes } from './support/log-harness.js';

async function openHarness(opts: LogOpenOptions = {}): Promise<LogHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-log-'));
  const file = join(dir, 'log.db');
  const nodes = new SqlLogNodes();
  const opened: EventLog[] = [];
  try {
    const log = await nodes.openFile(file, opts);
    opened.push(log);
    return {
      log,
      // One process writes a hub's SQLite log; a second instance on the file stands in for a restart or a second reader.
      openPeer: async (peerOpts = {}) => {
        const peer = await nodes.openFile(file, peerOpts);
        opened.push(peer);
        return peer;
      },
      elapse: (ms) => nodes.elapse(ms),
      async close() {
        for (const l of opened) await l.close();
        await nodes.bus.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const l of opened) await l.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

eventLogConformance('sqlite', openHarness);

async function readAll(log: EventLog, partition: number): Promise<LogRecord[]> {
  return log.read(partition, 'earliest', 100_000);
}

describe('event log on SQLite, across a restart', () => {
  it('keeps records, numbers and offsets: the reopened log continues where it stopped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-log-'));
    const file = join(dir, 'log.db');
    try {
      let log = await new SqlLogNodes().openFile(file, { partitionCount: 2 });
      const before = await log.append([makeMessage('r', 1), makeMessage('r', 2)]);
      await log.close();
      log = await new SqlLogNodes().openFile(file);
      const p = log.partitionOf('r');
      assert.equal(log.partitionCount, 2);
      assert.deepEqual((await log.read(p, 'earliest', 10)).map((r) => r.offset), before.map((b) => b.offset));
      const [after] = await log.append([makeMessage('r', 3)]);
      assert.equal(after?.sequenceNumber, 2);
      assert.ok(BigInt(after?.offset ?? '0') > BigInt((before[1] as LogPlacement).offset));
      await log.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('event log on SQLite, kept in the store file by an older version', () => {
  it('moves into its own file at the first start: records, numbers and offsets kept, the old tables gone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-log-'));
    const storeFile = join(dir, 'gatehouse.db');
    const box = new SecretBox(randomBytes(32));
    try {
      // The log as versions before this one kept it: in the store's file, written through the store's driver.
      let store = await openSqliteStore(storeFile, box);
      const nodes = new SqlLogNodes();
      const old = await nodes.open(store.sqlDriver, { partitionCount: 3 });
      const [a, b] = devicesIn(3, [0, 2], 'up');
      const placed = await old.append([makeMessage(a!, 1), makeMessage(b!, 2), makeMessage(a!, 3)]);
      await old.close();
      await store.close();

      store = await openSqliteStore(storeFile, box);
      let movedCount = -1;
      const log = await nodes.openFile(join(dir, 'log.db'), {}, { store: { driver: store.sqlDriver as SqliteDriver, file: storeFile }, onMoved: (n) => (movedCount = n) });
      assert.equal(movedCount, 3);
      assert.equal(log.partitionCount, 3);
      const inA = await readAll(log, 0);
      assert.deepEqual(inA.map((r) => [r.sequenceNumber, r.offset, r.properties.n]), [
        [0, (placed[0] as LogPlacement).offset, '1'],
        [1, (placed[2] as LogPlacement).offset, '3'],
      ]);
      assert.deepEqual((await readAll(log, 2)).map((r) => r.body.toString()), [makeMessage(b!, 2).body.toString()]);
      const [next] = await log.append([makeMessage(a!, 4)]);
      assert.equal(next?.sequenceNumber, 2, 'numbering goes on');
      const tables = await store.sqlDriver.all("SELECT name FROM sqlite_master WHERE name LIKE 'log_%'");
      assert.deepEqual(tables, [], 'dropped from the store file');
      await log.close();

      // The next start finds nothing to move and keeps what it has.
      movedCount = -1;
      const again = await nodes.openFile(join(dir, 'log.db'), {}, { store: { driver: store.sqlDriver as SqliteDriver, file: storeFile }, onMoved: (n) => (movedCount = n) });
      assert.equal(movedCount, -1);
      assert.equal((await readAll(again, 0)).length, 3);
      await again.close();
      await store.close();
      await nodes.bus.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('event log on SQLite, its writer thread dies', () => {
  it('fails what it had not answered with ServiceUnavailable, loses nothing it answered, and the next append starts a new one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-log-'));
    const workers: Worker[] = [];
    const failures: Error[] = [];
    const log = await new SqlLogNodes().openFile(join(dir, 'log.db'), { partitionCount: 1 }, { onWriterStart: (w) => workers.push(w), onWriterFailure: (e) => failures.push(e) });
    try {
      await log.append([makeMessage('w', -1)]);
      assert.equal(workers.length, 1);
      const batches = Array.from({ length: 20 }, (_, b) => log.append(Array.from({ length: 500 }, (_, i) => makeMessage('w', b * 500 + i))));
      await (workers[0] as Worker).terminate();
      const settled = await Promise.allSettled(batches);
      const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      assert.ok(rejected.length > 0, 'some batches were still waiting');
      for (const r of rejected) assert.ok(isHubError(r.reason) && r.reason.code === 'ServiceUnavailable', String(r.reason));
      assert.equal(failures.length, 1, 'reported once');
      const answered = settled.flatMap((s) => (s.status === 'fulfilled' ? s.value : []));
      const after = await log.append([makeMessage('w', 1_000_000)]);
      assert.equal(workers.length, 2, 'a new writer thread');
      const stored = new Set((await readAll(log, 0)).map((r) => r.sequenceNumber));
      for (const p of [...answered, ...after]) assert.ok(stored.has(p.sequenceNumber), `answered ${p.sequenceNumber} is stored`);
    } finally {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('event log on SQLite, a tail stopped while it reads', () => {
  it('ends at once, not at the next poll (60 s here)', async () => {
    const h = await openHarness({ partitionCount: 1 });
    try {
      const log = h.log as unknown as Parameters<typeof tailLoop>[0];
      const ac = new AbortController();
      // The real log's read, with the stop landing while it runs (a routing change, a hub stopping).
      const src: Parameters<typeof tailLoop>[0] = {
        startOf: (p, pos) => log.startOf(p, pos),
        readFrom: async (p, from, limit) => {
          const records = await log.readFrom(p, from, limit);
          ac.abort();
          return records;
        },
        wakeups: log.wakeups,
        closed: log.closed,
      };
      const started = Date.now();
      for await (const batch of tailLoop(src, 0, 'earliest', 60_000, { signal: ac.signal })) assert.fail(`nothing to read, got ${batch.length}`);
      assert.ok(Date.now() - started < 5000, `ended after ${Date.now() - started} ms`);
    } finally {
      await h.close();
    }
  });
});

describe('event log on SQLite, many readers at once', () => {
  it('waits on its closing signal from 30 tails without a MaxListenersExceededWarning', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-log-'));
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    const log = await new SqlLogNodes().openFile(join(dir, 'log.db'), { partitionCount: 2 });
    try {
      const stops = Array.from({ length: 30 }, () => new AbortController());
      const tails = stops.map(async (stop, i) => {
        for await (const batch of log.tail(i % 2, 'latest', { signal: stop.signal })) void batch;
      });
      await new Promise((r) => setTimeout(r, 200));
      for (const s of stops) s.abort();
      await Promise.all(tails);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning')), []);
    } finally {
      process.off('warning', onWarning);
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
