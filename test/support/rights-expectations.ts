/**
 * Who may call each HTTPS route, written out by hand from Azure's permission table ("Control
 * access to IoT Hub with shared access signatures": RegistryRead, RegistryReadWrite,
 * ServiceConnect, DeviceConnect), the DPS one ("Control access to Azure IoT Hub Device
 * Provisioning Service": EnrollmentRead/Write, RegistrationStatusRead/Write), Azure's IoT Hub
 * data-plane roles ("Control access to IoT Hub by using Microsoft Entra ID"), and Gatehouse's rule
 * that key export, signing, CA and EST credential management, revocation and hub administration
 * are the owner's. Deliberately NOT derived from src/protocol/http/route-access.ts: the matrix
 * test holds the hub's answers against this list, so a wrong entry in the code's table fails it.
 *
 * Each case names the route as Fastify registers it, a concrete request whose side effects are
 * harmless (absent names, invalid bodies: a 400 or 404 still proves the caller got past
 * authorization), and who may call it.
 */

export const POLICY_CALLERS = ['iothubowner', 'service', 'device', 'registryRead', 'registryReadWrite', 'provisioningserviceowner'] as const;
export const ROLE_CALLERS = ['Owner', 'IoT Hub Data Contributor', 'IoT Hub Data Reader', 'IoT Hub Registry Contributor', 'IoT Hub Twin Contributor'] as const;
export type Caller = (typeof POLICY_CALLERS)[number] | (typeof ROLE_CALLERS)[number];

export interface RouteCase {
  /** `METHOD /path` exactly as the route is registered. */
  route: string;
  /** The request path, params filled in. */
  path: string;
  body?: unknown;
  /**
   * `public`: no service credential is looked at (the route authenticates its own callers, or
   * serves public data), so every caller gets what an anonymous one gets. `device`: the device's
   * own credential; of the callers here only policies with DeviceConnect (acting for the device,
   * Azure's token-service pattern) pass. Otherwise the callers allowed.
   */
  who: 'public' | 'device' | readonly Caller[];
}

// ---- who, by Azure's intent ------------------------------------------------------------------

/** RegistryRead; RegistryWrite grants read too ("read and write access to the identity registry"). */
const REGISTRY_READ: readonly Caller[] = ['iothubowner', 'registryRead', 'registryReadWrite', 'Owner', 'IoT Hub Data Contributor', 'IoT Hub Data Reader', 'IoT Hub Registry Contributor'];
const REGISTRY_WRITE: readonly Caller[] = ['iothubowner', 'registryReadWrite', 'Owner', 'IoT Hub Data Contributor', 'IoT Hub Registry Contributor'];
/** Twins: ServiceConnect ("access twins ... retrieve reported properties, run queries") or the registry readers. */
const TWIN_READ: readonly Caller[] = ['iothubowner', 'service', 'registryRead', 'registryReadWrite', 'Owner', 'IoT Hub Data Contributor', 'IoT Hub Data Reader', 'IoT Hub Twin Contributor'];
const TWIN_WRITE: readonly Caller[] = ['iothubowner', 'service', 'Owner', 'IoT Hub Data Contributor', 'IoT Hub Twin Contributor'];
/** Methods and C2D: ServiceConnect; of the roles only the data-plane contributor. */
const SERVICE_CONNECT: readonly Caller[] = ['iothubowner', 'service', 'Owner', 'IoT Hub Data Contributor'];
/** Reading telemetry: ServiceConnect ("receive device-to-cloud messages"); Data Reader reads. */
const EVENTS: readonly Caller[] = ['iothubowner', 'service', 'Owner', 'IoT Hub Data Contributor', 'IoT Hub Data Reader'];
/** Public certificate data, issued-certificate records, metrics: registry readers and the data readers. */
const CERT_READ: readonly Caller[] = ['iothubowner', 'registryRead', 'registryReadWrite', 'Owner', 'IoT Hub Data Contributor', 'IoT Hub Data Reader'];
/** The owner: a policy with RegistryRead, RegistryWrite and ServiceConnect (iothubowner), or the Owner role. */
const OWNER: readonly Caller[] = ['iothubowner', 'Owner'];
/** DPS: its own policy's rights; of the roles the data-plane ones. */
const DPS_READ: readonly Caller[] = ['provisioningserviceowner', 'Owner', 'IoT Hub Data Contributor', 'IoT Hub Data Reader'];
const DPS_WRITE: readonly Caller[] = ['provisioningserviceowner', 'Owner', 'IoT Hub Data Contributor'];

