/**
 * Device certificate path validation (RFC 5280 §6.1) against trust anchors already parsed by
 * CaCertificates. Pure: no I/O, the time is an argument. Trust is decided by keys, never by names:
 * each link verifies with the issuer's public key, so a fake root with the same subject and
 * another key anchors nothing. No revocation checking (wire doc §7.1: disable the device instead).
 */
import type { X509Certificate } from 'node:crypto';
import type { AuthFailureCode } from '../core/auth-failure.js';
import { certFields, type CertFields } from './cert-fields.js';

/** Why a chain or certificate is refused: the reason for the log and its category for the audit. */
export interface ChainRefusal {
  error: string;
  code: Extract<AuthFailureCode, 'bad_credentials' | 'expired' | 'not_yet_valid' | 'malformed'>;
}

export type DeviceChainResult = { commonName: string; caName: string } | ChainRefusal;

/** A registered, verified CA, parsed once. */
export interface TrustAnchor {
  name: string;
  cert: X509Certificate;
  thumbprintSha256: string;
  notBefore: number;
  notAfter: number;
  pathLen: number | undefined;
}

/** Longest chain a device may present (leaf included); bounds the work per connection. */
export const MAX_CHAIN_LENGTH = 8;
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** "CN=x, O=y", as Azure shows a subject. */
export function subjectOf(cert: X509Certificate): string {
  return cert.subject.split('\n').join(', ');
}

export function safeFields(cert: X509Certificate): CertFields | undefined {
  try {
    return certFields(cert);
  } catch {
    return undefined;
  }
}

/** RFC 5280 §4.1.2.5: valid from notBefore through notAfter, inclusive. */
export function outsideValidity(cert: X509Certificate, now: number, label: string): ChainRefusal | undefined {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (!(from <= now)) return { error: `${label} is not valid before ${new Date(from).toISOString()}`, code: 'not_yet_valid' };
  if (!(now <= to)) return { error: `${label} expired on ${new Date(to).toISOString()}`, code: 'expired' };
  return undefined;
}

const bad = (error: string): ChainRefusal => ({ error, code: 'bad_credentials' });

/**
 * Why a certificate's key is too weak to authenticate a device, or undefined: RSA below 2048 bits
 * (NIST SP 800-131A) and EC curves other than P-256, P-384 and P-521 are refused.
 */
export function weakKey(cert: X509Certificate): string | undefined {
  const key = cert.publicKey;
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details?.modulusLength ?? 0;
    return bits < 2048 ? `the certificate's RSA key has ${bits} bits; at least 2048 are required` : undefined;
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = details?.namedCurve ?? '?';
    return ['prime256v1', 'secp384r1', 'secp521r1'].includes(curve) ? undefined : `the certificate's EC key is on curve ${curve}; P-256, P-384 or P-521 only`;
  }
  if (key.asymmetricKeyType === 'ed25519') return undefined;
  return `the certificate's ${key.asymmetricKeyType ?? 'unknown'} key is not accepted`;
}

/** Subject and issuer names equal (RFC 5280 §6.1, "self-issued"): not counted against pathLen. */
function selfIssued(cert: X509Certificate): boolean {
  return cert.subject === cert.issuer;
}

/** The end-entity checks; returns the subject CN or the refusal. */
function checkLeaf(leaf: X509Certificate, now: number): { commonName: string } | ChainRefusal {
  // RFC 5280 §4.2.1.9: an end-entity certificate must not assert cA.
  if (leaf.ca) return bad('the leaf certificate is a CA certificate');
  const problem = outsideValidity(leaf, now, 'the leaf certificate');
  if (problem !== undefined) return problem;
  // RFC 5280 §4.2.1.12: with an extendedKeyUsage extension the key may serve only the listed
  // purposes; a device is a TLS client (id-kp-clientAuth). Node lists the EKU OIDs as keyUsage.
  const eku = leaf.keyUsage as string[] | undefined;
  if (eku !== undefined && !eku.includes(CLIENT_AUTH)) {
    return bad('the leaf certificate is not for client authentication (extendedKeyUsage lacks clientAuth)');
  }
  const weak = weakKey(leaf);
  if (weak !== undefined) return bad(weak);
  const fields = safeFields(leaf);
  if (fields === undefined) return { error: 'the leaf certificate subject cannot be read', code: 'malformed' };
  const [cn, ...more] = fields.commonNames;
  if (cn === undefined || more.length > 0) return bad(`the leaf certificate has ${fields.commonNames.length} subject CNs; exactly one is required`);
  return { commonName: cn };
}

