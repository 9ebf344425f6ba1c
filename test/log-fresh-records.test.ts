/**
 * Tails of the SQLite log take the records this node just appended from memory (fresh-records.ts)
 * once they have caught up. What a reader gets must not depend on where it came from: the same
 * records, fields and bytes as the database holds, with no gap and no repeat when a reader falls
 * behind what memory keeps, or starts while records were appended that nobody tailed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FreshRecords } from '../src/log/fresh-records.js';
import { devicesIn, makeMessage } from '../src/log/log.case.js';
import type { LogMessage, LogPlacement, LogRecord } from '../src/log/log-ports.js';
import type { SqlEventLog } from '../src/log/sql/sql-log.js';
import { SqlLogNodes } from './support/log-harness.js';

const placed = (partition: number, sequenceNumber: number): LogPlacement => ({ partition, sequenceNumber, offset: String(sequenceNumber * 10), enqueuedTime: '2026-12-04T10:00:00.000Z' });

/** Runs a tail of the partition until `n` records came, or fails after 10 s. */
async function take(log: SqlEventLog, partition: number, from: number, n: number, gate?: Promise<void>): Promise<LogRecord[]> {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 10_000);
  const out: LogRecord[] = [];
  try {
    for await (const batch of log.tail(partition, { sequenceNumber: from, inclusive: true }, { signal: stop.signal, maxBatch: 100 })) {
      if (gate !== undefined) await gate;
      out.push(...batch);
      if (out.length >= n) break;
    }
  } finally {
    clearTimeout(timer);
  }
  return out;
}

describe('fresh records, by themselves', () => {
  it('keep a contiguous run per tailed partition, at most the capacity, and say when a read is outside it', async () => {
    const fresh = new FreshRecords(4);
    const m = (n: number) => makeMessage('d', n);
    // Nobody tails partition 0: nothing is kept.
    fresh.add([m(0)], [placed(0, 0)]);
    assert.equal(fresh.read(0, 0, 10), undefined);
    const stop = new AbortController();
    const tail = fresh.counting(0, (async function* () {
      await new Promise((r) => stop.signal.addEventListener('abort', r));
      yield [];
    })());
    const running = tail.next();
    fresh.add([m(1), m(2)], [placed(0, 1), placed(0, 2)]);
    assert.deepEqual(fresh.read(0, 1, 10)?.map((r) => r.sequenceNumber), [1, 2]);
    assert.deepEqual(fresh.read(0, 3, 10), [], 'at the end: nothing yet, and nothing missed');
    assert.equal(fresh.read(0, 0, 10), undefined, 'before the run: the database');
    assert.equal(fresh.read(0, 4, 10), undefined, 'past the end: the database');
    fresh.add([1, 2, 3, 4, 5, 6].map((i) => m(2 + i)), [1, 2, 3, 4, 5, 6].map((i) => placed(0, 2 + i)));
    assert.deepEqual(fresh.read(0, 5, 10)?.map((r) => r.sequenceNumber), [5, 6, 7, 8], 'the last four');
    assert.equal(fresh.read(0, 4, 10), undefined);
    // A gap (records numbered elsewhere) starts a new run.
    fresh.add([m(20)], [placed(0, 20)]);
    assert.equal(fresh.read(0, 8, 10), undefined);
    assert.deepEqual(fresh.read(0, 20, 10)?.map((r) => r.sequenceNumber), [20]);
    // The body is the record's own copy.
    const body = Buffer.from('live');
    fresh.add([{ ...m(21), body }], [placed(0, 21)]);
    body.write('gone');
    assert.equal(fresh.read(0, 21, 1)?.[0]?.body.toString(), 'live');
    stop.abort();
    await running;
    await tail.return(undefined);
    assert.equal(fresh.read(0, 21, 1), undefined, 'the last tail gone, the run goes');
  });
});