/**
 * Automatic configurations: RegistryRead / RegistryReadWrite like the registry; of the roles those
 * with Azure's configurations/* actions (Data Contributor; Data Reader reads, as `*\/read`; testing
 * queries is an action, not a read). The Registry Contributor role holds devices/* only.
 */
const CONFIG_READ: readonly Caller[] = ['iothubowner', 'registryRead', 'registryReadWrite', 'Owner', 'IoT Hub Data Contributor', 'IoT Hub Data Reader'];
const CONFIG_TEST: readonly Caller[] = ['iothubowner', 'registryRead', 'registryReadWrite', 'Owner', 'IoT Hub Data Contributor'];
const CONFIG_WRITE: readonly Caller[] = ['iothubowner', 'registryReadWrite', 'Owner', 'IoT Hub Data Contributor'];

/**
 * Jobs: a twin-update job takes RegistryWrite, a method job ServiceConnect (Azure's rights for
 * what each does); reading them any service or registry right; of the roles those with jobs/*
 * (Data Contributor; Data Reader reads). The route admits either writer: the handler checks the
 * one the job's type needs (test/jobs.test.ts holds that).
 */
const JOB_READ: readonly Caller[] = ['iothubowner', 'service', 'registryRead', 'registryReadWrite', 'Owner', 'IoT Hub Data Contributor', 'IoT Hub Data Reader'];
const JOB_WRITE: readonly Caller[] = ['iothubowner', 'service', 'registryReadWrite', 'Owner', 'IoT Hub Data Contributor'];

const DEV = 'm-dev';
const MOD = 'm-mod';
const CA = 'm-ca';
const ABSENT = 'm-absent';

