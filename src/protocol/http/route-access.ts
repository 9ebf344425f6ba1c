/**
 * Who may call each HTTPS route, in one table: the least policy right(s) and the operator action
 * for every service route, and which routes are public or device-facing. The onRequest hook
 * (app.ts) reads nothing else; a route missing from the table, or a table entry no route matches,
 * stops the app from being built (guardRouteAccess), so no route can be added without a decision.
 *
 * Policy rights follow Azure's table [DOCS: Control access to IoT Hub with shared access
 * signatures]: RegistryRead reads the identity registry, RegistryWrite ("read and write access")
 * writes it and reads it too, ServiceConnect is the cloud-facing service API (C2D and feedback,
 * twins, methods, query, reading telemetry), DeviceConnect the device-facing endpoints. The DPS
 * service API takes DPS's own rights [DOCS: Control access to Azure IoT Hub Device Provisioning
 * Service], which the provisioning service SDK's connection string (provisioningserviceowner) holds.
 *
 * Owner-level (OWNER_RIGHTS for a policy, the Owner role for an operator), whatever the path:
 * creating, uploading, verifying or deleting a CA; signing a device certificate; exporting a CA
 * key; revoking; EST factory credentials (each can mint device identities); hub administration.
 * Revocation is the owner's because it is permanent and, given an intermediate's serial, takes
 * down every device that CA signed, as deleting the CA would; stopping one device at once stays
 * with the registry writers (disable or delete the device: RegistryWrite, Registry Contributor).
 */
import type { FastifyInstance } from 'fastify';
import type { Right } from '../../core/types.js';
import type { Requirement } from '../../access/access.js';
import type { DataAction, OwnerAction } from '../../access/roles.js';

export type RouteAccess =
  /** No service credential is read: the route authenticates its own callers (EST, DPS device API) or serves public data. */
  | { readonly kind: 'public' }
  /** Device HTTPS: the device's own SAS token or client certificate, for the device in `:id` only. */
  | { readonly kind: 'device' }
  | Requirement;

const PUBLIC: RouteAccess = { kind: 'public' };
const DEVICE: RouteAccess = { kind: 'device' };
/** Any one of the rights; the first the policy holds is the one recorded as used. */
const service = (action: DataAction, ...anyOf: Right[]): RouteAccess => ({ kind: 'service', action, anyOf });
const owner = (action: OwnerAction): RouteAccess => ({ kind: 'owner', action });

/** RegistryWrite grants read and write access to the identity registry. */
const REGISTRY_READ: Right[] = ['RegistryRead', 'RegistryWrite'];
const ADMIN = owner('hub/admin');

