/**
 * Enrollment bodies from `az iot dps enrollment[-group] create|update` flags, as az builds them
 * (azure-iot-cli-extension `azext_iot/operations/dps.py`): the attestation from the keys,
 * certificate files or CA names given, the initial twin from `--initial-twin-tags` and
 * `--initial-twin-properties`, the reprovision policy from its three names, and az's checks on
 * the allocation policy. The hub validates the rest and says which field is wrong.
 */
import { readFileSync } from 'node:fs';
import { usage } from './errors.js';

export const ATTESTATION_TYPES = ['symmetricKey', 'x509', 'tpm'] as const;
export const ALLOCATION_POLICIES = ['hashed', 'geoLatency', 'static', 'custom'] as const;
export const REPROVISION_POLICIES = ['reprovisionandmigratedata', 'reprovisionandresetdata', 'never'] as const;
export const PROVISIONING_STATUSES = ['enabled', 'disabled'] as const;

type Json = Record<string, unknown>;

/** The flags that shape an enrollment (undefined: not given). */
export interface EnrollmentFlags {
  attestationType?: string;
  primaryKey?: string;
  secondaryKey?: string;
  endorsementKey?: string;
  certificatePath?: string;
  secondaryCertificatePath?: string;
  rootCaName?: string;
  secondaryRootCaName?: string;
  removeCertificate?: boolean;
  removeSecondaryCertificate?: boolean;
  deviceId?: string;
  initialTwinTags?: Json;
  initialTwinProperties?: Json;
  provisioningStatus?: string;
  reprovisionPolicy?: string;
  allocationPolicy?: string;
  iotHubs?: string[];
  webhookUrl?: string;
  apiVersion?: string;
  edgeEnabled?: boolean;
}

/** A case-insensitive choice, returned in its canonical spelling (az takes `symmetrickey`). */
export function choice<T extends string>(values: readonly T[], flag: string): (v: string) => T {
  return (v) => {
    const hit = values.find((x) => x.toLowerCase() === v.toLowerCase());
    if (hit === undefined) throw usage(`${flag} must be one of ${values.join(', ')}, not '${v}'`);
    return hit;
  };
}

/** A certificate file: PEM as text, DER (.cer) as base64; the hub takes either. */
export function readCertificate(file: string, flag: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw usage(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'FileUnreadable');
  }
  const text = bytes.toString('utf8');
  return text.includes('-----BEGIN') ? text : bytes.toString('base64');
}

function certificates(primary: string | undefined, secondary: string | undefined): Json {
  const out: Json = {};
  if (primary !== undefined) out.primary = { certificate: readCertificate(primary, '--certificate-path') };
  if (secondary !== undefined) out.secondary = { certificate: readCertificate(secondary, '--secondary-certificate-path') };
  return out;
}

/** `--iot-hubs a b` or `--iot-hubs "a b"`, as az splits them. */
export function hubList(values: string[] | undefined): string[] | undefined {
  if (values === undefined) return undefined;
  const hubs = values.flatMap((v) => v.split(/[\s,]+/)).filter((h) => h !== '');
  return hubs.length === 0 ? undefined : hubs;
}

function reprovision(policy: string): Json {
  if (policy === 'reprovisionandmigratedata') return { updateHubAssignment: true, migrateDeviceData: true };
  if (policy === 'reprovisionandresetdata') return { updateHubAssignment: true, migrateDeviceData: false };
  return { updateHubAssignment: false, migrateDeviceData: false };
}

/** az's checks (`_validate_allocation_policy_for_enrollment`), against the record when updating. */
function checkAllocation(f: EnrollmentFlags, current?: Json): void {
  const policy = f.allocationPolicy ?? (current?.allocationPolicy as string | undefined);
  const hubs = hubList(f.iotHubs) ?? (current === undefined ? undefined : (current.iotHubs as string[] | undefined));
  if (f.allocationPolicy === undefined && current === undefined) {
    if (f.iotHubs !== undefined) throw usage('--iot-hubs needs --allocation-policy', 'ArgumentMissing');
    return;
  }
  if (policy === 'static' && f.iotHubs !== undefined && (hubs?.length ?? 0) !== 1) throw usage('the static allocation policy takes exactly one hub in --iot-hubs');
  if (policy === 'static' && current === undefined && hubs === undefined) throw usage('the static allocation policy needs the hub in --iot-hubs', 'ArgumentMissing');
  if (policy === 'custom') {
    const custom = current?.customAllocationDefinition as Json | undefined;
    if ((f.webhookUrl ?? custom?.webhookUrl) === undefined || (f.apiVersion ?? custom?.apiVersion) === undefined) {
      throw usage('the custom allocation policy needs --webhook-url and --api-version', 'ArgumentMissing');
    }
  }
}

