/**
 * What a condition reads: the message (body, application and system properties) and the sender's
 * twin. `prepareInput` wraps one message so that every condition evaluated against it shares one
 * decode and parse of the body ("JSON body parsed at most once per message per evaluation round").
 *
 * The body counts as JSON only as Azure's routing query syntax says: content type
 * `application/json` and content encoding UTF-8, UTF-16 or UTF-32 (both case-insensitive); otherwise
 * every `$body` path is undefined and the message is still routed on its other fields. UTF-16 and
 * UTF-32 are little-endian (.NET's Encoding.Unicode / UTF32) unless the body starts with a
 * big-endian byte order mark.
 */
import type { JsonObject, JsonValue } from '../../core/json.js';
import { scanBody, type BodyPaths, type ScannedBody } from './body-scan.js';

export interface RoutingInput {
  body: Buffer;
  /** Application properties. */
  properties: Record<string, string>;
  /** System properties by their wire names (content-type, content-encoding, message-id, iothub-connection-device-id, ...). */
  systemProperties: Record<string, string>;
  /** The device's (or module's) twin: { tags, properties: { desired, reported } } — only given when the condition uses $twin. */
  twin?: JsonObject;
}

/** The body's JSON, or why there is none (for explain). */
type Body = { json: JsonValue; problem?: undefined } | { json?: undefined; problem: string };

/** Reads a property exactly, else by a case-insensitive match (Azure's messaging and routing queries ignore case). */
export function lookup(obj: Readonly<Record<string, unknown>>, key: string): unknown {
  if (Object.hasOwn(obj, key)) return obj[key];
  const lower = key.toLowerCase();
  for (const k of Object.keys(obj)) if (k.toLowerCase() === lower) return obj[k];
  return undefined;
}

function decodeUtf32(buf: Buffer, littleEndian: boolean): string {
  if (buf.length % 4 !== 0) throw new Error('the UTF-32 body is not a whole number of 4-byte units');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const parts: string[] = [];
  for (let i = 0; i < buf.length; i += 4) {
    const cp = view.getUint32(i, littleEndian);
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new Error(`the UTF-32 body holds an invalid code point at byte ${i}`);
    parts.push(String.fromCodePoint(cp));
  }
  return parts.join('');
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });
const STRICT_UTF16LE = new TextDecoder('utf-16le', { fatal: true });
const STRICT_UTF16BE = new TextDecoder('utf-16be', { fatal: true });

function decode(buf: Buffer, encoding: string): string {
  switch (encoding) {
    case 'utf-8':
    case 'utf8':
      return STRICT_UTF8.decode(buf);
    case 'utf-16':
    case 'utf16':
      if (buf[0] === 0xfe && buf[1] === 0xff) return STRICT_UTF16BE.decode(buf.subarray(2));
      return STRICT_UTF16LE.decode(buf);
    default: {
      if (buf[0] === 0 && buf[1] === 0 && buf[2] === 0xfe && buf[3] === 0xff) return decodeUtf32(buf.subarray(4), false);
      const bom = buf[0] === 0xff && buf[1] === 0xfe && buf[2] === 0 && buf[3] === 0;
      return decodeUtf32(bom ? buf.subarray(4) : buf, true);
    }
  }
}

const ENCODINGS = new Set(['utf-8', 'utf8', 'utf-16', 'utf16', 'utf-32', 'utf32']);

