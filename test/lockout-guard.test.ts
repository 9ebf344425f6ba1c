/**
 * The brute-force lockout on its own, on a clock the test moves: failures are counted per source
 * address and per (address, claimed identity), never per claimed identity alone, so a party with
 * no credential cannot lock anyone else out; a lock is not renewed by attempts made while it holds;
 * the backoff stops at the maximum; and a locked address still lets an identity through that has
 * not failed from it (the NAT neighbour of a guesser), while the guesser's own pairs stay shut.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LockoutGuard, type AttemptKeys } from '../src/access/lockout.js';
import { DEFAULT_SETTINGS, type HubSettingsBody } from '../src/core/settings.js';
import { memoryCounters } from './support/counters.js';

const S = 1000;

async function rig(over: Partial<HubSettingsBody['lockout']> = {}) {
  const clock = { t: Date.parse('2030-06-01T00:00:00Z'), now() { return this.t; } };
  const guard = new LockoutGuard({ ...DEFAULT_SETTINGS.lockout, maxFailures: 3, maxFailuresPerAddress: 10, windowSeconds: 60, lockoutSeconds: 10, maxLockoutSeconds: 40, ...over }, clock, await memoryCounters(), { syncMs: 0 });
  /** What the gate does for one attempt: refused while locked (not counted), else verified. */
  const attempt = async (k: AttemptKeys, correct: boolean): Promise<'ok' | 'refused' | 'locked'> => {
    if (guard.check(k).locked) return 'locked';
    if (correct) {
      guard.succeed(k);
      return 'ok';
    }
    await guard.fail(k);
    return 'refused';
  };
  /** When the lock on `k` ends (it must be locked). */
  const until = (k: AttemptKeys): number => {
    const s = guard.check(k);
    assert.ok(s.locked, `${k.address} ${k.identity ?? ''} is locked`);
    return s.until;
  };
  return { clock, guard, attempt, until };
}

/** An attempt at `identity` from `address` (what the credential was does not matter to the guard). */
const at = (address: string, identity: string, _credential?: string): AttemptKeys => ({ address, identity });

describe('lockout keys', async () => {
  it('guesses from one address under an identity lock that identity at that address only', async () => {
    const { attempt } = await rig();
    for (let i = 0; i < 3; i++) assert.equal(await attempt(at('10.0.0.66', 'policy:iothubowner', `forged-${i}`), false), 'refused');
    assert.equal(await attempt(at('10.0.0.66', 'policy:iothubowner'), true), 'locked', 'the guessing address is shut for that identity');
    assert.equal(await attempt(at('10.0.0.7', 'policy:iothubowner'), true), 'ok', 'the real owner at another address gets in');
    assert.equal(await attempt(at('10.0.0.66', 'device:d1'), true), 'ok', 'another identity at the guessing address is not locked');
  });

  it('guesses spread over many addresses lock no identity', async () => {
    const { attempt } = await rig();
    for (let i = 0; i < 50; i++) assert.equal(await attempt(at(`10.1.0.${i}`, 'device:d1'), false), 'refused');
    assert.equal(await attempt(at('10.0.0.7', 'device:d1'), true), 'ok');
  });

  it('one presented credential replayed from many addresses locks nothing for the others', async () => {
    const { attempt } = await rig();
    for (let i = 0; i < 20; i++) await attempt(at(`10.2.0.${i}`, 'operator:alice', 'same-forged-jwt'), false);
    assert.equal(await attempt(at('10.0.0.7', 'operator:alice', 'real-jwt'), true), 'ok');
  });

  it('IPv6 addresses of one /64 count as one address', async () => {
    const { attempt } = await rig();
    for (let i = 0; i < 10; i++) await attempt(at(`2001:db8:1:2::${(i + 1).toString(16)}`, `device:spray-${i}`), false);
    // The address is locked now: a new guess for an identity it already failed is refused unverified.
    assert.equal(await attempt(at('2001:db8:1:2:ffff::1', 'device:spray-3'), true), 'locked');
    assert.equal(await attempt(at('2001:db8:1:3::1', 'device:spray-3'), true), 'ok', 'the next /64 is another address');
  });
});

