/**
 * Validation and normalization of enrollment bodies (wire doc §6.9, §2.5, §4.4). Pure functions:
 * a body in, the record to store out (without id, stamps or defaults that need the hub), or an
 * ArgumentInvalid HubError whose message names the field. Keys and certificates never appear in
 * a message.
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { HubError } from '../core/errors.js';
import { isJsonObject, type JsonObject } from '../core/json.js';
import { printable, validateDeviceId } from '../core/ids.js';
import {
  ALLOCATION_POLICIES,
  type AllocationPolicy,
  type AttestationMechanism,
  type CustomAllocationDefinition,
  type EnrollmentCommon,
  type InitialTwin,
  type ReprovisionPolicy,
  type X509Attestation,
  type X509CertificateInfo,
  type X509Certificates,
} from '../core/enrollments.js';

/** Case-insensitive; alphanumerics and `- . _ :`; the last character alphanumeric or `-`; ≤ 128 [§4.4]. */
const ENROLLMENT_ID = /^[a-z0-9\-._:]{0,127}[a-z0-9-]$/i;

/** Generated keys are 64 bytes; user keys must be base64 of 16-64 bytes [§2.5]. */
export const GENERATED_KEY_BYTES = 64;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const bad = (msg: string) => new HubError('ArgumentInvalid', msg);

export function validateEnrollmentId(id: unknown, what: 'registration' | 'enrollment group'): string {
  if (typeof id !== 'string' || id === '') throw bad(`The ${what} id is missing.`);
  if (id.length > 128) throw bad(`The ${what} id is longer than 128 characters.`);
  if (!ENROLLMENT_ID.test(id)) {
    throw bad(`The ${what} id '${printable(id)}' is invalid: alphanumerics and - . _ : only, ending in an alphanumeric or -.`);
  }
  return id;
}

function symmetricKey(v: unknown, which: string): string {
  if (v === undefined || v === null || v === '') return randomBytes(GENERATED_KEY_BYTES).toString('base64');
  if (typeof v !== 'string' || !BASE64.test(v)) throw bad(`The ${which} symmetric key is not valid base64.`);
  const n = Buffer.from(v, 'base64').length;
  if (n < 16 || n > 64) throw bad(`The ${which} symmetric key must be 16 to 64 bytes, not ${n}.`);
  return v;
}

function certificateInfo(raw: string, which: string): X509CertificateInfo {
  let cert: X509Certificate;
  try {
    const trimmed = raw.trim();
    cert = new X509Certificate(trimmed.startsWith('-----BEGIN') ? trimmed : Buffer.from(trimmed.replace(/\s+/g, ''), 'base64'));
  } catch {
    throw bad(`The ${which} certificate is not a PEM or base64 DER X.509 certificate.`);
  }
  const hex = (fp: string) => fp.replace(/:/g, '').toUpperCase();
  return {
    subjectName: cert.subject.split('\n').join(', '),
    sha1Thumbprint: hex(cert.fingerprint),
    sha256Thumbprint: hex(cert.fingerprint256),
    issuerName: cert.issuer.split('\n').join(', '),
    notBeforeUtc: new Date(cert.validFrom).toISOString(),
    notAfterUtc: new Date(cert.validTo).toISOString(),
    serialNumber: cert.serialNumber.toUpperCase(),
    version: 3,
  };
}

function certificates(v: unknown, which: string): X509Certificates | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isJsonObject(v)) throw bad(`x509.${which} must be an object.`);
  const one = (c: unknown, slot: 'primary' | 'secondary') => {
    if (c === undefined || c === null) return undefined;
    if (!isJsonObject(c) || typeof c.certificate !== 'string' || c.certificate === '') throw bad(`x509.${which}.${slot}.certificate is missing.`);
    return { certificate: c.certificate, info: certificateInfo(c.certificate, `${which}.${slot}`) };
  };
  const primary = one(v.primary, 'primary');
  if (primary === undefined) throw bad(`x509.${which}.primary is required.`);
  const secondary = one(v.secondary, 'secondary');
  return secondary === undefined ? { primary } : { primary, secondary };
}

function x509(v: unknown, kind: 'individual' | 'group'): X509Attestation {
  if (!isJsonObject(v)) throw bad('attestation.x509 is required for x509 attestation.');
  if (kind === 'individual') {
    const clientCertificates = certificates(v.clientCertificates, 'clientCertificates');
    if (clientCertificates === undefined) throw bad('An individual X.509 enrollment needs x509.clientCertificates.');
    return { clientCertificates };
  }
  const signingCertificates = certificates(v.signingCertificates, 'signingCertificates');
  if (signingCertificates !== undefined) return { signingCertificates };
  const refs = v.caReferences;
  if (isJsonObject(refs) && typeof refs.primary === 'string' && refs.primary !== '') {
    const secondary = typeof refs.secondary === 'string' && refs.secondary !== '' ? refs.secondary : undefined;
    return { caReferences: secondary === undefined ? { primary: refs.primary } : { primary: refs.primary, secondary } };
  }
  throw bad('An X.509 enrollment group needs x509.signingCertificates or x509.caReferences.');
}

