/**
 * Store ports. Small interfaces, each one a contract that store.case.ts checks on every backend.
 * Management CRUD (operators, REST) and the runtime lookups on the connect-time hot path are
 * separate interfaces: the hot path wants one indexed read and a cache, never a scan.
 *
 * Concurrency: every mutable record has an etag. Writes take the expected etag ('*' = any) and
 * fail with PreconditionFailed when it moved; nothing is ever overwritten blindly.
 */
import type {
  DeviceRecord,
  ModuleRecord,
  SharedAccessPolicy,
  TwinState,
} from '../core/types.js';
import type { SessionStore } from './session-ports.js';
import type { C2dStore } from './c2d-ports.js';
import type { CertificateStore } from './certificate-ports.js';
import type { EnrollmentStore } from './enrollment-ports.js';
import type { AuthorityStore } from './authority-ports.js';
import type { AuditStore } from './audit-ports.js';
import type { AlertStore } from './alert-ports.js';
import type { OperatorStore } from './operator-ports.js';
import type { CounterStore } from './counter-ports.js';
import type { ConfigurationStore } from './configuration-ports.js';
import type { JobStore } from './job-ports.js';
import type { FileNotificationStore } from './file-notification-ports.js';

export type * from './session-ports.js';
export type * from './c2d-ports.js';
export type * from './certificate-ports.js';
export type * from './enrollment-ports.js';
export type * from './alert-ports.js';
export type * from './operator-ports.js';
export type * from './counter-ports.js';
export type * from './configuration-ports.js';
export type * from './job-ports.js';

/** '*' matches any current etag. */
export type EtagCondition = string;

export interface DeviceRegistryStore {
  /** Creates the device and its twin atomically. DeviceAlreadyExists when the id is taken. */
  createDevice(device: DeviceRecord, twin: TwinState): Promise<void>;
  getDevice(deviceId: string): Promise<DeviceRecord | undefined>;
  /** Replaces the record when its etag matches. DeviceNotFound / PreconditionFailed. */
  replaceDevice(device: DeviceRecord, ifMatch: EtagCondition): Promise<void>;
  /** Deletes the device with its modules and twins. DeviceNotFound / PreconditionFailed. */
  deleteDevice(deviceId: string, ifMatch: EtagCondition): Promise<void>;
  /** Devices ordered by id, strictly after `after`. */
  listDevices(opts: { after?: string; limit: number }): Promise<DeviceRecord[]>;
  deviceStatistics(): Promise<{ total: number; enabled: number; disabled: number }>;
  /** Devices (not modules) whose connection state is Connected, on whichever node. */
  connectedDeviceCount(): Promise<number>;
  /**
   * Every device and module that is Connected becomes Disconnected at `at` (last activity kept).
   * For a hub starting on a store no other process holds sessions on; returns how many changed.
   */
  resetConnectionStates(at: string): Promise<number>;
  /**
   * Connection state and last activity of a device or module, written without changing its etag
   * (connection state is not part of the identity an operator edits). No-op for unknown ids.
   */
  setConnectionState(deviceId: string, moduleId: string | null, state: 'Connected' | 'Disconnected', at: string): Promise<void>;
  /** setConnectionState for many identities in one transaction, in order (the connect path's batches). */
  setConnectionStates(changes: readonly ConnectionStateChange[]): Promise<void>;
}

export interface ConnectionStateChange {
  deviceId: string;
  moduleId: string | null;
  state: 'Connected' | 'Disconnected';
  /** ISO time of the change, also the last activity time. */
  at: string;
}

export interface ModuleRegistryStore {
  /** DeviceNotFound when the device is missing, ModuleAlreadyExistsOnDevice when taken. */
  createModule(module: ModuleRecord, twin: TwinState): Promise<void>;
  getModule(deviceId: string, moduleId: string): Promise<ModuleRecord | undefined>;
  listModules(deviceId: string): Promise<ModuleRecord[]>;
  countModules(deviceId: string): Promise<number>;
  replaceModule(module: ModuleRecord, ifMatch: EtagCondition): Promise<void>;
  deleteModule(deviceId: string, moduleId: string, ifMatch: EtagCondition): Promise<void>;
}

export interface TwinScanEntry {
  twin: TwinState;
  device: DeviceRecord;
  /** Present when scanning module twins. */
  module?: ModuleRecord;
}

