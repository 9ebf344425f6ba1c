/**
 * Device registration (wire doc §4): a device proves who it is with its enrollment's credential,
 * is assigned to a hub, and finds an identity there that matches its credential.
 *
 * Symmetric keys [DOCS: Symmetric key attestation]: an individual enrollment's key signs the
 * device's SAS directly; a group's key never leaves the service: the device signs with
 * HMAC-SHA256(groupKey, registrationId) (§2.5) and the group key itself is refused. An individual
 * enrollment wins over a group; a disabled entry refuses. A refusal never tells whether an
 * enrollment exists.
 *
 * Assignment updates an existing identity only when this registration's enrollment provisioned it
 * (device-ownership.ts); anything else ends `failed` with 401002 "Unauthorized", audited. Registration
 * ids are case-insensitive [DOCS REST: Runtime Registration - Register Device, "registrationId ... a
 * case-insensitive string"]: the record is found in any case and a registration keeps the device it
 * has, in the case of its first registration (hub device ids stay case-sensitive).
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { isHubError, unauthorized } from '../core/errors.js';
import { isJsonObject, type JsonObject, type JsonValue } from '../core/json.js';
import { hmacSha256, parseSasToken, signatureMatches, type SasToken } from '../auth/sas.js';
import type { RegistryService } from '../hub/registry/registry-service.js';
import type { X509Certificate } from 'node:crypto';
import { attestX509, type CaLookup } from './x509-attestation.js';
import type { ProvisioningThrottle } from './throttle.js';
import type { TwinService } from '../hub/twins/twin-service.js';
import type { Allocator } from './allocation.js';
import { RemoteHub } from './remote-hub.js';
import type { EnrollmentRef } from '../core/types.js';
import type { AuthEvent } from '../core/security-events.js';
import { enrollmentOf, NotOwned, sameEnrollment, type RegistrationRecord } from './device-ownership.js';
import { upsertLocal, upsertRemote } from './assign-identity.js';
import { RegistrationOperations, type OperationStatus } from './operations.js';
import type { CounterStore } from '../store/counter-ports.js';

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
  /** The stored registration (case-insensitive id) with the group it came through. */
  findRegistration(registrationId: string): Promise<(RegistrationRecord & { state: RegistrationStateLike }) | undefined>;
  putRegistrationState(state: RegistrationStateLike & { enrollmentGroupId?: string }): Promise<RegistrationStateLike>;
}

/** What the device proved, and so what its hub identity authenticates with. */
export type Credential =
  | { kind: 'symmetricKey'; keys: SymmetricKeyPair }
  | { kind: 'x509'; authentication: JsonObject; certificateThumbprint: string };

export type Attested =
  | { kind: 'individual'; registrationId: string; enrollment: EnrollmentLike & { deviceId?: string }; credential: Credential }
  | { kind: 'group'; registrationId: string; groupId: string; enrollment: EnrollmentLike; credential: Credential };

/** The enrollment a registration attested through. */
export function enrollmentRef(who: Attested): EnrollmentRef {
  return who.kind === 'group' ? { kind: 'group', enrollmentGroupId: who.groupId } : { kind: 'individual', registrationId: who.registrationId };
}

/** Where a registration came from, for the audit trail. */
export interface RegistrationPeer {
  remote: string;
  protocol: 'dps-mqtt' | 'dps-https' | 'dps-amqp';
  tls?: string | undefined;
}

export type { OperationStatus } from './operations.js';

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


export interface RevocationCheck {
  isRevoked(leaf: X509Certificate): Promise<boolean>;
}

