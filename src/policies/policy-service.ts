/**
 * Shared access policies: create, change rights, delete, regenerate a key (at most 16 per hub,
 * like Azure). A change takes effect at once on every node (`policy.changed`): the policy cache
 * forgets the policy, and device sessions that authenticated with a policy-signed token of a
 * changed or deleted policy close (session-guard.ts).
 * Change events carry rights, never keys.
 */
import { HubError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import { RIGHTS, type Right, type SharedAccessPolicy } from '../core/types.js';
import { newEtag } from '../core/ids.js';
import { OWNER_RIGHTS, isOwnerLevel, newSymmetricKey } from '../auth/policies.js';
import type { PolicyCache } from '../auth/service-authenticator.js';
import { SUBJECTS, type HubBus, type PolicyChanged } from '../bus/subjects.js';
import type { PolicyStore } from '../store/ports.js';
import type { SecurityEvents } from '../core/security-events.js';
import type { OperatorService } from '../access/operators.js';

export const MAX_POLICIES = 16;
const POLICY_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function renderPolicy(p: SharedAccessPolicy, withKeys: boolean): Record<string, unknown> {
  return {
    keyName: p.name,
    rights: p.rights.join(', '),
    ...(withKeys ? { primaryKey: p.primaryKey, secondaryKey: p.secondaryKey } : {}),
  };
}

export function parseRights(raw: unknown): Right[] {
  const list = typeof raw === 'string' ? raw.split(/[\s,]+/).filter((r) => r !== '') : Array.isArray(raw) ? raw : undefined;
  if (list === undefined || list.length === 0) throw new HubError('ArgumentInvalid', `rights must name at least one of ${RIGHTS.join(', ')}.`);
  const out = new Set<Right>();
  for (const r of list) {
    const hit = RIGHTS.find((x) => typeof r === 'string' && x.toLowerCase() === r.toLowerCase());
    if (hit === undefined) throw new HubError('ArgumentInvalid', `Unknown right '${String(r).slice(0, 40)}'; rights are ${RIGHTS.join(', ')}.`);
    out.add(hit);
  }
  return [...out];
}

export class PolicyService {
  constructor(
    private readonly store: PolicyStore & { deletePolicy(name: string, ifMatch: string): Promise<void> },
    private readonly cache: PolicyCache,
    private readonly bus: HubBus,
    private readonly operators: OperatorService,
    private readonly events: SecurityEvents,
    private readonly clock: Clock,
  ) {
    bus.subscribe(SUBJECTS.policyChanged, (c) => this.cache.invalidate(c.name));
    bus.subscribe(SUBJECTS.busResync, () => this.cache.invalidate());
  }

  list(): Promise<SharedAccessPolicy[]> {
    return this.store.listPolicies();
  }

  async get(name: string): Promise<SharedAccessPolicy> {
    const p = await this.store.getPolicy(name);
    if (p === undefined) throw new HubError('PolicyNotFound', `No shared access policy named ${name.slice(0, 64)}.`);
    return p;
  }

  /** Creates the policy, or replaces its rights (keys stay). */
  async put(name: string, rightsRaw: unknown, actor: string, ifMatch?: string): Promise<{ policy: SharedAccessPolicy; created: boolean }> {
    if (!POLICY_NAME.test(name)) throw new HubError('ArgumentInvalid', `Policy name '${name.slice(0, 70)}' must be 1-64 of letters, digits, _ . -`);
    const rights = parseRights(rightsRaw);
    const all = await this.store.listPolicies();
    const existing = all.find((p) => p.name.toLowerCase() === name.toLowerCase());
    if (existing === undefined) {
      if (all.length >= MAX_POLICIES) throw new HubError('PolicyLimitExceeded', `This hub already has ${MAX_POLICIES} shared access policies; delete one first.`);
      const policy: SharedAccessPolicy = { name, rights, primaryKey: newSymmetricKey(), secondaryKey: newSymmetricKey(), etag: newEtag() };
      await this.store.putPolicy(policy);
      this.bus.publish(SUBJECTS.policyChanged, { name: policy.name, change: 'created' });
      this.#changed('policy.create', policy.name, undefined, policy, actor);
      return { policy, created: true };
    }
    this.#assertAdminRemains(all.map((p) => (p === existing ? { ...p, rights } : p)));
    const policy = { ...existing, rights, etag: newEtag() };
    await this.store.putPolicy(policy, ifMatch ?? existing.etag);
    this.#after(existing, 'updated', 'rights changed');
    this.#changed('policy.update', policy.name, existing, policy, actor);
    return { policy, created: false };
  }

  async delete(name: string, actor: string, ifMatch?: string): Promise<void> {
    const all = await this.store.listPolicies();
    const existing = all.find((p) => p.name.toLowerCase() === name.toLowerCase());
    if (existing === undefined) throw new HubError('PolicyNotFound', `No shared access policy named ${name.slice(0, 64)}.`);
    this.#assertAdminRemains(all.filter((p) => p !== existing));
    await this.store.deletePolicy(existing.name, ifMatch ?? existing.etag);
    this.#after(existing, 'deleted', 'policy deleted');
    this.#changed('policy.delete', existing.name, existing, undefined, actor);
  }

  /** New random key in one slot: every token signed with the old one stops working now. */
  async regenerateKey(name: string, keyType: string, actor: string): Promise<SharedAccessPolicy> {
    if (keyType !== 'primary' && keyType !== 'secondary') throw new HubError('ArgumentInvalid', `keyType must be primary or secondary.`);
    const existing = await this.get(name);
    const policy = { ...existing, ...(keyType === 'primary' ? { primaryKey: newSymmetricKey() } : { secondaryKey: newSymmetricKey() }), etag: newEtag() };
    await this.store.putPolicy(policy, existing.etag);
    this.#after(existing, 'keys-renewed', `${keyType} key regenerated`);
    this.#changed(`policy.renew-key`, policy.name, { keyType }, { keyType }, actor);
    return policy;
  }

  /** Some owner-level policy, or an enabled Owner, must remain; else nobody administers the hub. */
  #assertAdminRemains(after: SharedAccessPolicy[]): void {
    if (this.operators.hasEnabledOwner()) return;
    if (after.some((p) => isOwnerLevel(p.rights))) return;
    throw new HubError('SettingsLockout', `No owner-level policy (${OWNER_RIGHTS.join(', ')}) and no Owner operator would remain; nobody could administer the hub.`);
  }

  /** This node forgets the policy before the caller hears back; every node (this one too) hears of it on the bus. */
  #after(policy: SharedAccessPolicy, change: PolicyChanged['change'], why: string): void {
    this.cache.invalidate(policy.name);
    this.bus.publish(SUBJECTS.policyChanged, { name: policy.name, change, dropSessions: `shared access policy ${policy.name}: ${why}` });
  }

  #changed(action: string, name: string, before: unknown, after: unknown, actor: string): void {
    const view = (p: unknown) =>
      p !== null && typeof p === 'object' && 'rights' in (p as object) ? { keyName: (p as SharedAccessPolicy).name, rights: (p as SharedAccessPolicy).rights } : (p as Record<string, string> | undefined);
    this.events.emit({
      type: 'change',
      at: this.clock.now(),
      actor,
      action,
      target: `policies/${name}`,
      ...(before === undefined ? {} : { before: view(before) ?? null }),
      ...(after === undefined ? {} : { after: view(after) ?? null }),
    });
  }
}
