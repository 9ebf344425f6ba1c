/**
 * Which enrollment a device belongs to, and so who may re-key it through provisioning or get a
 * certificate for its id over EST (issue 14, items 3 and 4).
 *
 * Azure's DPS re-keys any existing identity with the registration's device id, whoever created
 * it. Here a registration may only update a device that its own enrollment provisioned:
 *
 * - on this hub, the device row says so (`DeviceRecord.origin`, set when provisioning creates the
 *   device; `registry` for every device made through the registry API). A device made before the
 *   origin was recorded (`unknown`) belongs to the enrollment this service's registration record
 *   says assigned it to this hub, at the generation recorded there; the record is then written on
 *   the device.
 * - on a linked hub (another Gatehouse or an Azure IoT hub over REST) no such field exists, and
 *   Azure stores none: the device belongs to the enrollment only when this service's registration
 *   record says that enrollment assigned that device id, and, when the record's hub is this hub and
 *   it recorded the device's generation, the generation still matches (a device deleted and made
 *   again there by someone else is not ours).
 *
 * Within its own enrollment a registration follows Azure's reprovisioning rules (the device takes
 * the enrollment's credential and hub; src/dps/allocation.ts). Enrollment ids compare
 * case-insensitively, as DPS ids do [DOCS REST: Individual Enrollment - Create Or Update, "A
 * case-insensitive string (up to 128 characters long)"].
 */
import { HubError, UNAUTHORIZED_MESSAGE } from '../core/errors.js';
import type { DeviceOrigin, DeviceRecord, EnrollmentRef } from '../core/types.js';
import type { EnrollmentCas } from '../auth/device-authenticator.js';

/** A stored registration state, as far as ownership reads it. */
export interface RegistrationRecord {
  state: { registrationId: string; deviceId?: string; assignedHub?: string; status?: string; generationId?: string };
  /** The group it came through; undefined: an individual enrollment. */
  enrollmentGroupId: string | undefined;
}

/** The answer: yes (and whether to write the origin on a device whose origin was unknown), or why not. */
export type Ownership = { owned: true; claim: boolean } | { owned: false; reason: string };

/**
 * A registration the service refuses to assign: the device is told no more than a bad credential
 * tells it (401002 "Unauthorized"); the reason is for the log and the audit trail.
 */
export class NotOwned extends HubError {
  constructor(reason: string) {
    super('IotHubUnauthorizedAccess', UNAUTHORIZED_MESSAGE, { cause: reason });
  }
}

const same = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

export function sameEnrollment(a: DeviceOrigin, b: EnrollmentRef): boolean {
  if (a.kind === 'individual' && b.kind === 'individual') return same(a.registrationId, b.registrationId);
  if (a.kind === 'group' && b.kind === 'group') return same(a.enrollmentGroupId, b.enrollmentGroupId);
  return false;
}

export function describeOrigin(o: DeviceOrigin): string {
  switch (o.kind) {
    case 'unknown':
      return 'an unknown origin';
    case 'registry':
      return 'the registry API';
    case 'individual':
      return `individual enrollment ${o.registrationId}`;
    case 'group':
      return `enrollment group ${o.enrollmentGroupId}`;
  }
}

export function enrollmentOf(r: RegistrationRecord): EnrollmentRef {
  return r.enrollmentGroupId === undefined ? { kind: 'individual', registrationId: r.state.registrationId } : { kind: 'group', enrollmentGroupId: r.enrollmentGroupId };
}

/**
 * The record says enrollment `e` assigned `deviceId`; on `hub`, when the record is about that hub
 * and holds a generation, at that generation. `onlyThisHub`: the record must be about `hub`.
 */
function recordVouches(r: RegistrationRecord | undefined, e: EnrollmentRef, deviceId: string, hub: string, generationId: string | undefined, onlyThisHub: boolean): boolean {
  if (r === undefined || r.state.status !== 'assigned' || r.state.deviceId !== deviceId) return false;
  if (!sameEnrollment(enrollmentOf(r), e)) return false;
  const hereNow = r.state.assignedHub !== undefined && same(r.state.assignedHub, hub);
  if (onlyThisHub && !hereNow) return false;
  return !hereNow || r.state.generationId === undefined || r.state.generationId === generationId;
}

