/**
 * What a body scan found (body-scan.ts): where each path's value lies, and the value decoded only
 * when a condition reads it.
 */
import type { JsonValue } from '../../core/json.js';

// What a path's value is, in a scan's results.
export const ABSENT = 0;
export const STR_ASCII = 1;
export const STR_UTF8 = 2;
export const STR_ESCAPED = 3;
export const NUMBER = 4;
export const TRUE = 5;
export const FALSE = 6;
export const NULL = 7;
export const OBJECT = 8;
export const ARRAY = 9;

/** Where each path's value lies in one body: [kind, start, end] per path number. */
export class ScannedBody {
  constructor(
    private readonly buf: Buffer,
    private readonly at: number[],
  ) {}

  /** The value at path `id`, or undefined when the body has none there. */
  value(id: number): JsonValue | undefined {
    const k = id * 3;
    const kind = this.at[k]!;
    if (kind === ABSENT) return undefined;
    const start = this.at[k + 1]!;
    const end = this.at[k + 2]!;
    const buf = this.buf;
    switch (kind) {
      case STR_ASCII:
        return asciiText(buf, start, end);
      case STR_UTF8:
        return buf.toString('utf8', start, end);
      case STR_ESCAPED:
        return JSON.parse(buf.toString('utf8', start - 1, end + 1)) as string;
      case NUMBER:
        return numberAt(buf, start, end);
      case TRUE:
        return true;
      case FALSE:
        return false;
      case NULL:
        return null;
      default:
        return JSON.parse(buf.toString('utf8', start, end)) as JsonValue;
    }
  }
}

/** Short ASCII strings are built in JS: a call into Buffer's C++ costs more than the few characters. */
function asciiText(buf: Buffer, start: number, end: number): string {
  if (end - start > 24) return buf.toString('latin1', start, end);
  let text = '';
  for (let i = start; i < end; i++) text += String.fromCharCode(buf[i]!);
  return text;
}

/** Powers of ten a double holds exactly. */
const POW10 = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

/**
 * A JSON number's value, as Number() gives it. With at most 15 digits and a power of ten up to 22,
 * both operands are exact doubles and one multiplication or division rounds correctly (Clinger's
 * fast path, as strtod takes it); anything else goes to Number().
 */
function numberAt(buf: Buffer, start: number, end: number): number {
  let i = start;
  const negative = buf[i] === 0x2d;
  if (negative) i++;
  let mantissa = 0;
  let digits = 0;
  let scale = 0;
  let c = 0;
  for (; i < end && (c = buf[i]!) >= 0x30 && c <= 0x39; i++, digits++) mantissa = mantissa * 10 + (c - 0x30);
  if (i < end && c === 0x2e) {
    for (i++; i < end && (c = buf[i]!) >= 0x30 && c <= 0x39; i++, digits++, scale--) mantissa = mantissa * 10 + (c - 0x30);
  }
  if (i < end) {
    // An exponent: [eE][+-]?digits
    i++;
    let sign = 1;
    if (buf[i] === 0x2d) {
      sign = -1;
      i++;
    } else if (buf[i] === 0x2b) i++;
    let exponent = 0;
    for (; i < end && exponent < 1000; i++) exponent = exponent * 10 + (buf[i]! - 0x30);
    if (i < end) return Number(buf.toString('latin1', start, end));
    scale += sign * exponent;
  }
  if (digits > 15 || scale > 22 || scale < -22) return Number(buf.toString('latin1', start, end));
  const value = scale >= 0 ? mantissa * POW10[scale]! : mantissa / POW10[-scale]!;
  return negative ? -value : value;
}
