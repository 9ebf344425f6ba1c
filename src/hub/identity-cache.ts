/**
 * The device and module records a connect authenticates against, kept in memory so a connect does
 * not read (and decrypt) its identity from the store each time (issue 19, item 4).
 *
 * Safety, in order of importance:
 * - Every change to an identity is announced on the bus (`identity.changed`: an update of keys,
 *   thumbprints or status, a delete), on every node; the entry goes at once, on every node, before
 *   the next connect reads it. A change the bus may have lost (it was away: `bus.resync`) empties
 *   the cache. The window left is the bus's own latency between the store's commit on one node and
 *   the notification on another, the same one in which session-guard.ts drops live sessions.
 * - A read that started before a change and ends after it is not kept (an epoch counts changes).
 * - Entries expire after `ttlMs` anyway (a notification lost without a resync).
 * - Only what authentication reads (no twin, no state). An unknown id is remembered as unknown,
 *   in the same bounded map: were it read from the store every time, a known id's second refusal
 *   would come back faster than an unknown one's, and the time would tell an attacker without a
 *   credential which devices exist. A create is announced like a change (`identity.changed`,
 *   credentialsOrStatus false), so the new identity is read at its first connect on every node.
 *   At most `maxEntries` (ids tried by anyone count): the oldest go first, so a flood of names
 *   costs a bounded map and store reads, never a refusal of a real device.
 */
import { SUBJECTS, type HubBus, type IdentityChanged } from '../bus/subjects.js';
import type { AuthDevice, AuthModule, DeviceLookups } from '../auth/device-authenticator.js';
import type { Clock } from '../core/clock.js';
import type { DeviceRecord, ModuleRecord, SharedAccessPolicy } from '../core/types.js';

export interface IdentitySource {
  findDevice(deviceId: string): Promise<DeviceRecord | undefined>;
  findModule(deviceId: string, moduleId: string): Promise<ModuleRecord | undefined>;
  findPolicy(name: string): Promise<SharedAccessPolicy | undefined>;
}

export interface IdentityCacheOptions {
  maxEntries: number;
  ttlMs: number;
}

export const DEFAULT_IDENTITY_CACHE: IdentityCacheOptions = { maxEntries: 100_000, ttlMs: 60_000 };

interface Entry<T> {
  /** null: the id is not in the registry. */
  value: T | null;
  at: number;
}

function slimDevice(d: DeviceRecord): AuthDevice {
  return { deviceId: d.deviceId, generationId: d.generationId, status: d.status, auth: d.auth, origin: d.origin };
}

function slimModule(m: ModuleRecord): AuthModule {
  return { deviceId: m.deviceId, moduleId: m.moduleId, generationId: m.generationId, auth: m.auth };
}

export class IdentityCache implements DeviceLookups {
  readonly #devices = new Map<string, Entry<AuthDevice>>();
  /** Per device, its modules' entries (a device's change drops them all). */
  readonly #modules = new Map<string, Map<string, Entry<AuthModule>>>();
  #moduleCount = 0;
  #epoch = 0;

  constructor(
    private readonly source: IdentitySource,
    bus: HubBus,
    private readonly clock: Clock,
    private readonly opts: IdentityCacheOptions = DEFAULT_IDENTITY_CACHE,
  ) {
    bus.subscribe(SUBJECTS.identityChanged, (change) => this.forget(change));
    bus.subscribe(SUBJECTS.busResync, () => this.clear());
    // An expired entry is never served, only replaced: without this, every identity that ever
    // connected would stay (up to maxEntries, keys included) after its devices went idle.
    setInterval(() => this.purgeExpired(), opts.ttlMs).unref();
  }

  /** Drops the entries past ttlMs (the hub does this every ttlMs); returns how many went. */
  purgeExpired(): number {
    const oldest = this.clock.now() - this.opts.ttlMs;
    let n = 0;
    // Devices are in the order they were put (a put moves its entry to the end): the expired are first.
    for (const [id, e] of this.#devices) {
      if (e.at > oldest) break;
      this.#devices.delete(id);
      n++;
    }
    for (const [deviceId, mods] of this.#modules) {
      for (const [moduleId, e] of mods) {
        if (e.at > oldest) continue;
        mods.delete(moduleId);
        this.#moduleCount--;
        n++;
      }
      if (mods.size === 0) this.#modules.delete(deviceId);
    }
    return n;
  }

