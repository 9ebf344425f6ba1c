/** The event log conformance suite on SQLite (each test its own database file). */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SecretBox } from '../src/core/secret-box.js';
import { eventLogConformance, makeMessage, type LogHarness, type LogOpenOptions } from '../src/log/log.case.js';
import type { EventLog, LogPlacement } from '../src/log/log-ports.js';
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
