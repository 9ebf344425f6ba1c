/**
 * The AMQP frame guard in memory (issue 14 item 1): one protocol header per layer, the SASL layer
 * ending only at the hub's outcome, MIN-MAX-FRAME-SIZE for SASL frames and the open, the
 * pre-authentication frame size, byte and frame budgets, and the same verdict however the bytes
 * are split into chunks.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FrameGuard, MIN_MAX_FRAME_SIZE, type FrameGuardLimits, type GuardRefusal } from '../src/protocol/amqp/frame-guard.js';
import { AMQP_HEADER, EMPTY_FRAME, SASL_HEADER, TLS_HEADER, attachSender, begin, frame, open, saslInitAnonymous, transfer } from './support/amqp-frames.js';

const LIMITS: FrameGuardLimits = { maxFrameSize: 256 * 1024, preAuthMaxFrameSize: 16 * 1024, preAuthMaxBytes: 64 * 1024, preAuthMaxFrames: 64 };

function feedAll(guard: FrameGuard, ...chunks: Buffer[]): GuardRefusal | undefined {
  for (const c of chunks) {
    const r = guard.feed(c);
    if (r !== undefined) return r;
  }
  return undefined;
}

/** Feeds `bytes` one byte at a time. */
function feedBytes(guard: FrameGuard, bytes: Buffer): GuardRefusal | undefined {
  return feedAll(guard, ...Array.from(bytes, (b) => Buffer.from([b])));
}

const body = (n: number) => frame(Buffer.alloc(n - 8, 0x41));
const handshake = Buffer.concat([AMQP_HEADER, open('client'), begin(), attachSender('cbs', 0, '$cbs')]);

