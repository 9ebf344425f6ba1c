/**
 * Which live sessions a change ends, decided in one place: every node subscribes, so a device
 * disabled, deleted or re-keyed through one node loses its session on whichever node holds it.
 * Revocation bites at once, not at the next reconnect (Azure drops them at once; so do we).
 */
import type { BusSubscription } from '../bus/bus.js';
import { SUBJECTS, type HubBus, type IdentityChanged } from '../bus/subjects.js';
import { normalizeSerial } from '../pki/crl.js';
import type { ConnectionRegistry } from './connections.js';

export type SessionGuardLog = (fields: Record<string, unknown>, msg: string) => void;

export class SessionGuard {
  readonly #subs: BusSubscription[] = [];

  constructor(
    private readonly connections: ConnectionRegistry,
    bus: HubBus,
    private readonly log: SessionGuardLog,
  ) {
    this.#subs.push(
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

  close(): void {
    for (const s of this.#subs.splice(0)) s.unsubscribe();
  }
}
