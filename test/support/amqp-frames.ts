/**
 * A few AMQP 1.0 frames written by hand, for attacks and the frame guard's unit tests: a client
 * library would never send what these tests need to send. Encodings: AMQP 1.0 part 1 (types),
 * frames: part 2 §2.3 (size, DOFF, type, channel), SASL: part 5 §5.3.
 */

export const AMQP_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x00, 0x01, 0x00, 0x00]);
export const SASL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x03, 0x01, 0x00, 0x00]);
export const TLS_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x02, 0x01, 0x00, 0x00]);

/** An encoded AMQP value. */
type Value = Buffer;

export const nul: Value = Buffer.from([0x40]);
export const bool = (v: boolean): Value => Buffer.from([v ? 0x41 : 0x42]);
export function uint(v: number): Value {
  const b = Buffer.alloc(5);
  b[0] = 0x70;
  b.writeUInt32BE(v, 1);
  return b;
}
function variable(code8: number, code32: number, data: Buffer): Value {
  if (data.length < 256) return Buffer.concat([Buffer.from([code8, data.length]), data]);
  const head = Buffer.alloc(5);
  head[0] = code32;
  head.writeUInt32BE(data.length, 1);
  return Buffer.concat([head, data]);
}
export const str = (s: string): Value => variable(0xa1, 0xb1, Buffer.from(s, 'utf8'));
export const sym = (s: string): Value => variable(0xa3, 0xb3, Buffer.from(s, 'ascii'));
export const bin = (b: Buffer): Value => variable(0xa0, 0xb0, b);
export function list(items: Value[]): Value {
  const body = Buffer.concat(items);
  const head = Buffer.alloc(9);
  head[0] = 0xd0;
  head.writeUInt32BE(body.length + 4, 1);
  head.writeUInt32BE(items.length, 5);
  return Buffer.concat([head, body]);
}
/** A described list with a small-ulong descriptor (every performative and terminus). */
export const described = (code: number, items: Value[]): Value => Buffer.concat([Buffer.from([0x00, 0x53, code]), list(items)]);

/** One frame: 4-byte size, DOFF 2, type (0 AMQP, 1 SASL), channel, then the body. */
export function frame(body: Buffer, opts: { type?: 0 | 1; channel?: number } = {}): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head[4] = 2;
  head[5] = opts.type ?? 0;
  head.writeUInt16BE(opts.channel ?? 0, 6);
  return Buffer.concat([head, body]);
}

/** An empty frame (a heartbeat): the smallest valid AMQP frame. */
export const EMPTY_FRAME = frame(Buffer.alloc(0));

export const open = (containerId: string): Buffer => frame(described(0x10, [str(containerId)]));
export const begin = (): Buffer => frame(described(0x11, [nul, uint(0), uint(2048), uint(2048)]));
/** The client attaches a sender (role false) to `target`. */
export const attachSender = (name: string, handle: number, target: string): Buffer =>
  frame(described(0x12, [str(name), uint(handle), bool(false), nul, nul, described(0x28, [nul]), described(0x29, [str(target)]), nul, nul, uint(0)]));
/** A transfer on `handle`; `deliveryId` only on the first frame of a delivery; `more` when more frames follow. */
export function transfer(handle: number, payload: Buffer, opts: { deliveryId?: number; more: boolean }): Buffer {
  const fields =
    opts.deliveryId === undefined
      ? [uint(handle), nul, nul, nul, nul, bool(opts.more)]
      : [uint(handle), uint(opts.deliveryId), bin(Buffer.from([opts.deliveryId])), uint(0), bool(false), bool(opts.more)];
  return frame(Buffer.concat([described(0x14, fields), payload]));
}
/** SASL init with the ANONYMOUS mechanism (§5.3.3.2), in a SASL frame (type 1). */
export const saslInitAnonymous = (): Buffer => frame(described(0x41, [sym('ANONYMOUS'), bin(Buffer.from('anonymous'))]), { type: 1 });
