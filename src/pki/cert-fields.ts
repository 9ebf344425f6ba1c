/**
 * The few X.509 fields Node's X509Certificate does not expose, read straight from the DER
 * (RFC 5280 §4.1): the subject's commonName attributes, basicConstraints and keyUsage. A
 * bounds-checked TLV walk of a few microseconds, cached per certificate object; a full
 * @peculiar/x509 parse costs ~120 µs, too much for every connection.
 */
import type { X509Certificate } from 'node:crypto';

export interface CertFields {
  /** Every commonName (2.5.4.3) attribute of the subject, in DER order, decoded. */
  commonNames: string[];
  /** RFC 5280 §4.2.1.9; undefined when the extension is absent. */
  basicConstraints: { ca: boolean; pathLen: number | undefined } | undefined;
  /** RFC 5280 §4.2.1.3 as flags, bit n = KeyUsage n (keyCertSign = 1 << 5, as @peculiar/x509's KeyUsageFlags); undefined when absent. */
  keyUsage: number | undefined;
}

interface Tlv {
  tag: number;
  /** Offset of the first value byte and one past the last. */
  value: number;
  end: number;
}

function read(buf: Buffer, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw new Error('truncated DER');
  const tag = buf[pos]!;
  let len = buf[pos + 1]!;
  let value = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || value + n > limit) throw new Error('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[value + i]!;
    value += n;
  }
  if (value + len > limit) throw new Error('truncated DER');
  return { tag, value, end: value + len };
}

function children(buf: Buffer, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let p = t.value; p < t.end; ) {
    const c = read(buf, p, t.end);
    out.push(c);
    p = c.end;
  }
  return out;
}

function isOid(buf: Buffer, t: Tlv | undefined, hex: string): boolean {
  return t !== undefined && t.tag === 0x06 && buf.toString('hex', t.value, t.end) === hex;
}

const OID_CN = '550403'; // 2.5.4.3
const OID_BASIC_CONSTRAINTS = '551d13'; // 2.5.29.19
const OID_KEY_USAGE = '551d0f'; // 2.5.29.15

/** DirectoryString and friends (RFC 5280 §4.1.2.4). */
function decodeString(buf: Buffer, t: Tlv): string {
  const bytes = buf.subarray(t.value, t.end);
  switch (t.tag) {
    case 0x0c: // UTF8String
      return bytes.toString('utf8');
    case 0x12: // NumericString
    case 0x13: // PrintableString
    case 0x14: // TeletexString (treated as Latin-1, as OpenSSL does)
    case 0x16: // IA5String
    case 0x1a: // VisibleString
      return bytes.toString('latin1');
    case 0x1e: // BMPString: UTF-16BE
      return Buffer.from(bytes).swap16().toString('utf16le');
    case 0x1c: {
      // UniversalString: UTF-32BE
      let s = '';
      for (let i = 0; i + 3 < bytes.length; i += 4) s += String.fromCodePoint(bytes.readUInt32BE(i));
      return s;
    }
    default:
      throw new Error(`unsupported string type 0x${t.tag.toString(16)} in the subject`);
  }
}

function parse(der: Buffer): CertFields {
  const [tbs] = children(der, read(der, 0, der.length));
  if (tbs === undefined) throw new Error('no tbsCertificate');
  let f = children(der, tbs);
  if (f[0]?.tag === 0xa0) f = f.slice(1); // explicit version
  // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, [1], [2], [3] extensions
  const subject = f[4];
  if (subject === undefined) throw new Error('no subject');
  const out: CertFields = { commonNames: [], basicConstraints: undefined, keyUsage: undefined };
  for (const rdn of children(der, subject)) {
    for (const atv of children(der, rdn)) {
      const [type, value] = children(der, atv);
      if (isOid(der, type, OID_CN) && value !== undefined) out.commonNames.push(decodeString(der, value));
    }
  }
  const extensions = f.slice(6).find((t) => t.tag === 0xa3);
  const list = extensions === undefined ? undefined : children(der, extensions)[0];
  for (const ext of list === undefined ? [] : children(der, list)) {
    const parts = children(der, ext);
    const value = parts.at(-1);
    if (value === undefined || value.tag !== 0x04) continue;
    const inner = read(der, value.value, value.end);
    if (isOid(der, parts[0], OID_BASIC_CONSTRAINTS)) {
      let ca = false;
      let pathLen: number | undefined;
      for (const c of children(der, inner)) {
        if (c.tag === 0x01) ca = der[c.value] !== 0;
        if (c.tag === 0x02) pathLen = c.end - c.value > 4 ? Number.MAX_SAFE_INTEGER : der.readUIntBE(c.value, c.end - c.value);
      }
      out.basicConstraints = { ca, pathLen };
    } else if (isOid(der, parts[0], OID_KEY_USAGE) && inner.tag === 0x03) {
      // BIT STRING: first octet = unused bits; bit 0 is the most significant bit of the next octet.
      let flags = 0;
      for (let i = inner.value + 1, n = 0; i < inner.end; i++) {
        for (let b = 7; b >= 0; b--, n++) if ((der[i]! >> b) & 1) flags |= 1 << n;
      }
      out.keyUsage = flags;
    }
  }
  return out;
}

const cache = new WeakMap<X509Certificate, CertFields>();

/** The fields of a parsed certificate; throws on DER this walk cannot read. */
export function certFields(cert: X509Certificate): CertFields {
  let f = cache.get(cert);
  if (f === undefined) {
    f = parse(cert.raw);
    cache.set(cert, f);
  }
  return f;
}

/** keyCertSign in CertFields.keyUsage (RFC 5280 §4.2.1.3). */
export const KEY_CERT_SIGN = 1 << 5;
