/**
 * The backpressure pieces every protocol uses (src/protocol/transport/backpressure.ts), on a real Writable
 * whose writes complete only when the test says so (a peer that does not read): reading stops
 * above the mark and starts again on 'drain', the cap reports the overflow once, and a closed
 * connection lets its waiters go without reading again.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { OutputBound, ReadGate, outputOverflowReason, type OutputLimits } from '../src/protocol/transport/backpressure.js';

/** A Writable that holds every write until `flush()`, and an input that records pause/resume. */
function harness(limits: OutputLimits) {
  const held: Array<() => void> = [];
  const out = new Writable({
    highWaterMark: 1024,
    write(_chunk: Buffer, _enc, cb) {
      held.push(() => cb());
    },
  });
  const input = { paused: false, pauses: 0, pause: () => ((input.paused = true), input.pauses++), resume: () => (input.paused = false) };
  const gate = new ReadGate(input);
  const overflows: string[] = [];
  const bound = new OutputBound({ pendingBytes: () => out.writableLength, onceDrained: (fn) => out.once('drain', fn) }, gate, limits, (r) => overflows.push(r));
  const write = (bytes: number) => {
    out.write(Buffer.alloc(bytes));
    bound.check();
  };
  /** Completes every write so far; Writable runs one at a time, so keep going until none is left. */
  const flush = async () => {
    while (held.length > 0) {
      held.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { input, gate, bound, overflows, write, flush };
}

describe('ReadGate', () => {
  it('pauses on the first hold and resumes only when every reason is released', () => {
    const calls: string[] = [];
    const gate = new ReadGate({ pause: () => calls.push('pause'), resume: () => calls.push('resume') });
    gate.hold('output');
    gate.hold('backlog');
    gate.hold('output');
    gate.release('output');
    assert.deepEqual(calls, ['pause'], 'still held for the backlog');
    gate.release('appends');
    assert.deepEqual(calls, ['pause'], 'releasing a reason that was not held changes nothing');
    gate.release('backlog');
    assert.deepEqual(calls, ['pause', 'resume']);
    assert.equal(gate.holds('output') || gate.holds('backlog'), false);
  });
});

describe('OutputBound', () => {
  it('stops reading above the mark and reads again once the output drained', async () => {
    const h = harness({ pauseAboveBytes: 4096, maxBytes: 64 * 1024 });
    for (let i = 0; i < 4; i++) h.write(1000);
    assert.equal(h.input.paused, false, 'under the mark');
    assert.equal(h.bound.blocked, false);
    h.write(1000);
    assert.equal(h.input.paused, true, 'over the mark');
    assert.equal(h.bound.blocked, true);
    let drained = false;
    const waiting = h.bound.drained().then(() => (drained = true));
    h.write(1000);
    assert.equal(h.input.pauses, 1, 'one pause while it stays over the mark');
    await new Promise((r) => setImmediate(r));
    assert.equal(drained, false, 'handlers wait while the peer does not read');
    await h.flush();
    await waiting;
    assert.equal(drained, true);
    assert.equal(h.input.paused, false, 'reading again');
    assert.equal(h.bound.blocked, false);
    assert.deepEqual(h.overflows, []);
  });

  it('reports the cap once, with the reason, and lets waiters go when closed', async () => {
    const limits = { pauseAboveBytes: 1024, maxBytes: 8 * 1024 };
    const h = harness(limits);
    for (let i = 0; i < 8; i++) h.write(1024);
    assert.deepEqual(h.overflows, [], 'at the cap, not over it');
    const waiting = h.bound.drained();
    h.write(1);
    h.write(1024);
    assert.deepEqual(h.overflows, [outputOverflowReason(limits)]);
    assert.match(h.overflows[0] ?? '', /^output buffer over 8192 bytes: the client is not reading$/);
    h.bound.close();
    await waiting;
    assert.equal(h.input.paused, true, 'a closed connection is not read again');
    await h.bound.drained();
  });
});