/** The body's encoding (lower case) when the message says it is JSON in a UTF encoding, else why not. */
function jsonEncoding(input: RoutingInput): { enc: string; problem?: undefined } | { enc?: undefined; problem: string } {
  const sys = input.systemProperties;
  const type = lookup(sys, 'content-type');
  const encoding = lookup(sys, 'content-encoding');
  // The common spellings first: splitting and case-folding them per message is a measurable share of routing.
  const mediaType = type === 'application/json' ? type : typeof type === 'string' ? (type.split(';')[0] ?? '').trim().toLowerCase() : undefined;
  if (mediaType !== 'application/json') {
    return { problem: `the body is not JSON (content type ${typeof type === 'string' && type !== '' ? type : 'not set'}; routing reads $body only with application/json)` };
  }
  const enc = encoding === 'utf-8' ? encoding : typeof encoding === 'string' ? encoding.trim().toLowerCase() : undefined;
  if (enc === undefined || !ENCODINGS.has(enc)) {
    return { problem: `the body is not JSON (content encoding ${enc === undefined || enc === '' ? 'not set' : String(encoding)}; routing reads $body only in UTF-8, UTF-16 or UTF-32)` };
  }
  return { enc };
}

/** Decodes and parses the body when the message says it is JSON in a UTF encoding. */
export function parseBody(input: RoutingInput): Body {
  const { enc, problem } = jsonEncoding(input);
  if (problem !== undefined) return { problem };
  let text: string;
  try {
    text = decode(input.body, enc);
  } catch (err) {
    return { problem: `the body is not valid ${enc.toUpperCase()}: ${(err as Error).message}` };
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return { json: JSON.parse(text) as JsonValue };
  } catch (err) {
    return { problem: `the body is not valid JSON (${(err as Error).message})` };
  }
}

/** What PreparedInput.bodyPath answers when the body must be parsed and walked instead. */
export const NEEDS_PARSE: unique symbol = Symbol('needs parse');

/** A UTF-8 body scanned for one table's paths; null: no JSON body (every path undefined); 'parse': ask body() instead. */
type Scan = ScannedBody | null | 'parse';

/** One message ready for evaluation: the body is parsed (or scanned) on first use and kept. */
export class PreparedInput {
  private parsed: Body | undefined;
  private scannedFor: BodyPaths | undefined;
  private scanned: Scan = null;

  constructor(readonly input: RoutingInput) {}

  body(): Body {
    return (this.parsed ??= parseBody(this.input));
  }

  /**
   * The body's value at path `id` of `paths`, read from the UTF-8 body's bytes without parsing it
   * whole (body-scan.ts); NEEDS_PARSE for UTF-16 and UTF-32 bodies and tables a scan cannot answer:
   * the caller walks body() instead.
   */
  bodyPath(paths: BodyPaths, id: number): JsonValue | undefined | typeof NEEDS_PARSE {
    if (this.scannedFor !== paths) {
      this.scannedFor = paths;
      this.scanned = this.scan(paths);
    }
    const scanned = this.scanned;
    if (scanned === null) return undefined;
    return scanned === 'parse' ? NEEDS_PARSE : scanned.value(id);
  }

  private scan(paths: BodyPaths): Scan {
    if (paths.needsParse || this.parsed !== undefined) return 'parse';
    const { enc } = jsonEncoding(this.input);
    if (enc === undefined) return null;
    return enc === 'utf-8' || enc === 'utf8' ? scanBody(this.input.body, paths) : 'parse';
  }
}

/** Where a RoutingInput keeps its prepared form (a symbol: no clash with the input's own fields). */
const PREPARED = Symbol('routing.prepared');
type Memo = RoutingInput & { [PREPARED]?: PreparedInput };

/**
 * The prepared form of a message, the same object for the same input (kept on the input under a
 * symbol, which costs less than a WeakMap entry per message): evaluate every route's condition
 * against it, or against the input itself, and the body is decoded and parsed once. The body and
 * properties must not change after the first evaluation; the twin may be set later.
 */
export function prepareInput(input: RoutingInput | PreparedInput): PreparedInput {
  if (input instanceof PreparedInput) return input;
  const memo = (input as Memo)[PREPARED];
  if (memo !== undefined && memo.input === input) return memo;
  const p = new PreparedInput(input);
  if (!Object.isExtensible(input)) return p; // frozen: no memo, each call parses again
  // Not enumerable: a copy of the input ({ ...input, twin }) starts without it.
  Object.defineProperty(input, PREPARED, { value: p, enumerable: false, configurable: true });
  return p;
}
