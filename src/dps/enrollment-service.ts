/**
 * DPS enrollment management (the service side, wire doc §6.9) and the lookups device
 * registration needs. Ids are case-insensitive and come back as first given. Writes without
 * If-Match create or overwrite; with If-Match they replace under that etag (412 when it moved).
 * Limits [§9.3]: 100 symmetric-key groups and 100 X.509 groups (IotHubQuotaExceeded).
 */
import type { Clock } from '../core/clock.js';
import { HubError, isHubError } from '../core/errors.js';
import { newEtag } from '../core/ids.js';
import { isJsonObject, type JsonObject } from '../core/json.js';
import type { EtagCondition, Store, StoredRegistration } from '../store/ports.js';
import { parseCommon, parseDeviceId, validateEnrollmentId } from './enrollment-input.js';
import type {
  AttestationMechanism,
  BulkEnrollmentOperationError,
  BulkEnrollmentOperationResult,
  DeviceRegistrationState,
  EnrollmentGroup,
  IndividualEnrollment,
  Page,
} from '../core/enrollments.js';

export const MAX_BULK_ENROLLMENTS = 100;
export const MAX_GROUPS_PER_ATTESTATION = 100;
export const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;
const BULK_MODES = ['create', 'update', 'updateIfMatchEtag', 'delete'] as const;

function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

function decodeCursor(token: string | undefined): string | undefined {
  if (token === undefined || token === '') return undefined;
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw new HubError('ArgumentInvalid', 'x-ms-continuation is not a continuation token of this service.');
  return Buffer.from(token, 'base64url').toString('utf8');
}

