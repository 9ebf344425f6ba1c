/**
 * The hub's TLS bootstrap PKI: a development root CA, server certificates issued from it (or from
 * an operator-supplied CA), and the checks that decide whether a stored server certificate can
 * still be served. Certificates are built with @peculiar/x509 over Node's WebCrypto; checks use
 * Node's own X509Certificate (OpenSSL), i.e. the same code that will later validate the chain.
 *
 * Generated keys are ECDSA P-256 signed with SHA-256: the cheapest TLS handshakes Node offers.
 * An operator CA may also be RSA (2048 bits or more), P-384 or P-521.
 */
import { KeyObject, X509Certificate as NodeX509, createPrivateKey, randomBytes, type webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import * as x509 from '@peculiar/x509';

export interface CaMaterial {
  certPem: string;
  /** PKCS#8 PEM, unencrypted (the caller encrypts it at rest). */
  keyPem: string;
}

export interface ServerCertMaterial {
  certPem: string;
  /** PKCS#8 PEM, unencrypted. */
  keyPem: string;
  /** Leaf + CA, for the TLS server. */
  chainPem: string;
}

x509.cryptoProvider.set(globalThis.crypto);

type CryptoKey = webcrypto.CryptoKey;
type EcdsaParams = webcrypto.EcdsaParams;

const DAY_MS = 86_400_000;
/** notBefore is backdated so that peers with a slightly slow clock accept a fresh certificate. */
const CLOCK_SKEW_MS = 5 * 60_000;
const P256: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };

/** How to import and sign with a CA key, by key type. */
interface SignerProfile {
  importAlg: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams;
  signAlg: webcrypto.Algorithm | EcdsaParams;
}

const EC_PROFILES: Record<string, SignerProfile> = {
  prime256v1: { importAlg: { name: 'ECDSA', namedCurve: 'P-256' }, signAlg: { name: 'ECDSA', hash: 'SHA-256' } },
  secp384r1: { importAlg: { name: 'ECDSA', namedCurve: 'P-384' }, signAlg: { name: 'ECDSA', hash: 'SHA-384' } },
  secp521r1: { importAlg: { name: 'ECDSA', namedCurve: 'P-521' }, signAlg: { name: 'ECDSA', hash: 'SHA-512' } },
};
const RSA_PROFILE: SignerProfile = {
  importAlg: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  signAlg: { name: 'RSASSA-PKCS1-v1_5' },
};

/**
 * A random 16-byte positive serial (RFC 5280 §4.1.2.2: positive, at most 20 octets, unique per
 * CA). The first octet is kept in 0x01..0x7f so the DER INTEGER is positive and minimal.
 */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) || 0x01;
  return bytes.toString('hex');
}

function days(value: number | undefined, fallback: number, what: string): number {
  const d = value ?? fallback;
  if (!Number.isFinite(d) || d <= 0) throw new Error(`${what} must be a positive number of days, got ${String(value)}`);
  return d;
}

function pkcs8Pem(key: CryptoKey | KeyObject): string {
  const obj = key instanceof KeyObject ? key : KeyObject.from(key);
  return obj.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** Every CERTIFICATE block of a PEM text, re-joined without any surrounding text. */
function certificateBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

export async function createDevRootCa(opts: { commonName: string; validityDays?: number }): Promise<CaMaterial> {
  if (opts.commonName.trim() === '') throw new Error('the CA common name must not be empty');
  const validity = days(opts.validityDays, 3650, 'validityDays');
  const keys = (await crypto.subtle.generateKey(P256, true, ['sign', 'verify']));
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    // DER order is most-significant first; RFC 4514 renders it "CN=<commonName>, O=Gatehouse".
    name: [{ O: ['Gatehouse'] }, { CN: [opts.commonName] }],
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + validity * DAY_MS),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      // RFC 5280 §4.2.1.9: cA=true lets the key sign certificates; pathLen 1 allows one
      // intermediate below the root. Must be critical in CA certificates.
      new x509.BasicConstraintsExtension(true, 1, true),
      // RFC 5280 §4.2.1.3: keyCertSign is required to verify certificate signatures,
      // cRLSign for revocation lists.
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      // RFC 5280 §4.2.1.2: MUST appear in CA certificates; issued certificates point back at it.
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: pkcs8Pem(keys.privateKey) };
}

