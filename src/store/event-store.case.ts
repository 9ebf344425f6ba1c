/**
 * The event store contract (event-ports.ts), one suite for every backend. Imported only by tests.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { runWith } from './store.case.js';
import type { NewEvent, StoredEvent } from './event-ports.js';
import type { StoreHarness } from './store.case.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');

function at(offsetMs: number): string {
  return new Date(T0 + offsetMs).toISOString();
}

export function makeEvent(deviceId: string, n: number, over: Partial<NewEvent> = {}): NewEvent {
  return {
    deviceId,
    moduleId: null,
    enqueuedTime: at(n * 1000),
    body: Buffer.from(JSON.stringify({ n })),
    properties: { n: String(n) },
    systemProperties: { 'iothub-connection-device-id': deviceId, 'iothub-enqueuedtime': at(n * 1000) },
    ...over,
  };
}

function assertIncreasing(seqs: readonly number[]): void {
  for (let i = 1; i < seqs.length; i++) assert.ok((seqs[i] ?? 0) > (seqs[i - 1] ?? 0), `seqs not increasing: ${seqs.join(',')}`);
}

function strip(e: StoredEvent): NewEvent {
  const { seq: _seq, ...rest } = e;
  return rest;
}

export function eventStoreConformance(name: string, open: () => Promise<StoreHarness>): void {
  describe(`event store conformance: ${name}`, () => {
    const withStore = (fn: (h: StoreHarness) => Promise<void>) => runWith(open, fn);

    it(
      'appends in order with strictly increasing seqs, across calls',
      withStore(async ({ store }) => {
        const s = store.events;
        assert.deepEqual(await s.appendEvents([]), []);
        const a = await s.appendEvents([makeEvent('d1', 1), makeEvent('d2', 2), makeEvent('d1', 3)]);
        const b = await s.appendEvents([makeEvent('d1', 4)]);
        assert.equal(a.length, 3);
        assertIncreasing([...a, ...b]);
        assert.ok((a[0] ?? 0) >= 1, 'seqs start above 0 (0 means "from the beginning")');
        const all = await s.readEvents({ after: 0, limit: 100 });
        assert.deepEqual(all.map((e) => e.seq), [...a, ...b]);
        assert.deepEqual(all.map((e) => e.properties.n), ['1', '2', '3', '4']);
        assert.deepEqual(strip(all[1] as StoredEvent), makeEvent('d2', 2));
      }),
    );

    it(
      'round-trips binary bodies byte-exact, module ids and properties',
      withStore(async ({ store }) => {
        const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        const bodies = [every, Buffer.alloc(0), Buffer.from([0xff, 0xfe, 0x00, 0xc3]), randomBytes(256 * 1024), Buffer.from('héllo ✓')];
        const events = bodies.map((body, i) =>
          makeEvent('bin', i, {
            body,
            moduleId: i === 1 ? 'mod-1' : null,
            properties: { 'ünï code': 'välue', empty: '', q: 'a=b&c' },
            systemProperties: { 'message-id': `m${i}`, 'content-type': 'application/octet-stream' },
          }),
        );
        await store.events.appendEvents(events);
        const back = await store.events.readEvents({ after: 0, limit: 10 });
        assert.equal(back.length, bodies.length);
        back.forEach((e, i) => {
          assert.ok(Buffer.isBuffer(e.body), 'bodies come back as Buffers');
          assert.ok(e.body.equals(bodies[i] as Buffer), `body ${i} differs`);
          assert.deepEqual(strip(e), events[i]);
        });
        assert.equal(back[1]?.moduleId, 'mod-1');
        assert.equal(back[0]?.moduleId, null);
      }),
    );

    it(
      'reads after a seq, with a limit, and for one device',
      withStore(async ({ store }) => {
        const s = store.events;
        const seqs = await s.appendEvents(Array.from({ length: 10 }, (_, i) => makeEvent(i % 2 === 0 ? 'even' : 'odd', i)));
        const page1 = await s.readEvents({ after: 0, limit: 4 });
        assert.deepEqual(page1.map((e) => e.seq), seqs.slice(0, 4));
        const page2 = await s.readEvents({ after: page1.at(-1)?.seq ?? 0, limit: 4 });
        assert.deepEqual(page2.map((e) => e.seq), seqs.slice(4, 8));
        assert.deepEqual(await s.readEvents({ after: seqs.at(-1) ?? 0, limit: 4 }), []);
        const odd = await s.readEvents({ after: seqs[2] ?? 0, limit: 10, deviceId: 'odd' });
        assert.deepEqual(odd.map((e) => e.properties.n), ['3', '5', '7', '9']);
        assert.deepEqual(await s.readEvents({ after: 0, limit: 10, deviceId: 'ODD' }), [], 'device ids are case-sensitive');
        assert.deepEqual(await s.readEvents({ after: 0, limit: 10, deviceId: 'nobody' }), []);
        assert.deepEqual(await s.readEvents({ after: 0, limit: 0 }), []);
      }),
    );

    it(
      'concurrent appends get distinct increasing seqs and all land',
      withStore(async ({ store }) => {
        const batches = await Promise.all(
          Array.from({ length: 8 }, (_, b) => store.events.appendEvents(Array.from({ length: 25 }, (_, i) => makeEvent(`c${b}`, i)))),
        );
        for (const seqs of batches) assertIncreasing(seqs);
        const flat = batches.flat();
        assert.equal(new Set(flat).size, 200);
        const all = await store.events.readEvents({ after: 0, limit: 1000 });
        assert.deepEqual(all.map((e) => e.seq), [...flat].sort((a, b) => a - b));
      }),
    );

    it(
      'lastEventSeq is 0 when empty, the highest seq after appends, and survives pruning',
      withStore(async ({ store }) => {
        const s = store.events;
        assert.equal(await s.lastEventSeq(), 0);
        const seqs = await s.appendEvents([makeEvent('d', 1), makeEvent('d', 2)]);
        assert.equal(await s.lastEventSeq(), seqs[1]);
        assert.equal(await s.pruneEvents({ before: at(10_000_000), keepAtMost: 1000 }), 2);
        assert.equal(await s.lastEventSeq(), seqs[1], 'pruning never moves the position back');
        const [next] = await s.appendEvents([makeEvent('d', 3)]);
        assert.ok((next ?? 0) > (seqs[1] ?? 0), 'seqs are never reused');
        assert.equal(await s.lastEventSeq(), next);
      }),
    );

    it(
      'committedHead is the highest stored seq: 0 when empty, and 0 again once everything is pruned',
      withStore(async ({ store }) => {
        const s = store.events;
        assert.equal(await s.committedHead(), 0);
        const seqs = await s.appendEvents([makeEvent('h', 1), makeEvent('h', 2)]);
        assert.equal(await s.committedHead(), seqs[1]);
        await s.pruneEvents({ before: at(10_000_000), keepAtMost: 1000 });
        assert.equal(await s.committedHead(), 0, 'nothing stored: a reader from 0 misses nothing');
      }),
    );

    it(
      'prunes by age: events enqueued before the cut go, later ones stay',
      withStore(async ({ store }) => {
        const s = store.events;
        await s.appendEvents(Array.from({ length: 10 }, (_, i) => makeEvent('age', i)));
        assert.equal(await s.pruneEvents({ before: at(4000), keepAtMost: 1000 }), 4);
        const left = await s.readEvents({ after: 0, limit: 100 });
        assert.deepEqual(left.map((e) => e.properties.n), ['4', '5', '6', '7', '8', '9']);
        assert.equal(await s.pruneEvents({ before: at(4000), keepAtMost: 1000 }), 0, 'idempotent');
      }),
    );

    it(
      'prunes by count: only the newest keepAtMost stay, after the age cut',
      withStore(async ({ store }) => {
        const s = store.events;
        const seqs = await s.appendEvents(Array.from({ length: 12 }, (_, i) => makeEvent(i < 6 ? 'a' : 'b', i)));
        assert.equal(await s.pruneEvents({ before: at(0), keepAtMost: 5 }), 7);
        assert.deepEqual((await s.readEvents({ after: 0, limit: 100 })).map((e) => e.seq), seqs.slice(7));
        assert.equal(await s.pruneEvents({ before: at(8000), keepAtMost: 3 }), 2, 'the age cut takes #7, then the count #8');
        assert.equal(await s.pruneEvents({ before: at(0), keepAtMost: 10 }), 0);
        assert.equal(await s.pruneEvents({ before: at(0), keepAtMost: 0 }), 3);
        assert.deepEqual(await s.readEvents({ after: 0, limit: 100 }), []);
      }),
    );

    it(
      'prunes more rows than one delete chunk',
      withStore(async ({ store }) => {
        const s = store.events;
        for (let b = 0; b < 6; b++) await s.appendEvents(Array.from({ length: 1000 }, (_, i) => makeEvent('bulk', b * 1000 + i)));
        assert.equal(await s.pruneEvents({ before: at(0), keepAtMost: 10 }), 5990);
        const left = await s.readEvents({ after: 0, limit: 100 });
        assert.deepEqual(left.map((e) => e.properties.n), Array.from({ length: 10 }, (_, i) => String(5990 + i)));
      }),
    );
  });
}
