/**
 * Policy usage recorded on two nodes of one store (issue 16): each flush merges into what the
 * other wrote, so the posture audit sees every node's uses, not the last writer's.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { SecretBox } from '../src/core/secret-box.js';
import { PolicyUsage, readPolicyUsage } from '../src/policies/policy-usage.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';

it('two nodes flushing their policy uses keep both', async () => {
  const store = await openSqliteStore(':memory:', new SecretBox(randomBytes(32)));
  let now = 1_900_000_000_000;
  const clock = { now: () => now };
  try {
    const a = new PolicyUsage(store, clock);
    const b = new PolicyUsage(store, clock);
    await a.load();
    now += 1000;
    await b.load();
    a.record('iothubowner', 'RegistryRead');
    b.record('service', 'ServiceConnect');
    now += 1000;
    b.record('iothubowner', 'RegistryRead');
    await Promise.all([a.flush(), b.flush()]);
    a.record('device', 'DeviceConnect');
    await a.flush();
    const doc = await readPolicyUsage(store);
    assert.deepEqual(doc?.used, {
      iothubowner: { RegistryRead: 1_900_000_002_000 },
      service: { ServiceConnect: 1_900_000_001_000 },
      device: { DeviceConnect: 1_900_000_002_000 },
    });
    assert.equal(doc?.since, 1_900_000_000_000, 'tracking began when the first node started');
  } finally {
    await store.close();
  }
});
