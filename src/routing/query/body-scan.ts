/**
 * Reads the `$body` paths a routing document names straight from a UTF-8 JSON body: one pass over
 * its bytes that checks the whole body against JSON's grammar and notes where each named path's
 * value lies, without building the body's objects. A route reads a handful of fields of a body of a
 * few hundred bytes; `TextDecoder` + `JSON.parse` built every object and string of it per message,
 * and that (with its garbage) was most of what routes cost at ingestion (docs/benchmarks.md).
 *
 * The answer is the one `JSON.parse` and the conditions' `walk` give, by construction:
 * - a body `JSON.parse` refuses (after strict UTF-8 decoding) is refused, so every path is undefined;
 * - keys are matched as `lookup` matches them: the exact key if the object has it, else the first
 *   key (in the object's key order) whose lower case is the segment's; a key given twice keeps its
 *   last value, and its place in the key order is its first (as `JSON.parse` builds objects);
 * - array segments index arrays only, key segments objects only;
 * - a leading byte order mark is skipped, twice at most (the decoder drops one, parseBody another).
 * Two sibling segments that differ only in case ('status' and 'Status') would need one key to feed
 * two paths; such a table says so (`needsParse`) and its caller parses the body instead.
 *
 * The paths are a BodyPaths table (body-paths.ts); what a scan finds is a ScannedBody, which decodes
 * only the values read (body-values.ts).
 */
import { isUtf8 } from 'node:buffer';
import type { BodyPaths, PathNode } from './body-paths.js';
import { ABSENT, ARRAY, FALSE, NULL, NUMBER, OBJECT, ScannedBody, STR_ASCII, STR_ESCAPED, STR_UTF8, TRUE } from './body-values.js';

export { BodyPaths } from './body-paths.js';
export { ScannedBody } from './body-values.js';

// One scan's stack and per-object key state. Scans run to completion without yielding, so one set serves all.
let frameKind: Uint8Array = new Uint8Array(64);
let frameStart: Int32Array = new Int32Array(64);
let frameIndex: Int32Array = new Int32Array(64);
let frameNode: (PathNode | null)[] = new Array<PathNode | null>(64).fill(null);
let exactSeen = new Uint8Array(16);
let ciKey: (string | undefined)[] = [];

function grow(): void {
  const n = frameKind.length * 2;
  const kind = new Uint8Array(n);
  kind.set(frameKind);
  const start = new Int32Array(n);
  start.set(frameStart);
  const index = new Int32Array(n);
  index.set(frameIndex);
  frameKind = kind;
  frameStart = start;
  frameIndex = index;
  frameNode.length = n;
}

const F_ESCAPED = 1;
const F_NON_ASCII = 2;
/** What the strings of the scan under way held (F_NON_ASCII: the UTF-8 is checked at the end). */
let stringFlags = 0;

function digitsFrom(buf: Buffer, i: number, end: number): number {
  while (i < end) {
    const c = buf[i]!;
    if (c < 0x30 || c > 0x39) break;
    i++;
  }
  return i;
}

/** From a '-' or digit: the index after the number, or -1 when it is not a JSON number. */
function scanNumber(buf: Buffer, i: number, end: number): number {
  if (buf[i] === 0x2d) i++;
  if (i >= end) return -1;
  const first = buf[i]!;
  if (first === 0x30) i++;
  else if (first >= 0x31 && first <= 0x39) i = digitsFrom(buf, i + 1, end);
  else return -1;
  if (i < end && buf[i] === 0x2e) {
    const from = i + 1;
    i = digitsFrom(buf, from, end);
    if (i === from) return -1;
  }
  if (i < end && (buf[i] === 0x65 || buf[i] === 0x45)) {
    i++;
    if (i < end && (buf[i] === 0x2b || buf[i] === 0x2d)) i++;
    const from = i;
    i = digitsFrom(buf, from, end);
    if (i === from) return -1;
  }
  return i;
}

function record(node: PathNode, at: number[], kind: number, start: number, end: number): void {
  const leaves = node.leaves;
  for (let j = 0; j < leaves.length; j++) {
    const k = leaves[j]! * 3;
    at[k] = kind;
    at[k + 1] = start;
    at[k + 2] = end;
  }
}

function clear(node: PathNode, at: number[]): void {
  const below = node.below;
  for (let j = 0; j < below.length; j++) at[below[j]! * 3] = ABSENT;
}

function sameBytes(buf: Buffer, start: number, end: number, want: Buffer): boolean {
  if (end - start !== want.length) return false;
  for (let j = 0; j < want.length; j++) if (buf[start + j] !== want[j]) return false;
  return true;
}

