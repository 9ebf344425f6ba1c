/**
 * The identity registry's management side: devices and modules CRUD, bulk, statistics.
 * Handlers in protocol/http call this; it validates, fills in what the service owns, and writes
 * through the store under etags. Every identity change goes out on the bus once written
 * (`identity.changed`: every node drops the live sessions a disable, delete or re-key ends), and
 * every write to the security event stream with who made it and the record before and after.
 */
import type { Clock } from '../../core/clock.js';
import { HubError } from '../../core/errors.js';
import { NEVER, newEtag, newGenerationId, validateDeviceId } from '../../core/ids.js';
import { isJsonObject, type JsonObject } from '../../core/json.js';
import type { DeviceOrigin, DeviceRecord, ModuleRecord } from '../../core/types.js';
import { emptyTwin } from '../../core/twin-state.js';
import type { DeviceRegistryStore, ModuleRegistryStore, TwinStore } from '../../store/ports.js';
import { SUBJECTS, type HubBus, type IdentityChanged } from '../../bus/subjects.js';
import { redactSecrets, type ChangeEvent } from '../../core/security-events.js';
import {
  parseAuthentication,
  parseCapabilities,
  parseScopes,
  parseStatus,
  parseStatusReason,
  renderAuthentication,
} from './device-input.js';
import { resolveScopes } from './edge-scopes.js';
import type { SourceEventSink } from '../../routing/routed-events.js';
import { deviceLifecycleEvent } from '../../routing/source-events.js';
import type { TwinState } from '../../core/types.js';

export const MAX_MODULES_PER_DEVICE = 50;
export const MAX_LIST = 1000;

/** `credentialsOrStatus`: live sessions must go (disabled, re-keyed, re-thumbprinted; Azure drops them at once, so do we). */
export type IdentityChange = IdentityChanged;

/** A registry write as the audit log records it. */
/** Who made a registry change: `policy:<name>`, `operator:<id>`, `hub` (provisioning, EST, the hub itself). */
export interface Actor {
  actor: string;
  remote?: string;
}

export const HUB_ACTOR: Actor = { actor: 'hub' };

export interface RecordChange {
  by: Actor;
  action: 'device.create' | 'device.update' | 'device.delete' | 'module.create' | 'module.update' | 'module.delete';
  /** `devices/<id>` or `devices/<id>/modules/<mid>`. */
  target: string;
  before?: DeviceRecord | ModuleRecord;
  after?: DeviceRecord | ModuleRecord;
}

function thumbprintsOf(auth: DeviceRecord['auth']): string[] {
  return auth.type === 'selfSigned' ? [auth.primaryThumbprint, auth.secondaryThumbprint].filter((t): t is string => t !== null).map((t) => t.toUpperCase()) : [];
}

export function renderDevice(d: DeviceRecord): JsonObject {
  const out: JsonObject = {
    deviceId: d.deviceId,
    generationId: d.generationId,
    etag: d.etag,
    connectionState: d.connectionState,
    status: d.status,
    statusReason: d.statusReason,
    connectionStateUpdatedTime: d.connectionStateUpdatedTime,
    statusUpdatedTime: d.statusUpdatedTime,
    lastActivityTime: d.lastActivityTime,
    cloudToDeviceMessageCount: d.cloudToDeviceMessageCount,
    authentication: renderAuthentication(d.auth),
    capabilities: { iotEdge: d.iotEdge },
  };
  if (d.deviceScope !== null) out.deviceScope = d.deviceScope;
  if (d.parentScopes.length > 0) out.parentScopes = d.parentScopes;
  return out;
}

export function renderModule(m: ModuleRecord): JsonObject {
  return {
    moduleId: m.moduleId,
    managedBy: m.managedBy,
    deviceId: m.deviceId,
    generationId: m.generationId,
    etag: m.etag,
    connectionState: m.connectionState,
    connectionStateUpdatedTime: m.connectionStateUpdatedTime,
    lastActivityTime: m.lastActivityTime,
    cloudToDeviceMessageCount: m.cloudToDeviceMessageCount,
    authentication: renderAuthentication(m.auth),
  };
}

function body(raw: unknown, what: string): JsonObject {
  if (!isJsonObject(raw)) throw new HubError('ArgumentInvalid', `The ${what} must be a JSON object.`);
  return raw;
}

