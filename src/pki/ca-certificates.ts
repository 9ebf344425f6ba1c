/**
 * X.509 CA certificates registered on the hub: upload, proof of possession (wire doc §7.2) and
 * the device chain check on the connect-time hot path (§7.1). Devices present their chain leaf
 * first; it is valid when it leads, signature by signature, to a registered and verified CA.
 *
 * Trust is decided by keys, never by names: every link is checked with the issuer's public key
 * (node:crypto X509Certificate.verify), so a fake root with the same subject and another key fails.
 * Verified CAs are parsed once and cached; the cache is dropped on every change made here and
 * reloaded after ANCHOR_TTL_MS so changes made by another hub on the same database also arrive.
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { HubError } from '../core/errors.js';
import { newEtag } from '../core/ids.js';
import type { CaCertificateRecord, CertificateStore } from '../store/certificate-ports.js';
import { KEY_CERT_SIGN, certFields } from './cert-fields.js';
import { safeFields, subjectOf, verifyChain, type DeviceChainResult, type TrustAnchor } from './device-chain.js';

export type { DeviceChainResult } from './device-chain.js';

/** [DOCS: IoT Hub quotas and throttling] "Maximum of 25 CA certificates per hub". */
export const MAX_CA_CERTIFICATES = 25;
/** How long the parsed verified CAs are trusted before re-reading the store (other hubs' changes). */
export const ANCHOR_TTL_MS = 30_000;
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

function invalid(message: string): HubError {
  return new HubError('ArgumentInvalid', message);
}

function hex(fingerprint: string): string {
  return fingerprint.replace(/:/g, '').toUpperCase();
}

/**
 * One certificate from an upload: a PEM CERTIFICATE block or base64 DER (as Azure's ARM API takes
 * it). Public part only: anything carrying a private key is refused outright.
 */
export function parseCertificateUpload(text: string, what = 'the certificate'): { pem: string; cert: X509Certificate } {
  if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
    throw invalid(`${what} contains a private key; upload the public certificate only (and treat that key as exposed)`);
  }
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length > 1) throw invalid(`${what} holds ${blocks.length} certificates; upload exactly one`);
  const compact = text.replace(/\s+/g, '');
  // Some ARM clients send the PEM file itself base64-encoded ("LS0tLS1CRUdJTi" = "-----BEGIN").
  if (blocks.length === 0 && compact.startsWith('LS0tLS1CRUdJTi')) return parseCertificateUpload(Buffer.from(compact, 'base64').toString('utf8'), what);
  // DER of a certificate starts with a SEQUENCE tag (0x30), i.e. "M" in base64.
  const der = blocks[0] === undefined && /^M[A-Za-z0-9+/]+={0,2}$/.test(compact) ? Buffer.from(compact, 'base64') : undefined;
  const input = blocks[0] ?? der;
  if (input === undefined) throw invalid(`${what} is neither a PEM certificate nor base64 DER`);
  try {
    const cert = new X509Certificate(input);
    return { pem: cert.toString(), cert };
  } catch (err) {
    throw invalid(`${what} cannot be parsed as X.509: ${(err as Error).message}`);
  }
}

export class CaCertificates {
  #cache: { at: number; anchors: TrustAnchor[] } | undefined;
  #loading: Promise<TrustAnchor[]> | undefined;
  #generation = 0;
  /** Parsed anchors by thumbprint, kept across reloads so a CA is parsed once. */
  #parsed = new Map<string, TrustAnchor>();

  constructor(
    private readonly store: CertificateStore,
    private readonly clock: Clock,
  ) {}

  // ---------------------------------------------------------------- management

