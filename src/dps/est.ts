/**
 * Enrollment over Secure Transport (RFC 7030) for the device CA (issue "Device PKI", steps 3-5).
 * One EST label per enrollment group: `/.well-known/est/{group}/...`.
 *
 * - `simpleenroll` is the factory's door. A factory credential scoped to one group authenticates
 *   the station (HTTP basic, or its TLS client certificate); the device made the key and the CSR,
 *   so the key never reaches the station. This class is the provisioner of STYLE.md principle 5:
 *   it decides the SignOptions (the group's CA, the CN as registration id, the validity from
 *   policy); the CertificateAuthority only applies them.
 * - `simplereenroll` is the device's own door: its current certificate, presented as the TLS
 *   client certificate, proves it holds the old key (the TLS CertificateVerify). A certificate
 *   that expired is renewed only within the grace period; a revoked one never.
 * - A device registered by thumbprint gets the new certificate's thumbprint in the slot its
 *   current certificate does not use, so it keeps connecting with either: rotation without
 *   downtime.
 *
 * Enrolling is idempotent per key: submitting again a CSR whose key already holds an active
 * certificate returns that certificate (a factory station that crashed after the hub signed can
 * resume); another key for a registration id with an active certificate is refused.
 *
 * A factory credential enrolls only the registration ids of its scope (patterns such as
 * `line-a-*`, or exact ids, given when it is made; there is no default), and never an id that
 * belongs to another enrollment or names a device made otherwise (src/dps/device-ownership.ts):
 * a station of one line cannot mint a certificate for another line's device or an operator's.
 * Both refusals read alike (403 CertificateNotAccepted); the reason goes to the log and the audit.
 */
