/**
 * The HTTPS edge: one Fastify app for the service REST API (and, in later issues, device HTTP,
 * DPS and WebSockets). A handler reads, validates, authorizes, acts, renders; authorization runs
 * in onRequest, before any body is read, from the route's entry in route-access.ts.
 */
import Fastify, { LogController, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { HubError } from '../../core/errors.js';
import { authorize } from '../../access/access.js';
import type { PeerContext, Principal } from '../../access/gate.js';
import { redactSecrets } from '../../core/security-events.js';
import { sendError, toHubError } from './error-mapping.js';
import type { HubServices } from './services.js';
import type { DeviceIdentity } from '../../auth/device-authenticator.js';
import { peerChain } from '../transport/peer.js';
import type { TLSSocket } from 'node:tls';
import { unauthorized } from '../../core/errors.js';
import { registerDeviceHttpRoutes } from './routes/device-http.js';
import { registerFileRoutes } from './routes/files.js';
import { registerRegistryJobRoutes } from './routes/registry-jobs.js';
import { registerDpsDeviceRoutes } from './routes/dps-device.js';
import { registerDeviceRoutes } from './routes/devices.js';
import { registerModuleRoutes } from './routes/modules.js';
import { registerTwinRoutes } from './routes/twins.js';
import { registerQueryRoutes } from './routes/query.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerMethodRoutes } from './routes/methods.js';
import { registerDigitalTwinRoutes } from './routes/digital-twins.js';
import { registerEventRoutes } from './routes/events.js';
import { registerRoutingRoutes } from './routes/routing.js';
import { registerConfigurationRoutes } from './routes/configurations.js';
import { registerJobRoutes } from './routes/jobs.js';
import { registerConsumerGroupRoutes } from './routes/consumer-groups.js';
import { registerC2dRoutes } from './routes/c2d.js';
import { registerCertificateRoutes } from './routes/certificates.js';
import { registerAuthorityRoutes } from './routes/authority.js';
import { registerEstRoutes } from './routes/est.js';
import { registerDpsServiceRoutes } from './routes/dps-service.js';
import { registerAuditLogRoutes } from './routes/audit-log.js';
import { registerMetricsRoutes } from './routes/metrics.js';
import { registerAlertRoutes } from './routes/alerts.js';
import { registerSecurityRoutes } from './routes/security.js';
import { guardRouteAccess } from './route-access.js';
import { httpsServerTimeouts, type HttpTimeouts } from './http-timeouts.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | undefined;
    device: DeviceIdentity | undefined;
  }
}

export interface HttpAppOptions {
  tls: { key: string; cert: string; minVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3' };
  logger: Logger;
  services: HubServices;
  /** TLS handshake, header and request timeouts (see http-timeouts.ts for the first request). */
  timeouts: HttpTimeouts;
}

/** 1 MiB: a full bulk request of 100 devices fits several times; twins are capped far lower. */
export const BODY_LIMIT = 1024 * 1024;

export function requestPath(url: string): string {
  const q = url.indexOf('?');
  const raw = q < 0 ? url : url.slice(0, q);
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new HubError('ArgumentInvalid', 'The request path is not valid percent-encoding.');
  }
}

