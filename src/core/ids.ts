import { randomBytes } from 'node:crypto';
import { HubError } from './errors.js';

/**
 * Identity rules [DOCS: Understand the identity registry in your IoT hub]: device and module ids are
 * case-sensitive, at most 128 ASCII 7-bit characters: alphanumerics plus - . + % _ # * ? ! ( ) , = @ $ '
 * (newer REST pages add : and ;). A `/` is never allowed: the device SDK splits MQTT topics on it.
 */
const ID_PATTERN = /^[A-Za-z0-9\-.+%_#*?!(),=@$':;]{1,128}$/;

export function validateDeviceId(id: unknown, what: 'device' | 'module' = 'device'): string {
  if (typeof id !== 'string' || id.length === 0) {
    throw new HubError('ArgumentInvalid', `The ${what} id is missing.`);
  }
  if (id.length > 128) {
    throw new HubError('ArgumentInvalid', `The ${what} id is longer than 128 characters.`);
  }
  if (!ID_PATTERN.test(id)) {
    throw new HubError(
      'ArgumentInvalid',
      `The ${what} id '${printable(id)}' contains a character outside A-Z a-z 0-9 - . + % _ # * ? ! ( ) , = @ $ ' : ;`,
    );
  }
  return id;
}

/** Never echo control characters or unbounded input back into an error message or a log line. */
export function printable(s: string, max = 64): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}

/** A fresh opaque etag: 8 random bytes, base64, like Azure's twin etags ("AAAAAAAAAAE="). */
export function newEtag(): string {
  return randomBytes(8).toString('base64');
}

/** `n` etags like newEtag's, from one draw of random bytes (a batch of writes). */
export function newEtags(n: number): string[] {
  const bytes = randomBytes(8 * n);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(bytes.toString('base64', 8 * i, 8 * i + 8));
  return out;
}

/** A generation id distinguishes a re-created identity from the one deleted before it. */
export function newGenerationId(): string {
  // Azure uses an 18-digit number; a random one of the same shape keeps clients' parsers happy.
  const n = randomBytes(8).readBigUInt64BE() % 900000000000000000n;
  return (n + 100000000000000000n).toString();
}

/** Azure's "never happened" timestamp. */
export const NEVER = '0001-01-01T00:00:00Z';

/**
 * Etag headers arrive quoted (`"abc"`, `"*"`) from the service SDK and unquoted from other clients.
 * Returns undefined when absent, '*' for the wildcard, otherwise the bare etag.
 */
export function parseIfMatch(header: string | string[] | undefined): string | undefined {
  const raw = Array.isArray(header) ? header[0] : header;
  if (raw === undefined) return undefined;
  let v = raw.trim();
  // A weak tag is W/ before a quoted tag (RFC 9110 8.8.3). Unquoted, as the DPS SDK sends the etag
  // the JSON gave it, a value starting with W/ is the etag itself: one newEtag() in 4,096 does.
  if (v.startsWith('W/"')) v = v.slice(2);
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
  return v === '' ? undefined : v;
}

/** Longest model id a device may announce (IoT Plug and Play). */
export const MAX_MODEL_ID_LENGTH = 512;
const DTMI_SEGMENT = '(?:_*[A-Za-z])(?:[A-Za-z0-9_]*[A-Za-z0-9])?';
const DTMI = new RegExp(`^dtmi:${DTMI_SEGMENT}(?::${DTMI_SEGMENT})*(?:;[1-9][0-9]{0,8}(?:\\.[1-9][0-9]{0,5})?)?$`);

/** A Digital Twin Model Identifier (`dtmi:com:example:Thermostat;1`), as DTDL defines it. */
export function isDtmi(s: string): boolean {
  return s.length <= MAX_MODEL_ID_LENGTH && DTMI.test(s);
}