/** Keys are `METHOD url` exactly as the route is registered (HEAD follows GET). */
export const ROUTE_ACCESS: Readonly<Record<string, RouteAccess>> = {
  'GET /health': PUBLIC,
  'GET /health/ready': PUBLIC,
  'GET /metrics': service('metrics/read', ...REGISTRY_READ),

  // identity registry (routes/devices.ts, routes/modules.ts)
  'PUT /devices/:id': service('devices/write', 'RegistryWrite'),
  'GET /devices/:id': service('devices/read', ...REGISTRY_READ),
  'DELETE /devices/:id': service('devices/delete', 'RegistryWrite'),
  'GET /devices': service('devices/read', ...REGISTRY_READ),
  // Bulk create, update and delete; every built-in role with devices/write holds devices/delete too.
  'POST /devices': service('devices/write', 'RegistryWrite'),
  // import and export of device identities (routes/registry-jobs.ts): writing (and reading) the whole registry
  'POST /jobs/create': service('devices/write', 'RegistryWrite'),
  'GET /jobs': service('devices/read', ...REGISTRY_READ),
  'GET /jobs/:id': service('devices/read', ...REGISTRY_READ),
  'DELETE /jobs/:id': service('devices/write', 'RegistryWrite'),
  'GET /statistics/devices': service('statistics/read', ...REGISTRY_READ),
  // Azure's service statistics (connected devices) sit beside the registry's and take the same rights.
  'GET /statistics/service': service('statistics/read', ...REGISTRY_READ),
  'PUT /devices/:id/modules/:mid': service('devices/write', 'RegistryWrite'),
  'GET /devices/:id/modules/:mid': service('devices/read', ...REGISTRY_READ),
  'GET /devices/:id/modules': service('devices/read', ...REGISTRY_READ),
  'DELETE /devices/:id/modules/:mid': service('devices/delete', 'RegistryWrite'),

  // automatic device and module configurations (routes/configurations.ts): Azure's registry rights
  // (RegistryRead to read, RegistryWrite to change) and its configurations/* data actions.
  'PUT /configurations/:id': service('configurations/write', 'RegistryWrite'),
  'GET /configurations/:id': service('configurations/read', ...REGISTRY_READ),
  'GET /configurations': service('configurations/read', ...REGISTRY_READ),
  'DELETE /configurations/:id': service('configurations/delete', 'RegistryWrite'),
  'POST /configurations/testQueries': service('configurations/testQueries', ...REGISTRY_READ),

  // jobs (routes/jobs.ts): a twin-update job needs RegistryWrite, a method job ServiceConnect, as in
  // Azure; the entry admits either and the handler checks the one the job's type needs.
  'PUT /jobs/v2/:id': service('jobs/write', 'RegistryWrite', 'ServiceConnect'),
  'POST /jobs/v2/:id/cancel': service('jobs/write', 'RegistryWrite', 'ServiceConnect'),
  'GET /jobs/v2/:id': service('jobs/read', 'ServiceConnect', ...REGISTRY_READ),
  'GET /jobs/v2/query': service('jobs/read', 'ServiceConnect', ...REGISTRY_READ),

  // twins, query, direct methods (routes/twins.ts, query.ts, methods.ts)
  'GET /twins/:id': service('twins/read', 'ServiceConnect', ...REGISTRY_READ),
  'PATCH /twins/:id': service('twins/write', 'ServiceConnect'),
  'PUT /twins/:id': service('twins/write', 'ServiceConnect'),
  'GET /twins/:id/modules/:mid': service('twins/read', 'ServiceConnect', ...REGISTRY_READ),
  'PATCH /twins/:id/modules/:mid': service('twins/write', 'ServiceConnect'),
  'PUT /twins/:id/modules/:mid': service('twins/write', 'ServiceConnect'),
  'POST /devices/query': service('twins/read', 'ServiceConnect', ...REGISTRY_READ),
  'POST /twins/:id/methods': service('directMethods/invoke', 'ServiceConnect'),
  'POST /twins/:id/modules/:mid/methods': service('directMethods/invoke', 'ServiceConnect'),
  // IoT Plug and Play digital twins (routes/digital-twins.ts): a view of the twin and its desired
  // properties, and direct methods by another name, so the twin and method routes' rights.
  'GET /digitaltwins/:id': service('twins/read', 'ServiceConnect', ...REGISTRY_READ),
  'PATCH /digitaltwins/:id': service('twins/write', 'ServiceConnect'),
  'POST /digitaltwins/:id/commands/:command': service('directMethods/invoke', 'ServiceConnect'),
  'POST /digitaltwins/:id/components/:component/commands/:command': service('directMethods/invoke', 'ServiceConnect'),

  // messaging, service side (routes/c2d.ts, events.ts)
  'POST /devices/:id/messages/deviceBound': service('cloudToDeviceMessages/send', 'ServiceConnect'),
  'DELETE /devices/:id/commands': service('cloudToDeviceMessages/queue/purge', 'ServiceConnect'),
  'GET /messages/serviceBound/feedback': service('cloudToDeviceMessages/feedback', 'ServiceConnect'),
  'GET /events': service('events/read', 'ServiceConnect'),
  // consumer groups of the Event Hubs-compatible endpoint (routes/consumer-groups.ts): reading them
  // is a reader's business, changing them the hub owner's (Azure: the resource provider).
  'GET /eventHubEndpoints/:endpoint/ConsumerGroups': service('events/read', 'ServiceConnect'),
  'GET /eventHubEndpoints/:endpoint/ConsumerGroups/:name': service('events/read', 'ServiceConnect'),
  'PUT /eventHubEndpoints/:endpoint/ConsumerGroups/:name': ADMIN,
  'DELETE /eventHubEndpoints/:endpoint/ConsumerGroups/:name': ADMIN,
  // message routing (routes/routing.ts). Azure keeps routing in the hub's ARM resource: changing it
  // takes Contributor on the hub, which no SAS policy grants; here that is the hub owner (a routing
  // change can send every device's telemetry anywhere, more than RegistryWrite should allow).
  // Reading it (secrets masked), its health and testing routes are a telemetry reader's business.
  'GET /routing': service('events/read', 'ServiceConnect'),
  'PUT /routing': ADMIN,
  'GET /routing/endpointsHealth': service('events/read', 'ServiceConnect'),
  'POST /routing/routes/$testall': service('events/read', 'ServiceConnect'),
  'POST /routing/routes/$testnew': service('events/read', 'ServiceConnect'),

  // messaging, device side (routes/device-http.ts)
  'POST /devices/:id/messages/events': DEVICE,
  'GET /devices/:id/messages/devicebound': DEVICE,
  'DELETE /devices/:id/messages/devicebound/:lockToken': DEVICE,
  'POST /devices/:id/messages/devicebound/:lockToken/abandon': DEVICE,
  // file upload, device side (routes/files.ts)
  'POST /devices/:id/files': DEVICE,
  'POST /devices/:id/files/notifications': DEVICE,
  'POST /devices/:id/files/notifications/:correlationId': DEVICE,

  // CA certificates (routes/certificates.ts): Azure's ARM certificate resource; reading is public data
  'GET /certificates': service('certificates/read', ...REGISTRY_READ),
  'GET /certificates/:name': service('certificates/read', ...REGISTRY_READ),
  'PUT /certificates/:name': owner('certificates/write'),
  'DELETE /certificates/:name': owner('certificates/write'),
  'POST /certificates/:name/generateVerificationCode': owner('certificates/write'),
  'POST /certificates/:name/verify': owner('certificates/write'),

  // the hub's CA (routes/authority.ts); the CRL is public like any distribution point (RFC 5280 4.2.1.13)
  'POST /certificateAuthorities': owner('certificates/write'),
  'POST /certificateAuthorities/:name/sign': owner('certificates/sign'),
  'GET /certificateAuthorities/:name/issued': service('certificates/read', ...REGISTRY_READ),
  'POST /certificateAuthorities/:name/exportKey': owner('certificates/exportKey'),
  'POST /certificateAuthorities/:name/revoke': owner('certificates/revoke'),
  'GET /crl/:file': PUBLIC,

  // EST (routes/est.ts): enrollment checks a factory credential or the device certificate itself (RFC 7030 3.2.3)
  'GET /.well-known/est/:label/cacerts': PUBLIC,
  'GET /.well-known/est/:label/csrattrs': PUBLIC,
  'POST /.well-known/est/:label/simpleenroll': PUBLIC,
  'POST /.well-known/est/:label/simplereenroll': PUBLIC,
  'POST /est/:label/enroll': PUBLIC,
  'POST /est/:label/reenroll': PUBLIC,
  'POST /est/credentials': owner('estCredentials/write'),
  'GET /est/credentials': owner('estCredentials/read'),
  'DELETE /est/credentials/:id': owner('estCredentials/write'),

  // DPS service API (routes/dps-service.ts)
  'POST /enrollments': service('enrollments/write', 'EnrollmentWrite'),
  'POST /enrollments/query': service('enrollments/read', 'EnrollmentRead'),
  'PUT /enrollments/:id': service('enrollments/write', 'EnrollmentWrite'),
  'GET /enrollments/:id': service('enrollments/read', 'EnrollmentRead'),
  'DELETE /enrollments/:id': service('enrollments/write', 'EnrollmentWrite'),
  'POST /enrollments/:id/attestationmechanism': service('enrollments/read', 'EnrollmentRead'),
  'POST /enrollmentGroups/query': service('enrollments/read', 'EnrollmentRead'),
  'PUT /enrollmentGroups/:id': service('enrollments/write', 'EnrollmentWrite'),
  'GET /enrollmentGroups/:id': service('enrollments/read', 'EnrollmentRead'),
  'DELETE /enrollmentGroups/:id': service('enrollments/write', 'EnrollmentWrite'),
  'POST /enrollmentGroups/:id/attestationmechanism': service('enrollments/read', 'EnrollmentRead'),
  'POST /registrations/:id/query': service('registrations/read', 'RegistrationStatusRead'),
  'GET /registrations/:id': service('registrations/read', 'RegistrationStatusRead'),
  'DELETE /registrations/:id': service('registrations/write', 'RegistrationStatusWrite'),

  // DPS device API (routes/dps-device.ts): attestation in the route
  'PUT /:idScope/registrations/:registrationId/register': PUBLIC,
  'GET /:idScope/registrations/:registrationId/operations/:operationId': PUBLIC,

  // hub administration (routes/security.ts, alerts.ts, audit-log.ts)
  'GET /settings': ADMIN,
  'PATCH /settings': ADMIN,
  'GET /posture': ADMIN,
  'GET /operators': ADMIN,
  'GET /operators/:id': ADMIN,
  'PUT /operators/:id': ADMIN,
  'PATCH /operators/:id': ADMIN,
  'DELETE /operators/:id': ADMIN,
  'POST /operators/:id/tokens': ADMIN,
  'GET /roleDefinitions': ADMIN,
  'GET /roleAssignments': ADMIN,
  'POST /roleAssignments': ADMIN,
  'DELETE /roleAssignments/:id': ADMIN,
  'GET /policies': ADMIN,
  'GET /policies/:name': ADMIN,
  'PUT /policies/:name': ADMIN,
  'DELETE /policies/:name': ADMIN,
  'POST /policies/:name/regenerateKey': ADMIN,
  'GET /alerts': ADMIN,
  'GET /alerts/rules': ADMIN,
  'PUT /alerts/rules/:name': ADMIN,
  'DELETE /alerts/rules/:name': ADMIN,
  'GET /auditLog': ADMIN,
  'GET /auditLog/verify': ADMIN,
};

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Set for every route from ROUTE_ACCESS when it is registered. */
    access?: RouteAccess;
  }
}