/** A tail whose batches the test hands it, one at a time. */
function handFed(): { tail: AsyncGenerator<LogRecord[]>; hand(batch: LogRecord[]): void } {
  const queue: LogRecord[][] = [];
  let wake: (() => void) | undefined;
  const tail = (async function* () {
    for (;;) {
      while (queue.length === 0) await new Promise<void>((r) => (wake = r));
      yield queue.shift() as LogRecord[];
    }
  })();
  return { tail, hand: (batch) => (queue.push(batch), wake?.()) };
}

describe('fresh records, read by every tail', () => {
  it('go once every tail of the partition has read them, and stay for a tail that has not read yet', async () => {
    const fresh = new FreshRecords(100);
    const m = (n: number) => makeMessage('d', n);
    const seqs = (from: number, limit: number) => fresh.read(0, from, limit)?.map((r) => r.sequenceNumber);
    const a = handFed();
    const b = handFed();
    const ta = fresh.counting(0, a.tail);
    const tb = fresh.counting(0, b.tail);
    let na = ta.next();
    let nb = tb.next();
    fresh.add([0, 1, 2, 3, 4, 5].map(m), [0, 1, 2, 3, 4, 5].map((i) => placed(0, i)));
    a.hand(fresh.read(0, 0, 6) as LogRecord[]);
    assert.equal((await na).value?.length, 6);
    assert.deepEqual(seqs(0, 10), [0, 1, 2, 3, 4, 5], 'one tail has not read a batch yet: all stay');
    b.hand(fresh.read(0, 0, 2) as LogRecord[]);
    assert.equal((await nb).value?.length, 2);
    assert.equal(seqs(0, 10), undefined, 'read by both: gone (a reader there goes to the database)');
    assert.deepEqual(seqs(2, 10), [2, 3, 4, 5], 'what the slower tail has not read stays');
    nb = tb.next();
    b.hand(fresh.read(0, 2, 4) as LogRecord[]);
    assert.equal((await nb).value?.length, 4);
    assert.deepEqual(seqs(6, 10), [], 'all read: nothing kept, and a tail at the end is told "nothing yet", not sent to the database');
    assert.equal(seqs(5, 10), undefined);
    fresh.add([6, 7].map(m), [6, 7].map((i) => placed(0, i)));
    assert.deepEqual(seqs(6, 10), [6, 7], 'the run goes on from where it was emptied');
    // The slower tail ends: the other one alone decides.
    await tb.return(undefined);
    na = ta.next();
    a.hand(fresh.read(0, 6, 1) as LogRecord[]);
    assert.equal((await na).value?.length, 1);
    assert.deepEqual(seqs(7, 10), [7]);
    assert.equal(seqs(6, 10), undefined);
    await ta.return(undefined);
    assert.equal(seqs(7, 10), undefined, 'the last tail gone, the run goes');
  });
});

describe('fresh records, bounded by bytes', () => {
  it('keep at most the byte budget of bodies per partition (the newest record always), older reads go to the database', async () => {
    const fresh = new FreshRecords(100, 1000);
    const stop = new AbortController();
    const tail = fresh.counting(0, (async function* () {
      await new Promise((r) => stop.signal.addEventListener('abort', r));
      yield [];
    })());
    const running = tail.next();
    const m = (n: number, bytes: number) => makeMessage('d', n, { body: Buffer.alloc(bytes, n) });
    fresh.add([m(0, 400), m(1, 400), m(2, 400)], [placed(0, 0), placed(0, 1), placed(0, 2)]);
    assert.equal(fresh.read(0, 0, 10), undefined, 'three of 400 bytes are over 1,000: the oldest went');
    assert.deepEqual(fresh.read(0, 1, 10)?.map((r) => r.sequenceNumber), [1, 2]);
    fresh.add([m(3, 5000)], [placed(0, 3)]);
    assert.equal(fresh.read(0, 2, 10), undefined);
    assert.deepEqual(fresh.read(0, 3, 10)?.map((r) => r.body.length), [5000], 'one record larger than the budget stays alone');
    stop.abort();
    await running;
    await tail.return(undefined);
  });
});

