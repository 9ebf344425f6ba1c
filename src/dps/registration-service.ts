/**
 * Device registration (wire doc §4): a device proves who it is with its enrollment's credential,
 * is assigned to a hub, and finds an identity there that matches its credential.
 *
 * Symmetric keys [DOCS: Symmetric key attestation]: an individual enrollment's key signs the
 * device's SAS directly; a group's key never leaves the service: the device signs with
 * HMAC-SHA256(groupKey, registrationId) (§2.5) and the group key itself is refused. An individual
 * enrollment wins over a group; a disabled entry refuses. A refusal never tells whether an
 * enrollment exists.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { HubError, isHubError } from '../core/errors.js';
import { isJsonObject, type JsonObject, type JsonValue } from '../core/json.js';
import { hmacSha256, parseSasToken, signatureMatches, type SasToken } from '../auth/sas.js';
import type { RegistryService } from '../hub/registry/registry-service.js';
import type { TwinService } from '../hub/twins/twin-service.js';

export interface SymmetricKeyPair {
  primaryKey: string;
  secondaryKey: string;
}

/** The parts of an enrollment registration needs (structurally the DPS service's types). */
export interface EnrollmentLike {
  provisioningStatus?: string;
  attestation: { type: string; symmetricKey?: SymmetricKeyPair };
  initialTwin?: unknown;
  capabilities?: { iotEdge?: boolean };
}

export interface RegistrationStateLike {
  registrationId: string;
  createdDateTimeUtc?: string;
  assignedHub?: string;
  deviceId?: string;
  status?: string;
  substatus?: string;
  lastUpdatedDateTimeUtc?: string;
  etag?: string;
  [key: string]: unknown;
}

export interface RuntimeEnrollments {
  findIndividual(registrationId: string): Promise<(EnrollmentLike & { registrationId: string; deviceId?: string }) | undefined>;
  listGroups(): Promise<Array<EnrollmentLike & { enrollmentGroupId: string }>>;
  getRegistrationState(registrationId: string): Promise<RegistrationStateLike | undefined>;
  putRegistrationState(state: RegistrationStateLike & { enrollmentGroupId?: string }): Promise<RegistrationStateLike>;
}

export type Attested =
  | { kind: 'individual'; registrationId: string; enrollment: EnrollmentLike & { deviceId?: string }; keys: SymmetricKeyPair }
  | { kind: 'group'; registrationId: string; groupId: string; enrollment: EnrollmentLike; keys: SymmetricKeyPair };

export interface OperationStatus {
  operationId: string;
  status: 'assigning' | 'assigned' | 'failed';
  registrationState?: JsonObject;
}

/** HMAC-SHA256(groupKey, registrationId), base64 (wire doc §2.5). */
export function deriveDeviceKey(groupKey: string, registrationId: string): string {
  return hmacSha256(groupKey, registrationId).toString('base64');
}

const REGISTRATION_ID = /^[a-z0-9\-._:]{0,127}[a-z0-9-]$/i;

export function validRegistrationId(id: string): boolean {
  return REGISTRATION_ID.test(id);
}

function enabled(e: EnrollmentLike): boolean {
  return (e.provisioningStatus ?? 'enabled') === 'enabled';
}

const OPERATION_TTL_MS = 10 * 60_000;

export class RegistrationService {
  readonly #operations = new Map<string, { registrationId: string; status: OperationStatus; expires: number }>();

  constructor(
    private readonly enrollments: RuntimeEnrollments,
    private readonly registry: RegistryService,
    private readonly twins: TwinService,
    private readonly clock: Clock,
    private readonly idScope: () => Promise<string>,
    private readonly assignedHub: () => string,
  ) {}

  /** Verifies a DPS SAS token (`sr=<idScope>/registrations/<id>`, `skn=registration`). */
  async attestSymmetricKey(registrationId: string, sasToken: string | undefined): Promise<Attested> {
    if (!validRegistrationId(registrationId)) throw new HubError('IotHubUnauthorizedAccess', 'Unauthorized', { cause: 'invalid registration id' });
    let token: SasToken;
    try {
      token = parseSasToken(sasToken);
    } catch (err) {
      throw err instanceof HubError ? err : new HubError('IotHubUnauthorizedAccess', 'Unauthorized');
    }
    const deny = (why: string) => new HubError('IotHubUnauthorizedAccess', 'Unauthorized', { cause: why });
    const scope = await this.idScope();
    if (token.resource.toLowerCase() !== `${scope}/registrations/${registrationId}`.toLowerCase()) throw deny('token scope is not this registration');
    if (token.expiry * 1000 <= this.clock.now()) throw deny('expired token');

    const individual = await this.enrollments.findIndividual(registrationId);
    if (individual !== undefined) {
      // The nearest entry decides: an individual enrollment, even a disabled one, wins over groups.
      const keys = individual.attestation.symmetricKey;
      if (individual.attestation.type !== 'symmetricKey' || keys === undefined) throw deny('individual enrollment is not symmetric-key');
      if (!signatureMatches(token, [keys.primaryKey, keys.secondaryKey])) throw deny('bad signature (individual)');
      if (!enabled(individual)) throw deny('individual enrollment disabled');
      return { kind: 'individual', registrationId, enrollment: individual, keys };
    }
    for (const g of await this.enrollments.listGroups()) {
      const k = g.attestation.symmetricKey;
      if (g.attestation.type !== 'symmetricKey' || k === undefined) continue;
      const derived = { primaryKey: deriveDeviceKey(k.primaryKey, registrationId), secondaryKey: deriveDeviceKey(k.secondaryKey, registrationId) };
      if (!signatureMatches(token, [derived.primaryKey, derived.secondaryKey])) continue;
      if (!enabled(g)) throw deny(`group ${g.enrollmentGroupId} disabled`);
      return { kind: 'group', registrationId, groupId: g.enrollmentGroupId, enrollment: g, keys: derived };
    }
    throw deny('no enrollment matches');
  }

