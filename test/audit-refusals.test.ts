/**
 * How the audit log folds connection refusals (refused TLS handshakes, IP-filtered connections):
 * the first of a kind (address, protocol, reason) in an interval is written at once, the rest
 * become one summary when the interval ends; other events are never folded; too many kinds at
 * once fold into one hub-wide summary.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionRefusals, isConnectionRefusal } from '../src/audit/audit-refusals.js';
import type { AuthEvent } from '../src/core/security-events.js';

const T0 = Date.parse('2030-06-01T00:00:00Z');

function refused(remote: string, at: number, over: Partial<AuthEvent> = {}): AuthEvent {
  return { type: 'auth', at, subject: 'connection', identity: '', outcome: 'failure', reason: 'TLS handshake refused: unsupported protocol', reasonCode: 'tls_version', remote, protocol: 'mqtt', ...over };
}

describe('connection refusals in the audit log', () => {
  it('writes the first of a kind at once and the rest of the minute as one summary', () => {
    const f = new ConnectionRefusals(60_000);
    assert.deepEqual(f.take(refused('192.0.2.7', T0), T0), [refused('192.0.2.7', T0)]);
    for (let i = 1; i <= 57; i++) assert.deepEqual(f.take(refused('192.0.2.7', T0 + i * 100), T0 + i * 100), []);
    // Another kind from the same address, and the same kind from another address: written at once.
    assert.equal(f.take(refused('192.0.2.7', T0 + 10, { reasonCode: 'tls_cipher', reason: 'TLS handshake refused: no shared cipher' }), T0 + 10).length, 1);
    assert.equal(f.take(refused('192.0.2.8', T0 + 20), T0 + 20).length, 1);
    assert.deepEqual(f.drain(T0 + 59_999), [], 'the minute is not over');
    const [summary, ...rest] = f.drain(T0 + 60_000);
    assert.deepEqual(rest, [], 'kinds with nothing folded need no summary');
    assert.equal(summary?.remote, '192.0.2.7');
    assert.equal(summary?.reasonCode, 'tls_version');
    assert.equal(summary?.at, T0 + 5700);
    assert.equal(summary?.reason, 'TLS handshake refused: unsupported protocol (57 more like this from 192.0.2.7 in 60 s)');
    assert.equal(f.take(refused('192.0.2.7', T0 + 61_000), T0 + 61_000).length, 1, 'a new minute starts with a row');
  });

  it('an interval that ended without a drain is summarised before the next row of its kind', () => {
    const f = new ConnectionRefusals(60_000);
    f.take(refused('192.0.2.7', T0), T0);
    f.take(refused('192.0.2.7', T0 + 1), T0 + 1);
    const out = f.take(refused('192.0.2.7', T0 + 90_000), T0 + 90_000);
    assert.deepEqual(out.map((e) => e.reason), ['TLS handshake refused: unsupported protocol (1 more like this from 192.0.2.7 in 60 s)', 'TLS handshake refused: unsupported protocol']);
  });

  it('stopping writes every pending summary', () => {
    const f = new ConnectionRefusals(60_000);
    for (let i = 0; i < 3; i++) f.take(refused('192.0.2.7', T0), T0);
    assert.equal(f.drain(T0 + 1, true)[0]?.reason, 'TLS handshake refused: unsupported protocol (2 more like this from 192.0.2.7 in 60 s)');
  });

  it('only connection refusals fold: a device failure or an IP-filter success is written as it comes', () => {
    assert.equal(isConnectionRefusal(refused('192.0.2.7', T0)), true);
    assert.equal(isConnectionRefusal(refused('192.0.2.7', T0, { reasonCode: 'ip_filtered', reason: 'address rejected by the IP filter' })), true);
    assert.equal(isConnectionRefusal(refused('192.0.2.7', T0, { subject: 'device', identity: 'd1', reasonCode: 'locked_out' })), false);
    assert.equal(isConnectionRefusal(refused('192.0.2.7', T0, { outcome: 'success' })), false);
  });

  it('more kinds than it tracks: the rest fold into one hub-wide summary', () => {
    const f = new ConnectionRefusals(60_000);
    let written = 0;
    for (let i = 0; i < 10_500; i++) written += f.take(refused(`10.0.${i >> 8}.${i & 255}`, T0), T0).length;
    assert.equal(written, 10_000);
    const summaries = f.drain(T0 + 60_000);
    assert.equal(summaries.length, 1);
    assert.equal(summaries[0]?.remote, '');
    assert.match(summaries[0]?.reason ?? '', /^500 connection refusals from 500 addresses in 60 s/);
  });
});