function sameAsciiLower(buf: Buffer, start: number, end: number, lower: Buffer): boolean {
  if (end - start !== lower.length) return false;
  for (let j = 0; j < lower.length; j++) {
    let c = buf[start + j]!;
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c !== lower[j]) return false;
  }
  return true;
}

/** The key's text (only needed for escaped or non-ASCII keys, and for a case-insensitive match). */
function keyText(buf: Buffer, start: number, end: number, flags: number): string {
  if ((flags & F_ESCAPED) !== 0) return JSON.parse(buf.toString('utf8', start - 1, end + 1)) as string;
  return (flags & F_NON_ASCII) !== 0 ? buf.toString('utf8', start, end) : buf.toString('latin1', start, end);
}

/** The child of `parent` the key [start, end) selects in the object being read, or null (see the module comment). */
function matchKey(parent: PathNode, buf: Buffer, start: number, end: number, flags: number, at: number[]): PathNode | null {
  const plain = flags === 0;
  const keys = plain ? parent.byLength[end - start] : parent.keys;
  if (keys === undefined) return null;
  let text: string | undefined;
  for (let j = 0; j < keys.length; j++) {
    const c = keys[j]!;
    const exact = plain ? sameBytes(buf, start, end, c.utf8) : (text ??= keyText(buf, start, end, flags)) === c.seg;
    if (exact) {
      exactSeen[c.slot] = 1;
      clear(c.node, at);
      return c.node;
    }
    if (exactSeen[c.slot] === 1) continue;
    let folded: boolean;
    if (plain) folded = c.lowerAscii !== null && sameAsciiLower(buf, start, end, c.lowerAscii);
    else folded = (text ??= keyText(buf, start, end, flags)).toLowerCase() === c.lower;
    if (!folded) continue;
    text ??= keyText(buf, start, end, flags);
    const first = ciKey[c.slot];
    if (first === undefined) ciKey[c.slot] = text;
    else if (first !== text) return null; // a later key of the same lower case: lookup takes the first
    clear(c.node, at);
    return c.node;
  }
  return null;
}

function enterObject(node: PathNode): void {
  const keys = node.keys;
  for (let j = 0; j < keys.length; j++) {
    const slot = keys[j]!.slot;
    exactSeen[slot] = 0;
    ciKey[slot] = undefined;
  }
}

/** After a backslash in a string: the index after the escape, or -1 when it is not one of JSON's. */
function escapeEnd(buf: Buffer, i: number, end: number): number {
  if (i >= end) return -1;
  const e = buf[i]!;
  if (e === 0x75) {
    if (i + 4 >= end) return -1;
    for (let h = i + 1; h < i + 5; h++) {
      const x = buf[h]!;
      if (!((x >= 0x30 && x <= 0x39) || (x >= 0x41 && x <= 0x46) || (x >= 0x61 && x <= 0x66))) return -1;
    }
    return i + 5;
  }
  // " \ / b f n r t
  return e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74 ? i + 1 : -1;
}

/** Set by readKey: the path node the key just read selects (null: none). */
let keyNode: PathNode | null = null;

/**
 * From where an object's key should start (whitespace allowed): reads the key and its colon and
 * sets keyNode. The index after the colon, or -1 when this is not JSON.
 */
