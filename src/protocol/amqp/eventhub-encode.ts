/**
 * The Event Hubs-compatible endpoint's messages encoded straight into bytes (issue 17: the read
 * path's cost): exactly the bytes rhea's generic `message.encode(eventHubMessage(r, runtime))`
 * produces (test/eventhub-encode.test.ts compares them byte for byte), without rhea's wrapping of
 * every value in a typed object and its growing writer. The reader sends them pre-encoded: rhea's
 * `Sender.send(bytes, tag, 0)` sends a payload given with a message format as it is.
 *
 * rhea's layout, which this follows: an empty header section (rhea always writes one), delivery
 * annotations (runtime metrics, when asked for), message annotations (a map32 with symbol keys),
 * the properties list (list32 up to the last field set, null in between; list0 when none), the
 * application properties (a map32 with string keys, when any), the body as one data section.
 * Strings and symbols take the 8-bit length form up to 255 bytes (symbols measured in UTF-8 and
 * written in latin1, as rhea does), longs the small form within -128..127.
 *
 * A record this encoder does not cover the same way (an `x-opt-` system property, which would
 * replace an annotation in place; a value that is not a string) is encoded by rhea.
 */
import rhea from 'rhea';
import type { LogRecord, PartitionProperties } from '../../log/log-ports.js';
import { eventHubMessage } from './eventhub-message.js';

/** AMQP 1.0 type codes. */
const Code = {
  Null: 0x40,
  List0: 0x45,
  SmallLong: 0x55,
  Long: 0x81,
  Timestamp: 0x83,
  Vbin8: 0xa0,
  Str8: 0xa1,
  Sym8: 0xa3,
  Vbin32: 0xb0,
  Str32: 0xb1,
  Sym32: 0xb3,
  List32: 0xd0,
  Map32: 0xd1,
} as const;

/** Properties-section field index of each system property that is an AMQP message property. */
const PROPERTY_FIELD: Readonly<Record<string, number>> = {
  'message-id': 0,
  'user-id': 1,
  to: 2,
  'correlation-id': 5,
  'content-type': 6,
  'content-encoding': 7,
  'absolute-expiry-time': 8,
};
/** content_type and content_encoding are symbols; the others strings, user_id binary, absolute_expiry_time a timestamp. */
const SYMBOL_FIELDS = new Set([6, 7]);

const TWO_32 = 2 ** 32;

/** One growing scratch buffer: encoding is synchronous, each message is copied out of it. */
let buf = Buffer.allocUnsafeSlow(64 * 1024);
let pos = 0;

function ensure(n: number): void {
  if (pos + n <= buf.length) return;
  const bigger = Buffer.allocUnsafeSlow(Math.max(buf.length * 2, pos + n));
  buf.copy(bigger, 0, 0, pos);
  buf = bigger;
}

function u8(v: number): void {
  ensure(1);
  buf[pos++] = v;
}

function described(code: number): void {
  ensure(3);
  buf[pos++] = 0x00;
  buf[pos++] = 0x53;
  buf[pos++] = code;
}

function int64(v: number): void {
  ensure(8);
  if (v >= 0) {
    buf.writeUInt32BE(Math.floor(v / TWO_32), pos);
    buf.writeUInt32BE(v % TWO_32, pos + 4);
  } else {
    buf.writeBigInt64BE(BigInt(v), pos);
  }
  pos += 8;
}

function long(v: number): void {
  if (v > 127 || v < -128) {
    u8(Code.Long);
    int64(v);
  } else {
    ensure(2);
    buf[pos++] = Code.SmallLong;
    buf.writeInt8(v, pos++);
  }
}

function timestamp(ms: number): void {
  u8(Code.Timestamp);
  int64(ms);
}

/** A string (UTF-8) or a symbol (rhea: sized by its UTF-8 length, written in latin1). */
function text(s: string, symbol: boolean): void {
  // ASCII up to 255 characters (the keys and nearly every value): one byte each, copied here;
  // `buf.write` costs more to call than these short strings take to copy.
  const len = s.length;
  if (len <= 255) {
    ensure(2 + len);
    const at = pos + 2;
    let i = 0;
    for (; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      buf[at + i] = c;
    }
    if (i === len) {
      buf[pos] = symbol ? Code.Sym8 : Code.Str8;
      buf[pos + 1] = len;
      pos = at + len;
      return;
    }
  }
  const encoding = symbol ? 'latin1' : 'utf8';
  // At most 3 UTF-8 bytes per UTF-16 unit: up to 85 units always fit the 8-bit length form.
  const small = s.length <= 85 || Buffer.byteLength(s, 'utf8') <= 255;
  ensure(5 + s.length * 3);
  if (small) {
    buf[pos] = symbol ? Code.Sym8 : Code.Str8;
    const n = buf.write(s, pos + 2, encoding);
    buf[pos + 1] = n;
    pos += 2 + n;
  } else {
    buf[pos] = symbol ? Code.Sym32 : Code.Str32;
    const n = buf.write(s, pos + 5, encoding);
    buf.writeUInt32BE(n, pos + 1);
    pos += 5 + n;
  }
}