export interface TwinStore {
  getTwin(deviceId: string, moduleId: string | null): Promise<TwinState | undefined>;
  /**
   * Compare-and-swap on the twin etag: succeeds only when the stored etag equals `expectedEtag`
   * (never '*': callers read, modify and retry). PreconditionFailed when it moved,
   * DeviceNotFound / ModuleNotFound when the identity is gone.
   */
  replaceTwin(twin: TwinState, expectedEtag: string): Promise<void>;
  /** The device twins (not module twins) of `deviceIds` that exist, in one read, in no particular order. */
  getDeviceTwins(deviceIds: readonly string[]): Promise<TwinState[]>;
  /**
   * The service's sections of many twins (etag, version, tags, desired with its metadata and
   * version; reported and the rest stay as stored) in one transaction, each a compare-and-swap on
   * its etag as replaceTwin. Answers per write whether it was made (false: the etag moved or the twin is gone).
   */
  writeServiceSections(writes: readonly { twin: TwinState; expectedEtag: string }[]): Promise<boolean[]>;
  /** Twins ordered by (deviceId, moduleId), strictly after the cursor. */
  scanTwins(opts: {
    kind: 'devices' | 'modules';
    after?: { deviceId: string; moduleId: string };
    limit: number;
  }): Promise<TwinScanEntry[]>;
}

export interface PolicyStore {
  listPolicies(): Promise<SharedAccessPolicy[]>;
  getPolicy(name: string): Promise<SharedAccessPolicy | undefined>;
  /** Inserts when `ifMatch` is undefined (fails if it exists), else replaces under the etag. */
  putPolicy(policy: SharedAccessPolicy, ifMatch?: EtagCondition): Promise<void>;
  /** PolicyNotFound / PreconditionFailed. */
  deletePolicy(name: string, ifMatch: EtagCondition): Promise<void>;
}

/** Small named values: hub identity, TLS material. Secrets go through the encrypted variant. */
export interface MetaStore {
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;
  getSecretMeta(key: string): Promise<string | undefined>;
  setSecretMeta(key: string, value: string): Promise<void>;
  /**
   * Writes the value only when the key has none yet (INSERT ... ON CONFLICT DO NOTHING) and
   * returns the value the key holds afterwards: ours, or the one another writer put there first.
   * What a first start creates (keys, ids) goes through this, so nodes starting together on one
   * empty database all end up using the one value that was kept.
   */
  insertMetaIfAbsent(key: string, value: string): Promise<string>;
  /** insertMetaIfAbsent for a sealed value; returns the kept value, opened. */
  insertSecretMetaIfAbsent(key: string, value: string): Promise<string>;
  /**
   * Writes the value only when the key still holds `expected` (undefined: holds nothing), in one
   * statement; false when another writer changed it first. For documents several nodes edit.
   */
  compareAndSetMeta(key: string, expected: string | undefined, value: string): Promise<boolean>;
}

/** The connect-time hot path: one indexed read each, callers cache. */
export interface RuntimeLookups {
  findDevice(deviceId: string): Promise<DeviceRecord | undefined>;
  findModule(deviceId: string, moduleId: string): Promise<ModuleRecord | undefined>;
  findPolicy(name: string): Promise<SharedAccessPolicy | undefined>;
}

export interface Store
  extends DeviceRegistryStore,
    ModuleRegistryStore,
    TwinStore,
    PolicyStore,
    MetaStore,
    RuntimeLookups {
  readonly kind: 'sqlite' | 'postgres';
  readonly sessions: SessionStore;
  readonly c2d: C2dStore;
  readonly certificates: CertificateStore;
  readonly enrollments: EnrollmentStore;
  /** The device CA: sealed keys of Gatehouse-held CAs and the certificates they issued. */
  readonly authority: AuthorityStore;
  /** The tamper-evident audit log: auth decisions and changes, hash-chained. */
  readonly audit: AuditStore;
  /** Alert rules and the history of what fired. */
  readonly alerts: AlertStore;
  /** Operators and their role assignments, one row each. */
  readonly operators: OperatorStore;
  /** Counters every node shares: lockout, provisioning rate limits. */
  readonly counters: CounterStore;
  /** Automatic device and module configurations. */
  readonly configurations: ConfigurationStore;
  /** Jobs and their per-device rows. */
  readonly jobs: JobStore;
  /** File upload notifications waiting for the service. */
  readonly fileNotifications: FileNotificationStore;
  close(): Promise<void>;
}