import { createHash, createPublicKey, randomBytes, timingSafeEqual, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { Clock } from '../core/clock.js';
import type { AuthFailureCode } from '../core/auth-failure.js';
import { HubError, unauthorized } from '../core/errors.js';
import type { DeviceRecord } from '../core/types.js';
import type { AuthorityStore, EstCredentialRecord, IssuedCertificateRecord } from '../store/authority-ports.js';
import type { CaCertificateRecord } from '../store/certificate-ports.js';
import { allIssued } from '../pki/issued.js';
import { CA_RECORD_PREFIX, normalizeSerial, type CertificateAuthority, type IssuedCertificate } from '../pki/authority.js';
import { estRefusal, type EstOwnershipLookups } from './device-ownership.js';

export interface EstPolicy {
  /** Validity of every certificate issued over EST. */
  validityDays: number;
  /** Days after expiry a certificate may still be renewed with its key; 0: never. */
  renewalGraceDays: number;
}

export interface EstGroup {
  enrollmentGroupId: string;
  provisioningStatus?: string;
  attestation: {
    type: string;
    x509?: {
      signingCertificates?: { primary?: { certificate?: string }; secondary?: { certificate?: string } | null };
      caReferences?: { primary?: string; secondary?: string | null };
    };
  };
}

export interface EstDeps {
  authority: CertificateAuthority;
  store: AuthorityStore;
  /** EnrollmentNotFound when there is no such group. */
  group(id: string): Promise<EstGroup>;
  cas: { list(): Promise<CaCertificateRecord[]> };
  /** For the thumbprint rotation; absent: no rotation. */
  registry?: {
    getDevice(id: string): Promise<DeviceRecord>;
    rotateThumbprint(device: DeviceRecord, oldThumbprints: string[], newThumbprint: string): Promise<'primary' | 'secondary' | undefined>;
  };
  isRevoked(leaf: X509Certificate): Promise<boolean>;
  /** Registration records and devices: whose a registration id is. */
  ownership: EstOwnershipLookups;
  clock: Clock;
  policy: () => EstPolicy;
  log: (fields: Record<string, unknown>, msg: string) => void;
}

export interface EstCaller {
  /** The Authorization header, if any. */
  authorization?: string | undefined;
  /** The TLS client chain, leaf first, if the client sent one. */
  peerChain?: X509Certificate[] | undefined;
  remote?: string | undefined;
}

export interface CreatedCredential {
  record: EstCredentialRecord;
  /** Shown once; only its hash is kept. Absent for a client-certificate-only credential. */
  password?: string;
}

const DAY_MS = 86_400_000;
const REGISTRATION_ID = /^[a-z0-9\-._:]{0,127}[a-z0-9-]$/i;
const CREDENTIAL_ID = /^[A-Za-z0-9._-]{1,64}$/;
/** Factory credentials are short-lived by default: a line runs for days, not years. */
const DEFAULT_CREDENTIAL_DAYS = 30;
const MAX_CREDENTIAL_DAYS = 365;
/** A registration-id pattern: registration-id characters and `*`. */
const SCOPE_PATTERN = /^[a-z0-9\-._:*]{1,128}$/i;
const MAX_SCOPE_ENTRIES = 1000;

/** Whether a credential's scope allows this registration id (case-insensitive, `*` = any run). */
export function inScope(patterns: readonly string[], registrationId: string): boolean {
  const literal = (part: string) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  return patterns.some((p) => new RegExp(`^${p.split('*').map(literal).join('.*')}$`, 'i').test(registrationId));
}

/**
 * The one answer to an enroll the credential may not make, whatever the reason: `scope` (outside the
 * credential's registration ids) or `insufficient_rights` (another enrollment's or an operator's device).
 */
function notAllowed(code: Extract<AuthFailureCode, 'scope' | 'insufficient_rights'>, reason: string): HubError {
  return new HubError('CertificateNotAccepted', 'The registration id is not one this factory credential may enroll.', { cause: reason, authFailure: code });
}

const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const thumbprintOf = (cert: X509Certificate): string => cert.fingerprint256.replace(/:/g, '');

/** The one answer for every failed factory authentication: it tells nothing about why. */
function notAccepted(code: AuthFailureCode, reason: string): HubError {
  return unauthorized(code, reason);
}

/** A device certificate simplereenroll will not renew; the message tells its holder why. */
function refused(code: AuthFailureCode, message: string): HubError {
  return new HubError('CertificateNotAccepted', message, { authFailure: code });
}

function invalid(message: string): HubError {
  return new HubError('ArgumentInvalid', message);
}

/** PEM armour around base64 of DER, 64 columns. */
function pem(label: string, base64: string): string {
  return `-----BEGIN ${label}-----\n${base64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

/** A PKCS#10 request from what an EST client sends: base64 DER (RFC 7030 §4.2.1), or PEM. */
export function csrFromBody(body: Buffer | string | undefined | null): string {
  // Fastify leaves the body undefined when the request has none.
  if (body === undefined || body === null) throw new HubError('ArgumentNull', 'The body must be a PKCS#10 certificate request (base64 DER or PEM).');
  const text = (typeof body === 'string' ? body : body.toString('latin1')).trim();
  if (text === '') throw new HubError('ArgumentNull', 'The body must be a PKCS#10 certificate request (base64 DER or PEM).');
  if (text.startsWith('-----BEGIN')) return text;
  const compact = text.replace(/\s+/g, '');
  if (/^[A-Za-z0-9+/]+=*$/.test(compact)) return pem('CERTIFICATE REQUEST', compact);
  // Binary DER (Content-Transfer-Encoding: binary), as some clients send it.
  return pem('CERTIFICATE REQUEST', (typeof body === 'string' ? Buffer.from(body, 'latin1') : body).toString('base64'));
}

/** An RFC 7030 §4.1.3 / §4.2.3 response body: a certs-only CMS SignedData, base64, 64-column lines. */
export function certsOnlyBase64(pems: readonly string[]): string {
  const certs = new x509.X509Certificates(pems.map((p) => new x509.X509Certificate(p)));
  const der = Buffer.from(certs.export('raw'));
  return `${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n`;
}

function parseBasic(header: string | undefined): { id: string; password: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (m === null) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) return undefined;
  return { id: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** SHA-256 of the SubjectPublicKeyInfo of a certificate or a CSR (PEM): "the same key". */
function spkiOf(pem: string): string {
  if (pem.includes('CERTIFICATE REQUEST')) return sha256Hex(Buffer.from(new x509.Pkcs10CertificateRequest(pem).publicKey.rawData));
  return sha256Hex(createPublicKey(pem).export({ type: 'spki', format: 'der' }));
}

export class EstService {
  constructor(private readonly deps: EstDeps) {}

  // ------------------------------------------------------------ factory credentials

  async createCredential(
    groupId: string,
    opts: { registrationIds: readonly string[]; id?: string; validityDays?: number; clientCertificatePem?: string; password?: boolean },
  ): Promise<CreatedCredential> {
    await this.deps.group(groupId);
    const scope = [...opts.registrationIds];
    if (scope.length === 0 || scope.length > MAX_SCOPE_ENTRIES || !scope.every((p) => SCOPE_PATTERN.test(p))) {
      throw invalid(
        `registrationIds must list 1 to ${MAX_SCOPE_ENTRIES} registration ids or patterns the credential may enroll (1-128 of a-z A-Z 0-9 - . _ : and * for any run, e.g. '${groupId}-*')`,
      );
    }
    const id = opts.id ?? `factory-${randomBytes(6).toString('hex')}`;
    if (!CREDENTIAL_ID.test(id)) throw invalid('the credential id must be 1-64 of A-Z a-z 0-9 . _ -');
    const days = opts.validityDays ?? DEFAULT_CREDENTIAL_DAYS;
    if (!Number.isInteger(days) || days < 1 || days > MAX_CREDENTIAL_DAYS) throw invalid(`validityDays must be a whole number from 1 to ${MAX_CREDENTIAL_DAYS}`);
    let clientThumbprint: string | null = null;
    if (opts.clientCertificatePem !== undefined) {
      try {
        clientThumbprint = thumbprintOf(new X509Certificate(opts.clientCertificatePem));
      } catch {
        throw invalid('clientCertificate is not a PEM X.509 certificate');
      }
    }
    const withPassword = opts.password ?? clientThumbprint === null;
    if (!withPassword && clientThumbprint === null) throw invalid('a credential needs a password, a client certificate, or both');
    // 256 random bits: a fast hash is enough, no dictionary can reach it.
    const password = withPassword ? randomBytes(32).toString('base64url') : undefined;
    const now = this.deps.clock.now();
    const record: EstCredentialRecord = {
      id,
      enrollmentGroupId: groupId,
      secretHash: password === undefined ? null : sha256Hex(password),
      clientThumbprint,
      expiresAt: new Date(now + days * DAY_MS).toISOString(),
      created: new Date(now).toISOString(),
      registrationIds: scope,
    };
    await this.deps.store.putEstCredential(record);
    this.deps.log({ event: 'est.credential-created', id, enrollmentGroupId: groupId, expiresAt: record.expiresAt, clientCertificate: clientThumbprint !== null, registrationIds: scope.slice(0, 20) }, 'EST credential created');
    return password === undefined ? { record } : { record, password };
  }

  listCredentials(groupId?: string): Promise<EstCredentialRecord[]> {
    return this.deps.store.listEstCredentials(groupId);
  }

  async deleteCredential(id: string): Promise<void> {
    if (!(await this.deps.store.deleteEstCredential(id))) throw new HubError('ResourceNotFound', `No EST credential '${id}'.`);
    this.deps.log({ event: 'est.credential-deleted', id }, 'EST credential deleted');
  }

  // ------------------------------------------------------------ EST operations

  /** RFC 7030 §4.1: the group's signing CA and its issuers up to the root (PEM each). */
  async caCerts(label: string): Promise<string[]> {
    const { caName } = await this.#signingCa(label);
    return this.deps.authority.chainPems(caName);
  }

  /** RFC 7030 §4.2.1: a factory credential of this group enrolls a new device. */
  async enroll(label: string, caller: EstCaller, csrPem: string): Promise<IssuedCertificate> {
    const credential = await this.#factory(label, caller);
    const { caName } = await this.#signingCa(label);
    const registrationId = this.#commonName(csrPem);
    if (!inScope(credential.registrationIds, registrationId)) {
      throw notAllowed('scope', `registration id ${registrationId} is outside the scope of EST credential '${credential.id}' (${credential.registrationIds.slice(0, 10).join(', ') || 'empty'})`);
    }
    const elsewhere = await estRefusal(registrationId, label, this.deps.ownership);
    if (elsewhere !== undefined) throw notAllowed('insufficient_rights', `EST credential '${credential.id}' of group ${label}: ${elsewhere}`);
    // Idempotent per key; one active certificate per registration id otherwise.
    const active = await this.#activeFor(registrationId);
    if (active.length > 0) {
      const spki = spkiOf(csrPem);
      const same = active.find((r) => spkiOf(r.certificatePem) === spki && r.enrollmentGroupId === label);
      if (same !== undefined) {
        this.deps.log({ event: 'est.enroll-repeated', label, registrationId, serial: same.serial, credential: credential.id }, 'EST enroll repeated: same key, same certificate');
        return this.#bundle(same);
      }
      throw new HubError(
        'CertificateConflict',
        `Registration id '${registrationId}' already holds an active certificate (serial ${active[0]!.serial}); renew it with simplereenroll or revoke it first.`,
      );
    }
    const issued = await this.deps.authority.sign(csrPem, {
      caName,
      deviceId: registrationId,
      registrationId,
      enrollmentGroupId: label,
      validityDays: this.deps.policy().validityDays,
    });
    this.deps.log({ event: 'est.enrolled', label, registrationId, serial: issued.serial, credential: credential.id, remote: caller.remote }, 'EST enroll');
    return issued;
  }

  /** RFC 7030 §4.2.2: a device renews with its current certificate as the TLS client certificate. */
  async reenroll(label: string, caller: EstCaller, csrPem: string): Promise<IssuedCertificate> {
    const leaf = caller.peerChain?.[0];
    if (leaf === undefined) throw notAccepted('malformed', 'simplereenroll needs the current certificate as the TLS client certificate');
    const now = this.deps.clock.now();
    const current = await this.deps.store.getIssued(normalizeSerial(leaf.serialNumber));
    // Exactly the certificate we issued (a fake root with the same name signs other bytes).
    if (current === undefined || current.thumbprintSha256 !== thumbprintOf(leaf) || current.deviceId.startsWith(CA_RECORD_PREFIX)) {
      throw refused('bad_credentials', 'the client certificate was not issued by this hub');
    }
    if (current.revokedAt !== null || (await this.deps.isRevoked(leaf))) throw refused('revoked', `certificate ${current.serial} is revoked`);
    const notBefore = Date.parse(current.notBefore);
    const notAfter = Date.parse(current.notAfter);
    if (now < notBefore) throw refused('not_yet_valid', `certificate ${current.serial} is not valid before ${current.notBefore}`);
    const graceDays = this.deps.policy().renewalGraceDays;
    const inGrace = now > notAfter;
    if (inGrace && now > notAfter + graceDays * DAY_MS) {
      throw refused('expired', `certificate ${current.serial} expired on ${current.notAfter}, beyond the renewal grace period of ${graceDays} days`);
    }
    const { caName, group } = await this.#signingCa(label);
    if (current.enrollmentGroupId !== label && !(current.enrollmentGroupId === null && current.caName === caName)) {
      throw refused('scope', `certificate ${current.serial} does not belong to enrollment group '${label}'`);
    }
    if ((group.provisioningStatus ?? 'enabled') !== 'enabled') throw refused('disabled', `enrollment group '${label}' is disabled`);
    // RFC 7030 §4.2.2: the subject stays the same.
    const cn = this.#commonName(csrPem);
    if (cn !== current.deviceId) throw invalid(`the CSR's CN '${cn}' is not the certificate's subject '${current.deviceId}'`);
    const newKey = spkiOf(csrPem) !== spkiOf(current.certificatePem);
    const issued = await this.deps.authority.sign(csrPem, {
      caName,
      deviceId: current.deviceId,
      ...(current.registrationId === null ? {} : { registrationId: current.registrationId }),
      enrollmentGroupId: label,
      validityDays: this.deps.policy().validityDays,
    });
    const slot = await this.#rotate(current.deviceId, [current.thumbprintSha256, current.thumbprintSha1], issued);
    this.deps.log(
      {
        event: 'cert.renewed',
        label,
        deviceId: current.deviceId,
        oldSerial: current.serial,
        serial: issued.serial,
        afterExpiry: inGrace,
        newKey,
        thumbprintSlot: slot ?? null,
        remote: caller.remote,
      },
      'certificate renewed over EST',
    );
    return issued;
  }

  // ------------------------------------------------------------ internals

  /** The factory credential of this group the caller presents, or the one 401 for everything else. */
  async #factory(label: string, caller: EstCaller): Promise<EstCredentialRecord> {
    const now = this.deps.clock.now();
    const basic = parseBasic(caller.authorization);
    if (basic !== undefined) {
      const c = await this.deps.store.getEstCredential(basic.id);
      const expected = Buffer.from(c?.secretHash ?? '0'.repeat(64), 'hex');
      const given = Buffer.from(sha256Hex(basic.password), 'hex');
      const ok = timingSafeEqual(expected, given) && c !== undefined && c.secretHash !== null;
      if (!ok) throw notAccepted('bad_credentials', `EST basic credential '${basic.id.slice(0, 64)}' unknown or wrong password`);
      if (c.enrollmentGroupId !== label) throw notAccepted('scope', `EST credential '${c.id}' is for group '${c.enrollmentGroupId}', not '${label}'`);
      if (Date.parse(c.expiresAt) <= now) throw notAccepted('expired', `EST credential '${c.id}' expired at ${c.expiresAt}`);
      return c;
    }
    const leaf = caller.peerChain?.[0];
    if (leaf !== undefined) {
      const t = thumbprintOf(leaf);
      const c = (await this.deps.store.listEstCredentials(label)).find((x) => x.clientThumbprint === t);
      if (c === undefined) throw notAccepted('bad_credentials', 'the TLS client certificate is not a factory credential of this group');
      if (Date.parse(c.expiresAt) <= now) throw notAccepted('expired', `EST credential '${c.id}' expired at ${c.expiresAt}`);
      if (!(Date.parse(leaf.validFrom) <= now && now <= Date.parse(leaf.validTo))) {
        throw notAccepted(now < Date.parse(leaf.validFrom) ? 'not_yet_valid' : 'expired', `the station certificate of '${c.id}' is outside its validity period`);
      }
      return c;
    }
    throw notAccepted('malformed', 'no factory credential (HTTP basic or TLS client certificate)');
  }

  /** The group and the Gatehouse-held CA that signs for it: a CA reference, or a signing certificate we hold the key of. */
  async #signingCa(label: string): Promise<{ caName: string; group: EstGroup }> {
    const group = await this.deps.group(label);
    const x = group.attestation.x509;
    if (group.attestation.type !== 'x509' || x === undefined) throw invalid(`enrollment group '${label}' does not use X.509 attestation`);
    for (const name of [x.caReferences?.primary, x.caReferences?.secondary]) {
      if (typeof name === 'string' && name !== '' && (await this.deps.authority.holdsKey(name))) return { caName: name, group };
    }
    const wanted = [x.signingCertificates?.primary?.certificate, x.signingCertificates?.secondary?.certificate]
      .filter((c): c is string => typeof c === 'string' && c !== '')
      .map((c) => {
        try {
          return thumbprintOf(new X509Certificate(c.includes('-----BEGIN') ? c : Buffer.from(c, 'base64')));
        } catch {
          return '';
        }
      });
    if (wanted.length > 0) {
      for (const ca of await this.deps.cas.list()) {
        if (wanted.includes(ca.thumbprintSha256) && (await this.deps.authority.holdsKey(ca.name))) return { caName: ca.name, group };
      }
    }
    throw invalid(`enrollment group '${label}' has no CA whose key Gatehouse holds; reference one made with 'gatehouse ca create'`);
  }

  #commonName(csrPem: string): string {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (err) {
      throw invalid(`the CSR cannot be parsed as PKCS#10: ${(err as Error).message}`);
    }
    const cns = csr.subjectName.getField('CN');
    if (cns.length !== 1) throw invalid(`the CSR has ${cns.length} CNs; exactly one, the registration id, is required`);
    const cn = cns[0]!;
    if (!REGISTRATION_ID.test(cn)) throw invalid(`the CSR's CN '${cn.slice(0, 140)}' is not a valid registration id (1-128 of a-z A-Z 0-9 - . _ :, ending alphanumeric or -)`);
    return cn;
  }

  async #activeFor(deviceId: string): Promise<IssuedCertificateRecord[]> {
    const now = this.deps.clock.now();
    return (await allIssued(this.deps.store, { deviceId })).filter((r) => r.revokedAt === null && now < Date.parse(r.notAfter));
  }

  async #bundle(r: IssuedCertificateRecord): Promise<IssuedCertificate> {
    const chain = await this.deps.authority.chainPems(r.caName);
    return {
      serial: r.serial,
      certificatePem: r.certificatePem,
      chainPem: r.certificatePem + chain.map((c) => `${c.trim()}\n`).join(''),
      notAfter: r.notAfter,
      thumbprintSha256: r.thumbprintSha256,
    };
  }

  /** A thumbprint device: the new thumbprint goes in the slot the current certificate does not use. */
  async #rotate(deviceId: string, oldThumbprints: string[], issued: IssuedCertificate): Promise<'primary' | 'secondary' | undefined> {
    const registry = this.deps.registry;
    if (registry === undefined) return undefined;
    const device = await registry.getDevice(deviceId).catch(() => undefined);
    if (device === undefined || device.auth.type !== 'selfSigned') return undefined;
    const slot = await registry.rotateThumbprint(device, oldThumbprints, issued.thumbprintSha256);
    if (slot !== undefined) this.deps.log({ event: 'device.thumbprint-rotated', deviceId, slot, thumbprint: issued.thumbprintSha256 }, 'thumbprint rotated');
    return slot;
  }
}
