/**
 * The hub identity an assignment makes or updates: on this hub through the registry, or on a
 * linked hub over its REST API. A new identity is the enrollment's; an existing one is updated
 * only when it belongs to the enrollment (src/dps/device-ownership.ts), and then takes the
 * enrollment's credential (Azure's reprovisioning, within the enrollment).
 */
import { isHubError } from '../core/errors.js';
import { isJsonObject, type JsonObject } from '../core/json.js';
import type { Authentication, EnrollmentRef } from '../core/types.js';
import { HUB_ACTOR, type RegistryService } from '../hub/registry/registry-service.js';
import { localOwnership, NotOwned, remoteOwnership, type RegistrationRecord } from './device-ownership.js';
import type { Credential } from './registration-service.js';
import type { RemoteHub } from './remote-hub.js';

/** What an assignment asks of the target hub. */
export interface IdentityRequest {
  deviceId: string;
  enrollment: EnrollmentRef;
  credential: Credential;
  capabilities: JsonObject;
  /** This service's registration record for the registration id, whichever enrollment made it. */
  record: RegistrationRecord | undefined;
  /** The target hub's host name. */
  hub: string;
}

/** `created`: the identity is new (it gets the initial twin); `generationId`: as the hub reports it. */
export interface IdentityResult {
  created: boolean;
  generationId: string | undefined;
}

/** The hub identity's `authentication` for a credential. */
export function deviceAuthentication(c: Credential): JsonObject {
  return c.kind === 'symmetricKey' ? { type: 'sas', symmetricKey: { primaryKey: c.keys.primaryKey, secondaryKey: c.keys.secondaryKey } } : c.authentication;
}

function sameCredential(current: Authentication, c: Credential): boolean {
  if (c.kind === 'symmetricKey') return current.type === 'sas' && current.primaryKey === c.keys.primaryKey && current.secondaryKey === c.keys.secondaryKey;
  const want = c.authentication;
  if (want.type === 'certificateAuthority') return current.type === 'certificateAuthority';
  return current.type === 'selfSigned' && current.primaryThumbprint === c.certificateThumbprint;
}

/** Creates the identity on this hub for the enrollment, or updates the enrollment's own. */
export async function upsertLocal(registry: RegistryService, r: IdentityRequest): Promise<IdentityResult> {
  const auth = deviceAuthentication(r.credential);
  try {
    const device = await registry.createDevice(r.deviceId, { deviceId: r.deviceId, authentication: auth, capabilities: r.capabilities }, HUB_ACTOR, r.enrollment);
    return { created: true, generationId: device.generationId };
  } catch (err) {
    if (!(isHubError(err) && err.code === 'DeviceAlreadyExists')) throw err;
  }
  const current = await registry.getDevice(r.deviceId);
  const owned = localOwnership(current, r.enrollment, r.record, r.hub);
  if (!owned.owned) throw new NotOwned(owned.reason);
  // The identity keeps its data and takes the enrollment's credential; under the etag just read,
  // so a device deleted and made again in between is not re-keyed (this registration fails, the
  // device retries). A device whose origin was unknown gets the one its record proved.
  if (!sameCredential(current.auth, r.credential) || owned.claim) {
    await registry.updateDevice(r.deviceId, { deviceId: r.deviceId, authentication: auth }, current.etag, HUB_ACTOR, owned.claim ? { origin: r.enrollment } : {});
  }
  return { created: false, generationId: current.generationId };
}

/** Creates the identity on a linked hub, or re-keys one the enrollment owns there under its etag. */
export async function upsertRemote(remote: RemoteHub, r: IdentityRequest): Promise<IdentityResult> {
  const auth = deviceAuthentication(r.credential);
  const generationOf = (d: JsonObject): string | undefined => (typeof d.generationId === 'string' ? d.generationId : undefined);
  for (let attempt = 0; ; attempt++) {
    const current = await remote.getDevice(r.deviceId);
    try {
      if (current === undefined) {
        const made = await remote.putDevice(r.deviceId, { deviceId: r.deviceId, authentication: auth, capabilities: r.capabilities });
        return { created: true, generationId: generationOf(made) };
      }
      const generationId = generationOf(current.device);
      const owned = remoteOwnership(r.deviceId, generationId, r.enrollment, r.record, r.hub);
      if (!owned.owned) throw new NotOwned(owned.reason);
      const a = current.device.authentication;
      const keys = isJsonObject(a) ? a.symmetricKey : undefined;
      const want = auth.symmetricKey;
      const sameKeys = isJsonObject(a) && a.type === 'sas' && isJsonObject(keys) && isJsonObject(want) && keys.primaryKey === want.primaryKey && keys.secondaryKey === want.secondaryKey;
      if (!sameKeys) {
        const status = current.device.status;
        const caps = current.device.capabilities;
        await remote.putDevice(
          r.deviceId,
          { deviceId: r.deviceId, authentication: auth, ...(typeof status === 'string' ? { status } : {}), ...(isJsonObject(caps) ? { capabilities: caps } : {}) },
          current.etag ?? '*',
        );
      }
      return { created: false, generationId };
    } catch (err) {
      // Raced with another writer: read again, a few times.
      const raced = isHubError(err) && ['DeviceAlreadyExists', 'PreconditionFailed', 'DeviceNotFound'].includes(err.code);
      if (!raced || attempt >= 3) throw err;
    }
  }
}
