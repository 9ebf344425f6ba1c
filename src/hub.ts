/**
 * The composition root: config -> data dir -> master key -> store -> TLS identity -> services ->
 * listeners. The only file that picks concrete backends.
 */
import { writeFileSync } from 'node:fs';
import cluster from 'node:cluster';
import { Lifecycle } from './hub/lifecycle.js';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './core/clock.js';
import type { HubConfig } from './config/schema.js';
import type { Store } from './store/ports.js';
import { ensureIdScope } from './dps/id-scope.js';
import { EnrollmentService } from './dps/enrollment-service.js';
import { PolicyCache, ServiceAuthenticator } from './auth/service-authenticator.js';
import { ensureServerTls, type ServerTls } from './pki/server-tls.js';
import { RegistryService } from './hub/registry/registry-service.js';
import { TwinService } from './hub/twins/twin-service.js';
import { DigitalTwinService } from './hub/twins/digital-twin-service.js';
import { QueryService } from './hub/query/query-service.js';
import { ConfigurationService } from './hub/configurations/configuration-service.js';
import { ConfigurationEngine } from './hub/configurations/configuration-engine.js';
import { JobService } from './hub/jobs/job-service.js';
import { DEFAULT_RUNNER_OPTIONS, JobRunner } from './hub/jobs/job-runner.js';
import { buildHttpApp } from './protocol/http/app.js';
import { watchHttpTimeouts } from './protocol/http/http-timeouts.js';
import { ConnectionTable } from './hub/connections.js';
import { MethodService } from './hub/methods/method-service.js';
import { C2dService, DEFAULT_C2D_LIMITS } from './hub/c2d/c2d-service.js';
import { DeviceAuthenticator } from './auth/device-authenticator.js';
import { CaCertificates } from './pki/ca-certificates.js';
import { CertificateAuthority } from './pki/authority.js';
import { EstService } from './dps/est.js';
import { AlertSharing } from './alerts/alert-sharing.js';
import type { MqttBroker } from './protocol/mqtt/broker.js';
import type { DpsDeps } from './protocol/transport/device-ports.js';
import { RegistrationService } from './dps/registration-service.js';
import { enrollmentCas } from './dps/device-ownership.js';
import { Allocator, type LinkedHub } from './dps/allocation.js';
import { parseHubConnectionString } from './dps/remote-hub.js';
import { effectiveDpsSettings, writeDpsSettings } from './dps/settings.js';
import { ProvisioningThrottle } from './dps/throttle.js';
import { attachMqttWebSocket, createMqttTlsServer } from './protocol/mqtt/listeners.js';
import type { Server as TlsServer } from 'node:tls';
import type { HubServices } from './protocol/http/services.js';
import { SecurityEvents } from './core/security-events.js';
import { ensurePortsFree, ensurePrivateDataDir, initializeStore, listening, listenHttp, listenTls, openHubStore, redactDatabaseUrl, STATE_FILE, warnIfAllInterfaces } from './hub/startup.js';
import { createProtocolEndpoints } from './endpoints.js';
import { IdentityCache } from './hub/identity-cache.js';
import { AuditLog } from './audit/audit-log.js';
import { HubMetrics } from './metrics/metrics.js';
import { AlertEngine } from './alerts/alerts.js';
import { allIssued } from './pki/issued.js';
import { SettingsService } from './settings/settings-service.js';
import { NODE_TLS, tlsRank, type TlsVersion } from './core/settings.js';
import { OperatorService } from './access/operators.js';
import { AccessGate } from './access/gate.js';
import { ConnectionCaps, ConnectionRefusals } from './access/connection-caps.js';
import { PolicyService } from './policies/policy-service.js';
import { PolicyUsage } from './policies/policy-usage.js';
import { runPostureAudit } from './posture/posture-source.js';
import type { HubBus } from './bus/subjects.js';
import { openHubBus } from './hub/hub-bus.js';
import { openHubEventLog } from './hub/event-log.js';
import type { LogWriter } from './hub/telemetry/log-writer.js';
import { ConsumerGroups } from './hub/telemetry/consumer-groups.js';
import { SessionGuard } from './hub/session-guard.js';
import { RevocationCheck } from './pki/revocation-check.js';
import { RoutingEngine } from './routing/routing-engine.js';
import { RoutedEvents } from './routing/routed-events.js';
import { createEndpointSink } from './routing/sink-factory.js';
import { BUILTIN_ENDPOINT_NAME } from './log/log-ports.js';
import { routedTelemetrySink } from './hub/telemetry/routed-telemetry.js';
import { isHubError } from './core/errors.js';
import { hubName } from './core/hub-name.js';
import { FileUploadService } from './hub/files/file-upload-service.js';
import { ImportExportJobs } from './hub/registry/import-export.js';
import { startBackgroundWork } from './hub-background.js';
import { openBlobStore, type BlobStoreKind } from './hub/files/blob-setup.js';
import { installBlobProxy } from './protocol/http/blob-proxy.js';