  /** Registers a CA, unverified unless the operator explicitly says otherwise. */
  async add(name: string, certificatePem: string, opts: { verified?: boolean } = {}): Promise<CaCertificateRecord> {
    const fresh = this.#validate(name, certificatePem);
    const existing = await this.store.list();
    if (existing.some((r) => r.name === name)) throw new HubError('InvalidOperation', `A CA certificate named '${name}' already exists.`);
    if (existing.length >= MAX_CA_CERTIFICATES) {
      throw new HubError('IotHubQuotaExceeded', `The hub already holds the maximum of ${MAX_CA_CERTIFICATES} CA certificates.`);
    }
    const twin = existing.find((r) => r.thumbprintSha256 === fresh.thumbprintSha256);
    if (twin !== undefined) throw new HubError('InvalidOperation', `This certificate is already registered as '${twin.name}'.`);
    const now = new Date(this.clock.now()).toISOString();
    const record: CaCertificateRecord = { name, ...fresh, isVerified: opts.verified === true, verificationCode: null, created: now, updated: now, etag: newEtag() };
    await this.store.create(record);
    this.#invalidate();
    return record;
  }

  /** Replaces the certificate of an existing CA (PUT with If-Match); another key must be verified again. */
  async replace(name: string, certificatePem: string, ifMatch: string, opts: { verified?: boolean } = {}): Promise<CaCertificateRecord> {
    const fresh = this.#validate(name, certificatePem);
    const current = await this.get(name);
    const same = current.thumbprintSha256 === fresh.thumbprintSha256;
    const record: CaCertificateRecord = {
      ...current,
      ...fresh,
      isVerified: opts.verified === true || (same && current.isVerified),
      verificationCode: same ? current.verificationCode : null,
      updated: new Date(this.clock.now()).toISOString(),
      etag: newEtag(),
    };
    // '*' still writes under the etag just read, so a concurrent change is not overwritten.
    await this.store.replace(record, ifMatch === '*' ? current.etag : ifMatch);
    this.#invalidate();
    return record;
  }

  async get(name: string): Promise<CaCertificateRecord> {
    const record = await this.store.get(name);
    if (record === undefined) throw new HubError('ResourceNotFound', `No CA certificate named '${name}'.`);
    return record;
  }

  list(): Promise<CaCertificateRecord[]> {
    return this.store.list();
  }

  async delete(name: string, ifMatch: string): Promise<void> {
    await this.store.delete(name, ifMatch);
    this.#invalidate();
  }

  /** A fresh proof-of-possession code; any earlier one stops working. */
  async generateVerificationCode(name: string, ifMatch = '*'): Promise<CaCertificateRecord & { verificationCode: string }> {
    const current = await this.#getUnder(name, ifMatch);
    const verificationCode = randomBytes(16).toString('hex').toUpperCase();
    const record = { ...current, verificationCode, updated: new Date(this.clock.now()).toISOString(), etag: newEtag() };
    await this.store.replace(record, current.etag);
    return record;
  }

  /**
   * Proof of possession (wire doc §7.2): the verification certificate's subject CN is the pending
   * code and its signature verifies with the registered CA's public key. Then the CA is verified
   * and the code is spent.
   */
  async verify(name: string, verificationCertPem: string, ifMatch = '*'): Promise<CaCertificateRecord> {
    const current = await this.#getUnder(name, ifMatch);
    if (current.verificationCode === null) {
      throw new HubError('InvalidOperation', `No verification code is pending for CA '${name}'; generate one first.`);
    }
    const { cert } = parseCertificateUpload(verificationCertPem, 'the verification certificate');
    const cns = certFields(cert).commonNames;
    if (cns.length !== 1 || cns[0] !== current.verificationCode) {
      throw invalid("the verification certificate's CN is not the pending verification code");
    }
    const ca = new X509Certificate(current.certificatePem);
    if (!cert.verify(ca.publicKey)) throw invalid(`the verification certificate is not signed by CA ${name}`);
    const record = { ...current, isVerified: true, verificationCode: null, updated: new Date(this.clock.now()).toISOString(), etag: newEtag() };
    await this.store.replace(record, current.etag);
    this.#invalidate();
    return record;
  }

