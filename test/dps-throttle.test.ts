import assert from 'node:assert/strict';
import { test } from 'node:test';
import { POLL_WINDOW_MS, ProvisioningThrottle, RetryLater } from '../src/dps/throttle.js';
import { memoryCounters } from './support/counters.js';

async function throwsRetry(p: Promise<void>): Promise<number> {
  let seconds = -1;
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof RetryLater);
    assert.equal(e.status, 429);
    seconds = e.retryAfterSeconds;
    return true;
  });
  return seconds;
}

test('five status polls per ten seconds per registration, case-insensitively; then retry-after', async () => {
  let now = 1_000_000;
  const t = new ProvisioningThrottle({ now: () => now }, 1000, await memoryCounters());
  for (let i = 0; i < 5; i++) await t.poll('Dev-1');
  now += 2000;
  const wait = await throwsRetry(t.poll('dev-1'));
  assert.ok(wait >= 1 && wait <= 8, `retry-after ${wait}`);
  await t.poll('dev-2');
  now += POLL_WINDOW_MS;
  await t.poll('dev-1');
});

test('the service-wide registration rate refills over the minute', async () => {
  let now = 0;
  const t = new ProvisioningThrottle({ now: () => now }, 2, await memoryCounters());
  await t.register();
  await t.register();
  const wait = await throwsRetry(t.register());
  assert.ok(wait >= 1 && wait <= 30, `retry-after ${wait}`);
  now += 30_000;
  await t.register();
});

test('the limits hold for the service, not per node: nodes on one store share them', async () => {
  let now = 5_000_000;
  const clock = { now: () => now };
  const shared = await memoryCounters();
  const nodes = [new ProvisioningThrottle(clock, 3, shared), new ProvisioningThrottle(clock, 3, shared), new ProvisioningThrottle(clock, 3, shared)];
  for (let i = 0; i < 5; i++) await nodes[i % 3]!.poll('spread-dev');
  await throwsRetry(nodes[2]!.poll('spread-dev'));
  for (const n of nodes) await n.register();
  await throwsRetry(nodes[0]!.register());
  now += POLL_WINDOW_MS;
  await nodes[1]!.poll('spread-dev');
});