describe('frame guard: protocol state', () => {
  it('takes the AMQP header and frames, whole or byte by byte', () => {
    const stream = Buffer.concat([handshake, transfer(0, Buffer.alloc(1000), { deliveryId: 0, more: false }), EMPTY_FRAME]);
    assert.equal(feedAll(new FrameGuard(LIMITS), stream), undefined);
    assert.equal(feedBytes(new FrameGuard(LIMITS), stream), undefined);
  });

  it('refuses a second protocol header after the AMQP header', () => {
    const r = feedAll(new FrameGuard(LIMITS), AMQP_HEADER, open('client'), AMQP_HEADER);
    assert.deepEqual(r, { kind: 'protocol', reason: 'a protocol header after the AMQP header' });
    assert.equal(feedBytes(new FrameGuard(LIMITS), Buffer.concat([AMQP_HEADER, AMQP_HEADER]))?.kind, 'protocol', 'also split byte by byte');
  });

  it('refuses the AMQP header before the hub sent its SASL outcome', () => {
    const r = feedAll(new FrameGuard(LIMITS, () => false), Buffer.concat([SASL_HEADER, saslInitAnonymous(), AMQP_HEADER]));
    assert.deepEqual(r, { kind: 'protocol', reason: 'the AMQP header before the SASL outcome' });
  });

  it('takes the AMQP header once the hub sent its SASL outcome, and nothing but it', () => {
    let outcome = false;
    const guard = new FrameGuard(LIMITS, () => outcome);
    assert.equal(feedAll(guard, SASL_HEADER, saslInitAnonymous()), undefined);
    outcome = true;
    assert.equal(feedAll(guard, handshake), undefined);

    const again = new FrameGuard(LIMITS, () => true);
    assert.equal(feedAll(again, SASL_HEADER), undefined);
    assert.equal(feedAll(again, SASL_HEADER)?.reason, 'a second SASL header');
    const frameInstead = new FrameGuard(LIMITS, () => true);
    assert.equal(feedAll(frameInstead, SASL_HEADER, open('client'))?.reason, 'not an AMQP protocol header');
  });

  it('refuses a TLS header, another protocol id or version, and anything that is not AMQP', () => {
    assert.match(feedAll(new FrameGuard(LIMITS), TLS_HEADER)?.reason ?? '', /TLS protocol header/);
    assert.match(feedAll(new FrameGuard(LIMITS), Buffer.from('AMQP\x01\x01\x00\x00', 'latin1'))?.reason ?? '', /protocol id 1/);
    assert.match(feedAll(new FrameGuard(LIMITS), Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'))?.reason ?? '', /version/);
    assert.equal(feedAll(new FrameGuard(LIMITS), Buffer.from('G'))?.reason, 'not an AMQP protocol header', 'on the first byte');
  });

  it('refuses a frame of the wrong layer, a bad data offset, and a frame shorter than its header', () => {
    assert.match(feedAll(new FrameGuard(LIMITS), AMQP_HEADER, saslInitAnonymous())?.reason ?? '', /type 1 in the AMQP layer/);
    assert.match(feedAll(new FrameGuard(LIMITS, () => false), SASL_HEADER, open('x'))?.reason ?? '', /type 0 in the SASL layer/);
    const badDoff = Buffer.from(EMPTY_FRAME);
    badDoff[4] = 1;
    assert.match(feedAll(new FrameGuard(LIMITS), AMQP_HEADER, badDoff)?.reason ?? '', /data offset 1/);
    assert.match(feedAll(new FrameGuard(LIMITS), AMQP_HEADER, Buffer.from([0, 0, 0, 4]))?.reason ?? '', /smaller than its header/);
  });
});

describe('frame guard: bounds', () => {
  it('holds SASL frames and the open to MIN-MAX-FRAME-SIZE', () => {
    assert.equal(feedAll(new FrameGuard(LIMITS), AMQP_HEADER, body(MIN_MAX_FRAME_SIZE)), undefined);
    assert.match(feedAll(new FrameGuard(LIMITS), AMQP_HEADER, body(MIN_MAX_FRAME_SIZE + 1))?.reason ?? '', /exceeds the maximum of 512 before the open/);
    const sasl = Buffer.from(body(MIN_MAX_FRAME_SIZE + 1));
    sasl[5] = 1;
    assert.match(feedAll(new FrameGuard(LIMITS), SASL_HEADER, sasl)?.reason ?? '', /SASL frame of 513 bytes/);
  });

  it('judges a frame on its 4 size bytes, before the rest of its header arrives', () => {
    assert.equal(feedAll(new FrameGuard(LIMITS), AMQP_HEADER, Buffer.from([0x7f, 0xff, 0xff, 0xff]))?.kind, 'protocol');
  });

  it('before authentication: a smaller frame limit, and byte and frame budgets; after it, frames up to max-frame-size', () => {
    const guard = new FrameGuard(LIMITS);
    assert.equal(feedAll(guard, handshake, body(LIMITS.preAuthMaxFrameSize)), undefined);
    assert.deepEqual(feedAll(guard, body(LIMITS.preAuthMaxFrameSize + 1)), {
      kind: 'pre-auth-limit',
      reason: `a frame of ${LIMITS.preAuthMaxFrameSize + 1} bytes exceeds the maximum of ${LIMITS.preAuthMaxFrameSize} before authentication`,
    });

    const bytes = new FrameGuard(LIMITS);
    assert.equal(feedAll(bytes, handshake), undefined);
    const r = feedAll(bytes, ...Array.from({ length: 8 }, () => body(LIMITS.preAuthMaxFrameSize)));
    assert.equal(r?.kind, 'pre-auth-limit');
    assert.match(r?.reason ?? '', /bytes before authentication/);

    const frames = new FrameGuard(LIMITS);
    assert.equal(feedAll(frames, AMQP_HEADER, open('x')), undefined);
    assert.match(feedAll(frames, ...Array.from({ length: LIMITS.preAuthMaxFrames }, () => EMPTY_FRAME))?.reason ?? '', /frames before authentication/);

    const authed = new FrameGuard(LIMITS);
    assert.equal(feedAll(authed, handshake), undefined);
    authed.authenticated();
    assert.equal(feedAll(authed, ...Array.from({ length: 8 }, () => body(LIMITS.maxFrameSize)), ...Array.from({ length: 200 }, () => EMPTY_FRAME)), undefined);
    assert.match(feedAll(authed, body(LIMITS.maxFrameSize + 1))?.reason ?? '', /exceeds the maximum of 262144$/);
  });

  it('a refused stream stays refused', () => {
    const guard = new FrameGuard(LIMITS);
    const first = feedAll(guard, AMQP_HEADER, AMQP_HEADER);
    assert.equal(guard.feed(EMPTY_FRAME), first);
  });
});

describe('frame guard: chunking', () => {
  // Streams a client could send: headers of every kind, frames valid and not, in random order.
  const piece = fc.oneof(
    fc.constantFrom(AMQP_HEADER, SASL_HEADER, TLS_HEADER, EMPTY_FRAME, open('c'), begin(), saslInitAnonymous(), body(600), body(20_000)),
    fc.uint8Array({ minLength: 1, maxLength: 12 }).map((a) => Buffer.from(a)),
  );

  it('gives the same verdict whole or in any chunks', () => {
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }), fc.boolean(), (pieces, cuts, outcome) => {
        const stream = Buffer.concat(pieces);
        const whole = new FrameGuard(LIMITS, () => outcome).feed(stream);
        const chunked = new FrameGuard(LIMITS, () => outcome);
        let verdict: GuardRefusal | undefined;
        for (let at = 0, i = 0; at < stream.length && verdict === undefined; i++) {
          const n = cuts[i % cuts.length] ?? 1;
          verdict = chunked.feed(stream.subarray(at, at + n));
          at += n;
        }
        assert.deepEqual(verdict, whole);
      }),
    );
  });
});
