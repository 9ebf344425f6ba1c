/**
 * Role-based access for operators, in the shape of Azure's IoT Hub data-plane roles [DOCS: Control
 * access to IoT Hub by using Microsoft Entra ID]: every REST route needs one action
 * (`devices/write`, `twins/read`, ..., see protocol/http/route-access.ts), each built-in role is a
 * set of actions, and an operator may call a route when one of its role assignments allows the
 * route's action. Deny by default.
 *
 * Actions come in two kinds. Data actions are Azure's data plane and the built-in data roles hold
 * them. Owner actions are the ones that mint or destroy trust (create a CA, upload one, sign a
 * device certificate, export a CA key, revoke, manage EST factory credentials) or run the hub
 * (settings, policies, operators, roles, audit log, alerts): in Azure most are the control plane
 * (ARM), which no data-plane role reaches. Only Owner holds them; the types keep it so.
 */

export const ROLE_NAMES = [
  'Owner',
  'IoT Hub Data Contributor',
  'IoT Hub Data Reader',
  'IoT Hub Registry Contributor',
  'IoT Hub Twin Contributor',
] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

/** Azure's data actions (Microsoft.Devices/IotHubs/...), plus Gatehouse's readers of its own data. */
export const DATA_ACTIONS = [
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
  'enrollments/read',
  'enrollments/write',
  'registrations/read',
  'registrations/write',
  'metrics/read',
  'configurations/read',
  'configurations/write',
  'configurations/delete',
  'configurations/testQueries',
  'jobs/read',
  'jobs/write',
] as const;
export type DataAction = (typeof DATA_ACTIONS)[number];

/** Owner-only. `hub/admin`: settings, posture, policies, operators, roles, audit log, alerts. */
export const OWNER_ACTIONS = [
  'certificates/write',
  'certificates/sign',
  'certificates/exportKey',
  'certificates/revoke',
  'estCredentials/read',
  'estCredentials/write',
  'hub/admin',
] as const;
export type OwnerAction = (typeof OWNER_ACTIONS)[number];

export type Action = DataAction | OwnerAction;
export const ACTIONS: readonly Action[] = [...DATA_ACTIONS, ...OWNER_ACTIONS];

const DATA_READ: readonly DataAction[] = [
  'devices/read',
  'twins/read',
  'events/read',
  'statistics/read',
  'certificates/read',
  'enrollments/read',
  'registrations/read',
  'metrics/read',
  'configurations/read',
  'jobs/read',
];

/** Owner holds everything; every other role only data actions (an owner action there does not type-check). */
export const ROLE_ACTIONS: { readonly Owner: readonly Action[] } & Record<Exclude<RoleName, 'Owner'>, readonly DataAction[]> = {
  Owner: ACTIONS,
  'IoT Hub Data Contributor': DATA_ACTIONS,
  'IoT Hub Data Reader': DATA_READ,
  'IoT Hub Registry Contributor': ['devices/read', 'devices/write', 'devices/delete', 'statistics/read'],
  'IoT Hub Twin Contributor': ['twins/read', 'twins/write'],
};

export const ROLE_DESCRIPTIONS: Record<RoleName, string> = {
  Owner: 'Everything: the data plane, and the CA (create, sign, export keys, revoke), EST factory credentials, hub settings, policies, role assignments, operators, the audit log and alerts',
  'IoT Hub Data Contributor': 'Full data-plane access: registry, twins, methods, C2D, events, provisioning; reads certificates',
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

/** Does any of the roles allow the action? */
export function rolesAllow(roles: Iterable<RoleName>, action: Action): boolean {
  for (const r of roles) if ((ROLE_ACTIONS[r] as readonly Action[]).includes(action)) return true;
  return false;
}
