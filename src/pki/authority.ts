/**
 * The device CA (issue "Device PKI", step 1): CAs whose keys Gatehouse holds, and signing device
 * CSRs under options decided elsewhere. STYLE.md principle 5: a provisioner (DPS, EST, the
 * factory line, an operator) authorizes a request and returns SignOptions; this class only checks
 * the CSR itself and applies those options. It never widens them.
 *
 * Keys are generated here with WebCrypto, sealed by the AuthorityStore under the master key and
 * never leave: there is no export. The public part of every CA is registered in the CaCertificates as
 * verified (holding the key is the proof of possession), so devices it signs connect at once.
 */
import { SUBJECTS, type HubBus } from '../bus/subjects.js';
import { KeyObject, X509Certificate, createHash, createPrivateKey, createPublicKey, type webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { Clock } from '../core/clock.js';
import { HubError } from '../core/errors.js';
import type { CaCertificateRecord } from '../store/certificate-ports.js';
import type { IssuedCertificateRecord } from '../store/authority-ports.js';
import type { Store } from '../store/ports.js';
import type { CaCertificates } from './ca-certificates.js';
import { certFields } from './cert-fields.js';
import { allIssued } from './issued.js';
import { classify, GEN_PARAMS, invalid, KEY_ALGS, randomSerial, sanEntry, signAlgFor, signerFrom, type KeyAlg, type Signer } from './keys.js';
import { buildCrl, isRevocationReason, normalizeSerial, REVOCATION_REASONS, type RevocationReason } from './crl.js';

// Callers import the revocation vocabulary from here as before.
export { isRevocationReason, normalizeSerial, REVOCATION_REASONS, type RevocationReason } from './crl.js';

x509.cryptoProvider.set(globalThis.crypto);

// Callers import the key vocabulary from here as before.
export { KEY_ALGS, type KeyAlg } from './keys.js';

export interface CreateCaOptions {
  /** The CA's name in the CaCertificates (1-64 of A-Z a-z 0-9 _ . -). */
  name: string;
  /** A Gatehouse-held CA to sign this one (an intermediate); absent: a self-signed root. */
  parent?: string;
  alg?: KeyAlg;
  /** Default 3650 for a root, 1825 for an intermediate; never beyond the parent's notAfter. */
  validityDays?: number;
  /** Default: the name. */
  commonName?: string;
}

/** What a provisioner authorized; the CA applies exactly this (principle 5). */
export interface SignOptions {
  caName: string;
  /** The certificate's subject CN; the CSR must ask for exactly this. */
  deviceId: string;
  registrationId?: string;
  enrollmentGroupId?: string;
  validityDays: number;
  /** DNS names, IP addresses or URIs (scheme://...). */
  subjectAltNames?: string[];
  /** Absent: every KeyAlg. */
  allowedKeys?: KeyAlg[];
}

export interface IssuedCertificate {
  /** Lower-case hex. */
  serial: string;
  certificatePem: string;
  /** The leaf, then the CA chain up to and including the root. */
  chainPem: string;
  /** ISO 8601. */
  notAfter: string;
  /** Upper-case hex SHA-256 of the DER. */
  thumbprintSha256: string;
}

/** What the authority reports: every issue, revocation and CA change, never key material. */
export type AuthorityLog = (fields: Record<string, unknown>, msg: string) => void;

export interface AuthorityOptions {
  /** The CRL distribution point put in issued certificates (RFC 5280 §4.2.1.13), per CA. */
  crlUrl?: (caName: string) => string;
  log?: AuthorityLog;
}

/** deviceId of the record kept for an intermediate CA Gatehouse issued ('/' is never in a device id). */
export const CA_RECORD_PREFIX = '$ca/';

const DAY_MS = 86_400_000;
/** notBefore is backdated so that peers with a slightly slow clock accept a fresh certificate. */
const CLOCK_SKEW_MS = 5 * 60_000;
const MAX_CHAIN = 8;
/** RFC 5280 §4.2.1.9 id-ce-basicConstraints. */
const BASIC_CONSTRAINTS = '2.5.29.19';

interface HeldCa {
  cert: x509.X509Certificate;
  node: X509Certificate;
  signer: Signer;
  notAfter: number;
}

function hex(fingerprint: string): string {
  return fingerprint.replace(/:/g, '').toUpperCase();
}

function positiveDays(v: number | undefined, fallback: number, what: string): number {
  const d = v ?? fallback;
  if (typeof d !== 'number' || !Number.isFinite(d) || d <= 0) throw invalid(`${what} must be a positive number of days, got ${String(v)}`);
  return d;
}

export class CertificateAuthority {
  /** Issued CRLs per CA, until a revocation under that CA or nextUpdate draws near. */
  readonly #crls = new Map<string, { der: Buffer; refreshAt: number }>();
  #lastCrlNumber = 0;
  /** Signers per CA, reused while the registered certificate stays the same. */
  readonly #held = new Map<string, { pem: string; held: HeldCa }>();
  readonly #log: AuthorityLog;
  /** CA chains (PEM, up to the root) per CA, while its certificate stays the same. */
  readonly #chains = new Map<string, { pem: string; chain: string[] }>();

  constructor(
    private readonly store: Store,
    private readonly cas: CaCertificates,
    private readonly clock: Clock,
    private readonly bus: HubBus,
    private readonly options: AuthorityOptions = {},
  ) {
    this.#log = options.log ?? (() => undefined);
    // A revocation through any node: a CRL this node cached for that CA is stale now.
    bus.subscribe(SUBJECTS.certificatesRevoked, (r) => {
      for (const c of r.certificates) this.#crls.delete(c.caName);
    });
    bus.subscribe(SUBJECTS.busResync, () => this.#crls.clear());
  }

  /**
   * A root (self-signed, pathLen 1) or an intermediate signed by a Gatehouse-held parent
   * (pathLen 0), registered in the CaCertificates as verified, its key sealed in the AuthorityStore.
   */
  async createCa(opts: CreateCaOptions): Promise<CaCertificateRecord> {
    const alg = opts.alg ?? 'p256';
    if (!KEY_ALGS.includes(alg)) throw invalid(`alg must be one of ${KEY_ALGS.join(', ')}`);
    const commonName = (opts.commonName ?? opts.name).trim();
    if (commonName === '' || commonName.length > 64) throw invalid('the CA common name must be 1-64 characters');
    if (await this.store.authority.hasCaKey(opts.name)) {
      throw new HubError('InvalidOperation', `Gatehouse already holds a key named '${opts.name}'.`);
    }
    const now = this.clock.now();
    const keys = (await crypto.subtle.generateKey(GEN_PARAMS[alg], true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const subject = new x509.Name([{ O: ['Gatehouse'] }, { CN: [commonName] }]);
    const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
    // RFC 5280 §4.2.1.3: keyCertSign to sign certificates, cRLSign for revocation lists.
    const keyUsage = new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true);
    const serialNumber = randomSerial();
    const notBefore = new Date(now - CLOCK_SKEW_MS);
    let cert: x509.X509Certificate;
    if (opts.parent === undefined) {
      const validity = positiveDays(opts.validityDays, 3650, 'validityDays');
      cert = await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber,
        name: subject,
        notBefore,
        notAfter: new Date(now + validity * DAY_MS),
        keys,
        signingAlgorithm: signAlgFor(alg),
        // RFC 5280 §4.2.1.9: critical in CA certificates; pathLen 1 allows one intermediate below.
        extensions: [new x509.BasicConstraintsExtension(true, 1, true), keyUsage, ski],
      });
    } else {
      const validity = positiveDays(opts.validityDays, 1825, 'validityDays');
      const parent = await this.#heldCa(opts.parent);
      const pathLen = certFields(parent.node).basicConstraints?.pathLen;
      // RFC 5280 §4.2.1.9: pathLen 0 means no CA certificate may follow this one in a path.
      if (pathLen === 0) throw invalid(`CA '${opts.parent}' has pathLen 0; it cannot sign another CA`);
      const parentSki = parent.cert.getExtension(x509.SubjectKeyIdentifierExtension);
      cert = await x509.X509CertificateGenerator.create({
        serialNumber,
        subject,
        issuer: parent.cert.subjectName,
        notBefore,
        // RFC 5280 §6.1.3: a certificate outliving its issuer is useless.
        notAfter: new Date(Math.min(now + validity * DAY_MS, parent.notAfter)),
        publicKey: keys.publicKey,
        signingKey: parent.signer.key,
        signingAlgorithm: parent.signer.signAlg,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          keyUsage,
          ski,
          // RFC 5280 §4.2.1.1: the issuer's subjectKeyIdentifier, for path building.
          parentSki !== null
            ? new x509.AuthorityKeyIdentifierExtension(parentSki.keyId, false)
            : await x509.AuthorityKeyIdentifierExtension.create(parent.cert.publicKey, false),
        ],
      });
    }
    // Exported only to be sealed at once (PKCS#8 PEM); it never leaves otherwise.
    const keyPem = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString();
    const record = await this.cas.add(opts.name, cert.toString('pem'), { verified: true });
    try {
      await this.store.authority.putCaKey(opts.name, keyPem);
      // An intermediate is a certificate its parent issued: recorded, so it can be revoked and
      // listed on the parent's CRL like any other.
      if (opts.parent !== undefined) {
        const node = new X509Certificate(cert.toString('pem'));
        await this.store.authority.recordIssued({
          serial: serialNumber,
          caName: opts.parent,
          deviceId: `${CA_RECORD_PREFIX}${opts.name}`,
          registrationId: null,
          enrollmentGroupId: null,
          thumbprintSha1: hex(node.fingerprint),
          thumbprintSha256: hex(node.fingerprint256),
          notBefore: notBefore.toISOString(),
          notAfter: new Date(Date.parse(node.validTo)).toISOString(),
          certificatePem: cert.toString('pem') + '\n',
          revokedAt: null,
          revocationReason: null,
          created: new Date(now).toISOString(),
        });
      }
    } catch (err) {
      await this.cas.delete(opts.name, '*').catch(() => undefined);
      await this.store.authority.deleteCaKey(opts.name).catch(() => undefined);
      throw err;
    }
    this.#log({ event: 'ca.created', ca: opts.name, parent: opts.parent ?? null, alg, serial: serialNumber, notAfter: cert.notAfter.toISOString() }, 'CA created');
    return record;
  }

  /**
   * Signs a device CSR under options a provisioner decided. Refuses (ArgumentInvalid, with the
   * reason) a CSR whose signature fails, whose CN is not the device id, whose key is weak or not
   * allowed, or that asks to be a CA.
   */
  async sign(csrPem: string, opts: SignOptions): Promise<IssuedCertificate> {
    if (typeof opts.deviceId !== 'string' || opts.deviceId === '' || opts.deviceId.length > 128) {
      throw invalid('the device id must be 1-128 characters');
    }
    const validity = positiveDays(opts.validityDays, opts.validityDays, 'validityDays');
    const sans = (opts.subjectAltNames ?? []).map(sanEntry);
    const ca = await this.#heldCa(opts.caName);

    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (err) {
      throw invalid(`the CSR cannot be parsed as PKCS#10: ${(err as Error).message}`);
    }
    // The key first: a weak or exotic key gets its own precise refusal, not a signature error.
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
    } catch {
      throw invalid("the CSR's public key cannot be read (unsupported key type or curve)");
    }
    const keyAlg = classify(publicKey, 'the CSR key');
    if (opts.allowedKeys !== undefined && !opts.allowedKeys.includes(keyAlg)) {
      throw invalid(`${keyAlg} keys are not allowed here; allowed: ${opts.allowedKeys.join(', ') || 'none'}`);
    }
    // RFC 2986 §3: the signature proves the requester holds the private key of the CSR.
    let signed = false;
    try {
      signed = await csr.verify();
    } catch {
      signed = false;
    }
    if (!signed) throw invalid("the CSR's signature does not verify (tampered or not signed by its own key)");
    const cns = csr.subjectName.getField('CN');
    if (cns.length !== 1) throw invalid(`the CSR has ${cns.length} CNs; exactly one, the device id '${opts.deviceId}', is required`);
    if (cns[0] !== opts.deviceId) throw invalid(`the CSR's CN '${cns[0] ?? ''}' is not the device id '${opts.deviceId}'`);
    // RFC 5280 §4.2.1.9: a device certificate is an end entity; a request to be a CA is refused, not silently dropped.
    const bcRaw = csr.extensions.find((e) => e.type === BASIC_CONSTRAINTS);
    const bc = bcRaw === undefined ? undefined : new x509.BasicConstraintsExtension(bcRaw.rawData);
    if (bc?.ca === true) throw invalid('the CSR requests basicConstraints cA=true; a device certificate cannot be a CA');

    const now = this.clock.now();
    const serial = randomSerial();
    const notBefore = new Date(now - CLOCK_SKEW_MS);
    // RFC 5280 §6.1.3: never beyond the CA's own notAfter.
    const notAfter = new Date(Math.min(now + validity * DAY_MS, ca.notAfter));
    const caSki = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension);
    const rsa = keyAlg.startsWith('rsa');
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      // RFC 5280 §4.2.1.3: signatures for TLS client auth; keyEncipherment for RSA key transport.
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | (rsa ? x509.KeyUsageFlags.keyEncipherment : 0), true),
      // RFC 5280 §4.2.1.12: TLS client authentication only.
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      caSki !== null
        ? new x509.AuthorityKeyIdentifierExtension(caSki.keyId, false)
        : await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey, false),
      await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
    ];
    if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sans, false));
    const crlUrl = this.options.crlUrl?.(opts.caName);
    if (crlUrl !== undefined) extensions.push(new x509.CRLDistributionPointsExtension([crlUrl], false));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: new x509.Name([{ CN: [opts.deviceId] }]),
      issuer: ca.cert.subjectName,
      notBefore,
      notAfter,
      publicKey: csr.publicKey,
      signingKey: ca.signer.key,
      signingAlgorithm: ca.signer.signAlg,
      extensions,
    });
    const certificatePem = cert.toString('pem') + '\n';
    // Thumbprints straight from the DER: no second parse on the signing path.
    const der = Buffer.from(cert.rawData);
    const record: IssuedCertificateRecord = {
      serial,
      caName: opts.caName,
      deviceId: opts.deviceId,
      registrationId: opts.registrationId ?? null,
      enrollmentGroupId: opts.enrollmentGroupId ?? null,
      thumbprintSha1: createHash('sha1').update(der).digest('hex').toUpperCase(),
      thumbprintSha256: createHash('sha256').update(der).digest('hex').toUpperCase(),
      notBefore: notBefore.toISOString(),
      notAfter: notAfter.toISOString(),
      certificatePem,
      revokedAt: null,
      revocationReason: null,
      created: new Date(now).toISOString(),
    };
    await this.store.authority.recordIssued(record);
    this.#log(
      { event: 'cert.issued', ca: opts.caName, serial, deviceId: opts.deviceId, enrollmentGroupId: opts.enrollmentGroupId ?? null, keyAlg, notAfter: record.notAfter, thumbprint: record.thumbprintSha256 },
      'certificate issued',
    );
    const chain = await this.chainPems(opts.caName);
    return {
      serial,
      certificatePem,
      chainPem: certificatePem + chain.map((c) => c.trim() + '\n').join(''),
      notAfter: record.notAfter,
      thumbprintSha256: record.thumbprintSha256,
    };
  }

  /**
   * Revokes one certificate Gatehouse issued. With `caName`, the serial must belong to that CA.
   * Revoking twice keeps the first revocation (date and reason) and returns it unchanged.
   */
  async revoke(serial: string, reason: RevocationReason = 'unspecified', caName?: string): Promise<IssuedCertificateRecord> {
    if (!isRevocationReason(reason)) throw invalid(`reason must be one of ${Object.keys(REVOCATION_REASONS).join(', ')}`);
    if (typeof serial !== 'string' || !/^[0-9a-f:]{1,64}$/i.test(serial)) throw invalid('serial must be a hexadecimal certificate serial number');
    const key = normalizeSerial(serial);
    const record = await this.store.authority.getIssued(key);
    if (record === undefined || (caName !== undefined && record.caName !== caName)) {
      throw new HubError('ResourceNotFound', `No certificate with serial ${key} was issued${caName === undefined ? '' : ` by CA '${caName}'`}.`);
    }
    if (record.revokedAt !== null) return record;
    const at = new Date(this.clock.now()).toISOString();
    const [revoked] = await this.#revokeAll([record], reason, at);
    return (await this.store.authority.getIssued(key)) ?? revoked ?? record;
  }

  /**
   * Revokes the unrevoked ones among `targets`, says so on the bus, and, for an intermediate,
   * revokes everything it signed: no chain through it is trusted again.
   */
  async #revokeAll(targets: readonly IssuedCertificateRecord[], reason: RevocationReason, at: string): Promise<IssuedCertificateRecord[]> {
    const done: IssuedCertificateRecord[] = [];
    for (const r of targets) {
      if (r.revokedAt === null && (await this.store.authority.revoke(r.serial, reason, at))) done.push({ ...r, revokedAt: at, revocationReason: reason });
    }
    if (done.length > 0) this.#changed(done);
    for (const r of done) {
      if (!r.deviceId.startsWith(CA_RECORD_PREFIX)) continue;
      const caName = r.deviceId.slice(CA_RECORD_PREFIX.length);
      this.#held.delete(caName);
      await this.#revokeAll(await allIssued(this.store.authority, { caName }), reason, at);
    }
    return done;
  }

  /** Revokes every unrevoked certificate issued to a device (by one CA, when given). */
  async revokeDevice(deviceId: string, reason: RevocationReason = 'unspecified', caName?: string): Promise<IssuedCertificateRecord[]> {
    if (!isRevocationReason(reason)) throw invalid(`reason must be one of ${Object.keys(REVOCATION_REASONS).join(', ')}`);
    if (typeof deviceId !== 'string' || deviceId === '') throw invalid('deviceId is required');
    const targets = await allIssued(this.store.authority, { deviceId, ...(caName === undefined ? {} : { caName }) });
    return this.#revokeAll(targets, reason, new Date(this.clock.now()).toISOString());
  }

  /**
   * The CA's CRL (DER, RFC 5280 §5), signed with its key: every certificate it issued and
   * revoked, with dates and reason codes. Cached; reissued after a revocation under the CA and
   * well before nextUpdate.
   */
  async crl(caName: string): Promise<Buffer> {
    const now = this.clock.now();
    const cached = this.#crls.get(caName);
    if (cached !== undefined && now < cached.refreshAt) return cached.der;
    const ca = await this.#heldCa(caName);
    const revoked = (await allIssued(this.store.authority, { caName })).filter((r) => r.revokedAt !== null);
    // RFC 5280 §5.2.3: monotonically increasing; milliseconds since the epoch survive restarts.
    const crlNumber = Math.max(now, this.#lastCrlNumber + 1);
    this.#lastCrlNumber = crlNumber;
    const der = await buildCrl({ issuer: ca.cert, signer: ca.signer, revoked, now, nextUpdate: now + DAY_MS, crlNumber });
    // Reissued at the latest half way to nextUpdate, so relying parties never hold a stale one.
    this.#crls.set(caName, { der, refreshAt: now + DAY_MS / 2 });
    return der;
  }

  #changed(records: IssuedCertificateRecord[]): void {
    for (const r of records) {
      this.#crls.delete(r.caName);
      this.#log({ event: 'cert.revoked', ca: r.caName, serial: r.serial, deviceId: r.deviceId, reason: r.revocationReason }, 'certificate revoked');
    }
    // Every node drops the sessions on these certificates and refuses them from now on.
    this.bus.publish(SUBJECTS.certificatesRevoked, {
      certificates: records.map((r) => ({ serial: normalizeSerial(r.serial), thumbprintSha256: r.thumbprintSha256, caName: r.caName })),
    });
  }

  /**
   * Deletes a CA: its registration and, when Gatehouse holds it, its sealed key, so nothing can
   * sign with a CA that no longer exists and the name can be used again.
   */
  async deleteCa(name: string, ifMatch: string): Promise<void> {
    await this.cas.delete(name, ifMatch);
    const held = await this.store.authority.deleteCaKey(name);
    this.#crls.delete(name);
    this.#held.delete(name);
    // An issuer gone changes the chains below it.
    this.#chains.clear();
    this.#log({ event: 'ca.deleted', ca: name, keyDeleted: held }, 'CA deleted');
  }

  /**
   * The CA's private key (PKCS#8 PEM), for an operator who explicitly asked for it (moving the CA
   * to an HSM, or a test that forges bad certificates under a trusted CA). Logged as a warning.
   */
  async exportKey(name: string): Promise<string> {
    await this.cas.get(name);
    const keyPem = await this.store.authority.getCaKey(name);
    if (keyPem === undefined) throw invalid(`Gatehouse does not hold the key of CA '${name}'`);
    this.#log({ event: 'ca.key-exported', ca: name, level: 'warn' }, 'CA private key exported');
    return keyPem;
  }

  /** The CA certificate and its issuers up to the root (PEM each), for EST /cacerts. */
  async chainPems(name: string): Promise<string[]> {
    const record = await this.cas.get(name);
    const cached = this.#chains.get(name);
    if (cached !== undefined && cached.pem === record.certificatePem) return cached.chain;
    const chain = (await this.#chainOf(new X509Certificate(record.certificatePem))).map((c) => c.toString());
    this.#chains.set(name, { pem: record.certificatePem, chain });
    return chain;
  }

  /** Certificates issued by one CA (which must exist), in serial order. */
  async listIssued(caName: string, q: { deviceId?: string; limit?: number; after?: string } = {}): Promise<IssuedCertificateRecord[]> {
    await this.cas.get(caName);
    const limit = q.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw invalid('limit must be an integer from 1 to 1000');
    return this.store.authority.listIssued({ caName, limit, ...(q.deviceId === undefined ? {} : { deviceId: q.deviceId }), ...(q.after === undefined ? {} : { after: q.after }) });
  }

  /** Whether Gatehouse holds the key of this CA (it can sign with it). */
  async holdsKey(name: string): Promise<boolean> {
    return this.store.authority.hasCaKey(name);
  }

  /** A registered CA whose key Gatehouse holds, valid now, not revoked, ready to sign. */
  async #heldCa(name: string): Promise<HeldCa> {
    const record = await this.cas.get(name);
    if (!record.isVerified) throw invalid(`CA '${name}' is not verified`);
    const cached = this.#held.get(name);
    if (cached !== undefined && cached.pem === record.certificatePem && this.clock.now() < cached.held.notAfter) return cached.held;
    const keyPem = await this.store.authority.getCaKey(name);
    if (keyPem === undefined) throw invalid(`Gatehouse does not hold the key of CA '${name}'; it signs only with CAs it created`);
    const node = new X509Certificate(record.certificatePem);
    const notAfter = Date.parse(node.validTo);
    if (!(this.clock.now() < notAfter)) throw invalid(`CA '${name}' expired on ${new Date(notAfter).toISOString()}`);
    // The certificate may have been replaced through /certificates since: sign only if it still carries our key.
    if (!node.checkPrivateKey(createPrivateKey(keyPem))) throw invalid(`the certificate of CA '${name}' no longer matches the key Gatehouse holds for it`);
    const own = await this.store.authority.getIssued(normalizeSerial(node.serialNumber));
    if (own !== undefined && own.deviceId === `${CA_RECORD_PREFIX}${name}` && own.revokedAt !== null) throw invalid(`CA '${name}' is revoked`);
    const held: HeldCa = { cert: new x509.X509Certificate(record.certificatePem), node, signer: await signerFrom(keyPem), notAfter };
    this.#held.set(name, { pem: record.certificatePem, held });
    return held;
  }

  /** The CA and its issuers up to the self-signed root, from the registered CAs, matched by key. */
  async #chainOf(ca: X509Certificate): Promise<X509Certificate[]> {
    const all = (await this.cas.list()).map((r) => new X509Certificate(r.certificatePem));
    const chain = [ca];
    let current = ca;
    while (chain.length < MAX_CHAIN && !(current.checkIssued(current) && current.verify(current.publicKey))) {
      const issuer = all.find((c) => c.fingerprint256 !== current.fingerprint256 && current.checkIssued(c) && current.verify(c.publicKey));
      if (issuer === undefined) break;
      chain.push(issuer);
      current = issuer;
    }
    return chain;
  }
}
