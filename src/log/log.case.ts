/**
 * The event log contract (log-ports.ts), one suite for every backend: SQLite, PostgreSQL and NATS
 * JetStream pass it unchanged. Imported only by tests.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isRoutedTo, LogConfigError, type EventLog, type LogMessage, type LogPlacement, type LogRecord, type LogRetention } from './log-ports.js';
import { partitionOf } from './partition-key.js';
import { LogPositionError } from './positions.js';

export interface LogHarness {
  log: EventLog;
  /** Another instance over the same log, as another node (or a restart) would open it. */
  openPeer(opts?: { partitionCount?: number }): Promise<EventLog>;
  /** Lets time pass for the log's clock (the SQL log's is the test's; JetStream's is real). */
  elapse(ms: number): Promise<void>;
  close(): Promise<void>;
}

export interface LogOpenOptions {
  partitionCount?: number;
  retention?: Partial<LogRetention>;
}

export type OpenLog = (opts?: LogOpenOptions) => Promise<LogHarness>;

export function makeMessage(deviceId: string, n: number, over: Partial<LogMessage> = {}): LogMessage {
  return {
    deviceId,
    moduleId: null,
    body: Buffer.from(JSON.stringify({ n, pad: 'x'.repeat(150) })),
    properties: { n: String(n) },
    systemProperties: { 'iothub-connection-device-id': deviceId, 'message-id': `m-${deviceId}-${n}` },
    ...over,
  };
}

/** Device ids that land in the given partitions, one each. */
export function devicesIn(partitionCount: number, partitions: readonly number[], prefix = 'dev'): string[] {
  return partitions.map((p) => {
    for (let i = 0; ; i++) if (partitionOf(`${prefix}-${i}`, partitionCount) === p) return `${prefix}-${i}`;
  });
}

async function readAll(log: EventLog, partition: number): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  let next = 0;
  for (;;) {
    const page = await log.read(partition, { sequenceNumber: next, inclusive: true }, 500);
    if (page.length === 0) return out;
    out.push(...page);
    next = (page.at(-1) as LogRecord).sequenceNumber + 1;
  }
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`never happened: ${what}`);
    await sleep(100);
  }
}

function run(open: OpenLog, opts: LogOpenOptions, fn: (h: LogHarness) => Promise<void>): () => Promise<void> {
  return async () => {
    const h = await open(opts);
    try {
      await fn(h);
    } finally {
      await h.close();
    }
  };
}

function strip(r: LogRecord): LogMessage {
  return { deviceId: r.deviceId, moduleId: r.moduleId, body: r.body, properties: r.properties, systemProperties: r.systemProperties };
}