function binary(b: Buffer): void {
  ensure(5 + b.length);
  if (b.length > 255) {
    buf[pos] = Code.Vbin32;
    buf.writeUInt32BE(b.length, pos + 1);
    pos += 5;
  } else {
    buf[pos] = Code.Vbin8;
    buf[pos + 1] = b.length;
    pos += 2;
  }
  b.copy(buf, pos);
  pos += b.length;
}

/** Starts a map32 or list32: returns where its size goes, for end(). */
function compound(code: number): number {
  u8(code);
  ensure(8);
  const at = pos;
  pos += 8;
  return at;
}

function end(at: number, count: number): void {
  buf.writeUInt32BE(pos - at - 4, at);
  buf.writeUInt32BE(count, at + 4);
}

function msOf(v: string): number | undefined {
  const ms = Date.parse(v);
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * The encoded message (a new buffer), the same bytes as rhea's `message.encode(eventHubMessage(r, runtime))`.
 * `enqueuedMs` is `r.enqueuedTime` in ms, for a caller that has it already.
 */
export function encodeEventHubMessage(r: LogRecord, runtime?: PartitionProperties & { retrievedAt: Date }, enqueuedMs = Date.parse(r.enqueuedTime)): Buffer {
  for (const k in r.systemProperties) if (k.startsWith('x-opt-') || typeof r.systemProperties[k] !== 'string') return rhea.message.encode(eventHubMessage(r, runtime));
  for (const k in r.properties) if (typeof r.properties[k] !== 'string') return rhea.message.encode(eventHubMessage(r, runtime));
  pos = 0;
  described(0x70);
  u8(Code.List0);
  if (runtime !== undefined) {
    described(0x71);
    const at = compound(Code.Map32);
    text('last_enqueued_sequence_number', true);
    long(runtime.lastEnqueuedSequenceNumber);
    text('last_enqueued_offset', true);
    text(runtime.lastEnqueuedOffset, false);
    text('last_enqueued_time_utc', true);
    timestamp(new Date(runtime.lastEnqueuedTimeUtc).getTime());
    text('runtime_info_retrieval_time_utc', true);
    timestamp(runtime.retrievedAt.getTime());
    end(at, 8);
  }
  // Message annotations: the system properties that are not message properties, then the positions.
  const fields: Array<string | number | undefined> = [];
  let lastField = -1;
  described(0x72);
  const ma = compound(Code.Map32);
  let entries = 0;
  for (const k in r.systemProperties) {
    const v = r.systemProperties[k] as string;
    const field = PROPERTY_FIELD[k];
    if (field !== undefined) {
      const value = field === 8 ? msOf(v) : v;
      if (value === undefined) continue;
      fields[field] = value;
      if (field > lastField) lastField = field;
      continue;
    }
    text(k, true);
    const ms = k === 'iothub-enqueuedtime' ? msOf(v) : undefined;
    if (ms !== undefined) timestamp(ms);
    else text(v, false);
    entries++;
  }
  text('x-opt-sequence-number', true);
  long(r.sequenceNumber);
  text('x-opt-offset', true);
  text(r.offset, false);
  text('x-opt-enqueued-time', true);
  timestamp(enqueuedMs);
  text('x-opt-partition-key', true);
  text(r.deviceId, false);
  end(ma, (entries + 4) * 2);
  // Properties: a list up to the last field set.
  described(0x73);
  if (lastField < 0) u8(Code.List0);
  else {
    const at = compound(Code.List32);
    for (let i = 0; i <= lastField; i++) {
      const v = fields[i];
      if (v === undefined) u8(Code.Null);
      else if (i === 1) binary(Buffer.from(v as string, 'utf8'));
      else if (i === 8) timestamp(v as number);
      else text(v as string, SYMBOL_FIELDS.has(i));
    }
    end(at, lastField + 1);
  }
  let props = 0;
  let ap = -1;
  for (const k in r.properties) {
    if (props++ === 0) {
      described(0x74);
      ap = compound(Code.Map32);
    }
    text(k, false);
    text(r.properties[k] as string, false);
  }
  if (props > 0) end(ap, props * 2);
  described(0x75);
  binary(r.body);
  return Buffer.from(buf.subarray(0, pos));
}