export { SQLITE_FILE, STATE_FILE, StartupError, openHubStore, redactDatabaseUrl } from './hub/startup.js';

/** What `gatehouse info` and the CLI read to find a hub from its data dir. No secrets. */
export interface HubState {
  hostname: string;
  bind: string;
  httpsPort: number;
  mqttPort: number;
  caFile: string;
  store: 'sqlite' | 'postgres';
  /** The PostgreSQL URL with any password removed. */
  databaseUrl?: string;
  pid: number;
  startedAt: string;
  /** Where file uploads go: the embedded Azurite, a storage account, or nowhere (a cluster node without one). */
  blobStore?: BlobStoreKind;
}

export interface PreparedHub {
  config: HubConfig;
  dataDir: string;
  store: Store;
  /** How the parts (and the nodes of a cluster) tell each other what happened. */
  bus: HubBus;
  tls: ServerTls;
  services: HubServices;
  authenticator: ServiceAuthenticator;
  policyCache: PolicyCache;
  /** Per-address caps on every listener, and the report of connections closed before authentication. */
  connectionCaps: ConnectionCaps;
  /** The partitioned event log every accepted device message is appended to (issue 17). */
  eventLog: LogWriter;
  /** When the Event Hubs-compatible endpoint was created (getEventHubProperties' createdOn). */
  eventHubsCreatedAt: string;
  /** Message routing: the document, evaluation at ingestion, delivery to custom endpoints. */
  routing: RoutingEngine;
  /** Applies automatic configurations to twins and counts their metrics (started with the listeners). */
  configurationEngine: ConfigurationEngine;
  /** Runs due jobs (started with the listeners). */
  jobRunner: JobRunner;
}

/** Closes what prepareHub opened (for `init` and the --workers primary, which never listen). */
export async function closePrepared(p: PreparedHub): Promise<void> {
  await p.configurationEngine.stop();
  await p.jobRunner.stop();
  await p.routing.stop();
  await p.eventLog.stop();
  p.services.gate.lockout.stop();
  p.services.operators.stop();
  await p.bus.bus.close();
  await p.store.close();
}