  async #getUnder(name: string, ifMatch: string): Promise<CaCertificateRecord> {
    const current = await this.get(name);
    if (ifMatch !== '*' && ifMatch !== current.etag) {
      throw new HubError('PreconditionFailed', 'The CA certificate etag does not match; it was changed by someone else.');
    }
    return current;
  }

  /** The checks every uploaded CA passes; returns the derived fields of the record. */
  #validate(name: string, text: string): Pick<CaCertificateRecord, 'certificatePem' | 'subject' | 'thumbprint' | 'thumbprintSha256' | 'expiry'> {
    if (!NAME_PATTERN.test(name)) throw invalid('The certificate name must be 1-64 characters of A-Z a-z 0-9 _ . -');
    const { pem, cert } = parseCertificateUpload(text);
    const subject = subjectOf(cert);
    // RFC 5280 §4.2.1.9: only a certificate whose basicConstraints asserts cA may issue.
    if (!cert.ca) throw invalid(`the certificate "${subject}" is not a CA (basicConstraints cA is not true)`);
    let fields;
    try {
      fields = certFields(cert);
    } catch (err) {
      throw invalid(`the certificate "${subject}" cannot be read: ${(err as Error).message}`);
    }
    // RFC 5280 §4.2.1.3: when keyUsage is present, keyCertSign must be set to verify certificate signatures.
    if (fields.keyUsage !== undefined && (fields.keyUsage & KEY_CERT_SIGN) === 0) {
      throw invalid(`the CA certificate "${subject}" does not allow certificate signing (keyUsage lacks keyCertSign)`);
    }
    const expiry = Date.parse(cert.validTo);
    // RFC 5280 §4.1.2.5: a certificate past notAfter can anchor nothing.
    if (!(expiry > this.clock.now())) throw invalid(`the CA certificate "${subject}" expired on ${new Date(expiry).toISOString()}`);
    const key = cert.publicKey;
    if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
      throw invalid(`the CA certificate "${subject}" has an RSA key under 2048 bits`);
    }
    return { certificatePem: pem, subject, thumbprint: hex(cert.fingerprint), thumbprintSha256: hex(cert.fingerprint256), expiry: new Date(expiry).toISOString() };
  }

  // ---------------------------------------------------------------- hot path

  /**
   * Validates a device's chain (leaf first) against the verified CAs (see device-chain.ts), or
   * only against those named `onlyCas` when given.
   * Returns the leaf's subject CN and the anchoring CA, or the reason for refusing (for the log,
   * never for the device).
   */
  async verifyDeviceChain(chain: X509Certificate[], onlyCas?: readonly string[]): Promise<DeviceChainResult> {
    const anchors = await this.#anchors();
    // A device whose enrollment names its CAs chains to one of those, not to any verified CA.
    return verifyChain(chain, onlyCas === undefined ? anchors : anchors.filter((a) => onlyCas.includes(a.name)), this.clock.now());
  }

  #invalidate(): void {
    this.#generation++;
    this.#cache = undefined;
    this.#loading = undefined;
  }

  async #anchors(): Promise<TrustAnchor[]> {
    const cached = this.#cache;
    const now = this.clock.now();
    if (cached !== undefined && now - cached.at < ANCHOR_TTL_MS) return cached.anchors;
    if (this.#loading !== undefined) return this.#loading;
    const generation = this.#generation;
    const loading = this.#load();
    this.#loading = loading;
    try {
      const anchors = await loading;
      if (generation === this.#generation) this.#cache = { at: now, anchors };
      return anchors;
    } finally {
      if (this.#loading === loading) this.#loading = undefined;
    }
  }

  async #load(): Promise<TrustAnchor[]> {
    const records = await this.store.listVerified();
    const next = new Map<string, TrustAnchor>();
    for (const r of records) {
      let anchor = this.#parsed.get(r.thumbprintSha256);
      if (anchor === undefined) {
        let cert: X509Certificate;
        try {
          cert = new X509Certificate(r.certificatePem);
        } catch {
          continue; // validated on upload; a damaged row anchors nothing
        }
        anchor = {
          name: r.name,
          cert,
          thumbprintSha256: r.thumbprintSha256,
          notBefore: Date.parse(cert.validFrom),
          notAfter: Date.parse(cert.validTo),
          pathLen: safeFields(cert)?.basicConstraints?.pathLen,
        };
      }
      next.set(r.thumbprintSha256, { ...anchor, name: r.name });
    }
    this.#parsed = next;
    return [...next.values()];
  }
}