/** The table entry of a registered route; HEAD routes are GET's. */
export function accessFor(method: string, url: string, table: Readonly<Record<string, RouteAccess>> = ROUTE_ACCESS): RouteAccess | undefined {
  return table[`${method === 'HEAD' ? 'GET' : method} ${url}`];
}

/**
 * Attaches each route's entry to its config as it is registered, and refuses a route without
 * one. Call before registering routes; call the returned check once they are all registered, to
 * refuse entries no route matches (a renamed route left behind).
 */
export function guardRouteAccess(app: FastifyInstance, table: Readonly<Record<string, RouteAccess>> = ROUTE_ACCESS): () => void {
  const seen = new Set<string>();
  app.addHook('onRoute', (route) => {
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) {
      const access = accessFor(method, route.url, table);
      if (access === undefined) throw new Error(`route ${method} ${route.url} has no entry in ROUTE_ACCESS (src/protocol/http/route-access.ts): decide who may call it`);
      const entry = route.config?.access;
      if (entry !== undefined && entry !== access) throw new Error(`route ${route.url} is registered for methods with different entries in ROUTE_ACCESS; register them apart`);
      route.config = { ...route.config, access };
      seen.add(`${method === 'HEAD' ? 'GET' : method} ${route.url}`);
    }
  });
  return () => {
    const stale = Object.keys(table).filter((k) => !seen.has(k));
    if (stale.length > 0) throw new Error(`ROUTE_ACCESS names routes that are not registered: ${stale.join(', ')}`);
  };
}