/**
 * The verified CA whose key signed `cert`, why the matching one may not anchor it, or undefined
 * when no registered CA issued it. `below` = intermediates between that anchor and the leaf.
 */
function anchorFor(cert: X509Certificate, anchors: readonly TrustAnchor[], below: number, now: number): TrustAnchor | ChainRefusal | undefined {
  let refusal: ChainRefusal | undefined;
  for (const a of anchors) {
    // checkIssued compares names and key identifiers (cheap, in OpenSSL); verify decides.
    if (!cert.checkIssued(a.cert) || !cert.verify(a.cert.publicKey)) continue;
    if (!(a.notBefore <= now && now <= a.notAfter)) refusal = { error: `the registered CA ${a.name} is outside its validity period`, code: now < a.notBefore ? 'not_yet_valid' : 'expired' };
    // RFC 5280 §4.2.1.9: the anchor's pathLenConstraint bounds the intermediates below it.
    else if (a.pathLen !== undefined && below > a.pathLen) refusal = bad(`the registered CA ${a.name} allows ${a.pathLen} intermediates below it, the chain has ${below}`);
    else return a;
  }
  return refusal;
}

/**
 * Walks up from the leaf: at each certificate, a registered verified CA that signed it ends the
 * walk (the nearest registered CA wins, intermediates included); otherwise the next certificate
 * of the chain must have issued it and be a valid CA.
 */
export function verifyChain(chain: readonly X509Certificate[], anchors: readonly TrustAnchor[], now: number): DeviceChainResult {
  const leaf = chain[0];
  if (leaf === undefined) return { error: 'no client certificate', code: 'malformed' };
  if (chain.length > MAX_CHAIN_LENGTH) return { error: `the chain has ${chain.length} certificates; at most ${MAX_CHAIN_LENGTH} are accepted`, code: 'malformed' };
  const checked = checkLeaf(leaf, now);
  if ('error' in checked) return checked;
  // Non-self-issued intermediates among chain[1..i]: what the next issuer's or the anchor's
  // pathLenConstraint must allow below it (RFC 5280 §6.1.4 (l)-(m)).
  let below = 0;
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i]!;
    const anchored = anchorFor(cert, anchors, below, now);
    if (anchored !== undefined && 'error' in anchored) return anchored;
    if (anchored !== undefined) return { commonName: checked.commonName, caName: anchored.name };
    const issuer = chain[i + 1];
    if (issuer === undefined) break;
    // RFC 5280 §6.1.3 (a)(1), (a)(4): the signature verifies with the next certificate's key and
    // the names chain (checkIssued also wants keyCertSign in the issuer's keyUsage, §4.2.1.3).
    if (!cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) {
      return bad(`certificate ${i} of the chain is not issued by certificate ${i + 1}`);
    }
    const label = `intermediate "${subjectOf(issuer)}"`;
    // RFC 5280 §6.1.4 (k): every intermediate is a CA.
    if (!issuer.ca) return bad(`${label} is not a CA`);
    const problem = outsideValidity(issuer, now, label);
    if (problem !== undefined) return problem;
    // RFC 5280 §6.1.4 (m): the issuer's pathLenConstraint bounds the intermediates below it.
    const pathLen = safeFields(issuer)?.basicConstraints?.pathLen;
    if (pathLen !== undefined && below > pathLen) return bad(`${label} allows ${pathLen} intermediates below it, the chain has ${below}`);
    if (!selfIssued(issuer)) below++;
  }
  return bad('the chain does not lead to a verified CA registered on this hub');
}
