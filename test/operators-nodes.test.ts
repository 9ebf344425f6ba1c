/**
 * Operators managed on two nodes of one store (issue 16): a token one node issued works on the
 * other (one signing key, the operator looked up on first sight); disabling the operator on one
 * node refuses its tokens on the other at the next re-read, at the latest after `refreshMs`,
 * whether or not a bus message arrived; and a change made on a stale etag is refused.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { HubError } from '../src/core/errors.js';
import { SecretBox } from '../src/core/secret-box.js';
import { OperatorService } from '../src/access/operators.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { testBus } from './support/test-bus.js';

const refusedAs = (code: string) => (err: unknown) => err instanceof HubError && (err.authFailure === code || err.code === code);

it('operators changed on one node bite on the other', async () => {
  const store = await openSqliteStore(':memory:', new SecretBox(randomBytes(32)));
  const clock = { now: () => Date.now() };
  // Two buses that never hear each other: only the periodic re-read can tell A of B's change.
  const a = new OperatorService(store, clock, () => 'hub.example', testBus('node-a'), { refreshMs: 100 });
  const b = new OperatorService(store, clock, () => 'hub.example', testBus('node-b'), { refreshMs: 100 });
  try {
    await Promise.all([a.load(), b.load()]);
    await a.create('alice');
    await a.createAssignment('alice', 'Owner', '/', 'test');
    const { token } = await a.issueToken('alice', 600);
    const onB = await b.authenticate(token);
    assert.deepEqual([...onB.roles], ['Owner'], 'B knows the operator and its role on first sight');

    // A change on B made from B's stale read of the row is refused, not applied over A's.
    const stale = b.get('alice');
    assert.ok(stale !== undefined);
    await a.update('alice', { revokeTokens: false, enabled: true });
    await assert.rejects(b.update('alice', { enabled: false }, stale.etag), refusedAs('PreconditionFailed'));

    await b.update('alice', { enabled: false });
    // A hears of it without being told: its periodic re-read.
    await new Promise((r) => setTimeout(r, 300));
    await assert.rejects(a.authenticate(token), refusedAs('disabled'));

    await b.update('alice', { enabled: true });
    await a.refresh();
    assert.equal((await a.authenticate(token)).name, 'alice');
    await b.delete('alice');
    await a.refresh();
    await assert.rejects(a.authenticate(token), refusedAs('unknown_identity'));
  } finally {
    a.stop();
    b.stop();
    await store.close();
  }
});
