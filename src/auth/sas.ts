/**
 * Shared access signatures [DOCS: Control access to IoT Hub with shared access signatures].
 *
 * Token: `SharedAccessSignature sr=<resource>&sig=<signature>&se=<expiry>[&skn=<policy>]`, fields
 * in any order. The signature is HMAC-SHA256 with the base64-decoded key over `sr + "\n" + se`
 * where `sr` is the string exactly as it stands in the token (the Node SDK signs an encoded
 * resource for devices, a raw one for DPS and a bare host for services), so verification never
 * re-encodes or normalizes it (wire doc §2.2).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { unauthorized } from '../core/errors.js';

const PREFIX = 'SharedAccessSignature ';

/** A token that cannot be read is `malformed`, whatever names it carries. */
const malformed = (reason: string) => unauthorized('malformed', reason);

export interface SasToken {
  /** `sr` exactly as sent (still percent-encoded): the signed string. */
  rawResource: string;
  /** `se` exactly as sent. */
  rawExpiry: string;
  /** Decoded resource URI, for authorization. */
  resource: string;
  /** Expiry in seconds since the Unix epoch. */
  expiry: number;
  /** Policy name (`skn`), absent for device- and module-scoped tokens. */
  keyName: string | undefined;
  /** The 32-byte HMAC. */
  signature: Buffer;
}

/** Strict percent-encoding, as the SDKs do it (also encodes ! ' ( ) *). */
export function strictEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function parseSasToken(token: string | undefined): SasToken {
  if (token === undefined || token.length === 0) throw malformed('no SAS token');
  if (token.length > 4096) throw malformed('SAS token too long');
  if (!token.startsWith(PREFIX)) throw malformed('not a SharedAccessSignature token');
  const fields = new Map<string, string>();
  for (const pair of token.slice(PREFIX.length).trim().split('&')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw malformed('malformed SAS token field');
    const name = pair.slice(0, eq);
    if (fields.has(name)) throw malformed(`duplicate SAS field ${name}`);
    fields.set(name, pair.slice(eq + 1));
  }
  const rawResource = fields.get('sr');
  const rawSig = fields.get('sig');
  const rawExpiry = fields.get('se');
  if (rawResource === undefined || rawSig === undefined || rawExpiry === undefined) {
    throw malformed('SAS token lacks sr, sig or se');
  }
  if (!/^\d{1,12}$/.test(rawExpiry)) throw malformed('SAS expiry is not an integer');
  let resource: string;
  let signature: Buffer;
  let keyName: string | undefined;
  try {
    resource = decodeURIComponent(rawResource);
    signature = Buffer.from(decodeURIComponent(rawSig), 'base64');
    const skn = fields.get('skn');
    keyName = skn === undefined ? undefined : decodeURIComponent(skn);
  } catch {
    throw malformed('SAS token field is not valid percent-encoding');
  }
  if (signature.length !== 32) throw malformed('SAS signature is not an HMAC-SHA256');
  return { rawResource, rawExpiry, resource, expiry: Number(rawExpiry), keyName, signature };
}

export function hmacSha256(base64Key: string, message: string): Buffer {
  return createHmac('sha256', Buffer.from(base64Key, 'base64')).update(message, 'utf8').digest();
}

/** Constant-time check of the token's signature against each candidate key (primary, secondary). */
export function signatureMatches(token: SasToken, keys: ReadonlyArray<string | null>): boolean {
  return matchingKey(token, keys) !== undefined;
}

/** The key (of `keys`) that signed the token, or undefined. */
export function matchingKey(token: SasToken, keys: ReadonlyArray<string | null>): string | undefined {
  const message = `${token.rawResource}\n${token.rawExpiry}`;
  let matched: string | undefined;
  for (const key of keys) {
    if (key === null || key.length === 0) continue;
    // No early exit: the time taken does not depend on which key matched.
    if (timingSafeEqual(hmacSha256(key, message), token.signature)) matched ??= key;
  }
  return matched;
}

/**
 * A one-way fingerprint of a key, kept with a live session so a later check can tell whether the
 * key it proved is still one of the identity's keys (SHA-256, 128 bits; the key cannot be
 * recovered from it, and it is never logged).
 */
export function keyFingerprint(key: string): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, 22);
}

/**
 * `resource` is the decoded `sr`: `host[:port][/segment...]`. Returns its path part when the host
 * names this hub (case-insensitive, any port), else undefined.
 */
export function resourcePathForHost(resource: string, hostname: string): string | undefined {
  const slash = resource.indexOf('/');
  const hostPart = (slash < 0 ? resource : resource.slice(0, slash)).toLowerCase();
  const want = hostname.toLowerCase();
  const bare = hostPart.replace(/:\d{1,5}$/, '');
  if (hostPart !== want && bare !== want) return undefined;
  return slash < 0 ? '' : resource.slice(slash).replace(/\/+$/, '');
}

/** Segment-wise prefix: `/a/b` covers `/a/b` and `/a/b/c`, not `/a/bc`. Comparison ignores case. */
export function pathCovers(scope: string, target: string): boolean {
  if (scope === '') return true;
  const s = scope.toLowerCase();
  const t = target.toLowerCase().replace(/\/+$/, '');
  return t === s || t.startsWith(`${s}/`);
}

export interface SasOptions {
  /** Decoded resource URI, e.g. `myhub.example.com` or `myhub.example.com/devices/d1`. */
  resource: string;
  /** base64 key. */
  key: string;
  keyName?: string;
  /** Expiry, seconds since the epoch. */
  expiry: number;
}

export function generateSasToken(opts: SasOptions): string {
  const sr = strictEncode(opts.resource);
  const se = String(Math.floor(opts.expiry));
  const sig = strictEncode(hmacSha256(opts.key, `${sr}\n${se}`).toString('base64'));
  const skn = opts.keyName === undefined ? '' : `&skn=${strictEncode(opts.keyName)}`;
  return `${PREFIX}sr=${sr}&sig=${sig}${skn}&se=${se}`;
}