export function eventLogConformance(name: string, open: OpenLog): void {
  describe(`event log conformance: ${name}`, () => {
    it(
      'has 4 partitions unless told otherwise, and puts a device where the Event Hubs hash does',
      run(open, {}, async ({ log }) => {
        assert.equal(log.partitionCount, 4);
        for (const id of ['dev-1', 'Sensor.Ü', 'a'.repeat(128)]) assert.equal(log.partitionOf(id), partitionOf(id, 4));
      }),
    );

    it('refuses a partition count outside 1-32', async () => {
      for (const bad of [0, 33, 2.5]) await assert.rejects(open({ partitionCount: bad }), LogConfigError, String(bad));
    });

    it(
      'keeps the partition count it was created with: reopening takes it, asking for another is refused',
      run(open, { partitionCount: 6 }, async ({ log, openPeer }) => {
        await log.append([makeMessage('fixed', 1)]);
        const again = await openPeer();
        assert.equal(again.partitionCount, 6);
        assert.equal((await again.read(log.partitionOf('fixed'), 'earliest', 10)).length, 1);
        await assert.rejects(openPeer({ partitionCount: 8 }), LogConfigError);
        const same = await openPeer({ partitionCount: 6 });
        assert.equal(same.partitionCount, 6);
      }),
    );

    it(
      'numbers each partition from 0 in append order, with increasing offsets and enqueued times, and reads back what was written',
      run(open, { partitionCount: 3 }, async ({ log }) => {
        assert.equal(log.partitionCount, 3);
        assert.deepEqual(await log.append([]), []);
        const devices = ['d-a', 'd-b', 'd-c', 'd-d', 'd-e'];
        const msgs = Array.from({ length: 40 }, (_, i) => makeMessage(devices[i % devices.length] as string, i));
        msgs[3] = makeMessage('d-d', 3, { moduleId: 'mod-1', body: Buffer.from(Array.from({ length: 256 }, (_, i) => i)) });
        msgs[4] = makeMessage('d-e', 4, { body: Buffer.alloc(0), properties: { 'ünï code': 'välue', empty: '' } });
        const first = await log.append(msgs.slice(0, 25));
        const second = await log.append(msgs.slice(25));
        const placed = [...first, ...second];
        assert.equal(placed.length, 40);
        const perPartition = new Map<number, LogPlacement[]>();
        placed.forEach((p, i) => {
          assert.equal(p.partition, log.partitionOf((msgs[i] as LogMessage).deviceId));
          perPartition.set(p.partition, [...(perPartition.get(p.partition) ?? []), p]);
        });
        for (const [partition, list] of perPartition) {
          assert.deepEqual(list.map((p) => p.sequenceNumber), list.map((_, i) => i), `partition ${partition} numbers from 0`);
          for (let i = 1; i < list.length; i++) {
            assert.ok(BigInt((list[i] as LogPlacement).offset) > BigInt((list[i - 1] as LogPlacement).offset), 'offsets increase');
            assert.ok((list[i] as LogPlacement).enqueuedTime >= (list[i - 1] as LogPlacement).enqueuedTime, 'enqueued times never go back');
          }
          const back = await log.read(partition, 'earliest', 100);
          assert.deepEqual(
            back.map(({ partition: p, sequenceNumber, offset, enqueuedTime }) => ({ partition: p, sequenceNumber, offset, enqueuedTime })),
            list,
          );
        }
        const all = (await Promise.all([0, 1, 2].map((p) => log.read(p, 'earliest', 100)))).flat();
        for (const r of all) {
          const i = placed.findIndex((p) => p.partition === r.partition && p.sequenceNumber === r.sequenceNumber);
          assert.deepEqual(strip(r), msgs[i], `record ${i} round-trips`);
          assert.ok(Buffer.isBuffer(r.body));
          assert.ok(!Number.isNaN(Date.parse(r.enqueuedTime)) && r.enqueuedTime.endsWith('Z'));
        }
      }),
    );

    it(
      'keeps the endpoints a record is routed to, by read and by tail; a record without them has none',
      run(open, { partitionCount: 1 }, async ({ log }) => {
        await log.append([
          makeMessage('routed', 0, { endpoints: ['events', 'hook-1'] }),
          makeMessage('routed', 1, { endpoints: [] }),
          makeMessage('routed', 2),
        ]);
        const read = await log.read(0, 'earliest', 10);
        assert.deepEqual(read.map((r) => r.endpoints), [['events', 'hook-1'], [], undefined]);
        const ac = new AbortController();
        const tailed: LogRecord[] = [];
        for await (const batch of log.tail(0, 'earliest', { signal: ac.signal })) {
          tailed.push(...batch);
          if (tailed.length >= 3) ac.abort();
        }
        assert.deepEqual(tailed.map((r) => r.endpoints), [['events', 'hook-1'], [], undefined]);
        assert.deepEqual(tailed.map((r) => isRoutedTo(r, 'events')), [true, false, true]);
        assert.deepEqual(tailed.map((r) => isRoutedTo(r, 'hook-1')), [true, false, false]);
      }),
    );

    it(
      'a tail stopped as it starts ends at once, though nothing comes',
      run(open, { partitionCount: 1 }, async ({ log }) => {
        await log.append([makeMessage('stop', 0)]);
        for (const position of ['earliest', 'latest'] as const) {
          const ac = new AbortController();
          const it = log.tail(0, position, { signal: ac.signal })[Symbol.asyncIterator]();
          const first = it.next();
          ac.abort();
          const ended = await Promise.race([first.then(async (r) => r.done === true || (await it.next()).done === true), sleep(3000, undefined, { ref: false }).then(() => 'hung')]);
          assert.equal(ended, true, `a tail from ${position} stopped while it started`);
        }
      }),
    );

    it(
      "keeps each device's messages in one partition, in order, across batches",
      run(open, { partitionCount: 4 }, async ({ log }) => {
        const devices = Array.from({ length: 12 }, (_, i) => `order-${i}`);
        for (let b = 0; b < 5; b++) await log.append(Array.from({ length: 24 }, (_, i) => makeMessage(devices[i % 12] as string, b * 24 + i)));
        for (const d of devices) {
          const mine = (await readAll(log, log.partitionOf(d))).filter((r) => r.deviceId === d);
          assert.equal(mine.length, 10);
          const ns = mine.map((r) => Number(r.properties.n));
          assert.deepEqual(ns, [...ns].sort((a, b) => a - b), `${d} in order`);
        }
      }),
    );

    it(
      'reports partition properties as Event Hubs does, empty and not',
      run(open, { partitionCount: 2 }, async ({ log }) => {
        const empty = await log.partitionProperties(0);
        assert.deepEqual(
          { ...empty, lastEnqueuedTimeUtc: undefined },
          { partition: 0, beginningSequenceNumber: 0, lastEnqueuedSequenceNumber: -1, lastEnqueuedOffset: '-1', lastEnqueuedTimeUtc: undefined, isEmpty: true },
        );
        const [dev] = devicesIn(2, [1]);
        const placed = await log.append([makeMessage(dev as string, 1), makeMessage(dev as string, 2), makeMessage(dev as string, 3)]);
        const last = placed.at(-1) as LogPlacement;
        assert.deepEqual(await log.partitionProperties(1), {
          partition: 1,
          beginningSequenceNumber: 0,
          lastEnqueuedSequenceNumber: 2,
          lastEnqueuedOffset: last.offset,
          lastEnqueuedTimeUtc: last.enqueuedTime,
          isEmpty: false,
        });
        assert.equal((await log.partitionProperties(0)).isEmpty, true, 'the other partition is still empty');
        assert.throws(() => log.tail(2, 'earliest'), RangeError);
        await assert.rejects(log.partitionProperties(2), RangeError);
        await assert.rejects(log.read(-1, 'earliest', 1), RangeError);
      }),
    );

    it(
      'starts reads at a sequence number, an offset or an enqueued time, inclusive or not, the start and the end',
      run(open, { partitionCount: 1 }, async ({ log, elapse }) => {
        const a = await log.append(Array.from({ length: 5 }, (_, i) => makeMessage(`pos-${i}`, i)));
        await elapse(20);
        const b = await log.append(Array.from({ length: 5 }, (_, i) => makeMessage(`pos-${i}`, 5 + i)));
        const placed = [...a, ...b];
        const seqs = async (pos: Parameters<EventLog['read']>[1], limit = 100) => (await log.read(0, pos, limit)).map((r) => r.sequenceNumber);
        assert.deepEqual(await seqs('earliest'), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert.deepEqual(await seqs('earliest', 3), [0, 1, 2]);
        assert.deepEqual(await seqs('earliest', 0), []);
        assert.deepEqual(await seqs('latest'), []);
        assert.deepEqual(await seqs({ sequenceNumber: 4, inclusive: true }), [4, 5, 6, 7, 8, 9]);
        assert.deepEqual(await seqs({ sequenceNumber: 4, inclusive: false }), [5, 6, 7, 8, 9]);
        assert.deepEqual(await seqs({ sequenceNumber: -1, inclusive: false }), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], '-1 exclusive is the start');
        assert.deepEqual(await seqs({ sequenceNumber: 9, inclusive: false }), []);
        assert.deepEqual(await seqs({ sequenceNumber: 50, inclusive: true }), []);
        const off = (placed[6] as LogPlacement).offset;
        assert.deepEqual(await seqs({ offset: off, inclusive: true }), [6, 7, 8, 9]);
        assert.deepEqual(await seqs({ offset: off, inclusive: false }), [7, 8, 9]);
        assert.deepEqual(await seqs({ offset: '-1', inclusive: false }, 2), [0, 1]);
        assert.deepEqual(await seqs({ offset: (placed[9] as LogPlacement).offset, inclusive: false }), []);
        const t = (a.at(-1) as LogPlacement).enqueuedTime;
        assert.ok((b[0] as LogPlacement).enqueuedTime > t, 'the second batch was enqueued later');
        assert.deepEqual(await seqs({ enqueuedTime: t }), [5, 6, 7, 8, 9], 'strictly after the time');
        assert.deepEqual(await seqs({ enqueuedTime: '2000-01-01T00:00:00.000Z' }), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert.deepEqual(await seqs({ enqueuedTime: (b.at(-1) as LogPlacement).enqueuedTime }), []);
        await assert.rejects(log.read(0, { offset: 'abc', inclusive: true }, 1), LogPositionError);
        await assert.rejects(log.read(0, { enqueuedTime: 'yesterday' }, 1), LogPositionError);
        await assert.rejects(log.read(0, { sequenceNumber: 1.5, inclusive: true }, 1), LogPositionError);
      }),
    );

    it(
      'concurrent appends of one instance all land, numbered without gaps or repeats',
      run(open, { partitionCount: 2 }, async ({ log }) => {
        const placed = (await Promise.all(Array.from({ length: 8 }, (_, b) => log.append(Array.from({ length: 25 }, (_, i) => makeMessage(`c-${(b + i) % 6}`, b * 25 + i)))))).flat();
        for (const p of [0, 1]) {
          const mine = placed.filter((x) => x.partition === p).map((x) => x.sequenceNumber).sort((x, y) => x - y);
          assert.deepEqual(mine, mine.map((_, i) => i), `partition ${p}`);
          assert.equal((await readAll(log, p)).length, mine.length);
        }
      }),
    );

    it(
      'two instances appending at once: every record lands once, and a reader never sees a number before the one below it',
      run(open, { partitionCount: 2 }, async ({ log, openPeer }) => {
        const peer = await openPeer();
        try {
          const writers = [log, peer].map(async (w, k) => {
            for (let b = 0; b < 30; b++) await w.append(Array.from({ length: 1 + (b % 4) }, (_, i) => makeMessage(`two-${(b + i + k) % 5}`, k * 1000 + b * 10 + i)));
          });
          let done = false;
          const expected = 2 * Array.from({ length: 30 }, (_, b) => 1 + (b % 4)).reduce((s, n) => s + n, 0);
          const reader = (async () => {
            const next = [0, 0];
            let seen = 0;
            for (let round = 0; ; round++) {
              const finished = done;
              for (const p of [0, 1]) {
                const page = await peer.read(p, { sequenceNumber: next[p] as number, inclusive: true }, 1000);
                page.forEach((r, i) => assert.equal(r.sequenceNumber, (next[p] as number) + i, `partition ${p}: saw ${r.sequenceNumber} while ${(next[p] as number) + i} was not visible`));
                next[p] = (next[p] as number) + page.length;
                seen += page.length;
              }
              if (finished) return seen;
              // A reader that never let the event loop turn would starve the writers' disk syncs
              // (SQLite's run on the thread pool and complete in the poll phase).
              await new Promise<void>((resolve) => setImmediate(resolve));
            }
          })();
          await Promise.all(writers);
          done = true;
          assert.equal(await reader, expected);
        } finally {
          await peer.close();
        }
      }),
    );

    it(
      "tails a partition from a position, then live, waking for another instance's appends",
      run(open, { partitionCount: 2 }, async ({ log, openPeer }) => {
        const peer = await openPeer();
        const [dev, other] = devicesIn(2, [0, 1], 'tail');
        try {
          await log.append([makeMessage(dev as string, 0), makeMessage(dev as string, 1)]);
          const ac = new AbortController();
          const got: LogRecord[] = [];
          const fromLatest: LogRecord[] = [];
          const reading = (async () => {
            for await (const batch of peer.tail(0, { sequenceNumber: 1, inclusive: true }, { signal: ac.signal, maxBatch: 2 })) {
              got.push(...batch);
              assert.ok(batch.length <= 2);
            }
          })();
          const latest = (async () => {
            for await (const batch of peer.tail(0, 'latest', { signal: ac.signal })) fromLatest.push(...batch);
          })();
          await eventually('the tail read what was there', async () => got.length === 1);
          await log.append([makeMessage(other as string, 9)]);
          for (let i = 2; i < 7; i++) await log.append([makeMessage(dev as string, i)]);
          await eventually('the tail read the live appends', async () => got.length === 6 && fromLatest.length === 5);
          ac.abort();
          await Promise.all([reading, latest]);
          assert.deepEqual(got.map((r) => r.properties.n), ['1', '2', '3', '4', '5', '6']);
          assert.deepEqual(fromLatest.map((r) => r.sequenceNumber), [2, 3, 4, 5, 6]);
        } finally {
          await peer.close();
        }
      }),
    );

    it(
      "retention by size prunes a noisy device's partition and no other",
      run(open, { partitionCount: 4, retention: { maxBytesPerPartition: 8 * 1024 } }, async ({ log }) => {
        const [noisy, quiet] = devicesIn(4, [2, 3], 'size');
        await log.append([makeMessage(quiet as string, 0), makeMessage(quiet as string, 1), makeMessage(quiet as string, 2)]);
        for (let b = 0; b < 10; b++) await log.append(Array.from({ length: 20 }, (_, i) => makeMessage(noisy as string, b * 20 + i, { body: randomBytes(200) })));
        await log.enforceRetention();
        await eventually('the noisy partition was pruned', async () => (await log.partitionProperties(2)).beginningSequenceNumber > 0);
        const p2 = await log.partitionProperties(2);
        assert.equal(p2.lastEnqueuedSequenceNumber, 199);
        const kept = await readAll(log, 2);
        assert.ok(kept.length > 0 && kept.length < 100, `kept ${kept.length}`);
        assert.deepEqual(kept.map((r) => r.sequenceNumber), kept.map((_, i) => p2.beginningSequenceNumber + i), 'the newest are kept');
        assert.equal(kept.at(-1)?.properties.n, '199');
        const p3 = await log.partitionProperties(3);
        assert.equal(p3.beginningSequenceNumber, 0);
        assert.deepEqual((await readAll(log, 3)).map((r) => r.properties.n), ['0', '1', '2']);
      }),
    );

    it(
      'retention by age empties a partition without reusing its numbers',
      run(open, { partitionCount: 1, retention: { maxAgeMs: 1000 } }, async ({ log, elapse }) => {
        await log.append([makeMessage('old', 0), makeMessage('old', 1)]);
        await elapse(1500);
        await eventually('old records went', async () => {
          await log.enforceRetention();
          return (await log.partitionProperties(0)).isEmpty;
        });
        const props = await log.partitionProperties(0);
        assert.equal(props.lastEnqueuedSequenceNumber, 1);
        assert.equal(props.beginningSequenceNumber, 2);
        assert.deepEqual(await log.read(0, 'earliest', 10), []);
        const [next] = await log.append([makeMessage('old', 2)]);
        assert.equal(next?.sequenceNumber, 2, 'numbers are never reused');
        assert.deepEqual((await log.read(0, 'earliest', 10)).map((r) => r.sequenceNumber), [2]);
      }),
    );
  });
}
