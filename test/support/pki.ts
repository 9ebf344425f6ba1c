/**
 * A throwaway PKI for tests (STYLE.md principle 11): roots, intermediates, device leaves (good and
 * deliberately bad), self-signed device certificates and proof-of-possession certificates, all
 * generated at test time with @peculiar/x509 over WebCrypto. No key is ever committed.
 * ECDSA P-256 by default; `alg: 'rsa'` gives RSA 2048.
 */
import { KeyObject, X509Certificate, createHash, createPrivateKey, randomBytes, type webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

export type KeyAlg = 'ec' | 'rsa' | 'rsa1024';

export interface TestCert {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
  cert: X509Certificate;
  /** What issuing below this certificate needs. */
  readonly signer: Signer;
}

export interface Signer {
  readonly name: x509.Name;
  readonly privateKey: webcrypto.CryptoKey;
  readonly publicKey: webcrypto.CryptoKey;
  readonly signingAlgorithm: webcrypto.Algorithm | webcrypto.EcdsaParams;
}

export interface CertOptions {
  alg?: KeyAlg;
  /** The full subject ("O=Gatehouse, CN=fleet"); default CN=<cn>. */
  subjectName?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** basicConstraints pathLenConstraint of a CA. */
  pathLen?: number;
}

export interface LeafOptions extends CertOptions {
  /** Extended key usage; clientAuth by default, 'none' leaves the extension out. */
  eku?: 'clientAuth' | 'serverAuth' | 'none';
  /** Mark the leaf cA=true (a bad device certificate). */
  isCa?: boolean;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

async function keyPair(alg: KeyAlg): Promise<{ keys: webcrypto.CryptoKeyPair; signingAlgorithm: Signer['signingAlgorithm'] }> {
  if (alg === 'rsa' || alg === 'rsa1024') {
    const params = { name: 'RSASSA-PKCS1-v1_5', modulusLength: alg === 'rsa' ? 2048 : 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
    return { keys: await crypto.subtle.generateKey(params, true, ['sign', 'verify']), signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' } };
  }
  const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  return { keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams };
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) || 1;
  return b.toString('hex');
}

/** Issues one certificate for a fresh key; self-signed when `issuer` is undefined. */
async function issue(
  cn: string,
  issuer: Signer | undefined,
  opts: LeafOptions,
  kind: 'ca' | 'leaf',
): Promise<TestCert> {
  const { keys, signingAlgorithm } = await keyPair(opts.alg ?? 'ec');
  const subject = opts.subjectName === undefined ? new x509.Name([{ CN: [cn] }]) : new x509.Name(opts.subjectName);
  const signer = issuer ?? { name: subject, privateKey: keys.privateKey, publicKey: keys.publicKey, signingAlgorithm };
  const ca = kind === 'ca' || opts.isCa === true;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(ca, ca ? opts.pathLen : undefined, true),
    new x509.KeyUsagesExtension(
      ca ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature : x509.KeyUsageFlags.digitalSignature,
      true,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(signer.publicKey),
  ];
  const eku = opts.eku ?? (kind === 'leaf' ? 'clientAuth' : 'none');
  if (eku !== 'none') extensions.push(new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage[eku]], false));
  const now = Date.now();
  const generated = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject,
    issuer: signer.name,
    notBefore: opts.notBefore ?? new Date(now - HOUR),
    notAfter: opts.notAfter ?? new Date(now + (kind === 'ca' ? 30 : 7) * DAY),
    publicKey: keys.publicKey,
    signingKey: signer.privateKey,
    signingAlgorithm: signer.signingAlgorithm,
    extensions,
  });
  const certPem = `${generated.toString('pem')}\n`;
  const keyPem = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString();
  return {
    certPem,
    keyPem,
    cert: new X509Certificate(certPem),
    signer: { name: subject, privateKey: keys.privateKey, publicKey: keys.publicKey, signingAlgorithm },
  };
}

/** A CA from its certificate and PKCS#8 key (PEM), e.g. a Gatehouse CA whose key was exported. */
export async function caFromPem(certPem: string, keyPem: string): Promise<TestCert> {
  const cert = new x509.X509Certificate(certPem);
  const node = new X509Certificate(certPem);
  const ec = node.publicKey.asymmetricKeyType === 'ec';
  const importAlg = ec ? { name: 'ECDSA', namedCurve: 'P-256' } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const der = createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' });
  const privateKey = await crypto.subtle.importKey('pkcs8', der, importAlg, false, ['sign']);
  const publicKey = await cert.publicKey.export(importAlg, ['verify']);
  const signingAlgorithm = ec ? ({ name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams) : { name: 'RSASSA-PKCS1-v1_5' };
  return { certPem, keyPem, cert: node, signer: { name: cert.subjectName, privateKey, publicKey, signingAlgorithm } };
}

/** A self-signed root CA. */
export function makeRoot(cn: string, opts: CertOptions = {}): Promise<TestCert> {
  return issue(cn, undefined, opts, 'ca');
}

export function makeIntermediate(parent: TestCert, cn: string, opts: CertOptions = {}): Promise<TestCert> {
  return issue(cn, parent.signer, opts, 'ca');
}

/** A device (end-entity) certificate; clientAuth EKU unless told otherwise. */
export function makeLeaf(issuer: TestCert, cn: string, opts: LeafOptions = {}): Promise<TestCert> {
  return issue(cn, issuer.signer, opts, 'leaf');
}

/** A device's self-signed certificate (thumbprint authentication). */
export function makeSelfSigned(cn: string, opts: LeafOptions = {}): Promise<TestCert> {
  return issue(cn, undefined, opts, 'leaf');
}

/** The proof-of-possession certificate: CN = the verification code, signed by the CA's key. */
export function makeVerificationCert(ca: TestCert, code: string): Promise<TestCert> {
  return issue(code, ca.signer, { eku: 'none' }, 'leaf');
}

/** Upper-case hex SHA-1 and SHA-256 of the DER, as the registry stores thumbprints. */
export function thumbprints(certPem: string): { sha1: string; sha256: string } {
  const der = new X509Certificate(certPem).raw;
  return {
    sha1: createHash('sha1').update(der).digest('hex').toUpperCase(),
    sha256: createHash('sha256').update(der).digest('hex').toUpperCase(),
  };
}

/** PEM bundle, in the order given (leaf first for a device). */
export function chainPem(...certs: TestCert[]): string {
  return certs.map((c) => c.certPem).join('');
}