async function page<T>(
  pageSize: number | undefined,
  continuation: string | undefined,
  idOf: (item: T) => string,
  list: (after: string | undefined, limit: number) => Promise<T[]>,
): Promise<Page<T>> {
  const size = Math.min(pageSize ?? DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  const rows = await list(decodeCursor(continuation), size + 1);
  const items = rows.slice(0, size);
  const last = items[items.length - 1];
  return rows.length > size && last !== undefined ? { items, continuation: encodeCursor(idOf(last).toLowerCase()) } : { items };
}

function body(raw: unknown): JsonObject {
  if (!isJsonObject(raw)) throw new HubError('IotHubFormatError', 'The request body must be a JSON object.');
  return raw;
}

/** How long a read of the enrollment groups serves registrations (another node's change shows within it). */
export const GROUPS_TTL_MS = 2000;

export class EnrollmentService {
  #groups: { at: number; groups: Promise<EnrollmentGroup[]> } | undefined;
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    /** The hub's host name: the default of `iotHubs`. */
    private readonly hubHostname: () => string = () => 'localhost',
  ) {}

  #now(): string {
    return new Date(this.clock.now()).toISOString();
  }

  // ---------------------------------------------------------------- individual enrollments

  async putIndividual(id: string, raw: unknown, ifMatch?: string): Promise<IndividualEnrollment> {
    validateEnrollmentId(id, 'registration');
    const b = body(raw);
    if (b.registrationId !== undefined && (typeof b.registrationId !== 'string' || b.registrationId.toLowerCase() !== id.toLowerCase())) {
      throw new HubError('ArgumentInvalid', 'The registrationId in the body does not match the one in the path.');
    }
    const deviceId = parseDeviceId(b.deviceId);
    const common = parseCommon(b, 'individual', [this.hubHostname()]);
    const existing = await this.store.enrollments.getIndividual(id);
    const now = this.#now();
    const record: IndividualEnrollment = {
      registrationId: existing?.registrationId ?? id,
      ...(deviceId === undefined ? {} : { deviceId }),
      ...common,
      etag: newEtag(),
      createdDateTimeUtc: existing?.createdDateTimeUtc ?? now,
      lastUpdatedDateTimeUtc: now,
    };
    if (existing === undefined) await this.store.enrollments.createIndividual(record);
    else await this.store.enrollments.replaceIndividual(record, ifMatch ?? '*');
    return record;
  }

  async getIndividual(id: string): Promise<IndividualEnrollment> {
    const e = await this.store.enrollments.getIndividual(id);
    if (e === undefined) throw new HubError('EnrollmentNotFound', `Enrollment ${id.slice(0, 128)} not found.`);
    const reg = await this.store.enrollments.getRegistration(id);
    return reg !== undefined && reg.enrollmentGroupId === undefined ? { ...e, registrationState: reg.state } : e;
  }

  deleteIndividual(id: string, ifMatch?: string): Promise<void> {
    return this.store.enrollments.deleteIndividual(id, ifMatch ?? '*');
  }

  queryIndividuals(pageSize?: number, continuation?: string): Promise<Page<IndividualEnrollment>> {
    return page(pageSize, continuation, (e) => e.registrationId, (after, limit) =>
      this.store.enrollments.listIndividuals(after === undefined ? { limit } : { after, limit }),
    );
  }

  // ---------------------------------------------------------------- enrollment groups

  async putGroup(id: string, raw: unknown, ifMatch?: string): Promise<EnrollmentGroup> {
    validateEnrollmentId(id, 'enrollment group');
    const b = body(raw);
    if (b.enrollmentGroupId !== undefined && (typeof b.enrollmentGroupId !== 'string' || b.enrollmentGroupId.toLowerCase() !== id.toLowerCase())) {
      throw new HubError('ArgumentInvalid', 'The enrollmentGroupId in the body does not match the one in the path.');
    }
    const common = parseCommon(b, 'group', [this.hubHostname()]);
    const existing = await this.store.enrollments.getGroup(id);
    if (existing?.attestation.type !== common.attestation.type) await this.#checkGroupQuota(common.attestation.type);
    const now = this.#now();
    const record: EnrollmentGroup = {
      enrollmentGroupId: existing?.enrollmentGroupId ?? id,
      ...common,
      etag: newEtag(),
      createdDateTimeUtc: existing?.createdDateTimeUtc ?? now,
      lastUpdatedDateTimeUtc: now,
    };
    try {
      if (existing === undefined) await this.store.enrollments.createGroup(record);
      else await this.store.enrollments.replaceGroup(record, ifMatch ?? '*');
    } finally {
      this.#groups = undefined;
    }
    return record;
  }

  async #checkGroupQuota(type: AttestationMechanism['type']): Promise<void> {
    const same = (await this.store.enrollments.listGroups()).filter((g) => g.attestation.type === type).length;
    if (same >= MAX_GROUPS_PER_ATTESTATION) {
      const kind = type === 'x509' ? 'X.509' : 'symmetric-key';
      throw new HubError('IotHubQuotaExceeded', `The service holds the maximum of ${MAX_GROUPS_PER_ATTESTATION} ${kind} enrollment groups.`);
    }
  }

  async getGroup(id: string): Promise<EnrollmentGroup> {
    const g = await this.store.enrollments.getGroup(id);
    if (g === undefined) throw new HubError('EnrollmentNotFound', `Enrollment group ${id.slice(0, 128)} not found.`);
    return g;
  }

  async deleteGroup(id: string, ifMatch?: string): Promise<void> {
    try {
      await this.store.enrollments.deleteGroup(id, ifMatch ?? '*');
    } finally {
      this.#groups = undefined;
    }
  }

  queryGroups(pageSize?: number, continuation?: string): Promise<Page<EnrollmentGroup>> {
    return page(pageSize, continuation, (g) => g.enrollmentGroupId, (after, limit) =>
      this.store.enrollments.listGroupsPage(after === undefined ? { limit } : { after, limit }),
    );
  }

  async attestationMechanism(kind: 'individual' | 'group', id: string): Promise<AttestationMechanism> {
    return kind === 'individual' ? (await this.getIndividual(id)).attestation : (await this.getGroup(id)).attestation;
  }

  // ---------------------------------------------------------------- registration states

  /** The state, or undefined (management and runtime alike; the route turns undefined into a 404). */
  async getRegistrationState(registrationId: string): Promise<DeviceRegistrationState | undefined> {
    return (await this.store.enrollments.getRegistration(registrationId))?.state;
  }

  /** The state with the group it came through (undefined: an individual enrollment), or undefined. */
  findRegistration(registrationId: string): Promise<StoredRegistration | undefined> {
    return this.store.enrollments.getRegistration(registrationId);
  }

  deleteRegistrationState(registrationId: string, ifMatch?: string): Promise<void> {
    return this.store.enrollments.deleteRegistration(registrationId, ifMatch ?? '*');
  }

  queryGroupRegistrations(groupId: string, pageSize?: number, continuation?: string): Promise<Page<DeviceRegistrationState>> {
    return page(pageSize, continuation, (s) => s.registrationId, (after, limit) =>
      this.store.enrollments.listRegistrations(after === undefined ? { enrollmentGroupId: groupId, limit } : { enrollmentGroupId: groupId, after, limit }),
    );
  }

  /** Creates or replaces the state: a fresh etag and lastUpdatedDateTimeUtc, createdDateTimeUtc kept. */
  async putRegistrationState(state: DeviceRegistrationState & { enrollmentGroupId?: string }): Promise<DeviceRegistrationState> {
    const { enrollmentGroupId, ...rest } = state;
    for (let attempt = 0; ; attempt++) {
      const existing = await this.store.enrollments.getRegistration(rest.registrationId);
      const now = this.#now();
      const record: DeviceRegistrationState = {
        ...rest,
        registrationId: existing?.state.registrationId ?? rest.registrationId,
        createdDateTimeUtc: existing?.state.createdDateTimeUtc ?? rest.createdDateTimeUtc ?? now,
        lastUpdatedDateTimeUtc: now,
        etag: newEtag(),
      };
      try {
        if (existing === undefined) await this.store.enrollments.createRegistration(record, enrollmentGroupId);
        else await this.store.enrollments.replaceRegistration(record, enrollmentGroupId, existing.state.etag ?? '*');
        return record;
      } catch (err) {
        // A concurrent write for the same device: read again and retry, a few times.
        const raced = isHubError(err) && ['DeviceAlreadyExists', 'PreconditionFailed', 'RegistrationNotFound'].includes(err.code);
        if (!raced || attempt >= 3) throw err;
      }
    }
  }

  // ---------------------------------------------------------------- runtime lookups

  /** The individual enrollment with its keys (case-insensitive), or undefined. */
  findIndividual(registrationId: string): Promise<IndividualEnrollment | undefined> {
    return this.store.enrollments.getIndividual(registrationId);
  }

  /**
   * Every enrollment group with its keys. Registration asks on every request, so the list is
   * read once per GROUPS_TTL_MS: changes made here apply at once (the cache is dropped), changes
   * made by another node sharing the database within the TTL.
   */
  listGroups(): Promise<EnrollmentGroup[]> {
    const now = this.clock.now();
    if (this.#groups === undefined || now - this.#groups.at > GROUPS_TTL_MS) {
      const groups = this.store.enrollments.listGroups();
      this.#groups = { at: now, groups };
      groups.catch(() => {
        if (this.#groups?.groups === groups) this.#groups = undefined;
      });
    }
    return this.#groups.groups;
  }

  // ---------------------------------------------------------------- bulk

  async bulk(raw: unknown): Promise<BulkEnrollmentOperationResult> {
    const b = body(raw);
    const mode = BULK_MODES.find((m) => m === b.mode);
    if (mode === undefined) throw new HubError('ArgumentInvalid', `mode must be one of ${BULK_MODES.join(', ')}.`);
    const list = b.enrollments;
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_BULK_ENROLLMENTS) {
      throw new HubError('ArgumentInvalid', `enrollments must hold 1 to ${MAX_BULK_ENROLLMENTS} individual enrollments.`);
    }
    const errors: BulkEnrollmentOperationError[] = [];
    for (const item of list as unknown[]) {
      const id = isJsonObject(item) && typeof item.registrationId === 'string' ? item.registrationId : '';
      try {
        await this.#bulkOne(mode, id, item);
      } catch (err) {
        const e = isHubError(err) ? err : new HubError('ServerError', 'An internal error occurred.');
        errors.push({ registrationId: id, errorCode: e.number, errorStatus: e.message });
      }
    }
    return { isSuccessful: errors.length === 0, errors };
  }

  async #bulkOne(mode: (typeof BULK_MODES)[number], id: string, item: unknown): Promise<void> {
    const etag = isJsonObject(item) && typeof item.etag === 'string' ? item.etag : undefined;
    switch (mode) {
      case 'create':
        if ((await this.store.enrollments.getIndividual(validateEnrollmentId(id, 'registration'))) !== undefined) {
          throw new HubError('DeviceAlreadyExists', `Enrollment ${id} already exists.`);
        }
        await this.putIndividual(id, item);
        return;
      case 'update':
        await this.putIndividual(id, item);
        return;
      case 'updateIfMatchEtag':
        if (etag === undefined) throw new HubError('PreconditionFailed', `Enrollment ${id} has no etag to match.`);
        await this.getIndividual(id);
        await this.putIndividual(id, item, etag);
        return;
      case 'delete':
        // Like Azure's bulk delete: unconditional (there is no deleteIfMatchEtag mode).
        await this.deleteIndividual(validateEnrollmentId(id, 'registration'), '*' satisfies EtagCondition);
        return;
    }
  }
}
