/**
 * A bound on what rhea's decoder builds from a frame. An AMQP array (part 1 §1.6.23: size, count,
 * one element constructor, then the elements) of a zero-width type (null, true, false, uint0,
 * ulong0, list0: §1.6) carries no bytes per element, so rhea's `read_array_items` loops `count`
 * times (up to 2^32) on a 10-byte input: 10 bytes gave 10 million elements and 654 MB, and the
 * fuzzer's 0xffffffff took the hub to "JavaScript heap out of memory", before authentication (any
 * frame the guard lets through is decoded). Every element of an encoded array or list takes at
 * least one byte unless its type is zero-width, so a count above the bytes left in the frame is
 * refused as a protocol error: rhea's reader throws, the connection is cut (amqp-admission).
 */
import { createRequire } from 'node:module';

interface RheaReader {
  buffer: Buffer;
  position: number;
  read_array_items(n: number, type: unknown): unknown[];
  read_n(n: number): unknown[];
}

const require = createRequire(import.meta.url);
let bounded = false;

/** Installs the bound on rhea's Reader (once per process; rhea's modules are shared). */
export function boundRheaDecoder(): void {
  if (bounded) return;
  bounded = true;
  const types = require('rhea/lib/types.js') as { Reader: { prototype: RheaReader } };
  const { ProtocolError } = require('rhea/lib/errors.js') as { ProtocolError: new (message: string) => Error };
  const proto = types.Reader.prototype;
  const check = (reader: RheaReader, n: number, what: string) => {
    const left = reader.buffer.length - reader.position;
    if (n > left) throw new ProtocolError(`an encoded ${what} of ${n} elements in ${left} bytes`);
  };
  const readArrayItems = proto.read_array_items;
  proto.read_array_items = function (this: RheaReader, n: number, type: unknown) {
    check(this, n, 'array');
    return readArrayItems.call(this, n, type);
  };
  const readN = proto.read_n;
  proto.read_n = function (this: RheaReader, n: number) {
    check(this, n, 'list or map');
    return readN.call(this, n);
  };
}
