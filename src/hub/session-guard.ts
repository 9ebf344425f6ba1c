/**
 * Which live sessions a change ends, decided in one place: every node subscribes, so a device
 * disabled, deleted or re-keyed through one node loses its session on whichever node holds it.
 * Revocation bites at once, not at the next reconnect (Azure drops them at once; so do we).
 */
import type { BusSubscription } from '../bus/bus.js';
import { SUBJECTS, type HubBus, type IdentityChanged } from '../bus/subjects.js';
import { normalizeSerial } from '../pki/crl.js';
import { keyFingerprint } from '../auth/sas.js';
import type { DeviceRecord, ModuleRecord } from '../core/types.js';
import type { ConnectionTable, LiveSession } from './connections.js';

export type SessionGuardLog = (fields: Record<string, unknown>, msg: string) => void;

/** What a session is checked against when a notification may have been lost (the store's word). */
export interface SessionLookup {
  device(deviceId: string): Promise<DeviceRecord | undefined>;
  module(deviceId: string, moduleId: string): Promise<ModuleRecord | undefined>;
  /** True when the certificate with this serial is one Gatehouse issued and has revoked. */
  revoked(serial: string): Promise<boolean>;
}

export class SessionGuard {
  readonly #subs: BusSubscription[] = [];

  constructor(
    private readonly connections: ConnectionTable,
    bus: HubBus,
    private readonly log: SessionGuardLog,
    private readonly lookup: SessionLookup,
  ) {
    this.#subs.push(
      bus.subscribe(SUBJECTS.busResync, async () => void (await this.recheck())),
      bus.subscribe(SUBJECTS.identityChanged, (change) => this.#identityChanged(change)),
      bus.subscribe(SUBJECTS.certificatesRevoked, (r) => this.#revoked(r.certificates.map((c) => c.serial))),
      bus.subscribe(SUBJECTS.policyChanged, (c) => {
        if (c.dropSessions === undefined) return;
        const name = c.name.toLowerCase();
        const n = this.connections.dropWhere((s) => s.authMethod === 'policy-sas' && s.policyName?.toLowerCase() === name, c.dropSessions);
        if (n > 0) this.log({ event: 'sessions.dropped', policy: c.name, change: c.change, sessions: n }, 'dropped live sessions');
      }),
    );
  }

  /** A revoked certificate loses its live sessions at once, not at the next reconnect. */
  #revoked(serials: string[]): void {
    const set = new Set(serials.map(normalizeSerial));
    const n = this.connections.dropWhere((s) => s.certificateSerial !== undefined && set.has(normalizeSerial(s.certificateSerial)), 'certificate revoked');
    this.log({ event: 'certificates.revoked', serials: [...set], sessions: n }, 'revoked certificates');
  }

  #identityChanged(change: IdentityChanged): void {
    const drop = change.kind === 'device-deleted' || change.kind === 'module-deleted' || change.credentialsOrStatus;
    if (!drop) return;
    if (change.kind === 'device-updated' && change.keepThumbprints !== undefined) {
      // A thumbprint rotation: only sessions on a certificate no longer listed go.
      const keep = new Set(change.keepThumbprints);
      const n = this.connections.dropWhere(
        (s) => s.deviceId === change.deviceId && s.moduleId === null && !(s.certificateThumbprints ?? []).some((t) => keep.has(t)),
        'certificate no longer registered',
      );
      if (n > 0) this.log({ event: 'sessions.dropped', deviceId: change.deviceId, change: 'thumbprint-rotation', sessions: n }, 'dropped live sessions');
      return;
    }
    const n =
      change.kind === 'device-deleted' || change.kind === 'device-updated'
        ? this.connections.dropDevice(change.deviceId, `identity ${change.kind}`)
        : Number(this.connections.dropModule(change.deviceId, change.moduleId, `identity ${change.kind}`));
    if (n > 0) this.log({ event: 'sessions.dropped', deviceId: change.deviceId, change: change.kind, sessions: n }, 'dropped live sessions');
  }

  /**
   * Checks every live session against the store, for the changes whose notification may have been
   * lost while the bus was away: an identity deleted or disabled, a module deleted, a self-signed
   * certificate no longer registered, a certificate revoked, a SAS identity re-keyed (the session
   * keeps a fingerprint of the key it proved).
   */
  async recheck(): Promise<number> {
    // Grouped by reason: one pass over the sessions per reason, not one per doomed session.
    const doomed = new Map<string, Set<LiveSession>>();
    for (const s of [...this.connections.sessions()]) {
      const why = await this.#invalid(s).catch(() => undefined);
      if (why !== undefined) doomed.set(why, (doomed.get(why) ?? new Set()).add(s));
    }
    let n = 0;
    for (const [why, sessions] of doomed) n += this.connections.dropWhere((x) => sessions.has(x), why);
    if (n > 0) this.log({ event: 'sessions.dropped', change: 'recheck', sessions: n }, 'dropped live sessions after a recheck');
    return n;
  }

  async #invalid(s: LiveSession): Promise<string | undefined> {
    const device = await this.lookup.device(s.deviceId);
    if (device === undefined) return 'identity deleted';
    if (device.status !== 'enabled') return 'identity disabled';
    let auth = device.auth;
    if (s.moduleId !== null) {
      const mod = await this.lookup.module(s.deviceId, s.moduleId);
      if (mod === undefined) return 'identity deleted';
      auth = mod.auth;
    }
    if (s.authMethod === 'sas' && s.keyFingerprint !== undefined) {
      const keys = auth.type === 'sas' ? [auth.primaryKey, auth.secondaryKey].filter((k): k is string => k !== null && k !== '') : [];
      if (!keys.some((k) => keyFingerprint(k) === s.keyFingerprint)) return 'identity re-keyed';
    }
    if (auth.type === 'selfSigned' && s.certificateThumbprints !== undefined) {
      const listed = new Set([auth.primaryThumbprint, auth.secondaryThumbprint].filter((t): t is string => t !== null));
      if (!s.certificateThumbprints.some((t) => listed.has(t))) return 'certificate no longer registered';
    }
    if (s.certificateSerial !== undefined && (await this.lookup.revoked(s.certificateSerial))) return 'certificate revoked';
    return undefined;
  }

  close(): void {
    for (const s of this.#subs.splice(0)) s.unsubscribe();
  }
}