export interface RegistrationOptions {
  idScope: () => Promise<string>;
  /** Which linked hub a device goes to. */
  allocator: Allocator;
  /** Provisioning settings, read per registration so a change bites at once. */
  settings?: () => Promise<{ disableSymmetricKeyAttestation: boolean }>;
  /** The hub's registered CAs, for groups that reference one. */
  cas?: CaLookup;
  /** Rate limits for registrations and status polls. */
  throttle?: ProvisioningThrottle;
  /** Where assignment decisions are logged (refusals are logged by the transports). */
  log?: (fields: Record<string, unknown>, msg: string) => void;
  /** Certificates Gatehouse issued and revoked: refused at attestation. */
  revocation?: RevocationCheck;
  /** Every completed registration, assigned or failed (metrics). Informs; cannot refuse. */
  onRegistered?: (outcome: 'assigned' | 'failed', attestation: Credential['kind']) => void;
  /**
   * A registration refused because the device it names is not its enrollment's, as an audit event:
   * like a route an authenticated caller may not use (recorded, not counted toward lockout). Informs.
   */
  onRefused?: (event: AuthEvent) => void;
  /** Where operations are kept for every node to answer polls (operations.ts); else this node's memory only. */
  operations?: CounterStore;
}

export class RegistrationService {
  readonly #operations: RegistrationOperations;
  /** X.509 attestation from the TLS peer chain (wire doc §4.4); refusals look alike. */
  async attestX509(registrationId: string, chain: X509Certificate[] | undefined): Promise<Attested> {
    if (!validRegistrationId(registrationId)) throw unauthorized('malformed', 'invalid registration id');
    if (chain === undefined || chain.length === 0) throw unauthorized('malformed', 'no credentials');
    const individual = await this.enrollments.findIndividual(registrationId);
    const groups = await this.enrollments.listGroups();
    const r = await attestX509(registrationId, chain, individual as never, groups as never, this.#cas, this.clock.now());
    if ('error' in r) throw unauthorized(r.code, r.error);
    if (this.#revocation !== undefined && chain[0] !== undefined && (await this.#revocation.isRevoked(chain[0]))) throw unauthorized('revoked', 'the certificate is revoked');
    const thumbprint = { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: r.leafThumbprint, secondaryThumbprint: null } };
    if (r.kind === 'individual' && individual !== undefined) {
      return { kind: 'individual', registrationId, enrollment: individual, credential: { kind: 'x509', authentication: thumbprint, certificateThumbprint: r.leafThumbprint } };
    }
    const group = groups.find((g) => r.kind === 'group' && g.enrollmentGroupId === r.groupId);
    if (group === undefined || r.kind !== 'group') throw unauthorized('bad_credentials', 'no enrollment matches');
    // A CA the hub knows lets the identity renew its certificate without re-provisioning.
    const authentication = r.via === 'ca-reference' ? { type: 'certificateAuthority' } : thumbprint;
    return { kind: 'group', registrationId, groupId: group.enrollmentGroupId, enrollment: group, credential: { kind: 'x509', authentication, certificateThumbprint: r.leafThumbprint } };
  }

  readonly #settings: () => Promise<{ disableSymmetricKeyAttestation: boolean }>;
  readonly #cas: CaLookup;
  readonly #throttle: ProvisioningThrottle | undefined;
  readonly #log: ((fields: Record<string, unknown>, msg: string) => void) | undefined;
  readonly #revocation: RevocationCheck | undefined;
  readonly #onRegistered: RegistrationOptions['onRegistered'];
  readonly #onRefused: RegistrationOptions['onRefused'];
  private readonly idScope: () => Promise<string>;
  private readonly allocator: Allocator;

  constructor(
    private readonly enrollments: RuntimeEnrollments,
    private readonly registry: RegistryService,
    private readonly twins: TwinService,
    private readonly clock: Clock,
    opts: RegistrationOptions,
  ) {
    this.idScope = opts.idScope;
    this.allocator = opts.allocator;
    this.#settings = opts.settings ?? (async () => ({ disableSymmetricKeyAttestation: false }));
    this.#cas = opts.cas ?? { verifiedCaPem: async () => undefined };
    this.#throttle = opts.throttle;
    this.#log = opts.log;
    this.#revocation = opts.revocation;
    this.#onRegistered = opts.onRegistered;
    this.#onRefused = opts.onRefused;
    this.#operations = new RegistrationOperations(clock, opts.operations, (err) =>
      this.#log?.({ event: 'dps.operation-store-failed', error: String(err) }, 'could not share a registration operation; only this node answers its polls'),
    );
  }

