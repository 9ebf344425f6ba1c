/**
 * The one authorization decision for service callers, shared by the HTTPS edge and the AMQP
 * service links. A requirement is either a data action with the policy rights any one of which
 * allows it (least first), or an owner action, which a policy reaches only with every owner right
 * (OWNER_RIGHTS) and an operator only through the Owner role. Deny by default; the decision says
 * which rights the request used, so policy usage records what was needed and nothing more.
 */
import { OWNER_RIGHTS } from '../auth/policies.js';
import type { Right } from '../core/types.js';
import type { Principal } from './gate.js';
import { rolesAllow, type DataAction, type OwnerAction } from './roles.js';

export type Requirement =
  | { readonly kind: 'service'; readonly anyOf: readonly Right[]; readonly action: DataAction }
  | { readonly kind: 'owner'; readonly action: OwnerAction };

export type Decision = { readonly allowed: true; readonly used: readonly Right[] } | { readonly allowed: false; readonly reason: string };

export function authorize(principal: Principal, need: Requirement): Decision {
  if (principal.kind === 'operator') {
    return rolesAllow(principal.roles, need.action) ? { allowed: true, used: [] } : { allowed: false, reason: `operator ${principal.name} has no role allowing ${need.action}` };
  }
  if (need.kind === 'owner') {
    const missing = OWNER_RIGHTS.filter((r) => !principal.rights.has(r));
    if (missing.length > 0) return { allowed: false, reason: `policy ${principal.name} lacks ${missing.join(', ')} (${need.action} is owner-level: ${OWNER_RIGHTS.join(', ')})` };
    return { allowed: true, used: OWNER_RIGHTS };
  }
  const used = need.anyOf.find((r) => principal.rights.has(r));
  return used === undefined ? { allowed: false, reason: `policy ${principal.name} lacks ${need.anyOf.join(' or ')}` } : { allowed: true, used: [used] };
}