describe('lock duration', async () => {
  it('attempts while locked neither count nor renew the lock', async () => {
    const { clock, guard, attempt, until } = await rig();
    const k = at('10.0.0.66', 'device:d1');
    for (let i = 0; i < 3; i++) await attempt(k, false);
    const first = until(k);
    assert.equal(first, clock.t + 10 * S);
    // One guess a second for the whole lock, the gate counting each (as the old guard did).
    for (let i = 0; i < 9; i++) {
      clock.t += S;
      await guard.fail(k);
      assert.equal(until(k), first, 'the lock does not move');
    }
    clock.t = first + 1;
    assert.equal(await attempt(k, true), 'ok', 'the right key passes once the lock is over');
  });

  it('one guess per period after the lock ends does not re-lock at once: the window starts over', async () => {
    const { clock, guard, attempt } = await rig();
    const k = at('10.0.0.66', 'device:d1');
    for (let i = 0; i < 3; i++) await attempt(k, false);
    for (let i = 0; i < 9; i++) {
      clock.t += S;
      await guard.fail(k);
    }
    clock.t += S; // the lock's last moment has passed
    assert.equal(await attempt(k, false), 'refused', 'the first guess after the lock is verified and refused');
    assert.equal(guard.check(k).locked, false, 'one failure does not lock again');
  });

  it('the backoff doubles and stops at the maximum', async () => {
    const { clock, attempt, until } = await rig({ maxFailuresPerAddress: 100 });
    const k = at('10.0.0.66', 'device:d1');
    const lengths: number[] = [];
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 3; i++) await attempt(k, false);
      const end = until(k);
      lengths.push((end - clock.t) / S);
      clock.t = end + 1;
    }
    assert.deepEqual(lengths, [10, 20, 40, 40, 40, 40]);
  });

  it('a success clears the pair, never the address', async () => {
    const { guard, attempt } = await rig();
    for (let i = 0; i < 2; i++) await attempt(at('10.0.0.66', 'device:d1'), false);
    assert.equal(await attempt(at('10.0.0.66', 'device:d1'), true), 'ok');
    for (let i = 0; i < 2; i++) assert.equal(await attempt(at('10.0.0.66', 'device:d1'), false), 'refused', 'counting starts over');
    assert.equal(guard.check(at('10.0.0.66', 'device:d1')).locked, false);
  });
});

describe('a locked address', async () => {
  it('keeps refusing what it guessed at, lets through an identity that never failed there, and closes after a spray', async () => {
    const { clock, attempt, until } = await rig();
    for (let i = 0; i < 10; i++) await attempt(at('10.0.0.66', `device:guess-${i}`), false);
    const end = until(at('10.0.0.66', 'device:guess-0'));
    assert.equal(await attempt(at('10.0.0.66', 'device:guess-0'), true), 'locked', 'an identity it failed for stays shut');
    assert.equal(await attempt(at('10.0.0.66', 'device:neighbour'), true), 'ok', 'a device behind the same NAT that never failed gets in');
    // Spraying fresh names from the locked address: each is verified once, then the address closes.
    let verified = 0;
    for (let i = 0; i < 50; i++) if (await attempt(at('10.0.0.66', `device:fresh-${i}`), false) === 'refused') verified++;
    assert.equal(verified, 10, 'at most maxFailuresPerAddress guesses while locked');
    assert.equal(await attempt(at('10.0.0.66', 'device:another-neighbour'), true), 'locked', 'closed for the rest of the lock');
    clock.t = end + 1;
    assert.equal(await attempt(at('10.0.0.66', 'device:another-neighbour'), true), 'ok', 'open again when the lock ends');
  });
});

describe('memory', async () => {
  it('a flood of distinct guesses cannot push out the lock of the address that made them', async () => {
    const { attempt, guard } = await rig({ maxFailuresPerAddress: 5 });
    // Locked, then closed: five more names guessed while locked.
    for (let i = 0; i < 10; i++) await attempt(at('10.9.9.9', `device:x-${i}`), false);
    assert.equal(guard.check(at('10.9.9.9', 'device:never-tried')).locked, true);
    // 120,000 one-off guesses from other addresses (more keys than the guard keeps).
    for (let i = 0; i < 120_000; i++) await attempt(at(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, `device:y-${i}`, `c${i}`), false);
    assert.ok(guard.size <= 100_000, `at most 100,000 counters (${guard.size})`);
    assert.equal(guard.check(at('10.9.9.9', 'device:never-tried')).locked, true, 'the lock is still there');
  });
});