  async findDevice(deviceId: string): Promise<AuthDevice | undefined> {
    const hit = this.#devices.get(deviceId);
    if (hit !== undefined && this.clock.now() - hit.at < this.opts.ttlMs) return hit.value ?? undefined;
    const epoch = this.#epoch;
    const d = await this.source.findDevice(deviceId);
    const value = d === undefined ? null : slimDevice(d);
    if (epoch === this.#epoch) this.#putDevice(deviceId, value);
    else this.#devices.delete(deviceId);
    return value ?? undefined;
  }

  async findModule(deviceId: string, moduleId: string): Promise<AuthModule | undefined> {
    const hit = this.#modules.get(deviceId)?.get(moduleId);
    if (hit !== undefined && this.clock.now() - hit.at < this.opts.ttlMs) return hit.value ?? undefined;
    const epoch = this.#epoch;
    const m = await this.source.findModule(deviceId, moduleId);
    const value = m === undefined ? null : slimModule(m);
    if (epoch === this.#epoch) this.#putModule(deviceId, moduleId, value);
    else this.#forgetModule(deviceId, moduleId);
    return value ?? undefined;
  }

  /** Policies are few and have their own cache where it matters (service-side); read through. */
  findPolicy(name: string): Promise<SharedAccessPolicy | undefined> {
    return this.source.findPolicy(name);
  }

  /** An identity changed somewhere in the cluster: its entries (a device's with its modules') go. */
  forget(change: IdentityChanged): void {
    this.#epoch++;
    if (change.kind === 'module-updated' || change.kind === 'module-deleted') {
      this.#forgetModule(change.deviceId, change.moduleId);
      return;
    }
    this.#devices.delete(change.deviceId);
    const mods = this.#modules.get(change.deviceId);
    if (mods !== undefined) {
      this.#moduleCount -= mods.size;
      this.#modules.delete(change.deviceId);
    }
  }

  clear(): void {
    this.#epoch++;
    this.#devices.clear();
    this.#modules.clear();
    this.#moduleCount = 0;
  }

  /** Entries held (devices + modules). */
  get size(): number {
    return this.#devices.size + this.#moduleCount;
  }

  #putDevice(deviceId: string, value: AuthDevice | null): void {
    this.#devices.delete(deviceId);
    this.#devices.set(deviceId, { value, at: this.clock.now() });
    this.#evict();
  }

  #putModule(deviceId: string, moduleId: string, value: AuthModule | null): void {
    let mods = this.#modules.get(deviceId);
    if (mods === undefined) {
      mods = new Map();
      this.#modules.set(deviceId, mods);
    }
    if (!mods.has(moduleId)) this.#moduleCount++;
    mods.set(moduleId, { value, at: this.clock.now() });
    this.#evict();
  }

  #forgetModule(deviceId: string, moduleId: string): void {
    const mods = this.#modules.get(deviceId);
    if (mods?.delete(moduleId) !== true) return;
    this.#moduleCount--;
    if (mods.size === 0) this.#modules.delete(deviceId);
  }

  /** Oldest first: devices in insertion order, then whole module groups. */
  #evict(): void {
    while (this.size > this.opts.maxEntries) {
      const oldestDevice = this.#devices.keys().next();
      if (!oldestDevice.done && this.#devices.size > this.#moduleCount) {
        this.#devices.delete(oldestDevice.value);
        continue;
      }
      const oldestModules = this.#modules.entries().next();
      if (oldestModules.done) {
        if (oldestDevice.done) return;
        this.#devices.delete(oldestDevice.value);
        continue;
      }
      this.#moduleCount -= oldestModules.value[1].size;
      this.#modules.delete(oldestModules.value[0]);
    }
  }
}
