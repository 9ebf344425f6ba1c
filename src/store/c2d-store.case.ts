/**
 * The C2dStore contract (c2d-ports.ts), one suite for every backend. Imported only by tests.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { HubError } from '../core/errors.js';
import type { AckMode, C2dDrop, C2dStore, NewC2dMessage, Store } from './ports.js';
import { rejectsWith, runWith, makeDevice, makeTwin, type StoreHarness } from './store.case.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');
const HOUR = 3_600_000;
const LIMITS = { maxDeliveryCount: 3, lockMs: 60_000 };

function msg(deviceId: string, over: Partial<NewC2dMessage> = {}): NewC2dMessage {
  return {
    deviceId,
    messageId: randomUUID(),
    correlationId: null,
    userId: null,
    to: `/devices/${deviceId}/messages/devicebound`,
    ack: 'full',
    contentType: null,
    contentEncoding: null,
    properties: {},
    body: Buffer.from('hi'),
    enqueuedTime: new Date(T0).toISOString(),
    expiryTime: new Date(T0 + HOUR).toISOString(),
    ...over,
  };
}

async function device(store: Store, id: string): Promise<string> {
  const d = makeDevice(id);
  await store.createDevice(d, makeTwin(id));
  return d.generationId;
}

const lock = (c2d: C2dStore, id: string, max: number, now = T0) => c2d.lockNext(id, { max, now, ...LIMITS });

export function c2dStoreConformance(name: string, open: () => Promise<StoreHarness>): void {
  describe(`c2d store conformance: ${name}`, () => {
    const withStore = (fn: (store: Store) => Promise<void>) => runWith(open, (h) => fn(h.store));

    it(
      'recount writes the queued-message count to the device record',
      withStore(async (store) => {
        await device(store, 'counted');
        await store.c2d.enqueue(msg('counted'), { maxDepth: 50, now: T0 });
        await store.c2d.enqueue(msg('counted'), { maxDepth: 50, now: T0 });
        assert.equal((await store.getDevice('counted'))?.cloudToDeviceMessageCount, 0, 'not before a recount');
        await store.c2d.recount('counted');
        assert.equal((await store.getDevice('counted'))?.cloudToDeviceMessageCount, 2);
        await store.c2d.purge('counted', { now: T0, feedback: false });
        await store.c2d.recount('counted');
        assert.equal((await store.getDevice('counted'))?.cloudToDeviceMessageCount, 0);
      }),
    );

    it('keeps every field and hands messages out oldest first', withStore(async (store) => {
      await device(store, 'd1');
      const body = Buffer.from([0, 1, 2, 255, 254]);
      const full = msg('d1', { correlationId: 'c', userId: 'u', contentType: 'application/json', contentEncoding: 'utf-8', properties: { a: '1', 'B-b': '' }, body, ack: 'negative' });
      const first = await store.c2d.enqueue(full, { maxDepth: 50, now: T0 });
      const second = await store.c2d.enqueue(msg('d1', { body: Buffer.alloc(0) }), { maxDepth: 50, now: T0 });
      assert.ok(second.seq > first.seq);
      assert.equal(first.deliveryCount, 0);
      const got = await lock(store.c2d, 'd1', 10);
      assert.deepEqual(got.map((m) => m.seq), [first.seq, second.seq]);
      const [m1, m2] = got;
      assert.ok(m1 && m2);
      assert.deepEqual({ ...m1, lockToken: null, lockedUntil: null, deliveryCount: 0 }, first);
      assert.equal(m1.deliveryCount, 1);
      assert.equal(m1.lockedUntil, new Date(T0 + LIMITS.lockMs).toISOString());
      assert.ok(Buffer.isBuffer(m1.body) && m1.body.equals(body));
      assert.equal(m2.body.length, 0);
      assert.notEqual(m1.lockToken, m2.lockToken);
      assert.equal(await store.c2d.countPending('d1', T0), 2);
      assert.deepEqual(await lock(store.c2d, 'd1', 10), [], 'locked messages are not handed out twice');
    }));

    it('refuses unknown devices and full queues; expired messages do not count', withStore(async (store) => {
      await rejectsWith(store.c2d.enqueue(msg('ghost'), { maxDepth: 50, now: T0 }), 'DeviceNotFound');
      await device(store, 'd1');
      await store.c2d.enqueue(msg('d1', { expiryTime: new Date(T0 + 1000).toISOString() }), { maxDepth: 2, now: T0 });
      await store.c2d.enqueue(msg('d1'), { maxDepth: 2, now: T0 });
      await rejectsWith(store.c2d.enqueue(msg('d1'), { maxDepth: 2, now: T0 }), 'DeviceMaximumQueueDepthExceeded');
      await store.c2d.enqueue(msg('d1'), { maxDepth: 2, now: T0 + 1000 });
      assert.equal(await store.c2d.countPending('d1', T0 + 1000), 2);
      const fb = await store.c2d.readFeedback(0, 10);
      assert.deepEqual(fb.map((f) => f.statusCode), ['Expired']);
    }));

    it('checks the depth atomically under concurrent sends', withStore(async (store) => {
      await device(store, 'd1');
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => store.c2d.enqueue(msg('d1'), { maxDepth: 7, now: T0 })));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 7);
      for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as HubError).code, 'DeviceMaximumQueueDepthExceeded');
      assert.equal(await store.c2d.countPending('d1', T0), 7);
    }));

    it('never locks one message twice under concurrent receivers', withStore(async (store) => {
      await device(store, 'd1');
      for (let i = 0; i < 10; i++) await store.c2d.enqueue(msg('d1'), { maxDepth: 50, now: T0 });
      const batches = await Promise.all(Array.from({ length: 6 }, () => lock(store.c2d, 'd1', 2)));
      const seqs = batches.flat().map((m) => m.seq);
      assert.equal(seqs.length, 10);
      assert.equal(new Set(seqs).size, 10);
    }));

    it('settles by lock token: complete and reject remove with feedback; lost locks are refused', withStore(async (store) => {
      const gen = await device(store, 'd1');
      const a = await store.c2d.enqueue(msg('d1'), { maxDepth: 50, now: T0 });
      const b = await store.c2d.enqueue(msg('d1'), { maxDepth: 50, now: T0 });
      const c = await store.c2d.enqueue(msg('d1'), { maxDepth: 50, now: T0 });
      const [la, lb, lc] = await lock(store.c2d, 'd1', 3);
      assert.ok(la?.lockToken && lb?.lockToken && lc?.lockToken);
      assert.equal(await store.c2d.settle('d1', 'nope', 'Success', T0), false);
      assert.equal(await store.c2d.settle('d2', la.lockToken, 'Success', T0), false, 'the token belongs to d1');
      assert.equal(await store.c2d.settle('d1', la.lockToken, 'Success', T0 + 1), true);
      assert.equal(await store.c2d.settle('d1', la.lockToken, 'Success', T0 + 1), false, 'settled once');
      assert.equal(await store.c2d.settle('d1', lb.lockToken, 'Rejected', T0 + 2), true);
      assert.equal(await store.c2d.settle('d1', lc.lockToken, 'Success', T0 + LIMITS.lockMs), false, 'the lock lapsed');
      const fb = await store.c2d.readFeedback(0, 10);
      assert.deepEqual(
        fb.map((f) => [f.originalMessageId, f.statusCode, f.deviceId, f.deviceGenerationId]),
        [[a.messageId, 'Success', 'd1', gen], [b.messageId, 'Rejected', 'd1', gen]],
      );
      assert.equal(fb[0]?.description, 'Success');
      assert.equal(fb[0]?.enqueuedTimeUtc, new Date(T0 + 1).toISOString());
      assert.ok((fb[1]?.seq ?? 0) > (fb[0]?.seq ?? 0));
      assert.deepEqual(await store.c2d.readFeedback(fb[0]?.seq ?? 0, 10), fb.slice(1));
      assert.deepEqual((await lock(store.c2d, 'd1', 5, T0 + LIMITS.lockMs)).map((m) => [m.seq, m.deliveryCount]), [[c.seq, 2]]);
    }));

    it('abandon unlocks for redelivery, and dead-letters on the last attempt', withStore(async (store) => {
      await device(store, 'd1');
      const m = await store.c2d.enqueue(msg('d1', { ack: 'negative' }), { maxDepth: 50, now: T0 });
      for (let attempt = 1; attempt <= LIMITS.maxDeliveryCount; attempt++) {
        const [l] = await lock(store.c2d, 'd1', 1);
        assert.equal(l?.deliveryCount, attempt);
        assert.ok(l?.lockToken);
        assert.equal(await store.c2d.abandon('d1', l.lockToken, { now: T0, maxDeliveryCount: LIMITS.maxDeliveryCount }), true);
      }
      assert.equal(await store.c2d.countPending('d1', T0), 0);
      assert.equal(await store.c2d.abandon('d1', 'gone', { now: T0, maxDeliveryCount: 3 }), false);
      const fb = await store.c2d.readFeedback(0, 10);
      assert.deepEqual(fb.map((f) => [f.originalMessageId, f.statusCode]), [[m.messageId, 'DeliveryCountExceeded']]);
    }));

    it('lockNext expires and dead-letters before locking', withStore(async (store) => {
      await device(store, 'd1');
      const old = await store.c2d.enqueue(msg('d1', { expiryTime: new Date(T0 + 1000).toISOString() }), { maxDepth: 50, now: T0 });
      const tired = await store.c2d.enqueue(msg('d1'), { maxDepth: 50, now: T0 });
      const fresh = await store.c2d.enqueue(msg('d1'), { maxDepth: 50, now: T0 });
      // Use up `tired`'s attempts by letting its locks lapse.
      let now = T0 + 2000;
      for (let i = 0; i < LIMITS.maxDeliveryCount; i++) {
        const got = await lock(store.c2d, 'd1', 1, now);
        assert.equal(got[0]?.seq, tired.seq);
        now += LIMITS.lockMs;
      }
      const got = await lock(store.c2d, 'd1', 5, now);
      assert.deepEqual(got.map((m) => m.seq), [fresh.seq]);
      const fb = await store.c2d.readFeedback(0, 10);
      assert.deepEqual(fb.map((f) => [f.originalMessageId, f.statusCode]), [[old.messageId, 'Expired'], [tired.messageId, 'DeliveryCountExceeded']]);
    }));

    it('records feedback only as each ack mode asks', withStore(async (store) => {
      await device(store, 'd1');
      const modes: AckMode[] = ['none', 'positive', 'negative', 'full'];
      const ids = new Map<string, AckMode>();
      for (const ack of modes) {
        for (const outcome of ['Success', 'Rejected'] as const) {
          const m = await store.c2d.enqueue(msg('d1', { ack }), { maxDepth: 50, now: T0 });
          ids.set(m.messageId, ack);
          const [l] = await lock(store.c2d, 'd1', 1);
          assert.ok(l?.lockToken);
          assert.equal(await store.c2d.settle('d1', l.lockToken, outcome, T0), true);
        }
      }
      const fb = await store.c2d.readFeedback(0, 100);
      assert.deepEqual(
        fb.map((f) => `${ids.get(f.originalMessageId) ?? '?'}:${f.statusCode}`),
        ['positive:Success', 'negative:Rejected', 'full:Success', 'full:Rejected'],
      );
    }));

    it('purge empties one queue, with or without feedback; deleting the device drops its queue', withStore(async (store) => {
      await device(store, 'd1');
      await device(store, 'd2');
      for (const ack of ['none', 'negative', 'full', 'positive'] as const) await store.c2d.enqueue(msg('d1', { ack }), { maxDepth: 50, now: T0 });
      await store.c2d.enqueue(msg('d2'), { maxDepth: 50, now: T0 });
      await lock(store.c2d, 'd1', 1);
      assert.equal(await store.c2d.purge('d1', { now: T0, feedback: true }), 4);
      assert.deepEqual((await store.c2d.readFeedback(0, 10)).map((f) => f.statusCode), ['Purged', 'Purged']);
      assert.equal(await store.c2d.countPending('d2', T0), 1);
      assert.equal(await store.c2d.purge('d2', { now: T0, feedback: false }), 1);
      assert.equal((await store.c2d.readFeedback(0, 10)).length, 2);
      await store.c2d.enqueue(msg('d2'), { maxDepth: 50, now: T0 });
      await store.deleteDevice('d2', '*');
      assert.equal(await store.c2d.countPending('d2', T0), 0);
      assert.equal(await store.c2d.purge('d2', { now: T0, feedback: true }), 0);
    }));

    it('sweep expires, dead-letters and releases lapsed locks, and prunes old feedback', withStore(async (store) => {
      await device(store, 'd1');
      await device(store, 'd2');
      await store.c2d.enqueue(msg('d1', { expiryTime: new Date(T0 + 1000).toISOString() }), { maxDepth: 50, now: T0 });
      await store.c2d.enqueue(msg('d2'), { maxDepth: 50, now: T0 });
      const [l] = await lock(store.c2d, 'd2', 1);
      const opts = { now: T0 + 1000, maxDeliveryCount: 3, feedbackBefore: 0, maxDevices: 100 };
      let r = await store.c2d.sweep(opts);
      assert.deepEqual(r, { expired: 1, deadLettered: 0, released: [], feedbackPruned: 0 });
      r = await store.c2d.sweep({ ...opts, now: T0 + LIMITS.lockMs });
      assert.deepEqual(r, { expired: 0, deadLettered: 0, released: ['d2'], feedbackPruned: 0 });
      assert.ok(l?.lockToken);
      assert.equal(await store.c2d.settle('d2', l.lockToken, 'Success', T0 + LIMITS.lockMs), false, 'released lock is gone');
      for (let i = 0; i < 2; i++) await lock(store.c2d, 'd2', 1, T0 + LIMITS.lockMs * (i + 1));
      r = await store.c2d.sweep({ ...opts, now: T0 + LIMITS.lockMs * 3 });
      assert.deepEqual(r, { expired: 0, deadLettered: 1, released: [], feedbackPruned: 0 });
      assert.equal((await store.c2d.readFeedback(0, 10)).length, 2);
      r = await store.c2d.sweep({ ...opts, now: T0 + LIMITS.lockMs * 3, feedbackBefore: T0 + 1001 });
      assert.equal(r.feedbackPruned, 1);
      assert.deepEqual((await store.c2d.readFeedback(0, 10)).map((f) => f.statusCode), ['DeliveryCountExceeded']);
    }));

    it("releaseOthersLocks frees one device's locks other owners took, leaving its own, token locks and other devices alone", withStore(async (store) => {
      for (const id of ['o1', 'o2']) {
        await device(store, id);
        for (let i = 0; i < 3; i++) await store.c2d.enqueue(msg(id), { maxDepth: 50, now: T0 });
      }
      const [dead] = await store.c2d.lockNext('o1', { max: 1, now: T0, ...LIMITS, owner: 'node-dead' });
      const [mine] = await store.c2d.lockNext('o1', { max: 1, now: T0, ...LIMITS, owner: 'node-new' });
      const [byToken] = await lock(store.c2d, 'o1', 1);
      const [elsewhere] = await store.c2d.lockNext('o2', { max: 1, now: T0, ...LIMITS, owner: 'node-dead' });
      assert.ok(dead?.lockToken && mine?.lockToken && byToken?.lockToken && elsewhere?.lockToken);

      assert.equal(await store.c2d.releaseOthersLocks('o1', 'node-new'), 1);
      assert.equal(await store.c2d.releaseOthersLocks('o1', 'node-new'), 0, 'released once');
      const again = await store.c2d.lockNext('o1', { max: 5, now: T0 + 1, ...LIMITS, owner: 'node-new' });
      assert.deepEqual(again.map((m) => m.seq), [dead.seq], 'the dead session\'s message is deliverable at once');
      assert.equal(await store.c2d.settle('o1', mine.lockToken, 'Success', T0 + 1), true, 'its own lock holds');
      assert.equal(await store.c2d.settle('o1', byToken.lockToken, 'Success', T0 + 1), true, 'a token lock holds');
      assert.equal(await store.c2d.settle('o2', elsewhere.lockToken, 'Success', T0 + 1), true, "another device's lock holds");
    }));

    it('releaseOwnedLocks frees the locks one owner took, leaving other owners and token locks alone', withStore(async (store) => {
      for (const id of ['d1', 'd2', 'd3']) {
        await device(store, id);
        await store.c2d.enqueue(msg(id), { maxDepth: 50, now: T0 });
        await store.c2d.enqueue(msg(id), { maxDepth: 50, now: T0 });
      }
      const [mine] = await store.c2d.lockNext('d1', { max: 1, now: T0, ...LIMITS, owner: 'node-a' });
      const [mineToo] = await store.c2d.lockNext('d2', { max: 1, now: T0, ...LIMITS, owner: 'node-a' });
      const [theirs] = await store.c2d.lockNext('d3', { max: 1, now: T0, ...LIMITS, owner: 'node-b' });
      const [byToken] = await lock(store.c2d, 'd1', 1);
      assert.ok(mine?.lockToken && mineToo?.lockToken && theirs?.lockToken && byToken?.lockToken);

      assert.deepEqual((await store.c2d.releaseOwnedLocks('node-a')).sort(), ['d1', 'd2']);
      assert.deepEqual(await store.c2d.releaseOwnedLocks('node-a'), [], 'released once');
      assert.equal(await store.c2d.settle('d1', mine.lockToken, 'Success', T0 + 1), false, 'the released lock is gone');
      const again = await lock(store.c2d, 'd1', 5, T0 + 1);
      assert.deepEqual(again.map((m) => [m.seq, m.deliveryCount]), [[mine.seq, 2]], 'deliverable at once, the attempt counted');
      assert.equal(await store.c2d.settle('d3', theirs.lockToken, 'Success', T0 + 1), true, "another owner's lock holds");
      assert.equal(await store.c2d.settle('d1', byToken.lockToken, 'Success', T0 + 1), true, 'a token lock holds');
      // A released message relocked by token is no longer the owner's.
      const [relocked] = await lock(store.c2d, 'd2', 1, T0 + 1);
      assert.equal(relocked?.seq, mineToo.seq);
      assert.deepEqual(await store.c2d.releaseOwnedLocks('node-a'), []);
    }));

    it('countAllPending counts every queue, leaving out expired messages', withStore(async (store) => {
      assert.equal(await store.c2d.countAllPending(T0), 0);
      await device(store, 'd1');
      await device(store, 'd2');
      await store.c2d.enqueue(msg('d1'), { maxDepth: 50, now: T0 });
      await store.c2d.enqueue(msg('d1', { expiryTime: new Date(T0 + 1000).toISOString() }), { maxDepth: 50, now: T0 });
      await store.c2d.enqueue(msg('d2'), { maxDepth: 50, now: T0 });
      await lock(store.c2d, 'd2', 1);
      assert.equal(await store.c2d.countAllPending(T0), 3, 'locked messages are still pending');
      assert.equal(await store.c2d.countAllPending(T0 + 1000), 2, 'expired ones are not, even before a sweep');
      await store.c2d.purge('d1', { now: T0, feedback: false });
      assert.equal(await store.c2d.countAllPending(T0), 1);
    }));

    it('reports every expiry and dead-lettering to onDropped, whichever call caused it, once committed', withStore(async (store) => {
      const drops: C2dDrop[] = [];
      store.c2d.onDropped((d) => drops.push(d));
      store.c2d.onDropped(() => {
        throw new Error('a failing listener does not fail the call');
      });
      await device(store, 'd1');
      await device(store, 'd2');
      const short = { expiryTime: new Date(T0 + 1000).toISOString() };
      // enqueue expires first
      await store.c2d.enqueue(msg('d1', short), { maxDepth: 50, now: T0 });
      await store.c2d.enqueue(msg('d1', short), { maxDepth: 50, now: T0 });
      await store.c2d.enqueue(msg('d1'), { maxDepth: 50, now: T0 + 1000 });
      assert.deepEqual(drops.splice(0), [{ deviceId: 'd1', status: 'Expired', count: 2 }]);
      // abandon on the last attempt dead-letters
      for (let attempt = 1; attempt <= LIMITS.maxDeliveryCount; attempt++) {
        const [l] = await lock(store.c2d, 'd1', 1, T0 + 1000);
        assert.ok(l?.lockToken);
        await store.c2d.abandon('d1', l.lockToken, { now: T0 + 1000, maxDeliveryCount: LIMITS.maxDeliveryCount });
      }
      assert.deepEqual(drops.splice(0), [{ deviceId: 'd1', status: 'DeliveryCountExceeded', count: 1 }]);
      // lockNext expires and dead-letters lapsed locks
      await store.c2d.enqueue(msg('d2', short), { maxDepth: 50, now: T0 });
      const tired = await store.c2d.enqueue(msg('d2'), { maxDepth: 50, now: T0 });
      let now = T0 + 2000;
      for (let i = 0; i < LIMITS.maxDeliveryCount; i++) {
        const got = await lock(store.c2d, 'd2', 1, now);
        assert.equal(got[0]?.seq, tired.seq);
        now += LIMITS.lockMs;
      }
      assert.deepEqual(drops.splice(0), [{ deviceId: 'd2', status: 'Expired', count: 1 }]);
      assert.deepEqual(await lock(store.c2d, 'd2', 1, now), []);
      assert.deepEqual(drops.splice(0), [{ deviceId: 'd2', status: 'DeliveryCountExceeded', count: 1 }]);
      // sweep
      await store.c2d.enqueue(msg('d1', { expiryTime: new Date(now + 1000).toISOString() }), { maxDepth: 50, now });
      await store.c2d.sweep({ now: now + 1000, maxDeliveryCount: 3, feedbackBefore: 0, maxDevices: 100 });
      assert.deepEqual(drops.splice(0), [{ deviceId: 'd1', status: 'Expired', count: 1 }]);
      // nothing reported for removals that are neither, nor for a rolled-back transaction
      const m = await store.c2d.enqueue(msg('d1'), { maxDepth: 50, now });
      await store.c2d.purge('d1', { now, feedback: true });
      await rejectsWith(store.c2d.enqueue(msg('ghost'), { maxDepth: 50, now }), 'DeviceNotFound');
      assert.ok(m.seq > 0);
      assert.deepEqual(drops, []);
    }));
  });
}
