import type { JsonObject } from './json.js';

export type AuthType = 'sas' | 'selfSigned' | 'certificateAuthority' | 'none';
export type DeviceStatus = 'enabled' | 'disabled';
export type ConnectionState = 'Connected' | 'Disconnected';

/**
 * The rights of a shared access policy [DOCS: Control access to IoT Hub with shared access signatures],
 * then the Device Provisioning Service's own (wire doc §8, §6.9).
 */
export const RIGHTS = [
  'RegistryRead',
  'RegistryWrite',
  'ServiceConnect',
  'DeviceConnect',
  'ServiceConfig',
  'EnrollmentRead',
  'EnrollmentWrite',
  'RegistrationStatusRead',
  'RegistrationStatusWrite',
] as const;
export type Right = (typeof RIGHTS)[number];

export interface Authentication {
  type: AuthType;
  /** Plain base64 keys in memory; the store encrypts them at rest. */
  primaryKey: string | null;
  secondaryKey: string | null;
  /** Upper-case hex, no separators (SHA-1: 40 chars, SHA-256: 64 chars). */
  primaryThumbprint: string | null;
  secondaryThumbprint: string | null;
}

/** A DPS enrollment: an individual enrollment (by its registration id) or an enrollment group. */
export type EnrollmentRef = { kind: 'individual'; registrationId: string } | { kind: 'group'; enrollmentGroupId: string };

/**
 * Who created a device identity, which decides who may later re-key it through provisioning:
 * `registry`, the registry API (an operator, a back end, a bulk import); an enrollment, the
 * provisioning service for that enrollment; `unknown`, a device created before Gatehouse recorded
 * it (schema version 11), judged by the provisioning service's registration records instead.
 */
export type DeviceOrigin = { kind: 'unknown' } | { kind: 'registry' } | EnrollmentRef;

export interface DeviceRecord {
  deviceId: string;
  generationId: string;
  etag: string;
  status: DeviceStatus;
  statusReason: string | null;
  statusUpdatedTime: string;
  auth: Authentication;
  iotEdge: boolean;
  deviceScope: string | null;
  parentScopes: string[];
  connectionState: ConnectionState;
  connectionStateUpdatedTime: string;
  lastActivityTime: string;
  cloudToDeviceMessageCount: number;
  /** Not on the wire (Azure has no such field): the service's own record of who created it. */
  origin: DeviceOrigin;
}

export interface ModuleRecord {
  deviceId: string;
  moduleId: string;
  generationId: string;
  etag: string;
  managedBy: string | null;
  auth: Authentication;
  connectionState: ConnectionState;
  connectionStateUpdatedTime: string;
  lastActivityTime: string;
  cloudToDeviceMessageCount: number;
}

/** Twin state as stored: sections without `$metadata`/`$version`, which live beside them. */
export interface TwinState {
  deviceId: string;
  /** null for a device twin. */
  moduleId: string | null;
  etag: string;
  version: number;
  tags: JsonObject;
  desired: JsonObject;
  desiredMeta: JsonObject;
  desiredVersion: number;
  reported: JsonObject;
  reportedMeta: JsonObject;
  reportedVersion: number;
  modelId: string;
  /**
   * The twin's `configurations` section: `{ <configuration id>: { status: 'Targeted' | 'Applied' } }`,
   * written by the configuration engine (hub/configurations/). Absent or empty when none targets it.
   */
  configurations?: JsonObject;
}

export interface SharedAccessPolicy {
  name: string;
  primaryKey: string;
  secondaryKey: string;
  rights: Right[];
  etag: string;
}