/** The fields an individual enrollment and a group share, applied over `base`. */
function applyCommon(base: Json, f: EnrollmentFlags): Json {
  const out: Json = { ...base };
  if (f.initialTwinTags !== undefined || f.initialTwinProperties !== undefined) {
    const twin = (base.initialTwin as Json | undefined) ?? {};
    const props = (twin.properties as Json | undefined) ?? {};
    out.initialTwin = {
      ...twin,
      ...(f.initialTwinTags === undefined ? {} : { tags: f.initialTwinTags }),
      ...(f.initialTwinProperties === undefined ? {} : { properties: { ...props, desired: f.initialTwinProperties } }),
    };
  }
  if (f.provisioningStatus !== undefined) out.provisioningStatus = f.provisioningStatus;
  if (f.reprovisionPolicy !== undefined) out.reprovisionPolicy = reprovision(f.reprovisionPolicy);
  if (f.allocationPolicy !== undefined) out.allocationPolicy = f.allocationPolicy;
  const hubs = hubList(f.iotHubs);
  if (hubs !== undefined) out.iotHubs = hubs;
  const policy = (out.allocationPolicy as string | undefined) ?? 'hashed';
  if (policy === 'custom' && (f.webhookUrl !== undefined || f.apiVersion !== undefined)) {
    const current = (base.customAllocationDefinition as Json | undefined) ?? {};
    out.customAllocationDefinition = { ...current, ...(f.webhookUrl === undefined ? {} : { webhookUrl: f.webhookUrl }), ...(f.apiVersion === undefined ? {} : { apiVersion: f.apiVersion }) };
  }
  if (f.edgeEnabled !== undefined) out.capabilities = { iotEdge: f.edgeEnabled };
  return out;
}

function noCertificates(f: EnrollmentFlags, why: string): void {
  if (f.certificatePath !== undefined || f.secondaryCertificatePath !== undefined || f.removeCertificate === true || f.removeSecondaryCertificate === true) {
    throw usage(`certificates cannot be given or removed: ${why}`);
  }
}

function noKeys(f: EnrollmentFlags, why: string): void {
  if (f.primaryKey !== undefined || f.secondaryKey !== undefined) throw usage(`--primary-key and --secondary-key cannot be given: ${why}`);
}

// ------------------------------------------------------------------ individual enrollments

export function individualCreateBody(id: string, f: EnrollmentFlags): Json {
  const type = f.attestationType;
  let attestation: Json;
  if (type === 'symmetricKey') {
    noCertificates(f, 'the attestation type is symmetricKey');
    attestation = { type, symmetricKey: { primaryKey: f.primaryKey ?? '', secondaryKey: f.secondaryKey ?? '' } };
  } else if (type === 'x509') {
    noKeys(f, 'the attestation type is x509');
    if (f.certificatePath === undefined && f.secondaryCertificatePath === undefined) {
      throw usage('an x509 enrollment needs --certificate-path or --secondary-certificate-path', 'ArgumentMissing');
    }
    attestation = { type, x509: { clientCertificates: certificates(f.certificatePath, f.secondaryCertificatePath) } };
  } else if (type === 'tpm') {
    noKeys(f, 'the attestation type is tpm');
    noCertificates(f, 'the attestation type is tpm');
    if (f.endorsementKey === undefined) throw usage('a tpm enrollment needs --endorsement-key', 'ArgumentMissing');
    attestation = { type, tpm: { endorsementKey: f.endorsementKey } };
  } else throw usage(`--attestation-type must be one of ${ATTESTATION_TYPES.join(', ')}`, 'ArgumentMissing');
  checkAllocation(f);
  const body = applyCommon({ registrationId: id, attestation, capabilities: { iotEdge: f.edgeEnabled === true } }, f);
  if (f.deviceId !== undefined) body.deviceId = f.deviceId;
  return body;
}

/** `current` is the record with its real attestation (keys from attestationmechanism). */
export function individualUpdateBody(current: Json, f: EnrollmentFlags): Json {
  const { registrationState: _state, ...base } = current;
  const attestation = structuredClone(base.attestation) as Json;
  const type = attestation.type;
  if (type === 'tpm') {
    noKeys(f, 'the enrollment uses tpm');
    noCertificates(f, 'the enrollment uses tpm');
    if (f.endorsementKey !== undefined) attestation.tpm = { ...(attestation.tpm as Json), endorsementKey: f.endorsementKey };
  } else if (type === 'x509') {
    noKeys(f, 'the enrollment uses x509');
    if (f.endorsementKey !== undefined) throw usage('--endorsement-key cannot be given: the enrollment uses x509');
    const x509 = attestation.x509 as Json;
    x509.clientCertificates = updatedCertificates(x509.clientCertificates as Json | undefined, f);
  } else {
    noCertificates(f, 'the enrollment uses symmetricKey');
    if (f.endorsementKey !== undefined) throw usage('--endorsement-key cannot be given: the enrollment uses symmetricKey');
    const sk = { ...(attestation.symmetricKey as Json) };
    if (f.primaryKey !== undefined) sk.primaryKey = f.primaryKey;
    if (f.secondaryKey !== undefined) sk.secondaryKey = f.secondaryKey;
    attestation.symmetricKey = sk;
  }
  checkAllocation(f, base);
  const body = applyCommon({ ...base, attestation }, f);
  if (f.deviceId !== undefined) body.deviceId = f.deviceId;
  return body;
}

