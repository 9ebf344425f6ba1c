/**
 * Role-based access for operators, in the shape of Azure's IoT Hub data-plane roles: every REST
 * route maps to one data action (`devices/write`, `twins/read`, ...), each built-in role is a set
 * of action patterns, and an operator may call a route when one of its role assignments allows
 * the route's action. Deny by default: a route without a mapping is allowed to Owner only.
 */

export const ROLE_NAMES = [
  'Owner',
  'IoT Hub Data Contributor',
  'IoT Hub Data Reader',
  'IoT Hub Registry Contributor',
  'IoT Hub Twin Contributor',
] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

/** Every action a route can need. `hub/admin`: settings, policies, roles, operators, audit log, alerts. */
export const ACTIONS = [
  'devices/read',
  'devices/write',
  'devices/delete',
  'twins/read',
  'twins/write',
  'directMethods/invoke',
  'cloudToDeviceMessages/send',
  'cloudToDeviceMessages/feedback',
  'cloudToDeviceMessages/queue/purge',
  'events/read',
  'statistics/read',
  'certificates/read',
  'certificates/write',
  'certificates/exportKey',
  'enrollments/read',
  'enrollments/write',
  'registrations/read',
  'registrations/write',
  'metrics/read',
  'hub/admin',
] as const;
export type Action = (typeof ACTIONS)[number];

const DATA_READ: Action[] = [
  'devices/read',
  'twins/read',
  'events/read',
  'statistics/read',
  'certificates/read',
  'enrollments/read',
  'registrations/read',
  'metrics/read',
];

export const ROLE_ACTIONS: Record<RoleName, readonly Action[]> = {
  Owner: ACTIONS,
  'IoT Hub Data Contributor': ACTIONS.filter((a) => a !== 'hub/admin' && a !== 'certificates/exportKey'),
  'IoT Hub Data Reader': DATA_READ,
  'IoT Hub Registry Contributor': ['devices/read', 'devices/write', 'devices/delete', 'statistics/read'],
  'IoT Hub Twin Contributor': ['twins/read', 'twins/write'],
};

export const ROLE_DESCRIPTIONS: Record<RoleName, string> = {
  Owner: 'Everything, including hub settings, policies, role assignments, operators, the audit log and alerts',
  'IoT Hub Data Contributor': 'Full data-plane access: registry, twins, methods, C2D, events, certificates, provisioning',
  'IoT Hub Data Reader': 'Read-only data-plane access',
  'IoT Hub Registry Contributor': 'Create, update and delete device and module identities',
  'IoT Hub Twin Contributor': 'Read and update device and module twins',
};

export function isRoleName(name: string): name is RoleName {
  return (ROLE_NAMES as readonly string[]).includes(name);
}

/** Case-insensitive role lookup (`az` accepts any case). */
export function roleByName(name: string): RoleName | undefined {
  return ROLE_NAMES.find((r) => r.toLowerCase() === name.trim().toLowerCase());
}

interface RouteRule {
  pattern: RegExp;
  action: (method: string) => Action;
}

const byMethod =
  (read: Action, write: Action, del: Action = write) =>
  (method: string): Action =>
    method === 'GET' || method === 'HEAD' ? read : method === 'DELETE' ? del : write;
const always = (a: Action) => () => a;

/** First match wins; patterns are over Fastify's route url, lower-cased. */
const ROUTES: RouteRule[] = [
  { pattern: /^\/twins\/:id(\/modules\/:mid)?\/methods$/, action: always('directMethods/invoke') },
  { pattern: /^\/twins\//, action: byMethod('twins/read', 'twins/write') },
  { pattern: /^\/devices\/query$/, action: always('twins/read') },
  { pattern: /^\/devices\/:id\/messages\/devicebound$/, action: always('cloudToDeviceMessages/send') },
  { pattern: /^\/devices\/:id\/commands$/, action: always('cloudToDeviceMessages/queue/purge') },
  { pattern: /^\/messages\/servicebound\/feedback$/, action: always('cloudToDeviceMessages/feedback') },
  { pattern: /^\/devices(\/|$)/, action: byMethod('devices/read', 'devices/write', 'devices/delete') },
  { pattern: /^\/statistics\//, action: always('statistics/read') },
  { pattern: /^\/events$/, action: always('events/read') },
  { pattern: /^\/certificateauthorities\/:name\/exportkey$/, action: always('certificates/exportKey') },
  { pattern: /^\/(certificates|certificateauthorities|est\/credentials)(\/|$)/, action: byMethod('certificates/read', 'certificates/write') },
  { pattern: /^\/(enrollments|enrollmentgroups)(\/:id)?\/(query|attestationmechanism)$/, action: always('enrollments/read') },
  { pattern: /^\/(enrollments|enrollmentgroups)\/query$/, action: always('enrollments/read') },
  { pattern: /^\/(enrollments|enrollmentgroups)(\/|$)/, action: byMethod('enrollments/read', 'enrollments/write') },
  { pattern: /^\/registrations\/:id\/query$/, action: always('registrations/read') },
  { pattern: /^\/registrations(\/|$)/, action: byMethod('registrations/read', 'registrations/write') },
  { pattern: /^\/metrics$/, action: always('metrics/read') },
];

/** The data action a route needs; `hub/admin` for administration routes and anything unmapped. */
export function actionFor(method: string, routeUrl: string, admin: boolean): Action {
  if (admin) return 'hub/admin';
  const url = routeUrl.toLowerCase();
  for (const r of ROUTES) if (r.pattern.test(url)) return r.action(method.toUpperCase());
  return 'hub/admin';
}

/** Does any of the roles allow the action? */
export function rolesAllow(roles: Iterable<RoleName>, action: Action): boolean {
  for (const r of roles) if (ROLE_ACTIONS[r].includes(action)) return true;
  return false;
}