interface InspectedCa {
  material: CaMaterial;
  cert: x509.X509Certificate;
  key: KeyObject;
  profile: SignerProfile;
  notAfter: Date;
}

function inspectCa(certPem: string, keyPem: string): InspectedCa {
  const blocks = certificateBlocks(certPem);
  const first = blocks[0];
  if (first === undefined) throw new Error('the CA certificate is not a PEM certificate (no BEGIN CERTIFICATE block)');
  let nodeCert: NodeX509;
  let cert: x509.X509Certificate;
  try {
    nodeCert = new NodeX509(first);
    cert = new x509.X509Certificate(first);
  } catch (err) {
    throw new Error(`the CA certificate cannot be parsed: ${(err as Error).message}`);
  }
  const subject = nodeCert.subject.replace(/\n/g, ', ');
  // RFC 5280 §4.2.1.9: only a certificate whose basicConstraints asserts cA may issue.
  if (!nodeCert.ca) throw new Error(`the certificate "${subject}" is not a CA (basicConstraints cA is not true)`);
  // RFC 5280 §4.2.1.3: if keyUsage is present, keyCertSign must be set for the key to sign certificates.
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (ku !== null && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new Error(`the CA certificate "${subject}" does not allow certificate signing (keyUsage lacks keyCertSign)`);
  }
  const notAfter = new Date(nodeCert.validTo);
  if (!(notAfter.getTime() > Date.now())) throw new Error(`the CA certificate "${subject}" expired on ${nodeCert.validTo}`);

  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    const msg = (err as Error).message;
    if (/passphrase|encrypted/i.test(msg) || /ENCRYPTED/.test(keyPem)) {
      throw new Error('the CA private key is encrypted; supply it unencrypted (the hub seals it at rest)');
    }
    throw new Error(`the CA private key cannot be read: ${msg}`);
  }
  let profile: SignerProfile | undefined;
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') {
    if ((details?.modulusLength ?? 0) < 2048) throw new Error(`the CA RSA key has ${details?.modulusLength ?? '?'} bits; at least 2048 are required`);
    profile = RSA_PROFILE;
  } else if (key.asymmetricKeyType === 'ec') {
    profile = EC_PROFILES[details?.namedCurve ?? ''];
    if (profile === undefined) throw new Error(`the CA EC key uses curve ${details?.namedCurve ?? '?'}; P-256, P-384 or P-521 is required`);
  } else {
    throw new Error(`the CA key type ${key.asymmetricKeyType ?? '?'} is not supported; use ECDSA P-256/P-384/P-521 or RSA 2048+`);
  }
  if (!nodeCert.checkPrivateKey(key)) throw new Error(`the CA private key does not match the public key of the certificate "${subject}"`);
  return { material: { certPem: blocks.join('\n') + '\n', keyPem: pkcs8Pem(key) }, cert, key, profile, notAfter };
}

/**
 * Validates an operator-supplied CA (the first certificate of `certPem` is the issuing CA; any
 * further ones are kept for the chain) and normalises the key to PKCS#8.
 */
export function loadCaMaterial(certPem: string, keyPem: string): CaMaterial {
  return inspectCa(certPem, keyPem).material;
}

/** A SAN entry: IP literals as iPAddress, everything else as dNSName (RFC 5280 §4.2.1.6). */
function sanEntry(raw: string): { type: 'ip' | 'dns'; value: string } {
  let name = raw.trim();
  if (name.startsWith('[') && name.endsWith(']')) name = name.slice(1, -1);
  const family = isIP(name);
  if (family === 4) return { type: 'ip', value: name };
  if (family === 6) {
    if (name.includes('%')) throw new Error(`a scoped IPv6 address cannot be put in a certificate: ${raw}`);
    // The WHATWG URL parser yields the canonical RFC 5952 text (embedded IPv4 in hex, zeros compressed).
    return { type: 'ip', value: new URL(`http://[${name}]/`).hostname.slice(1, -1) };
  }
  name = name.replace(/\.$/, '');
  // dNSName is an IA5String: internationalised names go in as A-labels (RFC 5280 §7.2).
  const ascii = name.startsWith('*.') ? '*.' + domainToASCII(name.slice(2)) : domainToASCII(name);
  if (ascii === '' || ascii === '*.' || !/^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(ascii)) {
    throw new Error(`not a valid host name or IP address for a certificate: ${JSON.stringify(raw)}`);
  }
  return { type: 'dns', value: ascii };
}

