/**
 * The shared feedback queue (hub/c2d/feedback-queue.ts) on a real SQLite store with a test clock:
 * batches go out once, a lapsed lock hands a batch out again (and the late settle of its first
 * holder is refused), a release hands it out at once, and a completed batch never comes back.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SecretBox } from '../src/core/secret-box.js';
import { FeedbackQueue } from '../src/hub/c2d/feedback-queue.js';
import type { FeedbackRecord } from '../src/store/c2d-ports.js';
import type { Store } from '../src/store/ports.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { removeDir, tempDir } from './support/hub-process.js';

let dir: string;
let store: Store;
const records: FeedbackRecord[] = [];
const clock = { t: 1_000_000, now: () => clock.t };

before(async () => {
  dir = tempDir('feedback-queue');
  store = await openSqliteStore(join(dir, 'q.db'), new SecretBox(randomBytes(32)));
});
after(async () => {
  await store.close();
  removeDir(dir);
});

function record(seq: number): FeedbackRecord {
  return { seq, originalMessageId: `m${seq}`, deviceGenerationId: 'g', deviceId: 'd', enqueuedTimeUtc: 'T', statusCode: 'Success', description: 'Success' };
}

/** Two "nodes": two queues over one store. */
const queue = () =>
  new FeedbackQueue({ counters: store.counters, meta: store, readFeedback: async (after, limit) => records.filter((r) => r.seq > after).slice(0, limit), clock, lockMs: 5000 });
const ids = (b: { records: FeedbackRecord[] } | undefined) => b?.records.map((r) => r.originalMessageId);

describe('FeedbackQueue', () => {
  it('hands each batch to one receiver, again after its lock lapses or a release, never after completion', async () => {
    const [a, b] = [queue(), queue()];
    assert.equal(await a.claim(2), undefined, 'nothing to hand out');
    records.push(...[1, 2, 3, 4, 5].map(record));
    const first = await a.claim(2);
    const second = await b.claim(2);
    assert.deepEqual([ids(first), ids(second)], [['m1', 'm2'], ['m3', 'm4']]);
    clock.t += 5001; // the first batch's lock lapses
    const again = await b.claim(2);
    assert.deepEqual(ids(again), ['m1', 'm2'], 'the lapsed batch first');
    assert.equal(await a.complete(first!.token), false, 'its first holder lost the lock');
    assert.equal(await b.complete(again!.token), true);
    assert.equal(await b.release(second!.token), true);
    assert.deepEqual(ids(await a.claim(2)), ['m3', 'm4'], 'a released batch at once');
    assert.deepEqual(ids(await b.claim(2)), ['m5']);
    clock.t += 60_000;
    const left = [await a.claim(10), await a.claim(10), await a.claim(10)].map(ids);
    assert.deepEqual(left, [['m3', 'm4'], ['m5'], undefined], 'never m1 and m2 again');
  });
});
