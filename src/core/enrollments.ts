/**
 * Device Provisioning Service shapes, as the official service SDK declares them
 * (`azure-iot-provisioning-service` interfaces.d.ts, wire doc §6.9) and the runtime returns them
 * (DeviceRegistrationResult, §4.3). Field names are the wire names.
 */
import type { JsonObject, JsonValue } from './json.js';

export type ProvisioningStatus = 'enabled' | 'disabled';
export type AllocationPolicy = 'hashed' | 'geoLatency' | 'static' | 'custom';
export const ALLOCATION_POLICIES: readonly AllocationPolicy[] = ['hashed', 'geoLatency', 'static', 'custom'];
export type AttestationType = 'none' | 'tpm' | 'x509' | 'symmetricKey';

export interface X509CertificateInfo {
  subjectName: string;
  sha1Thumbprint: string;
  sha256Thumbprint: string;
  issuerName: string;
  notBeforeUtc: string;
  notAfterUtc: string;
  serialNumber: string;
  version: number;
}

export interface X509CertificateWithInfo {
  /** As given: PEM or base64 DER. */
  certificate?: string;
  info?: X509CertificateInfo;
}

export interface X509Certificates {
  primary?: X509CertificateWithInfo;
  secondary?: X509CertificateWithInfo | null;
}

export interface X509CAReferences {
  primary?: string;
  secondary?: string | null;
}

export interface X509Attestation {
  clientCertificates?: X509Certificates;
  signingCertificates?: X509Certificates;
  caReferences?: X509CAReferences;
}

export interface TpmAttestation {
  endorsementKey: string;
  storageRootKey?: string;
}

export interface SymmetricKeyAttestation {
  primaryKey: string;
  secondaryKey: string;
}

export interface AttestationMechanism {
  type: AttestationType;
  tpm?: TpmAttestation;
  x509?: X509Attestation;
  symmetricKey?: SymmetricKeyAttestation;
}

export interface TwinCollection {
  [key: string]: JsonValue;
}

export interface InitialTwin {
  tags?: TwinCollection;
  properties?: { desired?: TwinCollection };
}

export interface ReprovisionPolicy {
  updateHubAssignment?: boolean;
  migrateDeviceData?: boolean;
}

export interface CustomAllocationDefinition {
  webhookUrl: string;
  apiVersion: string;
}

export type RegistrationStatus = 'unassigned' | 'assigning' | 'assigned' | 'failed' | 'disabled';
export type RegistrationSubstatus =
  | 'initialAssignment'
  | 'deviceDataMigrated'
  | 'deviceDataReset'
  | 'reprovisionedToInitialAssignment';

/** A type alias, not an interface: the registration runtime's structural types index it. */
export type DeviceRegistrationState = {
  registrationId: string;
  createdDateTimeUtc?: string;
  assignedHub?: string;
  deviceId?: string;
  status?: RegistrationStatus;
  substatus?: RegistrationSubstatus;
  lastUpdatedDateTimeUtc?: string;
  errorCode?: number;
  errorMessage?: string;
  etag?: string;
  payload?: JsonValue;
  generationId?: string;
  /** How the device attested (§4.3): the group it came through, if any. */
  symmetricKey?: { enrollmentGroupId?: string };
  x509?: { enrollmentGroupId?: string; certificateInfo?: X509CertificateInfo; signingCertificateInfo?: X509CertificateInfo };
  tpm?: { authenticationKey?: string };
};

/** What individual enrollments and groups share. */
export interface EnrollmentCommon {
  attestation: AttestationMechanism;
  iotHubHostName?: string;
  initialTwin?: InitialTwin;
  etag?: string;
  provisioningStatus?: ProvisioningStatus;
  createdDateTimeUtc?: string;
  lastUpdatedDateTimeUtc?: string;
  capabilities?: { iotEdge: boolean };
  reprovisionPolicy?: ReprovisionPolicy;
  allocationPolicy?: AllocationPolicy;
  iotHubs?: string[];
  customAllocationDefinition?: CustomAllocationDefinition;
}

export interface IndividualEnrollment extends EnrollmentCommon {
  registrationId: string;
  deviceId?: string;
  registrationState?: DeviceRegistrationState;
}

export interface EnrollmentGroup extends EnrollmentCommon {
  enrollmentGroupId: string;
}

export type BulkMode = 'create' | 'update' | 'updateIfMatchEtag' | 'delete';

export interface BulkEnrollmentOperation {
  mode: BulkMode;
  enrollments: IndividualEnrollment[];
}

export interface BulkEnrollmentOperationError {
  registrationId: string;
  errorCode: number;
  errorStatus: string;
}

export interface BulkEnrollmentOperationResult {
  isSuccessful: boolean;
  errors: BulkEnrollmentOperationError[];
}

/** One page of a DPS query; `continuation` only while more pages exist. */
export interface Page<T> {
  items: T[];
  continuation?: string;
}

/** A JSON object as it arrives on the wire, before validation. */
export type RawBody = JsonObject;
