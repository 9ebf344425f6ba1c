/**
 * PUBACKs leave in the order the PUBLISHes came [MQTT-4.6.0-2], however the log settles them (a
 * message routed nowhere settles at once, one in a batch later); a message not stored gets no
 * PUBACK and closes the connection; too many waiting holds reading until half have gone.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AckQueue, MAX_PENDING_APPENDS } from '../src/protocol/mqtt/ack-queue.js';

function queue() {
  const out: string[] = [];
  const q = new AckQueue({
    puback: (id) => out.push(`puback ${id}`),
    failed: () => out.push('close'),
    hold: () => out.push('hold'),
    release: () => out.push('release'),
  });
  return { q, out };
}

describe('the MQTT ack queue', () => {
  it('acknowledges in PUBLISH order when later messages settle first, skipping QoS 0', () => {
    const { q, out } = queue();
    const a = q.expect(1);
    const b = q.expect(undefined);
    const c = q.expect(3);
    q.settle(c, true);
    q.settle(b, true);
    assert.deepEqual(out, []);
    q.settle(a, true);
    assert.deepEqual(out, ['puback 1', 'puback 3']);
    assert.equal(q.pending, 0);
  });

  it('a message not stored closes the connection and nothing after it is acknowledged', () => {
    const { q, out } = queue();
    const a = q.expect(1);
    const b = q.expect(2);
    const c = q.expect(3);
    q.settle(c, true);
    q.settle(b, false);
    q.settle(a, true);
    assert.deepEqual(out, ['puback 1', 'close']);
  });

  it('holds reading above the bound and releases at half', () => {
    const { q, out } = queue();
    const slots = Array.from({ length: MAX_PENDING_APPENDS + 1 }, (_, i) => q.expect(i + 1));
    assert.deepEqual(out, ['hold']);
    for (const s of slots.slice(0, MAX_PENDING_APPENDS / 2 + 1)) q.settle(s, true);
    assert.equal(out.at(-1), 'release');
    assert.equal(out.filter((o) => o === 'release').length, 1);
  });
});