/** The id in the body, when given, must be the id in the path. */
function checkBodyId(b: JsonObject, field: string, expected: string): void {
  const v = b[field];
  if (v !== undefined && v !== null && v !== expected) {
    throw new HubError('ArgumentInvalid', `${field} in the body ('${String(v)}') does not match the id in the path.`);
  }
}

export class RegistryService {
  #events: SourceEventSink | undefined;

  /** Device lifecycle events for routes on DeviceLifecycleEvents (routing/routed-events.ts). */
  routeEventsTo(events: SourceEventSink): void {
    this.#events = events;
  }

  #lifecycle(deviceId: string, moduleId: string | null, opType: 'createDeviceIdentity' | 'deleteDeviceIdentity', twin: TwinState | undefined): void {
    const events = this.#events;
    if (twin === undefined || events === undefined) return;
    events.emit('DeviceLifecycleEvents', () => deviceLifecycleEvent({ hubName: events.hubName, deviceId, moduleId, now: this.#now() }, opType, twin));
  }

  constructor(
    private readonly store: DeviceRegistryStore & ModuleRegistryStore & Pick<TwinStore, 'getTwin'>,
    private readonly clock: Clock,
    private readonly bus: HubBus,
    /** Where every write is reported (the security event stream: audit log, alerts), keys redacted. */
    private readonly changes: { emit(event: ChangeEvent): void },
  ) {}

  #record(c: RecordChange): void {
    this.changes.emit({
      type: 'change',
      at: this.clock.now(),
      actor: c.by.actor,
      action: c.action,
      target: c.target,
      ...(c.before === undefined ? {} : { before: redactSecrets(c.before) }),
      ...(c.after === undefined ? {} : { after: redactSecrets(c.after) }),
      ...(c.by.remote === undefined ? {} : { remote: c.by.remote }),
    });
  }

  #emit(change: IdentityChange): void {
    this.bus.publish(SUBJECTS.identityChanged, change);
  }

