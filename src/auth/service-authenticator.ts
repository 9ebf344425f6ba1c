/**
 * Authenticates service-side callers (REST) from a policy SAS token and answers which rights
 * they hold. Deny by default: any doubt is a 401 that looks the same whatever the reason; the
 * reason goes to the log through the error's cause.
 */
import { unauthorized } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { Right, SharedAccessPolicy } from '../core/types.js';
import { parseSasToken, pathCovers, resourcePathForHost, signatureMatches } from './sas.js';

export interface PolicyLookup {
  findPolicy(name: string): Promise<SharedAccessPolicy | undefined>;
}

export interface ServicePrincipal {
  kind: 'policy';
  name: string;
  rights: ReadonlySet<Right>;
}

/** Short-lived cache of policies: one store read per policy every few seconds, not per request. */
export class PolicyCache implements PolicyLookup {
  readonly #entries = new Map<string, { policy: SharedAccessPolicy | undefined; until: number }>();

  constructor(
    private readonly source: PolicyLookup,
    private readonly clock: Clock,
    private readonly ttlMs = 5000,
  ) {}

  async findPolicy(name: string): Promise<SharedAccessPolicy | undefined> {
    const now = this.clock.now();
    const hit = this.#entries.get(name);
    if (hit !== undefined && hit.until > now) return hit.policy;
    const policy = await this.source.findPolicy(name);
    if (this.#entries.size > 64) this.#entries.clear();
    this.#entries.set(name, { policy, until: now + this.ttlMs });
    return policy;
  }

  invalidate(name?: string): void {
    if (name === undefined) this.#entries.clear();
    else this.#entries.delete(name);
  }
}

// A key no policy has, so an unknown policy name costs the same HMAC work as a wrong key.
const DECOY_KEY = Buffer.alloc(32, 7).toString('base64');

export class ServiceAuthenticator {
  constructor(
    private readonly policies: PolicyLookup,
    private readonly hostname: () => string,
    private readonly clock: Clock,
  ) {}

  /** `targetPath` is the request path, e.g. `/devices/d1`. */
  async authenticate(authorization: string | undefined, targetPath: string): Promise<ServicePrincipal> {
    const token = parseSasToken(authorization);
    if (token.keyName === undefined) throw unauthorized('service call with a device-scoped token');
    const policy = await this.policies.findPolicy(token.keyName);
    const keys = policy === undefined ? [DECOY_KEY] : [policy.primaryKey, policy.secondaryKey];
    const signed = signatureMatches(token, keys);
    if (policy === undefined) throw unauthorized(`unknown policy ${token.keyName}`);
    if (!signed) throw unauthorized(`bad signature for policy ${policy.name}`);
    if (token.expiry * 1000 <= this.clock.now()) throw unauthorized(`expired token for policy ${policy.name}`);
    const scope = resourcePathForHost(token.resource, this.hostname());
    if (scope === undefined) throw unauthorized(`token for another host (${token.resource.slice(0, 80)})`);
    if (!pathCovers(scope, targetPath)) throw unauthorized(`token scope ${scope} does not cover ${targetPath}`);
    return { kind: 'policy', name: policy.name, rights: new Set(policy.rights) };
  }
}