describe('fresh records in the SQLite log', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-fresh-'));
  let log: SqlEventLog;
  before(async () => {
    log = await new SqlLogNodes().openFile(join(dir, 'log.db'), { partitionCount: 2 });
  });
  after(async () => {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('hand a live reader the same records, fields and bytes the database holds', async () => {
    const [dev] = devicesIn(2, [0], 'same');
    const messages: LogMessage[] = [
      makeMessage(dev as string, 1),
      makeMessage(dev as string, 2, { moduleId: 'm1', endpoints: ['events', 'hook'] }),
      makeMessage(dev as string, 3, { body: Buffer.from([0, 255, 10]), properties: { 'a b': 'ü', empty: '' } }),
    ];
    const start = (await log.partitionProperties(0)).lastEnqueuedSequenceNumber + 1;
    const reading = take(log, 0, start, 3);
    await new Promise((r) => setTimeout(r, 50));
    for (const m of messages) await log.append([m]);
    const live = await reading;
    // A second log on the file has no fresh records: what it reads comes from the database.
    const other = await new SqlLogNodes().openFile(join(dir, 'log.db'));
    try {
      assert.deepEqual(live, await other.read(0, { sequenceNumber: start, inclusive: true }, 3));
    } finally {
      await other.close();
    }
    assert.equal(live[1]?.moduleId, 'm1');
    assert.deepEqual(live[1]?.endpoints, ['events', 'hook']);
  });

  it('lose and repeat nothing for a reader that falls behind what memory keeps', async () => {
    const [dev] = devicesIn(2, [1], 'behind');
    const start = (await log.partitionProperties(1)).lastEnqueuedSequenceNumber + 1;
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    // The reader takes its first batch, then stalls while 5,000 records (more than memory keeps) go in.
    const reading = take(log, 1, start, 5_000, gate);
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 50; i++) await log.append(Array.from({ length: 100 }, (_, k) => makeMessage(dev as string, i * 100 + k)));
    open();
    const got = await reading;
    assert.deepEqual(got.map((r) => r.sequenceNumber), Array.from({ length: 5_000 }, (_, i) => start + i));
    assert.deepEqual(got.map((r) => r.properties.n), Array.from({ length: 5_000 }, (_, i) => String(i)));
  });

  it('give two readers of one partition, one of them stalled, every record once and in order', async () => {
    const [dev] = devicesIn(2, [1], 'two');
    const start = (await log.partitionProperties(1)).lastEnqueuedSequenceNumber + 1;
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const fast = take(log, 1, start, 3_000);
    const slow = take(log, 1, start, 3_000, gate);
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 30; i++) await log.append(Array.from({ length: 100 }, (_, k) => makeMessage(dev as string, i * 100 + k)));
    const got = await fast;
    open();
    const late = await slow;
    const want = Array.from({ length: 3_000 }, (_, i) => String(i));
    assert.deepEqual(got.map((r) => r.properties.n), want);
    assert.deepEqual(late.map((r) => r.properties.n), want);
    assert.deepEqual(late.map((r) => r.sequenceNumber), got.map((r) => r.sequenceNumber));
  });

  it('lose nothing appended while nobody tailed, for a reader that starts after', async () => {
    const [dev] = devicesIn(2, [0], 'gap');
    const start = (await log.partitionProperties(0)).lastEnqueuedSequenceNumber + 1;
    // A reader, then none while 10 go in, then a reader from where the first stopped, with nothing appended after.
    const first = take(log, 0, start, 5);
    await new Promise((r) => setTimeout(r, 50));
    await log.append(Array.from({ length: 5 }, (_, i) => makeMessage(dev as string, i)));
    assert.equal((await first).length, 5);
    await log.append(Array.from({ length: 10 }, (_, i) => makeMessage(dev as string, 5 + i)));
    // Memory must not answer "nothing new" from a run those 10 broke.
    const second = await take(log, 0, start + 5, 10);
    assert.deepEqual(second.map((r) => r.properties.n), Array.from({ length: 10 }, (_, i) => String(5 + i)));
  });
});