/** Everything short of listening: used by `start` and by `init`. */
export async function prepareHub(config: HubConfig, logger: Logger, clock: Clock = systemClock): Promise<PreparedHub> {
  const dataDir = resolve(config.dataDir);
  ensurePrivateDataDir(dataDir, logger);
  const { store, box, keyWarning, keySource } = await openHubStore(dataDir, config.databaseUrl);
  let opened: HubBus | undefined;
  let eventLog: LogWriter | undefined;
  if (keyWarning !== undefined) logger.warn({ event: 'master-key.permissions' }, keyWarning);
  try {
    logger.info({ event: 'store.opened', store: store.kind, masterKey: keySource }, 'store opened');
    await initializeStore(store, logger);
    const idScope = await ensureIdScope(store);
    const tlsOpts = {
      dataDir,
      hostname: config.hostname,
      renewDays: config.serverCertRenewDays,
      ...(config.tlsCaCert === undefined ? {} : { caCertFile: config.tlsCaCert }),
      ...(config.tlsCaKey === undefined ? {} : { caKeyFile: config.tlsCaKey }),
    };
    const tls = await ensureServerTls(store, tlsOpts);
    for (const action of tls.actions) logger.info({ event: 'tls' }, action);

    const securityEvents = new SecurityEvents((err) => logger.error({ err, event: 'security-events.listener-failed' }, 'a security event listener failed'));
    const bus = (opened = await openHubBus(config, store, logger));
    const metrics: HubMetrics = new HubMetrics({
      events: securityEvents,
      sessions: () => connections.sessions(),
      c2dQueueDepth: () => store.c2d.countAllPending(clock.now()),
      alertsFiring: () => alerts.firingByRule(),
      onCollectError: (err, metric) => logger.warn({ err, event: 'metrics.collect-failed', metric }, 'a metric could not be collected'),
    });
    const auditLog = new AuditLog(store, securityEvents, clock, logger.child({ component: 'audit' }), { retentionDays: config.auditRetentionDays });
    const settings = new SettingsService(store, clock, securityEvents, bus, logger.child({ component: 'security' }));
    await settings.load();
    const operators = new OperatorService(store, clock, () => config.hostname, bus);
    await operators.load();
    const policyUsage = new PolicyUsage(store, clock);
    await policyUsage.load();
    const registry = new RegistryService(store, clock, bus, securityEvents);
    const twins = new TwinService(store, clock, bus, metrics.messages);
    const query = new QueryService(store);
    const policyCache = new PolicyCache(store, clock);
    const authenticator = new ServiceAuthenticator(policyCache, () => config.hostname, clock);
    const connections: ConnectionTable = new ConnectionTable(bus, metrics.messages);
    const methods = new MethodService(connections, bus, metrics.messages);
    const c2d = new C2dService(store, clock, bus, DEFAULT_C2D_LIMITS, metrics.messages);
    const enrollments = new EnrollmentService(store, clock, () => config.hostname);
    // Provisioning assigns to this hub (always linked) and to any --linked-hub.
    const linkedHubs: LinkedHub[] = [
      { hostName: config.hostname, allocationWeight: 1 },
      ...config.linkedHubs.map((cs) => ({ hostName: parseHubConnectionString(cs).hostName, allocationWeight: 1, connectionString: cs })),
    ];
    const securityLog = logger.child({ component: 'security' });
    new SessionGuard(connections, bus, (fields, msg) => securityLog.info(fields, msg), {
      device: (id) => store.getDevice(id),
      module: (id, m) => store.getModule(id, m),
      revoked: async (serial) => ((await store.authority.getIssued(serial))?.revokedAt ?? null) !== null,
    });
    c2d.reportDropsTo(securityEvents);
    const cas = new CaCertificates(store.certificates, clock);
    const alerts = new AlertEngine({
      store: store.alerts,
      meta: store,
      events: securityEvents,
      certificates: { caCertificates: () => cas.list(), issuedCertificates: () => allIssued(store.authority, {}) },
      clock,
      logger: logger.child({ component: 'alerts' }),
      hub: config.hostname,
      // Windows count every node's events; on NATS the store picks the one node that fires.
      sharing: new AlertSharing(bus, config.natsUrl === undefined ? undefined : store.counters, clock),
    });
    const pkiLog = logger.child({ component: 'pki' });
    const authority = new CertificateAuthority(store, cas, clock, bus, {
      crlUrl: (caName) => `https://${config.hostname}${config.httpsPort === 443 ? '' : `:${config.httpsPort}`}/crl/${encodeURIComponent(caName)}.crl`,
      log: (fields, msg) => (fields.level === 'warn' ? pkiLog.warn(fields, msg) : pkiLog.info(fields, msg)),
    });
    // Revoked certificates Gatehouse issued: refused at connect, provisioning and renewal.
    const revocation = new RevocationCheck(store.authority, bus);
    // Identities read at connect come from a cache every identity change on the bus empties (per identity).
    const identities = new IdentityCache(store, bus, clock);
    const deviceAuth = new DeviceAuthenticator(identities, () => config.hostname, clock, cas, revocation, enrollmentCas(() => enrollments.listGroups()));
    const refusals = new ConnectionRefusals({ log: (fields, msg) => securityLog.warn(fields, msg), count: (listener, reason) => metrics.connectionRefused(listener, reason), clock });
    const connectionCaps = new ConnectionCaps(config.maxConnectionsPerAddress, refusals);
    const gate = new AccessGate(settings.current, {
      devices: deviceAuth,
      service: authenticator,
      operators,
      connections,
      events: securityEvents,
      clock,
      log: (fields, msg) => securityLog.warn(fields, msg),
      usage: policyUsage,
      caps: connectionCaps,
      counters: store.counters,
    });
    settings.bind({ gate, operators, enrollments });
    const policies = new PolicyService(store, policyCache, bus, operators, securityEvents, clock);
    // Settings changed on any node: each part that follows them hears it on the bus.
    auditLog.followSettings(settings.current, bus);
    c2d.followSettings(settings.current);
    const est = new EstService({
      authority,
      store: store.authority,
      group: (id) => enrollments.getGroup(id),
      cas,
      registry,
      isRevoked: (leaf) => revocation.isRevoked(leaf),
      ownership: { registration: (id) => enrollments.findRegistration(id), device: (id) => store.getDevice(id), hub: () => config.hostname },
      clock,
      policy: () => ({ validityDays: config.deviceCertValidityDays, renewalGraceDays: config.certRenewalGraceDays }),
      log: (fields, msg) => pkiLog.info(fields, msg),
    });
    const log = (eventLog = await openHubEventLog(store, config, bus, logger.child({ component: 'log' })));
    const routing = await RoutingEngine.open({
      meta: store,
      box,
      bus,
      clock,
      logger: logger.child({ component: 'routing' }),
      log: log.log,
      counters: store.counters,
      twin: (deviceId, moduleId) => twins.get(deviceId, moduleId).catch((err: unknown) => (isHubError(err) && /NotFound$/.test(err.code) ? undefined : Promise.reject(err))),
      sinks: createEndpointSink,
      hubName: hubName(config.hostname),
      deliveries: metrics.deliveries,
      // An endpoint failing for as long as the log keeps messages has lost some: dead.
      timing: { deadAfterMs: config.eventRetentionHours * 3600_000 },
    });
    // Twin changes, lifecycle and connection state events go to the log when a route wants them.
    const sourceEvents = new RoutedEvents(routing.router, log, hubName(config.hostname), logger.child({ component: 'routing' }));
    twins.routeEventsTo(sourceEvents);
    registry.routeEventsTo(sourceEvents);
    connections.routeEventsTo(sourceEvents);
    const jobRunner = new JobRunner(store, twins, methods, bus, clock, logger.child({ component: 'jobs' }), { ...DEFAULT_RUNNER_OPTIONS, maxRate: config.jobMaxRate });
    jobRunner.routeEventsTo(sourceEvents);
    // Device messages: routed, then into the partitioned log (routed-telemetry.ts).
    const telemetry = routedTelemetrySink(routing.router, log, metrics.messages);
    const dpsLog = logger.child({ component: 'dps' });
    const dps: DpsDeps = {
      idScope: async () => idScope,
      gate,
      registration: new RegistrationService(enrollments, registry, twins, clock, {
        idScope: async () => idScope,
        allocator: new Allocator(() => linkedHubs),
        settings: effectiveDpsSettings(store, () => settings.current),
        throttle: new ProvisioningThrottle(clock, config.dpsRegistrationsPerMinute, store.counters),
        operations: store.counters,
        log: (fields, msg) => dpsLog.info(fields, msg),
        // The provisioning service and the hub share one set of CA certificates (groups may reference its CAs).
        cas: {
          verifiedCaPem: async (name) => {
            const record = await cas.get(name).catch(() => undefined);
            return record?.isVerified === true ? record.certificatePem : undefined;
          },
        },
        revocation,
        onRegistered: (outcome, attestation) => metrics.registration(outcome, attestation),
        onRefused: (event) => securityEvents.emit(event),
      }),
    };
    if (config.dpsDisableSymmetricKeyAttestation !== undefined) {
      await writeDpsSettings(store, { disableSymmetricKeyAttestation: config.dpsDisableSymmetricKeyAttestation === 'true' });
    }
    const files = new FileUploadService({ counters: store.counters, notifications: store.fileNotifications, settings: () => settings.current, clock });
    const registryJobs = new ImportExportJobs({ store, counters: store.counters, registry, twins, clock, ca: tls.caPem, onError: (err, jobId) => logger.warn({ err, jobId, event: 'registry-job.failed' }, 'an import or export job failed') });
    const services: HubServices = {
      files,
      registryJobs,
      registry,
      twins,
      query,
      methods,
      digitalTwins: new DigitalTwinService(twins, methods),
      connections,
      c2d,
      gate,
      settings,
      operators,
      policies,
      policyUsage,
      async posture(expiringDays) {
        await policyUsage.flush();
        return runPostureAudit(store, { now: clock.now(), expiringDays });
      },
      telemetry,
      consumerGroups: new ConsumerGroups(store, clock),
      configurations: new ConfigurationService(store.configurations, clock, bus),
      jobs: new JobService(store.jobs, clock, bus),
      routing,
      cas,
      authority,
      est,
      eventLog: log.log,
      enrollments,
      dps,
      securityEvents,
      auditLog,
      metrics,
      alerts,
      lifecycle: new Lifecycle(),
      async health() {
        try {
          await store.getMeta('hub.id');
          return { status: 'ok', store: store.kind, checks: { store: 'ok' } };
        } catch (err) {
          return { status: 'degraded', store: store.kind, checks: { store: (err as Error).message } };
        }
      },
    };
    const eventHubsCreatedAt = await store.insertMetaIfAbsent('eventhub.created-at', new Date(clock.now()).toISOString());
    const configurationEngine = new ConfigurationEngine(store, twins, bus, clock, logger.child({ component: 'configurations' }));
    return { config, dataDir, store, bus, tls, services, authenticator, policyCache, connectionCaps, eventLog: log, eventHubsCreatedAt, routing, configurationEngine, jobRunner };
  } catch (err) {
    await eventLog?.stop();
    await opened?.bus.close();
    await store.close();
    throw err;
  }
}