  #now(): string {
    return new Date(this.clock.now()).toISOString();
  }

  // ------------------------------------------------------------ devices

  /** `origin`: the registry API unless the provisioning service creates it for an enrollment. */
  async createDevice(deviceId: string, raw: unknown, by: Actor = HUB_ACTOR, origin: DeviceOrigin = { kind: 'registry' }): Promise<DeviceRecord> {
    validateDeviceId(deviceId);
    const b = body(raw, 'device');
    checkBodyId(b, 'deviceId', deviceId);
    const now = this.#now();
    const status = parseStatus(b.status, 'enabled');
    const generationId = newGenerationId();
    const iotEdge = parseCapabilities(b.capabilities, false);
    const scopes = await resolveScopes({ deviceId, generationId, iotEdge, ...parseScopes(b, { deviceScope: null, parentScopes: [] }) }, (id) => this.store.getDevice(id));
    const device: DeviceRecord = {
      deviceId,
      generationId,
      etag: newEtag(),
      status,
      statusReason: parseStatusReason(b.statusReason),
      statusUpdatedTime: NEVER,
      auth: parseAuthentication(b.authentication),
      iotEdge,
      ...scopes,
      connectionState: 'Disconnected',
      connectionStateUpdatedTime: NEVER,
      lastActivityTime: NEVER,
      cloudToDeviceMessageCount: 0,
      origin,
    };
    const twin = emptyTwin(deviceId, null, now);
    await this.store.createDevice(device, twin);
    // Caches that remember the id as unknown (identity-cache.ts) read it again.
    this.#emit({ kind: 'device-updated', deviceId, credentialsOrStatus: false });
    this.#lifecycle(deviceId, null, 'createDeviceIdentity', twin);
    this.#record({ by, action: 'device.create', target: `devices/${deviceId}`, after: device });
    return device;
  }

  async getDevice(deviceId: string): Promise<DeviceRecord> {
    const d = await this.store.getDevice(deviceId);
    if (d === undefined) throw new HubError('DeviceNotFound', `Device ${deviceId} not found`);
    return d;
  }

  /**
   * PUT with If-Match: replace what a caller may change; keep what the service owns (the origin
   * too, unless the provisioning service records one for a device whose origin was unknown).
   */
  async updateDevice(deviceId: string, raw: unknown, ifMatch: string, by: Actor = HUB_ACTOR, opts: { origin?: DeviceOrigin } = {}): Promise<DeviceRecord> {
    validateDeviceId(deviceId);
    const b = body(raw, 'device');
    checkBodyId(b, 'deviceId', deviceId);
    const current = await this.getDevice(deviceId);
    if (ifMatch !== '*' && ifMatch !== current.etag) {
      throw new HubError('PreconditionFailed', 'The device etag does not match; it was changed by someone else.');
    }
    const status = parseStatus(b.status, current.status);
    const iotEdge = parseCapabilities(b.capabilities, current.iotEdge);
    const scopes = await resolveScopes({ deviceId, generationId: current.generationId, iotEdge, ...parseScopes(b, current) }, (id) => this.store.getDevice(id));
    const next: DeviceRecord = {
      ...current,
      etag: newEtag(),
      status,
      statusReason: b.statusReason === undefined ? current.statusReason : parseStatusReason(b.statusReason),
      statusUpdatedTime: status === current.status ? current.statusUpdatedTime : this.#now(),
      auth: parseAuthentication(b.authentication, current.auth),
      iotEdge,
      ...scopes,
      origin: opts.origin ?? current.origin,
    };
    await this.store.replaceDevice(next, ifMatch === '*' ? current.etag : ifMatch);
    const credentialsOrStatus = next.status !== current.status || JSON.stringify(next.auth) !== JSON.stringify(current.auth);
    const rotation = credentialsOrStatus && next.status === current.status && current.auth.type === 'selfSigned' && next.auth.type === 'selfSigned';
    this.#emit({ kind: 'device-updated', deviceId, credentialsOrStatus, ...(rotation ? { keepThumbprints: thumbprintsOf(next.auth) } : {}) });
    this.#record({ by, action: 'device.update', target: `devices/${deviceId}`, before: current, after: next });
    return next;
  }

  async deleteDevice(deviceId: string, ifMatch: string, by: Actor = HUB_ACTOR): Promise<void> {
    const before = await this.store.getDevice(deviceId);
    const twin = this.#events?.wants('DeviceLifecycleEvents') === true ? await this.store.getTwin(deviceId, null) : undefined;
    await this.store.deleteDevice(deviceId, ifMatch);
    this.#lifecycle(deviceId, null, 'deleteDeviceIdentity', twin);
    this.#emit({ kind: 'device-deleted', deviceId });
    this.#record({ by, action: 'device.delete', target: `devices/${deviceId}`, ...(before === undefined ? {} : { before }) });
  }

  /**
   * EST renewal of a self-signed device: the new certificate's thumbprint takes the slot of the
   * one *not* renewed, so the device keeps working on either certificate until it switches (the
   * rotation keeps sessions on a still-listed certificate). Returns the slot, or undefined when
   * the device is not self-signed or lists none of the old thumbprints.
   */
  async rotateThumbprint(device: DeviceRecord, oldThumbprints: string[], newThumbprint: string): Promise<'primary' | 'secondary' | undefined> {
    if (device.auth.type !== 'selfSigned') return undefined;
    const old = new Set(oldThumbprints.map((t) => t.toUpperCase()));
    const { primaryThumbprint: p, secondaryThumbprint: s } = device.auth;
    const slot = p !== null && old.has(p.toUpperCase()) ? 'secondary' : s !== null && old.has(s.toUpperCase()) ? 'primary' : undefined;
    if (slot === undefined) return undefined;
    const x509Thumbprint = slot === 'secondary' ? { primaryThumbprint: p, secondaryThumbprint: newThumbprint } : { primaryThumbprint: newThumbprint, secondaryThumbprint: s };
    await this.updateDevice(device.deviceId, { ...renderDevice(device), authentication: { type: 'selfSigned', x509Thumbprint } }, device.etag);
    return slot;
  }

  async listDevices(top: number | undefined): Promise<DeviceRecord[]> {
    const limit = Math.min(top ?? MAX_LIST, MAX_LIST);
    return this.store.listDevices({ limit });
  }

  statistics(): Promise<{ total: number; enabled: number; disabled: number }> {
    return this.store.deviceStatistics();
  }

  /**
   * At start-up of a hub whose store no other process serves devices from (SQLite): a connection
   * state left Connected belongs to a session that died with the previous process (a crash, a
   * kill), and would show in twins and the service statistics for ever. In a cluster a state is
   * the node's that holds the session, so this is not called there.
   */
  async forgetConnectionsOfAnEarlierRun(): Promise<number> {
    return this.store.resetConnectionStates(new Date(this.clock.now()).toISOString());
  }

  /** Azure's service statistics: the devices connected now, from the registry (every node writes it). */
  async serviceStatistics(): Promise<{ connectedDeviceCount: number }> {
    return { connectedDeviceCount: await this.store.connectedDeviceCount() };
  }

  // ------------------------------------------------------------ modules

  async createModule(deviceId: string, moduleId: string, raw: unknown, by: Actor = HUB_ACTOR): Promise<ModuleRecord> {
    validateDeviceId(deviceId);
    validateDeviceId(moduleId, 'module');
    const b = body(raw, 'module');
    checkBodyId(b, 'deviceId', deviceId);
    checkBodyId(b, 'moduleId', moduleId);
    if ((await this.store.countModules(deviceId)) >= MAX_MODULES_PER_DEVICE) {
      throw new HubError('IotHubQuotaExceeded', `Device ${deviceId} already has ${MAX_MODULES_PER_DEVICE} modules.`);
    }
    const module: ModuleRecord = {
      deviceId,
      moduleId,
      generationId: newGenerationId(),
      etag: newEtag(),
      managedBy: typeof b.managedBy === 'string' ? b.managedBy : null,
      auth: parseAuthentication(b.authentication),
      connectionState: 'Disconnected',
      connectionStateUpdatedTime: NEVER,
      lastActivityTime: NEVER,
      cloudToDeviceMessageCount: 0,
    };
    const twin = emptyTwin(deviceId, moduleId, this.#now());
    await this.store.createModule(module, twin);
    this.#emit({ kind: 'module-updated', deviceId, moduleId, credentialsOrStatus: false });
    this.#lifecycle(deviceId, moduleId, 'createDeviceIdentity', twin);
    this.#record({ by, action: 'module.create', target: `devices/${deviceId}/modules/${moduleId}`, after: module });
    return module;
  }

  async getModule(deviceId: string, moduleId: string): Promise<ModuleRecord> {
    const m = await this.store.getModule(deviceId, moduleId);
    if (m === undefined) {
      if ((await this.store.getDevice(deviceId)) === undefined) throw new HubError('DeviceNotFound', `Device ${deviceId} not found`);
      throw new HubError('ModuleNotFound', `Module ${moduleId} on device ${deviceId} not found`);
    }
    return m;
  }

  async listModules(deviceId: string): Promise<ModuleRecord[]> {
    await this.getDevice(deviceId);
    return this.store.listModules(deviceId);
  }

  async updateModule(deviceId: string, moduleId: string, raw: unknown, ifMatch: string, by: Actor = HUB_ACTOR): Promise<ModuleRecord> {
    const b = body(raw, 'module');
    checkBodyId(b, 'deviceId', deviceId);
    checkBodyId(b, 'moduleId', moduleId);
    const current = await this.getModule(deviceId, moduleId);
    if (ifMatch !== '*' && ifMatch !== current.etag) {
      throw new HubError('PreconditionFailed', 'The module etag does not match; it was changed by someone else.');
    }
    const next: ModuleRecord = {
      ...current,
      etag: newEtag(),
      managedBy: b.managedBy === undefined ? current.managedBy : typeof b.managedBy === 'string' ? b.managedBy : null,
      auth: parseAuthentication(b.authentication, current.auth),
    };
    await this.store.replaceModule(next, current.etag);
    this.#emit({ kind: 'module-updated', deviceId, moduleId, credentialsOrStatus: JSON.stringify(next.auth) !== JSON.stringify(current.auth) });
    this.#record({ by, action: 'module.update', target: `devices/${deviceId}/modules/${moduleId}`, before: current, after: next });
    return next;
  }

  async deleteModule(deviceId: string, moduleId: string, ifMatch: string, by: Actor = HUB_ACTOR): Promise<void> {
    const before = await this.getModule(deviceId, moduleId);
    const twin = this.#events?.wants('DeviceLifecycleEvents') === true ? await this.store.getTwin(deviceId, moduleId) : undefined;
    await this.store.deleteModule(deviceId, moduleId, ifMatch);
    this.#lifecycle(deviceId, moduleId, 'deleteDeviceIdentity', twin);
    this.#emit({ kind: 'module-deleted', deviceId, moduleId });
    this.#record({ by, action: 'module.delete', target: `devices/${deviceId}/modules/${moduleId}`, before });
  }
}