function updatedCertificates(current: Json | undefined, f: EnrollmentFlags): Json {
  const out: Json = { ...(current ?? {}) };
  if (f.removeCertificate === true) delete out.primary;
  if (f.removeSecondaryCertificate === true) delete out.secondary;
  Object.assign(out, certificates(f.certificatePath, f.secondaryCertificatePath));
  if (out.primary === undefined && out.secondary !== undefined) {
    // The hub requires a primary: the remaining certificate moves up, as Azure keeps "at least one".
    out.primary = out.secondary;
    delete out.secondary;
  }
  if (out.primary === undefined) throw usage('the enrollment would have no certificate left; give --certificate-path', 'ArgumentMissing');
  return out;
}

// ------------------------------------------------------------------ enrollment groups

function groupAttestation(f: EnrollmentFlags): Json | undefined {
  const certs = f.certificatePath !== undefined || f.secondaryCertificatePath !== undefined;
  const cas = f.rootCaName !== undefined || f.secondaryRootCaName !== undefined;
  if (certs && cas) throw usage('give certificate paths or CA names, not both');
  if (certs) return { type: 'x509', x509: { signingCertificates: certificates(f.certificatePath, f.secondaryCertificatePath) } };
  if (cas) {
    if (f.rootCaName === undefined) throw usage('--secondary-ca-name needs --ca-name', 'ArgumentMissing');
    return { type: 'x509', x509: { caReferences: { primary: f.rootCaName, ...(f.secondaryRootCaName === undefined ? {} : { secondary: f.secondaryRootCaName }) } } };
  }
  return undefined;
}

export function groupCreateBody(id: string, f: EnrollmentFlags): Json {
  const x509 = groupAttestation(f);
  if (x509 !== undefined) noKeys(f, 'the group attests with X.509');
  const attestation = x509 ?? { type: 'symmetricKey', symmetricKey: { primaryKey: f.primaryKey ?? '', secondaryKey: f.secondaryKey ?? '' } };
  checkAllocation(f);
  return applyCommon({ enrollmentGroupId: id, attestation, capabilities: { iotEdge: f.edgeEnabled === true } }, f);
}

export function groupUpdateBody(current: Json, f: EnrollmentFlags): Json {
  let attestation = structuredClone(current.attestation) as Json;
  if (attestation.type === 'symmetricKey') {
    noCertificates(f, 'the group uses symmetricKey');
    if (f.rootCaName !== undefined || f.secondaryRootCaName !== undefined) throw usage('CA names cannot be given: the group uses symmetricKey');
    const sk = { ...(attestation.symmetricKey as Json) };
    if (f.primaryKey !== undefined) sk.primaryKey = f.primaryKey;
    if (f.secondaryKey !== undefined) sk.secondaryKey = f.secondaryKey;
    attestation.symmetricKey = sk;
  } else {
    noKeys(f, 'the group uses x509');
    const x509 = attestation.x509 as Json;
    const next = groupAttestation(f);
    const nextX509 = next?.x509 as Json | undefined;
    if (nextX509?.signingCertificates !== undefined && x509.signingCertificates !== undefined) {
      x509.signingCertificates = updatedCertificates(x509.signingCertificates as Json, f);
    } else if (nextX509?.caReferences !== undefined && x509.caReferences !== undefined) {
      const refs = { ...(x509.caReferences as Json) };
      if (f.removeSecondaryCertificate === true) delete refs.secondary;
      if (f.rootCaName !== undefined) refs.primary = f.rootCaName;
      if (f.secondaryRootCaName !== undefined) refs.secondary = f.secondaryRootCaName;
      x509.caReferences = refs;
    } else if (next !== undefined) {
      // From signing certificates to CA references or back: the new kind replaces the old.
      attestation = next;
    } else if (f.removeCertificate === true || f.removeSecondaryCertificate === true) {
      if (x509.signingCertificates !== undefined) x509.signingCertificates = updatedCertificates(x509.signingCertificates as Json, f);
      else {
        const refs = { ...(x509.caReferences as Json) };
        if (f.removeSecondaryCertificate === true) delete refs.secondary;
        if (f.removeCertificate === true) throw usage('a CA-referenced group keeps its primary CA; give --ca-name to change it');
        x509.caReferences = refs;
      }
    }
  }
  checkAllocation(f, current);
  return applyCommon({ ...current, attestation }, f);
}

/** Keys hidden unless asked for (`--show-keys`), as the service hides them from az. */
export function maskKeys<T>(record: T): T {
  const r = record as Json;
  const attestation = r.attestation as Json | undefined;
  if (attestation?.type !== 'symmetricKey') return record;
  return { ...r, attestation: { ...attestation, symmetricKey: { primaryKey: null, secondaryKey: null } } } as T;
}