export const ROUTE_CASES: readonly RouteCase[] = [
  { route: 'GET /health', path: '/health', who: 'public' },
  { route: 'GET /health/ready', path: '/health/ready', who: 'public' },

  // identity registry
  { route: 'PUT /devices/:id', path: '/devices/m-put', body: { deviceId: 'm-put' }, who: REGISTRY_WRITE },
  { route: 'GET /devices/:id', path: `/devices/${DEV}`, who: REGISTRY_READ },
  { route: 'DELETE /devices/:id', path: `/devices/${ABSENT}`, who: REGISTRY_WRITE },
  { route: 'GET /devices', path: '/devices', who: REGISTRY_READ },
  { route: 'POST /devices', path: '/devices', body: [], who: REGISTRY_WRITE },
  { route: 'POST /jobs/create', path: '/jobs/create', body: { type: 'neither' }, who: REGISTRY_WRITE },
  { route: 'GET /jobs', path: '/jobs', who: REGISTRY_READ },
  { route: 'GET /jobs/:id', path: `/jobs/${ABSENT}`, who: REGISTRY_READ },
  { route: 'DELETE /jobs/:id', path: `/jobs/${ABSENT}`, who: REGISTRY_WRITE },
  { route: 'GET /statistics/devices', path: '/statistics/devices', who: REGISTRY_READ },
  { route: 'GET /statistics/service', path: '/statistics/service', who: REGISTRY_READ },
  { route: 'PUT /devices/:id/modules/:mid', path: `/devices/${DEV}/modules/${MOD}`, body: { deviceId: DEV, moduleId: MOD }, who: REGISTRY_WRITE },
  { route: 'GET /devices/:id/modules/:mid', path: `/devices/${DEV}/modules/${MOD}`, who: REGISTRY_READ },
  { route: 'GET /devices/:id/modules', path: `/devices/${DEV}/modules`, who: REGISTRY_READ },
  { route: 'DELETE /devices/:id/modules/:mid', path: `/devices/${DEV}/modules/${ABSENT}`, who: REGISTRY_WRITE },

  // automatic configurations
  { route: 'PUT /configurations/:id', path: '/configurations/m-config', body: 'not a configuration', who: CONFIG_WRITE },
  { route: 'GET /configurations/:id', path: '/configurations/m-absent', who: CONFIG_READ },
  { route: 'GET /configurations', path: '/configurations', who: CONFIG_READ },
  { route: 'DELETE /configurations/:id', path: '/configurations/m-absent', who: CONFIG_WRITE },
  { route: 'POST /configurations/testQueries', path: '/configurations/testQueries', body: { targetCondition: 'tags.x = 1' }, who: CONFIG_TEST },

  // jobs
  { route: 'PUT /jobs/v2/:id', path: '/jobs/v2/m-job', body: 'not a job', who: JOB_WRITE },
  { route: 'GET /jobs/v2/:id', path: `/jobs/v2/${ABSENT}`, who: JOB_READ },
  { route: 'POST /jobs/v2/:id/cancel', path: `/jobs/v2/${ABSENT}/cancel`, who: JOB_WRITE },
  { route: 'GET /jobs/v2/query', path: '/jobs/v2/query', who: JOB_READ },

  // twins, query, methods
  { route: 'GET /twins/:id', path: `/twins/${DEV}`, who: TWIN_READ },
  { route: 'PATCH /twins/:id', path: `/twins/${DEV}`, body: { properties: { desired: { matrix: 1 } } }, who: TWIN_WRITE },
  { route: 'PUT /twins/:id', path: `/twins/${DEV}`, body: 'not a twin', who: TWIN_WRITE },
  { route: 'GET /twins/:id/modules/:mid', path: `/twins/${DEV}/modules/${MOD}`, who: TWIN_READ },
  { route: 'PATCH /twins/:id/modules/:mid', path: `/twins/${DEV}/modules/${MOD}`, body: { properties: { desired: { matrix: 1 } } }, who: TWIN_WRITE },
  { route: 'PUT /twins/:id/modules/:mid', path: `/twins/${DEV}/modules/${MOD}`, body: 'not a twin', who: TWIN_WRITE },
  { route: 'POST /devices/query', path: '/devices/query', body: { query: 'SELECT * FROM devices' }, who: TWIN_READ },
  { route: 'POST /twins/:id/methods', path: `/twins/${DEV}/methods`, body: { methodName: 'reboot', responseTimeoutInSeconds: 5 }, who: SERVICE_CONNECT },
  { route: 'POST /twins/:id/modules/:mid/methods', path: `/twins/${DEV}/modules/${MOD}/methods`, body: { methodName: 'reboot', responseTimeoutInSeconds: 5 }, who: SERVICE_CONNECT },
  // IoT Plug and Play: a digital twin is a view of the twin, its commands are direct methods.
  { route: 'GET /digitaltwins/:id', path: `/digitaltwins/${DEV}`, who: TWIN_READ },
  { route: 'PATCH /digitaltwins/:id', path: `/digitaltwins/${DEV}`, body: [{ op: 'move', path: '/x' }], who: TWIN_WRITE },
  { route: 'POST /digitaltwins/:id/commands/:command', path: `/digitaltwins/${DEV}/commands/reboot?responseTimeoutInSeconds=5`, body: null, who: SERVICE_CONNECT },
  { route: 'POST /digitaltwins/:id/components/:component/commands/:command', path: `/digitaltwins/${DEV}/components/c1/commands/reboot?responseTimeoutInSeconds=5`, body: null, who: SERVICE_CONNECT },

  // messaging
  { route: 'GET /events', path: '/events?from=not-a-position', who: EVENTS },
  { route: 'GET /eventHubEndpoints/:endpoint/ConsumerGroups', path: '/eventHubEndpoints/events/ConsumerGroups', who: EVENTS },
  { route: 'GET /eventHubEndpoints/:endpoint/ConsumerGroups/:name', path: `/eventHubEndpoints/events/ConsumerGroups/${ABSENT}`, who: EVENTS },
  { route: 'PUT /eventHubEndpoints/:endpoint/ConsumerGroups/:name', path: '/eventHubEndpoints/events/ConsumerGroups/-not-a-name-', body: {}, who: OWNER },
  { route: 'DELETE /eventHubEndpoints/:endpoint/ConsumerGroups/:name', path: `/eventHubEndpoints/events/ConsumerGroups/${ABSENT}`, who: OWNER },
  // message routing: reading and testing with ServiceConnect, changing only as the hub owner (Azure: the hub's ARM resource)
  { route: 'GET /routing', path: '/routing', who: EVENTS },
  { route: 'PUT /routing', path: '/routing', body: 'not a routing document', who: OWNER },
  { route: 'GET /routing/endpointsHealth', path: '/routing/endpointsHealth', who: EVENTS },
  { route: 'POST /routing/routes/$testall', path: '/routing/routes/$testall', body: 'not a test', who: EVENTS },
  { route: 'POST /routing/routes/$testnew', path: '/routing/routes/$testnew', body: 'not a test', who: EVENTS },
  { route: 'POST /devices/:id/messages/deviceBound', path: `/devices/${DEV}/messages/deviceBound`, body: { matrix: true }, who: SERVICE_CONNECT },
  { route: 'DELETE /devices/:id/commands', path: `/devices/${DEV}/commands`, who: SERVICE_CONNECT },
  { route: 'GET /messages/serviceBound/feedback', path: '/messages/serviceBound/feedback', who: SERVICE_CONNECT },

  // device-facing HTTPS: the device itself, or a DeviceConnect policy acting for it
  { route: 'POST /devices/:id/messages/events', path: `/devices/${DEV}/messages/events`, body: { matrix: true }, who: 'device' },
  { route: 'GET /devices/:id/messages/devicebound', path: `/devices/${DEV}/messages/devicebound`, who: 'device' },
  { route: 'DELETE /devices/:id/messages/devicebound/:lockToken', path: `/devices/${DEV}/messages/devicebound/${ABSENT}`, who: 'device' },
  { route: 'POST /devices/:id/messages/devicebound/:lockToken/abandon', path: `/devices/${DEV}/messages/devicebound/${ABSENT}/abandon`, who: 'device' },
  { route: 'POST /devices/:id/files', path: `/devices/${DEV}/files`, body: { matrix: true }, who: 'device' },
  { route: 'POST /devices/:id/files/notifications', path: `/devices/${DEV}/files/notifications`, body: { matrix: true }, who: 'device' },
  { route: 'POST /devices/:id/files/notifications/:correlationId', path: `/devices/${DEV}/files/notifications/${ABSENT}`, body: { matrix: true }, who: 'device' },

  // CA certificates (Azure: the ARM certificate resource, an owner's action; reading is public data)
  { route: 'GET /certificates', path: '/certificates', who: CERT_READ },
  { route: 'GET /certificates/:name', path: `/certificates/${CA}`, who: CERT_READ },
  { route: 'PUT /certificates/:name', path: '/certificates/m-upload', body: { properties: {} }, who: OWNER },
  { route: 'DELETE /certificates/:name', path: `/certificates/${ABSENT}`, who: OWNER },
  { route: 'POST /certificates/:name/generateVerificationCode', path: `/certificates/${ABSENT}/generateVerificationCode`, who: OWNER },
  { route: 'POST /certificates/:name/verify', path: `/certificates/${ABSENT}/verify`, body: {}, who: OWNER },

  // the hub's certificate authority: creating, signing, key export and revocation are the owner's
  { route: 'POST /certificateAuthorities', path: '/certificateAuthorities', body: {}, who: OWNER },
  { route: 'POST /certificateAuthorities/:name/sign', path: `/certificateAuthorities/${CA}/sign`, body: {}, who: OWNER },
  { route: 'GET /certificateAuthorities/:name/issued', path: `/certificateAuthorities/${CA}/issued`, who: CERT_READ },
  { route: 'POST /certificateAuthorities/:name/exportKey', path: `/certificateAuthorities/${CA}/exportKey`, body: { confirm: CA }, who: OWNER },
  { route: 'POST /certificateAuthorities/:name/revoke', path: `/certificateAuthorities/${CA}/revoke`, body: {}, who: OWNER },
  { route: 'GET /crl/:file', path: `/crl/${CA}.crl`, who: 'public' },

  // EST: the enrollment routes check factory credentials or the device certificate themselves
  { route: 'GET /.well-known/est/:label/cacerts', path: `/.well-known/est/${ABSENT}/cacerts`, who: 'public' },
  { route: 'GET /.well-known/est/:label/csrattrs', path: `/.well-known/est/${ABSENT}/csrattrs`, who: 'public' },
  { route: 'POST /.well-known/est/:label/simpleenroll', path: `/.well-known/est/${ABSENT}/simpleenroll`, body: 'bm90IGEgQ1NS', who: 'public' },
  { route: 'POST /.well-known/est/:label/simplereenroll', path: `/.well-known/est/${ABSENT}/simplereenroll`, body: 'bm90IGEgQ1NS', who: 'public' },
  { route: 'POST /est/:label/enroll', path: `/est/${ABSENT}/enroll`, body: { csr: 'x' }, who: 'public' },
  { route: 'POST /est/:label/reenroll', path: `/est/${ABSENT}/reenroll`, body: { csr: 'x' }, who: 'public' },
  { route: 'POST /est/credentials', path: '/est/credentials', body: {}, who: OWNER },
  { route: 'GET /est/credentials', path: '/est/credentials', who: OWNER },
  { route: 'DELETE /est/credentials/:id', path: `/est/credentials/${ABSENT}`, who: OWNER },

  // DPS service API (the provisioning service SDK signs with provisioningserviceowner)
  { route: 'POST /enrollments', path: '/enrollments', body: {}, who: DPS_WRITE },
  { route: 'POST /enrollments/query', path: '/enrollments/query', body: { query: '*' }, who: DPS_READ },
  { route: 'PUT /enrollments/:id', path: '/enrollments/m-enrollment', body: {}, who: DPS_WRITE },
  { route: 'GET /enrollments/:id', path: `/enrollments/${ABSENT}`, who: DPS_READ },
  { route: 'DELETE /enrollments/:id', path: `/enrollments/${ABSENT}`, who: DPS_WRITE },
  { route: 'POST /enrollments/:id/attestationmechanism', path: `/enrollments/${ABSENT}/attestationmechanism`, who: DPS_READ },
  { route: 'POST /enrollmentGroups/query', path: '/enrollmentGroups/query', body: { query: '*' }, who: DPS_READ },
  { route: 'PUT /enrollmentGroups/:id', path: '/enrollmentGroups/m-group', body: {}, who: DPS_WRITE },
  { route: 'GET /enrollmentGroups/:id', path: `/enrollmentGroups/${ABSENT}`, who: DPS_READ },
  { route: 'DELETE /enrollmentGroups/:id', path: `/enrollmentGroups/${ABSENT}`, who: DPS_WRITE },
  { route: 'POST /enrollmentGroups/:id/attestationmechanism', path: `/enrollmentGroups/${ABSENT}/attestationmechanism`, who: DPS_READ },
  { route: 'POST /registrations/:id/query', path: `/registrations/${ABSENT}/query`, who: DPS_READ },
  { route: 'GET /registrations/:id', path: `/registrations/${ABSENT}`, who: DPS_READ },
  { route: 'DELETE /registrations/:id', path: `/registrations/${ABSENT}`, who: DPS_WRITE },

  // DPS device API: attestation in the route
  { route: 'PUT /:idScope/registrations/:registrationId/register', path: `/0ne00000000/registrations/${ABSENT}/register`, body: { registrationId: ABSENT }, who: 'public' },
  { route: 'GET /:idScope/registrations/:registrationId/operations/:operationId', path: `/0ne00000000/registrations/${ABSENT}/operations/${ABSENT}`, who: 'public' },

  { route: 'GET /metrics', path: '/metrics', who: CERT_READ },

  // hub administration
  { route: 'GET /alerts', path: '/alerts', who: OWNER },
  { route: 'GET /alerts/rules', path: '/alerts/rules', who: OWNER },
  { route: 'PUT /alerts/rules/:name', path: '/alerts/rules/m-rule', body: {}, who: OWNER },
  { route: 'DELETE /alerts/rules/:name', path: `/alerts/rules/${ABSENT}`, who: OWNER },
  { route: 'GET /auditLog', path: '/auditLog?limit=1', who: OWNER },
  { route: 'GET /auditLog/verify', path: '/auditLog/verify', who: OWNER },
  { route: 'GET /settings', path: '/settings', who: OWNER },
  { route: 'PATCH /settings', path: '/settings', body: { minTlsVersion: 'none' }, who: OWNER },
  { route: 'GET /posture', path: '/posture', who: OWNER },
  { route: 'GET /operators', path: '/operators', who: OWNER },
  { route: 'GET /operators/:id', path: `/operators/${ABSENT}`, who: OWNER },
  { route: 'PUT /operators/:id', path: '/operators/m-operator', body: { displayName: 7 }, who: OWNER },
  { route: 'PATCH /operators/:id', path: `/operators/${ABSENT}`, body: {}, who: OWNER },
  { route: 'DELETE /operators/:id', path: `/operators/${ABSENT}`, who: OWNER },
  { route: 'POST /operators/:id/tokens', path: `/operators/${ABSENT}/tokens`, body: {}, who: OWNER },
  { route: 'GET /roleDefinitions', path: '/roleDefinitions', who: OWNER },
  { route: 'GET /roleAssignments', path: '/roleAssignments', who: OWNER },
  { route: 'POST /roleAssignments', path: '/roleAssignments', body: {}, who: OWNER },
  { route: 'DELETE /roleAssignments/:id', path: `/roleAssignments/${ABSENT}`, who: OWNER },
  { route: 'GET /policies', path: '/policies', who: OWNER },
  { route: 'GET /policies/:name', path: `/policies/${ABSENT}`, who: OWNER },
  { route: 'PUT /policies/:name', path: '/policies/m-policy', body: { rights: 'NoSuchRight' }, who: OWNER },
  { route: 'DELETE /policies/:name', path: `/policies/${ABSENT}`, who: OWNER },
  { route: 'POST /policies/:name/regenerateKey', path: `/policies/${ABSENT}/regenerateKey`, body: { keyType: 'primary' }, who: OWNER },
];

/** The fixtures the cases name: a SAS device with a module, and a CA the hub holds. */
export const MATRIX_FIXTURES = { device: DEV, module: MOD, ca: CA } as const;