  /** Verifies a DPS SAS token (`sr=<idScope>/registrations/<id>`, `skn=registration`). */
  async attestSymmetricKey(registrationId: string, sasToken: string | undefined): Promise<Attested> {
    if (!validRegistrationId(registrationId)) throw unauthorized('malformed', 'invalid registration id');
    // A token that cannot be read is refused as `malformed` (parseSasToken's own 401).
    const token: SasToken = parseSasToken(sasToken);
    if ((await this.#settings()).disableSymmetricKeyAttestation) throw unauthorized('auth_method_disabled', 'symmetric key attestation is disabled on this provisioning service');
    const scope = await this.idScope();
    if (token.resource.toLowerCase() !== `${scope}/registrations/${registrationId}`.toLowerCase()) throw unauthorized('scope', 'token scope is not this registration');
    if (token.expiry * 1000 <= this.clock.now()) throw unauthorized('expired', 'expired token');

    const individual = await this.enrollments.findIndividual(registrationId);
    if (individual !== undefined) {
      // The nearest entry decides: an individual enrollment, even a disabled one, wins over groups.
      const keys = individual.attestation.symmetricKey;
      if (individual.attestation.type !== 'symmetricKey' || keys === undefined) throw unauthorized('bad_credentials', 'individual enrollment is not symmetric-key');
      if (!signatureMatches(token, [keys.primaryKey, keys.secondaryKey])) throw unauthorized('bad_credentials', 'bad signature (individual)');
      if (!enabled(individual)) throw unauthorized('disabled', 'individual enrollment disabled');
      return { kind: 'individual', registrationId, enrollment: individual, credential: { kind: 'symmetricKey', keys } };
    }
    for (const g of await this.enrollments.listGroups()) {
      const k = g.attestation.symmetricKey;
      if (g.attestation.type !== 'symmetricKey' || k === undefined) continue;
      const derived = { primaryKey: deriveDeviceKey(k.primaryKey, registrationId), secondaryKey: deriveDeviceKey(k.secondaryKey, registrationId) };
      if (!signatureMatches(token, [derived.primaryKey, derived.secondaryKey])) continue;
      if (!enabled(g)) throw unauthorized('disabled', `group ${g.enrollmentGroupId} disabled`);
      return { kind: 'group', registrationId, groupId: g.enrollmentGroupId, enrollment: g, credential: { kind: 'symmetricKey', keys: derived } };
    }
    // Like a wrong key for an individual enrollment: the caller cannot tell the two apart, nor can an alert.
    throw unauthorized('bad_credentials', 'no enrollment matches');
  }

  /** Runs the assignment; resolves with the operation (already final here: one local hub). */
  async register(who: Attested, payload: JsonValue | undefined, peer?: RegistrationPeer): Promise<OperationStatus> {
    await this.#throttle?.register();
    const operationId = `4.${randomUUID()}`;
    let status: OperationStatus;
    let reason: string | undefined;
    try {
      status = { operationId, status: 'assigned', registrationState: await this.#assign(who, payload) };
    } catch (err) {
      if (!isHubError(err)) throw err;
      reason = err.cause === undefined ? undefined : String(err.cause);
      if (err instanceof NotOwned) {
        try {
          this.#onRefused?.({
            type: 'auth',
            at: this.clock.now(),
            subject: 'registration',
            identity: who.registrationId.slice(0, 260),
            outcome: 'failure',
            reason: reason ?? err.message,
            reasonCode: err.authFailure ?? 'insufficient_rights',
            remote: peer?.remote ?? '',
            protocol: peer?.protocol ?? 'dps-https',
            method: who.credential.kind,
            ...(peer?.tls === undefined ? {} : { tls: peer.tls }),
          });
        } catch {
          // informs only
        }
      }
      status = {
        operationId,
        status: 'failed',
        registrationState: { registrationId: who.registrationId, status: 'failed', errorCode: err.number, errorMessage: err.message },
      };
    }
    await this.#operations.add(who.registrationId, status);
    const state = status.registrationState ?? {};
    this.#log?.(
      {
        event: status.status === 'assigned' ? 'dps.assigned' : 'dps.failed',
        registrationId: who.registrationId,
        enrollment: who.kind === 'group' ? `group:${who.groupId}` : 'individual',
        attestation: who.credential.kind,
        deviceId: state.deviceId,
        assignedHub: state.assignedHub,
        substatus: state.substatus,
        error: state.errorMessage,
        ...(reason === undefined ? {} : { reason }),
      },
      status.status === 'assigned' ? 'device provisioned' : 'provisioning failed',
    );
    try {
      this.#onRegistered?.(status.status === 'assigned' ? 'assigned' : 'failed', who.credential.kind);
    } catch {
      // informs only
    }
    return status;
  }