function readKey(buf: Buffer, i: number, end: number, parent: PathNode | null, at: number[]): number {
  let c = 0;
  while (i < end && ((c = buf[i]!) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) i++;
  if (i >= end || c !== 0x22) return -1;
  const start = ++i;
  let flags = 0;
  for (;;) {
    if (i >= end) return -1;
    c = buf[i++]!;
    if (c === 0x22) break;
    if (c === 0x5c) {
      flags |= F_ESCAPED;
      i = escapeEnd(buf, i, end);
      if (i < 0) return -1;
    } else if (c < 0x20) return -1;
    else if (c > 0x7f) flags |= F_NON_ASCII;
  }
  if ((flags & F_NON_ASCII) !== 0) stringFlags |= F_NON_ASCII;
  const keyEnd = i - 1;
  while (i < end && ((c = buf[i]!) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) i++;
  if (i >= end || c !== 0x3a) return -1;
  keyNode = parent !== null && parent.keys.length > 0 ? matchKey(parent, buf, start, keyEnd, flags, at) : null;
  return i + 1;
}

/**
 * Scans a UTF-8 body for the table's paths; null when the body is not JSON (invalid UTF-8 or not
 * JSON's grammar), as the strict decoder and JSON.parse would refuse it.
 */
export function scanBody(buf: Buffer, paths: BodyPaths): ScannedBody | null {
  const end = buf.length;
  const at = paths.absent.slice();
  if (exactSeen.length < paths.slots) exactSeen = new Uint8Array(paths.slots * 2);
  let i = 0;
  for (let bom = 0; bom < 2 && i + 2 < end && buf[i] === 0xef && buf[i + 1] === 0xbb && buf[i + 2] === 0xbf; bom++) i += 3;
  // Any byte above 0x7f (only strings may hold one) means the UTF-8 is checked at the end.
  stringFlags = 0;
  let depth = 0;
  let node: PathNode | null = paths.root;
  let c = 0;
  value: for (;;) {
    while (i < end && ((c = buf[i]!) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) i++;
    if (i >= end) return null;
    const start = i;
    if (c === 0x22) {
      i++;
      let flags = 0;
      for (;;) {
        if (i >= end) return null;
        c = buf[i++]!;
        if (c === 0x22) break;
        if (c === 0x5c) {
          flags |= F_ESCAPED;
          i = escapeEnd(buf, i, end);
          if (i < 0) return null;
        } else if (c < 0x20) return null;
        else if (c > 0x7f) flags |= F_NON_ASCII;
      }
      if ((flags & F_NON_ASCII) !== 0) stringFlags |= F_NON_ASCII;
      if (node !== null && node.leaves.length > 0) {
        record(node, at, (flags & F_ESCAPED) !== 0 ? STR_ESCAPED : (flags & F_NON_ASCII) !== 0 ? STR_UTF8 : STR_ASCII, start + 1, i - 1);
      }
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      i = scanNumber(buf, i, end);
      if (i < 0) return null;
      if (node !== null && node.leaves.length > 0) record(node, at, NUMBER, start, i);
    } else if (c === 0x7b || c === 0x5b) {
      const isObject = c === 0x7b;
      i++;
      while (i < end && ((c = buf[i]!) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) i++;
      if (i < end && c === (isObject ? 0x7d : 0x5d)) {
        i++;
        if (node !== null && node.leaves.length > 0) record(node, at, isObject ? OBJECT : ARRAY, start, i);
      } else {
        if (depth === frameKind.length) grow();
        frameKind[depth] = isObject ? OBJECT : ARRAY;
        frameStart[depth] = start;
        frameIndex[depth] = 0;
        frameNode[depth] = node;
        depth++;
        if (isObject) {
          if (node !== null && node.keys.length > 0) enterObject(node);
          i = readKey(buf, i, end, node, at);
          if (i < 0) return null;
          node = keyNode;
        } else {
          node = node !== null && node.indices.size > 0 ? (node.indices.get(0) ?? null) : null;
        }
        continue value;
      }
    } else if (c === 0x74) {
      if (!(i + 3 < end && buf[i + 1] === 0x72 && buf[i + 2] === 0x75 && buf[i + 3] === 0x65)) return null;
      i += 4;
      if (node !== null && node.leaves.length > 0) record(node, at, TRUE, start, i);
    } else if (c === 0x66) {
      if (!(i + 4 < end && buf[i + 1] === 0x61 && buf[i + 2] === 0x6c && buf[i + 3] === 0x73 && buf[i + 4] === 0x65)) return null;
      i += 5;
      if (node !== null && node.leaves.length > 0) record(node, at, FALSE, start, i);
    } else if (c === 0x6e) {
      if (!(i + 3 < end && buf[i + 1] === 0x75 && buf[i + 2] === 0x6c && buf[i + 3] === 0x6c)) return null;
      i += 4;
      if (node !== null && node.leaves.length > 0) record(node, at, NULL, start, i);
    } else {
      return null;
    }
    // After a value: a comma and the next member or element, or the end of containers.
    for (;;) {
      while (i < end && ((c = buf[i]!) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) i++;
      if (depth === 0) {
        if (i !== end) return null;
        return (stringFlags & F_NON_ASCII) !== 0 && !isUtf8(buf) ? null : new ScannedBody(buf, at);
      }
      if (i >= end) return null;
      const top = depth - 1;
      const kind = frameKind[top];
      i++;
      if (c === 0x2c) {
        if (kind === OBJECT) {
          i = readKey(buf, i, end, frameNode[top] ?? null, at);
          if (i < 0) return null;
          node = keyNode;
        } else {
          const index = ++frameIndex[top]!;
          const parent = frameNode[top] ?? null;
          node = parent !== null && parent.indices.size > 0 ? (parent.indices.get(index) ?? null) : null;
        }
        continue value;
      }
      if (c !== (kind === OBJECT ? 0x7d : 0x5d)) return null;
      depth = top;
      const closed = frameNode[top] ?? null;
      frameNode[top] = null;
      if (closed !== null && closed.leaves.length > 0) record(closed, at, kind!, frameStart[top]!, i);
    }
  }
}