export function parseAttestation(v: unknown, kind: 'individual' | 'group'): AttestationMechanism {
  if (!isJsonObject(v)) throw bad('attestation is required.');
  switch (v.type) {
    case 'symmetricKey': {
      const sk = isJsonObject(v.symmetricKey) ? v.symmetricKey : {};
      return { type: 'symmetricKey', symmetricKey: { primaryKey: symmetricKey(sk.primaryKey, 'primary'), secondaryKey: symmetricKey(sk.secondaryKey, 'secondary') } };
    }
    case 'x509':
      return { type: 'x509', x509: x509(v.x509, kind) };
    case 'tpm': {
      if (kind === 'group') throw bad('Enrollment groups do not support TPM attestation.');
      const tpm = v.tpm;
      if (!isJsonObject(tpm) || typeof tpm.endorsementKey !== 'string' || tpm.endorsementKey === '') throw bad('attestation.tpm.endorsementKey is required.');
      if (!BASE64.test(tpm.endorsementKey.replace(/\s+/g, ''))) throw bad('attestation.tpm.endorsementKey is not valid base64.');
      const srk = typeof tpm.storageRootKey === 'string' && tpm.storageRootKey !== '' ? tpm.storageRootKey : undefined;
      return { type: 'tpm', tpm: srk === undefined ? { endorsementKey: tpm.endorsementKey } : { endorsementKey: tpm.endorsementKey, storageRootKey: srk } };
    }
    default:
      throw bad(`attestation.type must be symmetricKey, x509 or tpm, not '${printable(String(v.type))}'.`);
  }
}

function optionalObject(v: unknown, what: string): JsonObject | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isJsonObject(v)) throw bad(`${what} must be an object.`);
  return v;
}

/** The fields individual enrollments and groups share, with the hub-independent defaults. */
export function parseCommon(body: JsonObject, kind: 'individual' | 'group', defaultHubs: string[]): EnrollmentCommon {
  const out: EnrollmentCommon = { attestation: parseAttestation(body.attestation, kind) };
  const status = body.provisioningStatus ?? 'enabled';
  if (status !== 'enabled' && status !== 'disabled') throw bad('provisioningStatus must be enabled or disabled.');
  out.provisioningStatus = status;
  const policy = body.allocationPolicy ?? 'hashed';
  if (typeof policy !== 'string' || !ALLOCATION_POLICIES.includes(policy as AllocationPolicy)) {
    throw bad(`allocationPolicy must be one of ${ALLOCATION_POLICIES.join(', ')}.`);
  }
  out.allocationPolicy = policy as AllocationPolicy;
  const hubs = body.iotHubs ?? defaultHubs;
  if (!Array.isArray(hubs) || hubs.some((h) => typeof h !== 'string' || h === '')) throw bad('iotHubs must be an array of host names.');
  out.iotHubs = (hubs as string[]).length === 0 ? defaultHubs : (hubs as string[]);
  if (typeof body.iotHubHostName === 'string' && body.iotHubHostName !== '') out.iotHubHostName = body.iotHubHostName;
  const twin = optionalObject(body.initialTwin, 'initialTwin');
  if (twin !== undefined) {
    if (twin.tags !== undefined && twin.tags !== null && !isJsonObject(twin.tags)) throw bad('initialTwin.tags must be an object.');
    if (twin.properties !== undefined && twin.properties !== null && !isJsonObject(twin.properties)) throw bad('initialTwin.properties must be an object.');
    out.initialTwin = twin as InitialTwin;
  }
  const caps = optionalObject(body.capabilities, 'capabilities');
  out.capabilities = { iotEdge: caps?.iotEdge === true };
  const re = optionalObject(body.reprovisionPolicy, 'reprovisionPolicy');
  const reprovision: ReprovisionPolicy = {
    updateHubAssignment: re?.updateHubAssignment !== false,
    migrateDeviceData: re?.migrateDeviceData !== false,
  };
  out.reprovisionPolicy = reprovision;
  const custom = optionalObject(body.customAllocationDefinition, 'customAllocationDefinition');
  if (custom !== undefined) {
    if (typeof custom.webhookUrl !== 'string' || typeof custom.apiVersion !== 'string') {
      throw bad('customAllocationDefinition needs webhookUrl and apiVersion.');
    }
    out.customAllocationDefinition = { webhookUrl: custom.webhookUrl, apiVersion: custom.apiVersion } satisfies CustomAllocationDefinition;
  }
  if (out.allocationPolicy === 'custom' && out.customAllocationDefinition === undefined) {
    throw bad('allocationPolicy custom needs a customAllocationDefinition.');
  }
  return out;
}

/** The optional hub device id of an individual enrollment. */
export function parseDeviceId(v: unknown): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  return validateDeviceId(v);
}