export async function buildHttpApp(opts: HttpAppOptions): Promise<FastifyInstance> {
  const { logger, services } = opts;
  // Typed as the plain instance the route modules take; the HTTPS server and pino logger types
  // differ only in generics those modules do not use.
  const app = Fastify({
    // Client certificates are requested, never required: X.509 devices use them on device HTTPS
    // and MQTT over WebSocket; everyone else sends none.
    https: { key: opts.tls.key, cert: opts.tls.cert, minVersion: opts.tls.minVersion, requestCert: true, rejectUnauthorized: false, ...httpsServerTimeouts(opts.timeouts) },
    loggerInstance: logger.child({ component: 'http' }),
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: {
      // Azure's paths are case-insensitive (wire doc Appendix C); ids in them keep their case.
      caseSensitive: false,
      ignoreTrailingSlash: true,
      // Ids are at most 128 characters, up to three times that percent-encoded; longer ones reach
      // the id check and get its precise message instead of a bare 414.
      maxParamLength: 1024,
    },
    bodyLimit: BODY_LIMIT,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    requestIdHeader: false,
    keepAliveTimeout: 65_000,
    // The whole request, body included (Fastify's default, 0, never times out).
    requestTimeout: opts.timeouts.requestMs,
    frameworkErrors: (err, _req, reply) => {
      void sendError(reply, toHubError(err));
    },
  }) as unknown as FastifyInstance;

  app.decorateRequest('principal', undefined);
  app.decorateRequest('device', undefined);

  // Bodies stay raw Buffers; routes parse what they expect (jsonBody), so a wrong or missing
  // Content-Type from a non-SDK client is not a reason to fail, and malformed JSON gets our error.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  // Who may call each route: one table (route-access.ts), attached to every route as it registers.
  const allRoutesMapped = guardRouteAccess(app);

  app.addHook('onRequest', async (req) => {
    const peer: PeerContext = { remote: req.ip, protocol: 'https', tls: (req.socket as TLSSocket).getProtocol?.() ?? undefined };
    const access = req.routeOptions.config.access;
    // No route (the not-found handler answers) or a public one.
    if (access === undefined || access.kind === 'public') return;
    if (access.kind === 'device') {
      // Device HTTPS (wire doc §5): the device's SAS token or its TLS client certificate, and
      // only for itself. Every failure is the same 401.
      const deviceId = (req.params as { id?: string }).id ?? '';
      const header = req.headers.authorization;
      const result = await services.gate.authenticate(
        {
          deviceId,
          moduleId: null,
          sasToken: header,
          peerChain: header === undefined ? peerChain(req.socket as TLSSocket) : undefined,
        },
        { ...peer, protocol: 'https-device' },
      );
      if (!result.ok) {
        logger.warn({ event: 'auth.denied', protocol: 'https-device', remote: req.ip, deviceId: deviceId.slice(0, 128), reason: result.reason }, 'device request denied');
        throw unauthorized(result.code, result.reason);
      }
      req.device = result.identity;
      return;
    }
    let principal: Principal | undefined;
    try {
      principal = await services.gate.authenticateService(req.headers.authorization, requestPath(req.url), peer);
      const decision = authorize(principal, access);
      if (!decision.allowed) throw unauthorized('insufficient_rights', decision.reason);
      // Only the rights this request needed count as used (the posture audit's evidence).
      if (principal.kind === 'policy') services.gate.policyUsed(principal.name, decision.used);
      req.principal = principal;
    } catch (err) {
      if (err instanceof HubError && err.code === 'IotHubUnauthorizedAccess') {
        // The reason is for the operator, never for the caller; no token or key in the line.
        if (principal !== undefined) services.gate.denied(principal, String(err.cause), peer);
        logger.warn(
          { event: 'auth.denied', protocol: 'https', remote: req.ip, method: req.method, path: req.routeOptions.url, reason: String(err.cause) },
          'service request denied',
        );
      }
      throw err;
    }
  });

  app.addHook('onSend', async (req, reply, payload) => {
    // The SDK parses a body only when Content-Type says JSON (wire doc §0.1.4).
    if (payload !== undefined && payload !== null && reply.getHeader('content-type') === undefined) {
      reply.header('content-type', 'application/json; charset=utf-8');
    }
    recordDataPlaneChange(req, reply.statusCode, payload);
    return payload;
  });

  /**
   * Data-plane writes other than the registry's (which reports before and after itself, bulk
   * included) and the administration routes (which report their own): enrollments, CAs,
   * certificates, EST credentials, twins, C2D, direct methods. The change event carries the
   * answer as the state after, secrets redacted.
   */
  function recordDataPlaneChange(req: FastifyRequest, status: number, payload: unknown): void {
    const access = req.routeOptions.config.access;
    if (status >= 400 || req.principal === undefined || access === undefined || access.kind === 'public' || access.kind === 'device') return;
    if (access.action === 'hub/admin' || req.method === 'GET' || req.method === 'HEAD') return;
    const action = access.action;
    if (action.endsWith('/read') || action === 'devices/write' || action === 'devices/delete') return;
    let after: unknown = null;
    if (typeof payload === 'string' && payload.length > 0 && payload.length <= 16_384) {
      try {
        after = JSON.parse(payload);
      } catch {
        after = null;
      }
    }
    let target = '';
    try {
      target = requestPath(req.url).replace(/^\//, '');
    } catch {
      target = req.routeOptions.url ?? '';
    }
    services.securityEvents.emit({
      type: 'change',
      at: Date.now(),
      actor: `${req.principal.kind}:${req.principal.name}`,
      action: `${action} ${req.method}`,
      target: target.slice(0, 300),
      after: redactSecrets(after),
      remote: req.ip,
    });
  }

  app.setErrorHandler((err, req, reply) => {
    const hubErr = toHubError(err);
    if (hubErr.status >= 500) {
      logger.error({ err: hubErr.cause ?? hubErr, path: req.routeOptions.url, method: req.method }, 'request failed');
    }
    return sendError(reply, hubErr);
  });

  app.setNotFoundHandler((req, reply) =>
    sendError(reply, new HubError('ResourceNotFound', `No route for ${req.method} ${requestPath(req.url).slice(0, 200)}`)),
  );

  registerHealthRoutes(app, services);
  registerDeviceRoutes(app, services);
  registerModuleRoutes(app, services);
  registerTwinRoutes(app, services);
  registerQueryRoutes(app, services);
  registerMethodRoutes(app, services.methods);
  registerDigitalTwinRoutes(app, services.digitalTwins);
  registerEventRoutes(app, services.eventLog);
  registerConsumerGroupRoutes(app, services.consumerGroups);
  registerRoutingRoutes(app, services.routing, services.securityEvents);
  registerConfigurationRoutes(app, services.configurations, services.securityEvents);
  registerJobRoutes(app, services.jobs, services.gate);
  registerC2dRoutes(app, services.c2d);
  registerCertificateRoutes(app, services.cas, (name, ifMatch) => services.authority.deleteCa(name, ifMatch));
  registerAuthorityRoutes(app, services.authority);
  registerEstRoutes(app, services.est, logger.child({ component: 'est' }), services.gate);
  registerDpsServiceRoutes(app, services.enrollments);
  registerAuditLogRoutes(app, services.auditLog);
  registerDpsDeviceRoutes(app, services.dps);
  registerDeviceHttpRoutes(app, services);
  registerFileRoutes(app, services.files);
  registerRegistryJobRoutes(app, services.registryJobs);
  registerMetricsRoutes(app, services.metrics);
  registerAlertRoutes(app, services.alerts, services.securityEvents);
  registerSecurityRoutes(app, {
    posture: (days) => services.posture(days),
    settings: services.settings,
    operators: services.operators,
    policies: services.policies,
    events: services.securityEvents,
    now: () => Date.now(),
  });
  allRoutesMapped();
  return app;
}
