import { randomBytes } from 'node:crypto';
import { newEtag } from '../core/ids.js';
import type { Right, SharedAccessPolicy } from '../core/types.js';

/**
 * The default shared access policies of an IoT hub and their rights
 * [DOCS: Control access to IoT Hub with shared access signatures].
 */
export const DEFAULT_POLICIES: ReadonlyArray<{ name: string; rights: Right[] }> = [
  { name: 'iothubowner', rights: ['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect'] },
  { name: 'service', rights: ['ServiceConnect'] },
  { name: 'device', rights: ['DeviceConnect'] },
  { name: 'registryRead', rights: ['RegistryRead'] },
  { name: 'registryReadWrite', rights: ['RegistryRead', 'RegistryWrite'] },
  // DPS's own policy: enrollment and registration-state management, nothing of the hub's.
  {
    name: 'provisioningserviceowner',
    rights: ['ServiceConfig', 'EnrollmentRead', 'EnrollmentWrite', 'RegistrationStatusRead', 'RegistrationStatusWrite'],
  },
];

/**
 * What makes a policy owner-level (hub administration, the CA, EST factory credentials): every
 * service-side right of the hub. Not DeviceConnect: that right lets a policy key sign tokens for
 * any device (Azure's token-service pattern), which administration never needs, so an owner policy
 * can (and should) drop it without losing the hub. iothubowner holds all four by default, as in Azure.
 */
export const OWNER_RIGHTS: readonly Right[] = ['RegistryRead', 'RegistryWrite', 'ServiceConnect'];

export function isOwnerLevel(rights: Iterable<Right>): boolean {
  const held = new Set(rights);
  return OWNER_RIGHTS.every((r) => held.has(r));
}

export function newSymmetricKey(bytes = 32): string {
  return randomBytes(bytes).toString('base64');
}

export function newPolicy(name: string, rights: Right[]): SharedAccessPolicy {
  return { name, rights, primaryKey: newSymmetricKey(), secondaryKey: newSymmetricKey(), etag: newEtag() };
}
