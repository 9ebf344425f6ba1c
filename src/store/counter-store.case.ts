/**
 * The shared counter contract (counter-ports.ts), run on every backend: a read-modify-write sees
 * every earlier one (concurrent increments are never lost, keys named in any order never
 * deadlock), expired values are gone, removals reach other nodes as tombstones. Imported only by tests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CounterStore } from './counter-ports.js';
import { runWith, type StoreHarness } from './store.case.js';

const T0 = 1_900_000_000_000;

/** Adds one to each named counter (a JSON number), kept for a minute; returns the new values. */
function increment(store: CounterStore, keys: string[], now = T0): Promise<number[]> {
  return store.update(keys, now, (current) => {
    const next = keys.map((k) => Number(current.get(k) ?? '0') + 1);
    return { writes: new Map(keys.map((k, i) => [k, { value: String(next[i]), expiresAt: now + 60_000 }])), result: next };
  });
}

export function counterStoreConformance(name: string, open: () => Promise<StoreHarness>): void {
  describe(`counter store conformance: ${name}`, () => {
    const withStore = (fn: (h: StoreHarness) => Promise<void>) => runWith(open, fn);

    it(
      'reads what the last update wrote, until it expires; keys left out stay as they were',
      withStore(async ({ store }) => {
        const c = store.counters;
        assert.deepEqual(await increment(c, ['t:a', 't:b']), [1, 1]);
        assert.deepEqual(await increment(c, ['t:a']), [2]);
        const seen = await c.update(['t:a', 't:b', 't:c'], T0 + 1000, (current) => ({ writes: new Map(), result: Object.fromEntries(current) }));
        assert.deepEqual(seen, { 't:a': '2', 't:b': '1' });
        // Past its expiry a counter reads as absent, and counting starts over.
        assert.deepEqual(await increment(c, ['t:a'], T0 + 60_001), [1]);
      }),
    );

    it(
      'loses no increment of concurrent writers, and never deadlocks on keys named in opposite orders',
      withStore(async ({ store }) => {
        const c = store.counters;
        await Promise.all(Array.from({ length: 20 }, () => increment(c, ['t:hot'])));
        await Promise.all(Array.from({ length: 10 }, (_, i) => increment(c, i % 2 === 0 ? ['t:x', 't:y'] : ['t:y', 't:x'])));
        const after = await c.update(['t:hot', 't:x', 't:y'], T0, (current) => ({ writes: new Map(), result: Object.fromEntries(current) }));
        assert.deepEqual(after, { 't:hot': '20', 't:x': '10', 't:y': '10' });
      }),
    );

    it(
      'tells other nodes what changed since, removals included, and purges what expired',
      withStore(async ({ store }) => {
        const c = store.counters;
        await increment(c, ['lock:a', 'other:z'], T0);
        await increment(c, ['lock:b'], T0 + 500);
        assert.deepEqual((await c.changedSince('lock:', T0, 100)).map((e) => [e.key, e.value]), [['lock:a', '1'], ['lock:b', '1']]);
        assert.deepEqual((await c.changedSince('lock:', T0 + 1, 100)).map((e) => e.key), ['lock:b']);
        await c.update(['lock:a'], T0 + 1000, () => ({ writes: new Map([['lock:a', { value: null, expiresAt: 0 }]]), result: undefined }));
        const removed = await c.changedSince('lock:', T0 + 1000, 100);
        assert.deepEqual(removed.map((e) => [e.key, e.value]), [['lock:a', null]]);
        await c.clear('lock:', T0 + 2000);
        assert.deepEqual((await c.changedSince('lock:', T0 + 2000, 100)).map((e) => [e.key, e.value]), [['lock:b', null]]);
        assert.deepEqual((await c.changedSince('other:', T0, 100)).map((e) => [e.key, e.value]), [['other:z', '1']], 'another prefix is untouched');
        assert.ok((await c.purgeExpired(T0 + 10 * 60_000)) >= 3);
        assert.deepEqual(await c.changedSince('', 0, 100), []);
      }),
    );
  });
}
