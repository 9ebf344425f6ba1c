/**
 * Mutations of recorded sessions. A session is the list of chunks a real client wrote (one
 * packet or frame, or a batch of them, per chunk); a mutation is a short list of operations drawn
 * by fast-check and applied in order: bit flips, byte overwrites, truncation, length-field lies,
 * duplication, splicing with another session, repeated protocol headers, inserted noise, chunks
 * dropped, split or joined. The operations index modulo the session's size, so any operation
 * applies to any session.
 */
import fc from 'fast-check';

export type Framing = 'mqtt' | 'amqp' | 'http' | 'text';

export type MutationOp =
  | { op: 'flip'; chunk: number; at: number; bit: number }
  | { op: 'set'; chunk: number; at: number; value: number }
  | { op: 'truncate'; chunk: number; keep: number }
  | { op: 'lie'; chunk: number; value: number }
  | { op: 'duplicate'; chunk: number; times: number }
  | { op: 'splice'; chunk: number; donor: number; donorChunk: number; cut: number }
  | { op: 'header'; chunk: number }
  | { op: 'noise'; chunk: number; at: number; bytes: Uint8Array }
  | { op: 'drop'; chunk: number }
  | { op: 'split'; chunk: number; at: number }
  | { op: 'join'; chunk: number }
  | { op: 'interesting'; chunk: number; at: number; width: 1 | 2 | 4; value: number };

/** Values at the edges of size fields: zero, one, sign bits, all ones, the MQTT varint limit, "AMQP". */
const INTERESTING = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x1fffff, 0x0fffffff, 0x414d5150, 0x7fffffff, 0x80000000, 0xffffffff];

const idx = fc.nat({ max: 1 << 16 });

export const mutationOp: fc.Arbitrary<MutationOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), chunk: idx, at: idx, bit: fc.nat({ max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('set' as const), chunk: idx, at: idx, value: fc.nat({ max: 255 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), chunk: idx, keep: idx }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('lie' as const), chunk: idx, value: fc.oneof(fc.constantFrom(...INTERESTING), fc.nat(), fc.nat({ max: 600 })) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('duplicate' as const), chunk: idx, times: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('splice' as const), chunk: idx, donor: idx, donorChunk: idx, cut: idx }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('header' as const), chunk: idx }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('noise' as const), chunk: idx, at: idx, bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('drop' as const), chunk: idx }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('split' as const), chunk: idx, at: idx }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('join' as const), chunk: idx }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('interesting' as const), chunk: idx, at: idx, width: fc.constantFrom(1 as const, 2 as const, 4 as const), value: fc.constantFrom(...INTERESTING) }),
  },
);

export const mutationOps = fc.array(mutationOp, { minLength: 1, maxLength: 6 });

/** MQTT's remaining length (§2.2.3), 1-4 bytes after the fixed header's first byte. */
function mqttVarint(n: number): Buffer {
  const out: number[] = [];
  let v = n % 268_435_456;
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) b |= 0x80;
    out.push(b);
  } while (v > 0 && out.length < 4);
  return Buffer.from(out);
}

function mqttLengthEnd(b: Buffer): number {
  let i = 1;
  while (i < b.length && i < 5 && (b[i]! & 0x80) !== 0) i++;
  return Math.min(i + 1, b.length);
}

/** Rewrites the size field of the packet or frame at the start of `b`. */
function lie(b: Buffer, framing: Framing, value: number): Buffer {
  if (b.length === 0) return b;
  switch (framing) {
    case 'mqtt':
      return Buffer.concat([b.subarray(0, 1), mqttVarint(value), b.subarray(mqttLengthEnd(b))]);
    case 'amqp': {
      const out = Buffer.from(b.length >= 4 ? b : Buffer.concat([b, Buffer.alloc(4 - b.length)]));
      out.writeUInt32BE(value >>> 0, 0);
      return out;
    }
    case 'http': {
      const text = b.toString('latin1');
      const replaced = text.replace(/content-length:\s*\d+/i, `Content-Length: ${value}`);
      return Buffer.from(replaced === text ? text.replace('\r\n', `\r\nContent-Length: ${value}\r\n`) : replaced, 'latin1');
    }
    case 'text':
      return b;
  }
}

