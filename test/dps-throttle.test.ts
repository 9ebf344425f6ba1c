import assert from 'node:assert/strict';
import { test } from 'node:test';
import { POLL_WINDOW_MS, ProvisioningThrottle, RetryLater } from '../src/dps/throttle.js';

function throwsRetry(fn: () => void): number {
  let seconds = -1;
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof RetryLater);
    assert.equal(e.status, 429);
    seconds = e.retryAfterSeconds;
    return true;
  });
  return seconds;
}

test('five status polls per ten seconds per registration, case-insensitively; then retry-after', () => {
  let now = 1_000_000;
  const t = new ProvisioningThrottle({ now: () => now }, 1000);
  for (let i = 0; i < 5; i++) t.poll('Dev-1');
  now += 2000;
  const wait = throwsRetry(() => t.poll('dev-1'));
  assert.ok(wait >= 1 && wait <= 8, `retry-after ${wait}`);
  t.poll('dev-2');
  now += POLL_WINDOW_MS;
  t.poll('dev-1');
});

test('the service-wide registration rate refills over the minute', () => {
  let now = 0;
  const t = new ProvisioningThrottle({ now: () => now }, 2);
  t.register();
  t.register();
  const wait = throwsRetry(() => t.register());
  assert.ok(wait >= 1 && wait <= 30, `retry-after ${wait}`);
  now += 30_000;
  t.register();
});
