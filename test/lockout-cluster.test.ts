/**
 * The lockout counted across nodes (issue 16): three guards, one per "node", on one PostgreSQL
 * schema. Guesses spread over the nodes lock at the same count as on one node; a lock one node set
 * refuses on the others once they synced (and is never counted past, even before); a success
 * clears the pair on every node; and a correct credential from an address with no failures makes
 * no database round trip.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { SecretBox } from '../src/core/secret-box.js';
import { LockoutGuard, type AttemptKeys } from '../src/access/lockout.js';
import { DEFAULT_SETTINGS } from '../src/core/settings.js';
import { openPostgresStore } from '../src/store/postgres/open-postgres-store.js';
import type { CounterStore, Store } from '../src/store/ports.js';

const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `gh_lock_${randomBytes(5).toString('hex')}`;
const SETTINGS = { ...DEFAULT_SETTINGS.lockout, maxFailures: 5, maxFailuresPerAddress: 50, windowSeconds: 600, lockoutSeconds: 300, maxLockoutSeconds: 3600 };
let store: Store;

before(async () => {
  const url = new URL(DATABASE_URL);
  url.searchParams.set('schema', schema);
  store = await openPostgresStore(url.toString(), new SecretBox(randomBytes(32)));
});

after(async () => {
  await store.close();
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.end();
});

/** Counts the round trips a guard makes to the store. */
function counted(inner: CounterStore): { counters: CounterStore; calls: () => number } {
  let n = 0;
  return {
    counters: {
      update: (k, now, decide) => (n++, inner.update(k, now, decide)),
      changedSince: (p, s, l) => (n++, inner.changedSince(p, s, l)),
      clear: (p, now) => (n++, inner.clear(p, now)),
      purgeExpired: (now) => (n++, inner.purgeExpired(now)),
    },
    calls: () => n,
  };
}

function nodes(n: number) {
  const clock = { now: () => Date.now() };
  return Array.from({ length: n }, () => {
    const c = counted(store.counters);
    return { guard: new LockoutGuard(SETTINGS, clock, c.counters, { syncMs: 0 }), calls: c.calls };
  });
}

/** What the gate does for a wrong key on one node: refused unverified while locked, else counted. */
async function guess(guard: LockoutGuard, k: AttemptKeys): Promise<'refused' | 'locked'> {
  if (guard.check(k).locked) return 'locked';
  await guard.fail(k);
  return 'refused';
}

describe('lockout across nodes', () => {
  it('guesses spread over three nodes lock the identity at the count one node would', async () => {
    const [a, b, c] = nodes(3);
    assert.ok(a !== undefined && b !== undefined && c !== undefined);
    const k = { address: '198.51.100.7', identity: 'policy:iothubowner' };
    const ring = [a, b, c];
    // Four failures, spread: no lock yet on any node.
    for (let i = 0; i < 4; i++) assert.equal(await guess(ring[i % 3]!.guard, k), 'refused');
    for (const n of ring) assert.equal(n.guard.check(k).locked, false);
    // The fifth, on yet another node's turn, locks: the count was shared.
    const locks = await ring[4 % 3]!.guard.fail(k);
    assert.deepEqual(locks.map((l) => l.scope), ['identity']);
    // A node that has not synced yet still does not count past the lock: the store refuses to.
    assert.deepEqual(await a.guard.fail(k), []);
    for (const n of ring) await n.guard.sync();
    for (const n of ring) assert.equal(n.guard.check(k).locked, true, 'every node refuses unverified');
    assert.equal(a.guard.check({ address: '198.51.100.8', identity: 'policy:iothubowner' }).locked, false, 'the holder elsewhere is not locked');
  });

  it('a success on one node clears the pair its failures on others recorded', async () => {
    const [a, b] = nodes(2);
    assert.ok(a !== undefined && b !== undefined);
    const k = { address: '198.51.100.20', identity: 'device:d1' };
    for (let i = 0; i < 4; i++) await guess(a.guard, k);
    await b.guard.sync();
    b.guard.succeed(k);
    // The clearing write is not awaited by the caller; give it its round trip.
    await new Promise((r) => setTimeout(r, 200));
    await a.guard.sync();
    // Counting starts over everywhere: four more failures, split, still no lock.
    for (let i = 0; i < 4; i++) await guess((i % 2 === 0 ? a : b).guard, k);
    assert.equal(a.guard.check(k).locked, false);
    const locks = await b.guard.fail(k);
    assert.deepEqual(locks.map((l) => [l.scope, l.seconds]), [['identity', 300]], 'the fifth failure after the success locks');
  });

  it('a correct credential from an address with no failures makes no round trip to the store', async () => {
    const [a] = nodes(1);
    assert.ok(a !== undefined);
    for (let i = 0; i < 100; i++) {
      const k = { address: `203.0.113.${i}`, identity: `device:ok-${i}` };
      assert.equal(a.guard.check(k).locked, false);
      a.guard.succeed(k);
    }
    assert.equal(a.calls(), 0);
  });
});