export interface RunningHub extends PreparedHub {
  http: FastifyInstance;
  mqtt: TlsServer;
  broker: MqttBroker;
  state: HubState;
  stop(): Promise<void>;
}

export async function startHub(config: HubConfig, logger: Logger, clock: Clock = systemClock): Promise<RunningHub> {
  // Before anything is written; a --workers worker shares the primary's sockets, which checked them.
  if (!cluster.isWorker) await ensurePortsFree(config.bind, [config.httpsPort, config.mqttPort, config.amqpPort]);
  const prepared = await prepareHub(config, logger, clock);
  const { store, tls, dataDir, services, connectionCaps } = prepared;
  const handshakeTimeoutMs = config.tlsHandshakeTimeout * 1000;
  const httpTimeouts = { handshakeMs: handshakeTimeoutMs, headersMs: config.httpHeadersTimeout * 1000, requestMs: config.httpRequestTimeout * 1000 };
  try {
    const released = await services.c2d.releaseSessionLocks(); // before any listener: their sessions died with the last run
    // One process serves an SQLite store: no connection outlives the process that held it.
    if (store.kind === 'sqlite') await services.registry.forgetConnectionsOfAnEarlierRun();
    if (released > 0) logger.info({ event: 'c2d.locks-released', devices: released }, "released the C2D locks of this node's previous run");
    await services.alerts.start();
  } catch (err) {
    await closePrepared(prepared);
    throw err;
  }
  const { broker, amqp, flushConnectionState } = createProtocolEndpoints(prepared, logger, clock);
  let http: FastifyInstance | undefined;
  const minTls = NODE_TLS[services.settings.current.minTlsVersion];
  const mqtt = createMqttTlsServer(broker, { key: tls.keyPem, cert: tls.chainPem, minVersion: minTls, handshakeTimeoutMs });
  // Hub settings change the TLS minimum at run time: a new secure context for new handshakes.
  const tlsContext = (v: TlsVersion) => ({
    key: tls.keyPem,
    cert: tls.chainPem,
    minVersion: NODE_TLS[v],
    // OpenSSL 3 refuses TLS 1.0/1.1 at its default security level; legacy TLS needs level 0.
    ...(tlsRank(v) < 1.2 ? { ciphers: 'DEFAULT@SECLEVEL=0' } : {}),
  });
  services.gate.watch(mqtt, 'mqtt', (v) => mqtt.setSecureContext(tlsContext(v)));
  let amqpServer: TlsServer | undefined;
  let blobs: Awaited<ReturnType<typeof openBlobStore>> | undefined;
  try {
    http = await buildHttpApp({
      tls: { key: tls.keyPem, cert: tls.chainPem, minVersion: minTls },
      logger,
      services,
      timeouts: httpTimeouts,
    });
    watchHttpTimeouts(http.server as unknown as import('node:https').Server, httpTimeouts, connectionCaps.refusals);
    const httpsServer = http.server as unknown as TlsServer;
    services.gate.watch(httpsServer, 'https', (v) => httpsServer.setSecureContext(tlsContext(v)));
    attachMqttWebSocket(http.server as unknown as import('node:https').Server, broker, amqp);
    // File upload's blob store: a storage account, or the embedded Azurite behind /devstoreaccount1 on this port.
    const blobTarget = installBlobProxy(http.server as unknown as import('node:https').Server, logger.child({ component: 'blob-proxy' }));
    blobs = await openBlobStore({ config, embedded: config.natsUrl === undefined && !cluster.isWorker, dataDir, meta: store, tls, logger: logger.child({ component: 'files' }) });
    blobTarget(blobs.proxy);
    services.files.useStorage(blobs.storage);
    await listenHttp(http, config.httpsPort, config.bind);
    await listenTls(mqtt, config.mqttPort, config.bind);
    const amqpTls = amqp.createTlsServer({ key: tls.keyPem, cert: tls.chainPem, minVersion: minTls });
    amqpServer = amqpTls;
    services.gate.watch(amqpTls, 'amqp', (v) => amqpTls.setSecureContext(tlsContext(v)));
    await listenTls(amqpTls, config.amqpPort, config.bind);
  } catch (err) {
    mqtt.close();
    amqpServer?.close();
    await http?.close().catch(() => undefined);
    await blobs?.stop();
    await services.alerts.stop();
    await closePrepared(prepared);
    throw err;
  }

  await startBackgroundWork(prepared, logger);

  const state: HubState = {
    hostname: config.hostname,
    bind: config.bind,
    httpsPort: config.httpsPort,
    mqttPort: config.mqttPort,
    caFile: tls.caFile,
    store: store.kind,
    ...(config.databaseUrl === undefined ? {} : { databaseUrl: redactDatabaseUrl(config.databaseUrl) }),
    pid: process.pid,
    startedAt: new Date(clock.now()).toISOString(),
    blobStore: blobs?.kind ?? 'none',
  };
  writeFileSync(join(dataDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  warnIfAllInterfaces(config.bind, logger);
  services.lifecycle.advance('ready');

  let stopping: Promise<void> | undefined;
  const app = http;
  return {
    ...prepared,
    http: app,
    mqtt,
    broker,
    state,
    stop() {
      stopping ??= (async () => {
        services.lifecycle.advance('draining');
        // First, so the sessions closed below do not count as a disconnect storm.
        await services.alerts.stop();
        // Before the sessions close, so a method job's batch in flight is not recorded as offline devices.
        await prepared.jobRunner.stop();
        // Before the blob store stops: an import or export finishes its step and gives its lease up.
        await services.registryJobs.stop();
        const mqttClosed = new Promise<void>((resolve) => mqtt.close(() => resolve()));
        const amqpClosed = new Promise<void>((resolve) => (amqpServer === undefined ? resolve() : amqpServer.close(() => resolve())));
        broker.closeAll('hub stopping');
        amqp.closeAll('hub stopping');
        await mqttClosed;
        await amqpClosed;
        await flushConnectionState();
        await app.close();
        services.files.stopPruning();
        await blobs?.stop();
        await services.c2d.stop();
        await prepared.routing.stop();
        await prepared.eventLog.stop();
        await services.auditLog.stop();
        await services.policyUsage.stop().catch(() => undefined);
        services.metrics.stop();
        services.gate.lockout.stop();
        services.operators.stop();
        await prepared.bus.bus.drain();
        await store.close();
        services.lifecycle.advance('stopped');
      })();
      return stopping;
    },
  };
}