const HEADERS: Record<Framing, Buffer[]> = {
  mqtt: [],
  amqp: [Buffer.from('AMQP\x00\x01\x00\x00', 'latin1'), Buffer.from('AMQP\x03\x01\x00\x00', 'latin1'), Buffer.from('AMQP\x02\x01\x00\x00', 'latin1')],
  http: [Buffer.from('GET /health HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1'), Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')],
  text: [],
};

/**
 * Applies `ops` to `chunks`. `donors` are other sessions of the same protocol (splicing);
 * `header(chunks)` is what "repeat the protocol header" inserts (MQTT: the session's CONNECT).
 */
export function applyMutations(chunks: readonly Buffer[], ops: readonly MutationOp[], framing: Framing, donors: ReadonlyArray<readonly Buffer[]>): Buffer[] {
  let out: Buffer[] = chunks.map((c) => Buffer.from(c));
  for (const m of ops) {
    if (out.length === 0) out = [Buffer.alloc(0)];
    const ci = m.chunk % out.length;
    const c = out[ci]!;
    switch (m.op) {
      case 'flip':
        if (c.length > 0) c[m.at % c.length]! ^= 1 << m.bit;
        break;
      case 'set':
        if (c.length > 0) c[m.at % c.length] = m.value;
        break;
      case 'interesting': {
        if (c.length < m.width) break;
        const at = m.at % (c.length - m.width + 1);
        if (m.width === 1) c[at] = m.value & 0xff;
        else if (m.width === 2) c.writeUInt16BE(m.value & 0xffff, at);
        else c.writeUInt32BE(m.value >>> 0, at);
        break;
      }
      case 'truncate':
        out[ci] = c.subarray(0, m.keep % (c.length + 1));
        out = out.slice(0, ci + 1);
        break;
      case 'lie':
        out[ci] = lie(c, framing, m.value);
        break;
      case 'duplicate':
        out.splice(ci, 0, ...Array.from({ length: m.times }, () => Buffer.from(c)));
        break;
      case 'splice': {
        const donor = donors.length === 0 ? out : donors[m.donor % donors.length]!;
        const d = donor.length === 0 ? Buffer.alloc(0) : donor[m.donorChunk % donor.length]!;
        const cut = c.length === 0 ? 0 : m.cut % c.length;
        out[ci] = Buffer.concat([c.subarray(0, cut), d.subarray(d.length === 0 ? 0 : m.cut % d.length)]);
        break;
      }
      case 'header': {
        const choices = framing === 'mqtt' ? [out[0]!] : HEADERS[framing];
        const h = choices[m.chunk % Math.max(choices.length, 1)];
        if (h !== undefined) out.splice(ci, 0, Buffer.from(h));
        break;
      }
      case 'noise': {
        const at = m.at % (c.length + 1);
        out[ci] = Buffer.concat([c.subarray(0, at), Buffer.from(m.bytes), c.subarray(at)]);
        break;
      }
      case 'drop':
        if (out.length > 1) out.splice(ci, 1);
        break;
      case 'split': {
        const at = m.at % (c.length + 1);
        out.splice(ci, 1, c.subarray(0, at), c.subarray(at));
        break;
      }
      case 'join':
        if (ci + 1 < out.length) out.splice(ci, 2, Buffer.concat([c, out[ci + 1]!]));
        break;
    }
  }
  // Bound what one input may send: the suite looks for crashes and hangs, not for bandwidth.
  let total = 0;
  const bounded: Buffer[] = [];
  for (const c of out) {
    if (total + c.length > 256 * 1024 || bounded.length >= 400) break;
    total += c.length;
    bounded.push(c);
  }
  return bounded;
}