export async function issueServerCertificate(
  ca: CaMaterial,
  opts: { hostname: string; extraNames?: string[]; validityDays?: number },
): Promise<ServerCertMaterial> {
  const issuer = inspectCa(ca.certPem, ca.keyPem);
  const validity = days(opts.validityDays, 365, 'validityDays');
  const seen = new Set<string>();
  const names: { type: 'ip' | 'dns'; value: string }[] = [];
  for (const raw of [opts.hostname, ...(opts.extraNames ?? []), 'localhost', '127.0.0.1']) {
    const entry = sanEntry(raw);
    if (seen.has(`${entry.type}:${entry.value}`)) continue;
    seen.add(`${entry.type}:${entry.value}`);
    names.push(entry);
  }

  const signingKey = await crypto.subtle.importKey(
    'pkcs8',
    issuer.key.export({ type: 'pkcs8', format: 'der' }),
    issuer.profile.importAlg,
    false,
    ['sign'],
  );
  const keys = (await crypto.subtle.generateKey(P256, true, ['sign', 'verify']));
  const now = Date.now();
  // RFC 5280 §6.1.3: a path is valid only while every certificate in it is; a leaf outliving its CA is useless.
  const notAfter = new Date(Math.min(now + validity * DAY_MS, issuer.notAfter.getTime()));
  const caSki = issuer.cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [opts.hostname.trim()] }],
    issuer: issuer.cert.subjectName,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter,
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: issuer.profile.signAlg,
    extensions: [
      // RFC 5280 §4.2.1.9: an end-entity certificate; its key must not verify certificate signatures.
      new x509.BasicConstraintsExtension(false, undefined, true),
      // RFC 5280 §4.2.1.3: an ECDHE-ECDSA handshake only needs signatures (keyEncipherment is RSA key transport).
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      // RFC 5280 §4.2.1.12: TLS WWW server authentication only.
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      // RFC 5280 §4.2.1.6: clients match the host against the SAN, not the CN (RFC 6125 §6.4.4).
      new x509.SubjectAlternativeNameExtension(names, false),
      // RFC 5280 §4.2.1.1: the keyIdentifier equals the issuer's subjectKeyIdentifier, for path building.
      caSki?.keyId !== undefined
        ? new x509.AuthorityKeyIdentifierExtension(caSki.keyId, false)
        : await x509.AuthorityKeyIdentifierExtension.create(issuer.cert.publicKey, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = cert.toString('pem') + '\n';
  return { certPem, keyPem: pkcs8Pem(keys.privateKey), chainPem: certPem + issuer.material.certPem };
}

/**
 * True if `certPem` was signed by the CA of `caCertPem`, is valid now and for at least
 * `minRemainingDays` more days, is a server certificate, and its SAN (not its CN) covers every
 * name: DNS names case-insensitively, IP addresses by value. Never throws.
 */
export function serverCertificateCovers(certPem: string, names: string[], minRemainingDays: number, caCertPem: string): boolean {
  try {
    const leafPem = certificateBlocks(certPem)[0];
    const caPem = certificateBlocks(caCertPem)[0];
    if (leafPem === undefined || caPem === undefined) return false;
    const cert = new NodeX509(leafPem);
    const caCert = new NodeX509(caPem);
    if (cert.ca || !cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) return false;
    const now = Date.now();
    const from = new Date(cert.validFrom).getTime();
    const to = new Date(cert.validTo).getTime();
    if (!(from <= now) || !(to - now >= minRemainingDays * DAY_MS)) return false;
    // Node exposes the extendedKeyUsage OIDs as keyUsage; absent means "any" (RFC 5280 §4.2.1.12).
    const eku = cert.keyUsage as string[] | undefined;
    if (eku !== undefined && eku.length > 0 && !eku.includes(x509.ExtendedKeyUsage.serverAuth)) return false;
    return names.every((raw) => {
      const entry = sanEntry(raw);
      return entry.type === 'ip'
        ? cert.checkIP(entry.value) !== undefined
        : cert.checkHost(entry.value, { subject: 'never', partialWildcards: false }) !== undefined;
    });
  } catch {
    return false;
  }
}