  /** An operation, only for the registration it belongs to. */
  async operation(registrationId: string, operationId: string): Promise<OperationStatus | undefined> {
    await this.#throttle?.poll(registrationId);
    return this.#operations.get(registrationId, operationId);
  }

  /**
   * Asks the allocator for the hub, creates or re-keys the identity there (locally, or over the
   * linked hub's REST API), and gives it its twin: the initial twin on a first assignment; on a
   * move to another hub, the old hub's tags and desired properties (`migrateDeviceData`, the
   * default) or the initial twin again (`deviceDataReset`).
   */
  async #assign(who: Attested, payload: JsonValue | undefined): Promise<JsonObject> {
    const now = new Date(this.clock.now()).toISOString();
    // Registration ids are case-insensitive (the record is found in any case): a registration that
    // has a device keeps it, so `DEV-LA-9` after `dev-la-9` is that device, never a second one.
    const record = await this.enrollments.findRegistration(who.registrationId);
    const deviceId = who.kind === 'individual' && who.enrollment.deviceId !== undefined ? who.enrollment.deviceId : (record?.state.deviceId ?? who.registrationId);
    // What another enrollment did with this registration id is not this one's to follow or
    // migrate (its device, if it still exists, is refused below).
    const previous = record !== undefined && sameEnrollment(enrollmentOf(record), enrollmentRef(who)) ? record.state : undefined;
    const previousHub = previous?.status === 'assigned' ? previous.assignedHub : undefined;
    const allocation = await this.allocator.allocate({
      registrationId: who.registrationId,
      enrollment: who.enrollment,
      kind: who.kind,
      ...(who.kind === 'group' ? { groupId: who.groupId } : {}),
      ...(payload === undefined ? {} : { payload }),
      ...(previousHub === undefined ? {} : { previousHub }),
    });
    const target = allocation.hub;
    const remote = target.connectionString === undefined ? undefined : new RemoteHub(target.connectionString);
    const capabilities = { iotEdge: who.enrollment.capabilities?.iotEdge === true };
    const identity = { deviceId, enrollment: enrollmentRef(who), credential: who.credential, capabilities, record, hub: target.hostName };
    const { created, generationId } = remote !== undefined ? await upsertRemote(remote, identity) : await upsertLocal(this.registry, identity);
    const moved = previousHub !== undefined && previousHub.toLowerCase() !== target.hostName.toLowerCase();
    const migrate = (who.enrollment as { reprovisionPolicy?: { migrateDeviceData?: boolean } }).reprovisionPolicy?.migrateDeviceData !== false;
    let substatus: string;
    if (moved) {
      // The identity may already exist on the target (a device going back to a hub it used
      // before): its tags and desired properties are replaced, never merged with stale ones.
      const oldTwin = migrate ? await this.#readTwin(previousHub, deviceId) : undefined;
      if (oldTwin !== undefined) {
        await this.#applyInitialTwin(deviceId, oldTwin, remote, 'replace');
        substatus = 'deviceDataMigrated';
      } else {
        if (migrate) {
          this.#log?.({ event: 'dps.migrate-failed', registrationId: who.registrationId, from: previousHub, to: target.hostName }, 'device data could not be read from the previous hub; starting from the initial twin');
        }
        await this.#applyInitialTwin(deviceId, allocation.initialTwin, remote, 'replace');
        substatus = 'deviceDataReset';
      }
    } else {
      if (created) await this.#applyInitialTwin(deviceId, allocation.initialTwin, remote);
      substatus = created || previous === undefined ? 'initialAssignment' : 'deviceDataMigrated';
    }
    const state: RegistrationStateLike & { enrollmentGroupId?: string } = {
      registrationId: who.registrationId,
      createdDateTimeUtc: record?.state.createdDateTimeUtc ?? now,
      assignedHub: target.hostName,
      deviceId,
      status: 'assigned',
      substatus,
      lastUpdatedDateTimeUtc: now,
      // The identity's generation on its hub [DOCS REST: Runtime Registration, DeviceRegistrationResult
      // "generationId"]: how a later registration tells the device it made from one made again by someone else.
      ...(generationId === undefined ? {} : { generationId }),
      // Only a custom allocation webhook answers the device with a payload.
      ...(allocation.payload === undefined ? {} : { payload: allocation.payload }),
      ...(who.kind === 'group' ? { enrollmentGroupId: who.groupId } : {}),
      ...(who.credential.kind === 'x509'
        ? { x509: who.kind === 'group' ? { enrollmentGroupId: who.groupId } : {} }
        : { symmetricKey: who.kind === 'group' ? { enrollmentGroupId: who.groupId } : {} }),
    };
    const stored = await this.enrollments.putRegistrationState(state);
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(stored)) if (v !== undefined && k !== 'enrollmentGroupId') out[k] = v as JsonValue;
    return out;
  }

  /** The device's twin on a hub it was assigned to before, or undefined when that hub cannot tell. */
  async #readTwin(hostName: string, deviceId: string): Promise<JsonObject | undefined> {
    const hub = this.allocator.linked(hostName);
    if (hub === undefined) return undefined;
    try {
      return hub.connectionString === undefined ? await this.twins.get(deviceId, null) : await new RemoteHub(hub.connectionString).getTwin(deviceId);
    } catch {
      return undefined;
    }
  }

  /** `merge` patches (a new identity); `replace` sets tags and desired to exactly this (a move). */
  async #applyInitialTwin(deviceId: string, initialTwin: unknown, remote?: RemoteHub, mode: 'merge' | 'replace' = 'merge'): Promise<void> {
    if (mode === 'replace') {
      const src = isJsonObject(initialTwin) ? initialTwin : {};
      const props = isJsonObject(src.properties) ? src.properties : {};
      const strip = (o: JsonValue | undefined): JsonObject => {
        const out: JsonObject = {};
        if (isJsonObject(o)) for (const [k, v] of Object.entries(o)) if (!k.startsWith('$') && !['version', 'count', 'metadata'].includes(k)) out[k] = v;
        return out;
      };
      const body: JsonObject = { tags: strip(src.tags), properties: { desired: strip(props.desired) } };
      if (remote !== undefined) await remote.replaceTwin(deviceId, body);
      else await this.twins.replace(deviceId, null, body, undefined);
      return;
    }
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
    if (Object.keys(patch).length === 0) return;
    if (remote !== undefined) await remote.patchTwin(deviceId, patch);
    else await this.twins.patch(deviceId, null, patch, undefined);
  }
}
