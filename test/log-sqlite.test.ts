/** The event log conformance suite on SQLite (each test its own database file). */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SecretBox } from '../src/core/secret-box.js';
import { devicesIn, eventLogConformance, makeMessage, type LogHarness, type LogOpenOptions } from '../src/log/log.case.js';
import type { EventLog, LogPlacement, LogRecord } from '../src/log/log-ports.js';
import { RecentRecords } from '../src/log/recent.js';
import { tailLoop } from '../src/log/tail.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { SqlLogNodes } from './support/log-harness.js';

async function openHarness(opts: LogOpenOptions = {}): Promise<LogHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-log-'));
  const store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
  const nodes = new SqlLogNodes();
  const opened: EventLog[] = [];
  try {
    const log = await nodes.open(store.sqlDriver, opts);
    opened.push(log);
    return {
      log,
      // One SQLite file has one writer process; a second instance in it stands in for a restart or a second reader.
      openPeer: async (peerOpts = {}) => {
        const peer = await nodes.open(store.sqlDriver, peerOpts);
        opened.push(peer);
        return peer;
      },
      elapse: (ms) => nodes.elapse(ms),
      async close() {
        for (const l of opened) await l.close();
        await nodes.bus.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

eventLogConformance('sqlite', openHarness);

describe('event log on SQLite, across a restart', () => {
  it('keeps records, numbers and offsets: the reopened log continues where it stopped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-log-'));
    const file = join(dir, 'hub.db');
    const box = new SecretBox(randomBytes(32));
    try {
      let store = await openSqliteStore(file, box);
      let log = await new SqlLogNodes().open(store.sqlDriver, { partitionCount: 2 });
      const before = await log.append([makeMessage('r', 1), makeMessage('r', 2)]);
      await log.close();
      await store.close();
      store = await openSqliteStore(file, box);
      log = await new SqlLogNodes().open(store.sqlDriver);
      const p = log.partitionOf('r');
      assert.equal(log.partitionCount, 2);
      assert.deepEqual((await log.read(p, 'earliest', 10)).map((r) => r.offset), before.map((b) => b.offset));
      const [after] = await log.append([makeMessage('r', 3)]);
      assert.equal(after?.sequenceNumber, 2);
      assert.ok(BigInt(after?.offset ?? '0') > BigInt((before[1] as LogPlacement).offset));
      await log.close();
      await store.close();
    } finally {
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

/** A tail running on the log (the log keeps what it appends in memory only while one runs); stop() ends it. */
async function tailing(log: EventLog, partition: number): Promise<{ stop(): Promise<void> }> {
  const ac = new AbortController();
  const running = (async () => {
    for await (const batch of log.tail(partition, 'latest', { signal: ac.signal })) void batch;
  })();
  await new Promise((resolve) => setImmediate(resolve));
  return {
    async stop() {
      ac.abort();
      await running;
    },
  };
}

describe('event log on SQLite, records just appended read from memory (log/recent.ts)', () => {
  it('hands out what a read of the file returns, field for field', async () => {
    const h = await openHarness({ partitionCount: 2 });
    try {
      const peer = await h.openPeer();
      const [dev] = devicesIn(2, [1], 'mem');
      const tail = await tailing(h.log, 1);
      const messages = [
        makeMessage(dev as string, 0),
        makeMessage(dev as string, 1, { moduleId: 'mod-1', endpoints: ['events', 'hook'], properties: { a: 'x', 'ü': 'ÿ' } }),
        makeMessage(dev as string, 2, { endpoints: [], body: Buffer.alloc(0) }),
        makeMessage(dev as string, 3, { systemProperties: { 'content-type': 'application/json', 'iothub-enqueuedtime': '2030-01-01T00:00:00.000Z' } }),
      ];
      await h.log.append(messages);
      // The appending instance answers from memory; its peer (no such appends) reads the file.
      const fromMemory = await h.log.read(1, 'earliest', 10);
      const fromFile = await peer.read(1, 'earliest', 10);
      assert.equal(fromMemory.length, 4);
      assert.deepEqual(fromMemory, fromFile);
      // From memory indeed: the same objects again (a read of the file makes new ones).
      assert.equal((await h.log.read(1, 'earliest', 1))[0], fromMemory[0]);
      assert.notEqual((await peer.read(1, 'earliest', 1))[0], fromFile[0]);
      // No tail left: nothing is kept.
      await tail.stop();
      assert.notEqual((await h.log.read(1, 'earliest', 1))[0], fromMemory[0]);
    } finally {
      await h.close();
    }
  });

  it("never skips another instance's records between its own, and never hands out a record retention removed", async () => {
    const h = await openHarness({ partitionCount: 1, retention: { maxBytesPerPartition: 4 * 1024 } });
    try {
      const peer = await h.openPeer();
      const tail = await tailing(h.log, 0);
      await h.log.append([makeMessage('gap', 0), makeMessage('gap', 1)]);
      await peer.append([makeMessage('gap', 2), makeMessage('gap', 3)]);
      await h.log.append([makeMessage('gap', 4)]);
      const n = (rs: Array<{ properties: Record<string, string> }>) => rs.map((r) => r.properties.n);
      assert.deepEqual(n(await h.log.read(0, 'earliest', 10)), ['0', '1', '2', '3', '4']);
      assert.deepEqual(n(await h.log.read(0, { sequenceNumber: 1, inclusive: true }, 10)), ['1', '2', '3', '4']);
      assert.deepEqual(n(await h.log.read(0, { sequenceNumber: 4, inclusive: true }, 10)), ['4']);
      for (let b = 0; b < 5; b++) await h.log.append(Array.from({ length: 10 }, (_, i) => makeMessage('gap', 5 + b * 10 + i)));
      await h.log.enforceRetention();
      const kept = await h.log.read(0, 'earliest', 100);
      const begin = (await h.log.partitionProperties(0)).beginningSequenceNumber;
      assert.ok(begin > 0);
      assert.equal(kept[0]?.sequenceNumber, begin);
      assert.deepEqual(await h.log.read(0, { sequenceNumber: 5, inclusive: true }, 100), kept.filter((r) => r.sequenceNumber >= 5));
      await tail.stop();
    } finally {
      await h.close();
    }
  });
});

describe('the window of records kept in memory (RecentRecords)', () => {
  const rec = (seq: number, bytes = 10): LogRecord => ({ ...makeMessage('w', seq, { body: Buffer.alloc(bytes) }), partition: 0, sequenceNumber: seq, offset: String(seq * 100), enqueuedTime: '2030-01-01T00:00:00.000Z' });
  const seqs = (rs: LogRecord[] | undefined) => rs?.map((r) => r.sequenceNumber);

  it('answers only for records it holds, starts again at a gap, and keeps the newest within its bounds', () => {
    const w = new RecentRecords(2, 5, 50);
    assert.equal(w.read(0, 0, 10), undefined);
    w.add(0, [rec(0), rec(1), rec(2)]);
    assert.deepEqual(seqs(w.read(0, 1, 10)), [1, 2]);
    assert.deepEqual(seqs(w.read(0, 0, 2)), [0, 1]);
    assert.equal(w.read(0, 3, 10), undefined, 'the next record is not known: read the store');
    assert.equal(w.read(1, 0, 10), undefined);
    w.add(0, [rec(3), rec(4), rec(5)]);
    assert.deepEqual(seqs(w.read(0, 1, 10)), [1, 2, 3, 4, 5], 'five records at most');
    assert.equal(w.read(0, 0, 10), undefined);
    w.add(0, [rec(9)]);
    assert.equal(w.read(0, 5, 10), undefined, 'a gap: what came between is not here');
    assert.deepEqual(seqs(w.read(0, 9, 10)), [9]);
    w.add(0, [rec(10, 20), rec(11, 20), rec(12, 20)]);
    assert.deepEqual(seqs(w.read(0, 11, 10)), [11, 12], 'at most 50 body bytes');
    assert.equal(w.read(0, 10, 10), undefined);
    w.clear();
    assert.equal(w.read(0, 12, 10), undefined);
    // Retention: what the store no longer has goes from memory too.
    w.add(1, [rec(20), rec(21), rec(22)]);
    w.dropBefore(1, 22);
    assert.equal(w.read(1, 21, 10), undefined);
    assert.deepEqual(seqs(w.read(1, 22, 10)), [22]);
    w.dropBefore(1, 30);
    assert.equal(w.read(1, 22, 10), undefined);
  });
});