/** May enrollment `e` update `device`, a device of this hub? */
export function localOwnership(device: DeviceRecord, e: EnrollmentRef, previous: RegistrationRecord | undefined, hub: string): Ownership {
  const o = device.origin;
  if (o.kind === 'unknown') {
    return recordVouches(previous, e, device.deviceId, hub, device.generationId, true)
      ? { owned: true, claim: true }
      : { owned: false, reason: `device ${device.deviceId} exists and no registration record says ${describeOrigin(e)} assigned it to this hub` };
  }
  if (sameEnrollment(o, e)) return { owned: true, claim: false };
  return { owned: false, reason: `device ${device.deviceId} exists and was made by ${describeOrigin(o)}, not by ${describeOrigin(e)}` };
}

/** May enrollment `e` update `deviceId` on linked hub `hub`, where it exists at `generationId`? */
export function remoteOwnership(deviceId: string, generationId: string | undefined, e: EnrollmentRef, previous: RegistrationRecord | undefined, hub: string): Ownership {
  return recordVouches(previous, e, deviceId, hub, generationId, false)
    ? { owned: true, claim: false }
    : { owned: false, reason: `device ${deviceId} exists on linked hub ${hub} and no registration record says ${describeOrigin(e)} assigned it there` };
}

/** The CA names an X.509 group references (caReferences primary and secondary). */
export function groupCaNames(group: { attestation: { type: string; x509?: { caReferences?: { primary?: string; secondary?: string | null } } } } | undefined): string[] {
  const refs = group?.attestation.type === 'x509' ? group.attestation.x509?.caReferences : undefined;
  return [refs?.primary, refs?.secondary].filter((n): n is string => typeof n === 'string' && n !== '');
}

type CaGroup = Parameters<typeof groupCaNames>[0] & { enrollmentGroupId: string };

/**
 * The CAs a device's enrollment names, for the device authenticator: a device a group provisioned
 * chains to a CA that group references now (none once the group is gone, so it is refused); any
 * other device is not held to an enrollment's CAs.
 */
export function enrollmentCas(groups: () => Promise<CaGroup[]>): EnrollmentCas {
  return {
    async casFor(origin) {
      if (origin.kind !== 'group') return undefined;
      const id = origin.enrollmentGroupId.toLowerCase();
      return groupCaNames((await groups()).find((g) => g.enrollmentGroupId.toLowerCase() === id));
    },
  };
}

export interface EstOwnershipLookups {
  /** The registration record for a registration id (case-insensitive), if any. */
  registration(registrationId: string): Promise<RegistrationRecord | undefined>;
  /** The device of this hub with exactly this id, if any. */
  device(deviceId: string): Promise<DeviceRecord | undefined>;
  /** This hub's host name. */
  hub(): string;
}

/**
 * Why a factory credential of enrollment group `groupId` may not get a certificate for
 * `registrationId`, or undefined when it may: the id must not be another enrollment's registration
 * (on any hub), and the device it names here, if any, must be this group's X.509 device.
 */
export async function estRefusal(registrationId: string, groupId: string, lookups: EstOwnershipLookups): Promise<string | undefined> {
  const e: EnrollmentRef = { kind: 'group', enrollmentGroupId: groupId };
  const record = await lookups.registration(registrationId);
  if (record !== undefined && !sameEnrollment(enrollmentOf(record), e)) {
    return `registration ${registrationId} belongs to ${describeOrigin(enrollmentOf(record))}, not to ${describeOrigin(e)}`;
  }
  const device = await lookups.device(record?.state.deviceId ?? registrationId);
  if (device === undefined) return undefined;
  const owned = localOwnership(device, e, record, lookups.hub());
  if (!owned.owned) return owned.reason;
  if (device.auth.type !== 'selfSigned' && device.auth.type !== 'certificateAuthority') {
    return `device ${device.deviceId} authenticates with ${device.auth.type}, not with an X.509 certificate`;
  }
  return undefined;
}