  /** Runs the assignment; resolves with the operation (already final here: one local hub). */
  async register(who: Attested, payload: JsonValue | undefined): Promise<OperationStatus> {
    this.#sweep();
    const operationId = `4.${randomUUID()}`;
    let status: OperationStatus;
    try {
      status = { operationId, status: 'assigned', registrationState: await this.#assign(who, payload) };
    } catch (err) {
      if (!isHubError(err)) throw err;
      status = {
        operationId,
        status: 'failed',
        registrationState: { registrationId: who.registrationId, status: 'failed', errorCode: err.number, errorMessage: err.message },
      };
    }
    this.#operations.set(operationId, { registrationId: who.registrationId.toLowerCase(), status, expires: this.clock.now() + OPERATION_TTL_MS });
    return status;
  }

  /** An operation, only for the registration it belongs to. */
  operation(registrationId: string, operationId: string): OperationStatus | undefined {
    const op = this.#operations.get(operationId);
    return op === undefined || op.registrationId !== registrationId.toLowerCase() ? undefined : op.status;
  }

  #sweep(): void {
    const now = this.clock.now();
    for (const [id, op] of this.#operations) if (op.expires < now) this.#operations.delete(id);
  }

  async #assign(who: Attested, payload: JsonValue | undefined): Promise<JsonObject> {
    const now = new Date(this.clock.now()).toISOString();
    const deviceId = who.kind === 'individual' ? (who.enrollment.deviceId ?? who.registrationId) : who.registrationId;
    const previous = await this.enrollments.getRegistrationState(who.registrationId);
    const auth = { type: 'sas', symmetricKey: { primaryKey: who.keys.primaryKey, secondaryKey: who.keys.secondaryKey } };
    let created = false;
    try {
      await this.registry.createDevice(deviceId, { deviceId, authentication: auth, capabilities: { iotEdge: who.enrollment.capabilities?.iotEdge === true } });
      created = true;
    } catch (err) {
      if (!(isHubError(err) && err.code === 'DeviceAlreadyExists')) throw err;
      // Re-registration: the identity keeps its data and takes the enrollment's credential.
      const current = await this.registry.getDevice(deviceId);
      if (current.auth.primaryKey !== who.keys.primaryKey || current.auth.secondaryKey !== who.keys.secondaryKey || current.auth.type !== 'sas') {
        await this.registry.updateDevice(deviceId, { deviceId, authentication: auth }, '*');
      }
    }
    if (created) await this.#applyInitialTwin(deviceId, who.enrollment.initialTwin);
    const state: RegistrationStateLike & { enrollmentGroupId?: string } = {
      registrationId: who.registrationId,
      createdDateTimeUtc: previous?.createdDateTimeUtc ?? now,
      assignedHub: this.assignedHub(),
      deviceId,
      status: 'assigned',
      substatus: created || previous === undefined ? 'initialAssignment' : 'deviceDataMigrated',
      lastUpdatedDateTimeUtc: now,
      ...(payload === undefined ? {} : { payload }),
      ...(who.kind === 'group' ? { enrollmentGroupId: who.groupId, symmetricKey: { enrollmentGroupId: who.groupId } } : { symmetricKey: {} }),
    };
    const stored = await this.enrollments.putRegistrationState(state);
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(stored)) if (v !== undefined && k !== 'enrollmentGroupId') out[k] = v as JsonValue;
    return out;
  }

  async #applyInitialTwin(deviceId: string, initialTwin: unknown): Promise<void> {
    if (!isJsonObject(initialTwin)) return;
    const patch: JsonObject = {};
    const clean = (o: JsonValue | undefined): JsonObject | undefined => {
      if (!isJsonObject(o)) return undefined;
      const out: JsonObject = {};
      for (const [k, v] of Object.entries(o)) if (!k.startsWith('$') && !['version', 'count', 'metadata'].includes(k)) out[k] = v;
      return Object.keys(out).length === 0 ? undefined : out;
    };
    const tags = clean(initialTwin.tags);
    const desired = clean(isJsonObject(initialTwin.properties) ? initialTwin.properties.desired : undefined);
    if (tags !== undefined) patch.tags = tags;
    if (desired !== undefined) patch.properties = { desired };
    if (Object.keys(patch).length > 0) await this.twins.patch(deviceId, null, patch, undefined);
  }
}
