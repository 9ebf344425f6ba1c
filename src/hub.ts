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
import { RegistryService, renderDevice } from './hub/registry/registry-service.js';
import { TwinService } from './hub/twins/twin-service.js';
import { QueryService } from './hub/query/query-service.js';
import { buildHttpApp } from './protocol/http/app.js';
import { watchHttpTimeouts } from './protocol/http/http-timeouts.js';
import { ConnectionRegistry } from './hub/connections.js';
import { MethodService } from './hub/methods/method-service.js';
import { C2dService, DEFAULT_C2D_LIMITS } from './hub/c2d/c2d-service.js';
import { DeviceAuthenticator } from './auth/device-authenticator.js';
import { CaRegistry } from './pki/ca-registry.js';
import { CertificateAuthority, normalizeSerial } from './pki/authority.js';
import { EstService } from './pki/est.js';
import { EventStream } from './hub/telemetry/event-stream.js';
import { MqttBroker } from './protocol/mqtt/broker.js';
import { DEFAULT_BROKER_LIMITS, type DpsDeps, type TelemetrySink } from './protocol/mqtt/broker-deps.js';
import { RegistrationService } from './dps/registration-service.js';
import { enrollmentCas } from './dps/device-ownership.js';
import { Allocator, type LinkedHub } from './dps/allocation.js';
import { parseHubConnectionString } from './dps/remote-hub.js';
import { readDpsSettings, writeDpsSettings } from './dps/settings.js';
import { ProvisioningThrottle } from './dps/throttle.js';
import { attachMqttWebSocket, createMqttTlsServer } from './protocol/mqtt/listeners.js';
import { AmqpServer } from './protocol/amqp/amqp-server.js';
import type { Server as TlsServer } from 'node:tls';
import type { HubServices } from './protocol/http/services.js';
import { redactSecrets, SecurityEvents } from './security/events.js';
import { ensurePortsFree, ensurePrivateDataDir, initializeStore, listening, listenHttp, listenTls, openHubStore, redactDatabaseUrl, resolveNodeId, STATE_FILE, warnIfAllInterfaces } from './hub/startup.js';
import { sessionStateRecorder } from './hub/session-state.js';
import { AuditLog } from './security/audit-log.js';
import { HubMetrics } from './security/metrics.js';
import { AlertEngine } from './security/alerts.js';
import { allIssued } from './pki/issued.js';
import { SettingsService } from './security/settings-service.js';
import { isoDurationMs, NODE_TLS, tlsRank, type TlsVersion } from './security/settings.js';
import { OperatorService } from './security/operators.js';
import { AccessGate } from './security/gate.js';
import { ConnectionCaps, ConnectionRefusals } from './security/connection-caps.js';
import { PolicyService } from './security/policy-service.js';
import { PolicyUsage } from './security/policy-usage.js';
import { runPostureAudit } from './security/posture-source.js';

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
}

export interface PreparedHub {
  config: HubConfig;
  dataDir: string;
  store: Store;
  tls: ServerTls;
  services: HubServices;
  authenticator: ServiceAuthenticator;
  policyCache: PolicyCache;
  /** Per-address caps on every listener, and the report of connections closed before authentication. */
  connectionCaps: ConnectionCaps;
}

/** Everything short of listening: used by `start` and by `init`. */
export async function prepareHub(config: HubConfig, logger: Logger, clock: Clock = systemClock): Promise<PreparedHub> {
  const dataDir = resolve(config.dataDir);
  ensurePrivateDataDir(dataDir, logger);
  const { store, keyWarning, keySource } = await openHubStore(dataDir, config.databaseUrl);
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
    const auditLog = new AuditLog(store, securityEvents, clock, logger.child({ component: 'audit' }), { retentionDays: config.auditRetentionDays });
    const settings = new SettingsService(store, clock, securityEvents);
    await settings.load();
    // The auditLog.enabled setting switches the recording of auth decisions; changes are always recorded.
    auditLog.setEnabled(settings.current.auditLog.enabled);
    settings.onChange((next) => auditLog.setEnabled(next.auditLog.enabled));
    const operators = new OperatorService(store, clock, () => config.hostname);
    await operators.load();
    const policyUsage = new PolicyUsage(store, clock);
    await policyUsage.load();
    const registry = new RegistryService(store, clock);
    const twins = new TwinService(store, clock);
    const query = new QueryService(store);
    const policyCache = new PolicyCache(store, clock);
    const authenticator = new ServiceAuthenticator(policyCache, () => config.hostname, clock);
    const connections = new ConnectionRegistry();
    const metrics = new HubMetrics({
      events: securityEvents,
      sessions: () => connections.sessions(),
      c2dQueueDepth: () => store.c2d.countAllPending(clock.now()),
      alertsFiring: () => alerts.firingByRule(),
      onCollectError: (err, metric) => logger.warn({ err, event: 'metrics.collect-failed', metric }, 'a metric could not be collected'),
    });
    const methods = new MethodService(connections);
    const c2d = new C2dService(store, clock, DEFAULT_C2D_LIMITS, resolveNodeId(dataDir, config.nodeId));
    const enrollments = new EnrollmentService(store, clock, () => config.hostname);
    // Provisioning assigns to this hub (always linked) and to any --linked-hub.
    const linkedHubs: LinkedHub[] = [
      { hostName: config.hostname, allocationWeight: 1 },
      ...config.linkedHubs.map((cs) => ({ hostName: parseHubConnectionString(cs).hostName, allocationWeight: 1, connectionString: cs })),
    ];
    // A deleted device's queue goes with it (the store cascades); this clears any leftover.
    registry.onIdentityChange((change) => {
      if (change.kind === 'device-deleted') void c2d.forget(change.deviceId).catch(() => undefined);
    });
    // Revocation bites at once: a disabled, deleted, re-keyed or re-thumbprinted identity loses
    // its live sessions now, not at its next reconnect.
    registry.onIdentityChange((change) => {
      const drop =
        change.kind === 'device-deleted' || change.kind === 'module-deleted' || change.credentialsOrStatus;
      if (!drop) return;
      if (change.kind === 'device-updated' && change.keepThumbprints !== undefined) {
        // A thumbprint rotation: only sessions on a certificate no longer listed go.
        const keep = new Set(change.keepThumbprints);
        const dropped = connections.dropWhere(
          (s) => s.deviceId === change.deviceId && s.moduleId === null && !(s.certificateThumbprints ?? []).some((t) => keep.has(t)),
          'certificate no longer registered',
        );
        if (dropped > 0) logger.info({ event: 'sessions.dropped', deviceId: change.deviceId, change: 'thumbprint-rotation', sessions: dropped }, 'dropped live sessions');
        return;
      }
      const n =
        change.kind === 'device-deleted' || change.kind === 'device-updated'
          ? connections.dropDevice(change.deviceId, `identity ${change.kind}`)
          : Number(connections.dropModule(change.deviceId, change.moduleId, `identity ${change.kind}`));
      if (n > 0) logger.info({ event: 'sessions.dropped', deviceId: change.deviceId, change: change.kind, sessions: n }, 'dropped live sessions');
    });
    // Registry writes, with who made them and the record before and after (keys redacted).
    registry.onRecordChange((c) => {
      const who = c.by;
      securityEvents.emit({
        type: 'change',
        at: clock.now(),
        actor: who.actor,
        action: c.action,
        target: c.target,
        ...(c.before === undefined ? {} : { before: redactSecrets(c.before) }),
        ...(c.after === undefined ? {} : { after: redactSecrets(c.after) }),
        ...(who.remote === undefined ? {} : { remote: who.remote }),
      });
    });
    twins.onDesiredChange((change) => {
      if (connections.get(change.deviceId, change.moduleId)?.pushDesired(change.patch) === true) metrics.messages.twinOut++;
    });
    // New mail for a connected device goes out at once, not at its next reconnect.
    c2d.onEnqueued((deviceId) => connections.get(deviceId, null)?.notifyC2d());
    c2d.onEnqueued((_deviceId, cause) => {
      if (cause === 'sent') metrics.messages.c2dOut++;
    });
    twins.onReportedChange(() => metrics.messages.twinIn++);
    methods.onRequestSent(() => metrics.messages.methodOut++);
    // Expired and dead-lettered C2D messages join the security event stream (alerts, audit).
    c2d.onDropped((d) =>
      securityEvents.emit({ type: 'c2d', at: clock.now(), outcome: d.status === 'Expired' ? 'expired' : 'dead-lettered', deviceId: d.deviceId, count: d.count }),
    );
    const cas = new CaRegistry(store.certificates, clock);
    const alerts = new AlertEngine({
      store: store.alerts,
      meta: store,
      events: securityEvents,
      certificates: { caCertificates: () => cas.list(), issuedCertificates: () => allIssued(store.authority, {}) },
      clock,
      logger: logger.child({ component: 'alerts' }),
      hub: config.hostname,
    });
    const pkiLog = logger.child({ component: 'pki' });
    const authority = new CertificateAuthority(store, cas, clock, {
      crlUrl: (caName) => `https://${config.hostname}${config.httpsPort === 443 ? '' : `:${config.httpsPort}`}/crl/${encodeURIComponent(caName)}.crl`,
      log: (fields, msg) => (fields.level === 'warn' ? pkiLog.warn(fields, msg) : pkiLog.info(fields, msg)),
    });
    // Revoked certificates Gatehouse issued: refused at connect and provisioning; a revocation is
    // final, so positive answers are cached (and filled by revocations as they happen).
    const revokedSerials = new Map<string, string>(); // serial -> SHA-256 thumbprint
    const revocation = {
      async isRevoked(leaf: import('node:crypto').X509Certificate): Promise<boolean> {
        const serial = normalizeSerial(leaf.serialNumber);
        const thumbprint = leaf.fingerprint256.replace(/:/g, '').toUpperCase();
        // Only our own certificate: a foreign one with the same serial is not ours to refuse.
        if (revokedSerials.has(serial)) return revokedSerials.get(serial) === thumbprint;
        const r = await store.authority.getIssued(serial);
        if (r === undefined || r.revokedAt === null) return false;
        revokedSerials.set(serial, r.thumbprintSha256);
        return r.thumbprintSha256 === thumbprint;
      },
    };
    const deviceAuth = new DeviceAuthenticator(store, () => config.hostname, clock, cas, revocation, enrollmentCas(() => enrollments.listGroups()));
    const securityLog = logger.child({ component: 'security' });
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
    });
    settings.bind({ gate, operators, enrollments });
    const policies = new PolicyService(store, policyCache, connections, operators, securityEvents, clock);
    const applyC2dDefaults = (s: typeof settings.current) => c2d.setDefaults({ defaultTtlMs: isoDurationMs(s.c2d.defaultTtlAsIso8601), maxDeliveryCount: s.c2d.maxDeliveryCount });
    applyC2dDefaults(settings.current);
    settings.onChange((next, previous) => {
      applyC2dDefaults(next);
      securityLog.info({ event: 'settings.applied', version: next.version, by: next.updatedBy, previousVersion: previous.version }, 'hub settings applied');
      if (tlsRank(next.minTlsVersion) < 1.2) securityLog.warn({ event: 'settings.legacy-tls', minTlsVersion: next.minTlsVersion }, 'TLS below 1.2 is allowed');
    });
    // A revoked certificate loses its live sessions at once, not at the next reconnect.
    authority.onRevoked((records) => {
      const serials = new Set(records.map((r) => normalizeSerial(r.serial)));
      for (const r of records) revokedSerials.set(normalizeSerial(r.serial), r.thumbprintSha256);
      const n = connections.dropWhere((s) => s.certificateSerial !== undefined && serials.has(normalizeSerial(s.certificateSerial)), 'certificate revoked');
      logger.info({ event: 'certificates.revoked', serials: [...serials], sessions: n }, 'revoked certificates');
    });
    const est = new EstService({
      authority,
      store: store.authority,
      group: (id) => enrollments.getGroup(id),
      cas,
      registry: {
        getDevice: (id) => registry.getDevice(id),
        async rotateThumbprint(device, oldThumbprints, newThumbprint) {
          if (device.auth.type !== 'selfSigned') return undefined;
          const old = new Set(oldThumbprints.map((t) => t.toUpperCase()));
          const { primaryThumbprint: p, secondaryThumbprint: s } = device.auth;
          const slot = p !== null && old.has(p.toUpperCase()) ? 'secondary' : s !== null && old.has(s.toUpperCase()) ? 'primary' : undefined;
          if (slot === undefined) return undefined;
          const x509Thumbprint = slot === 'secondary' ? { primaryThumbprint: p, secondaryThumbprint: newThumbprint } : { primaryThumbprint: newThumbprint, secondaryThumbprint: s };
          await registry.updateDevice(device.deviceId, { ...renderDevice(device), authentication: { type: 'selfSigned', x509Thumbprint } }, device.etag);
          return slot;
        },
      },
      isRevoked: (leaf) => revocation.isRevoked(leaf),
      ownership: { registration: (id) => enrollments.findRegistration(id), device: (id) => store.getDevice(id), hub: () => config.hostname },
      clock,
      policy: () => ({ validityDays: config.deviceCertValidityDays, renewalGraceDays: config.certRenewalGraceDays }),
      log: (fields, msg) => pkiLog.info(fields, msg),
    });
    const events = new EventStream(
      store.events,
      clock,
      { retentionMs: config.eventRetentionHours * 3600_000, maxEvents: config.eventMaxCount },
      logger.child({ component: 'events' }),
    );
    // Telemetry goes through the event stream: group commit, durable before PUBACK, live subscribers.
    // Counted where MQTT and device HTTPS hand it over: one integer increment per message.
    const telemetry: TelemetrySink = {
      append(event) {
        metrics.messages.telemetryIn++;
        return events.append(event);
      },
    };
    const dpsLog = logger.child({ component: 'dps' });
    const dps: DpsDeps = {
      idScope: async () => idScope,
      gate,
      registration: new RegistrationService(enrollments, registry, twins, clock, {
        idScope: async () => idScope,
        allocator: new Allocator(() => linkedHubs),
        // disableDeviceSAS covers provisioning too: no symmetric-key attestation while it is on.
        settings: async () => {
          const dps = await readDpsSettings(store);
          return { ...dps, disableSymmetricKeyAttestation: dps.disableSymmetricKeyAttestation || settings.current.disableDeviceSAS };
        },
        throttle: new ProvisioningThrottle(clock, config.dpsRegistrationsPerMinute),
        log: (fields, msg) => dpsLog.info(fields, msg),
        // The provisioning service and the hub share one CA registry (groups may reference its CAs).
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
    const services: HubServices = {
      registry,
      twins,
      query,
      methods,
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
      cas,
      authority,
      est,
      events,
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
    return { config, dataDir, store, tls, services, authenticator, policyCache, connectionCaps };
  } catch (err) {
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
    if (released > 0) logger.info({ event: 'c2d.locks-released', devices: released }, "released the C2D locks of this node's previous run");
    await services.alerts.start();
  } catch (err) {
    await store.close();
    throw err;
  }
  const sessionState = sessionStateRecorder(store, services.securityEvents, clock);
  const broker = new MqttBroker({
    hostname: () => config.hostname,
    authenticator: services.gate,
    connections: services.connections,
    sessions: store.sessions,
    telemetry: services.telemetry,
    twins: services.twins,
    methods: services.methods,
    c2d: services.c2d,
    clock,
    logger: logger.child({ component: 'mqtt' }),
    limits: { ...DEFAULT_BROKER_LIMITS, connectTimeoutMs: config.mqttConnectTimeout * 1000 },
    dps: services.dps,
    onConnected(conn) {
      sessionState.connected(conn);
    },
    onActivity(conn) {
      sessionState.active(conn);
    },
    onDisconnected(conn, wasCurrent) {
      sessionState.disconnected(conn, wasCurrent);
    },
  });
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
  // AMQP 1.0: the service client's C2D and feedback (and, later, device AMQP), on TLS and WebSocket.
  const amqp = new AmqpServer({
    hostname: () => config.hostname,
    gate: services.gate,
    clock,
    logger: logger.child({ component: 'amqp' }),
    c2d: services.c2d,
    meta: store,
    connections: services.connections,
    telemetry: services.telemetry,
    twins: services.twins,
    methods: services.methods,
    maxMessageBytes: DEFAULT_BROKER_LIMITS.maxMessageBytes,
    c2dInFlight: DEFAULT_BROKER_LIMITS.c2dInFlight,
    c2dLockMs: DEFAULT_BROKER_LIMITS.c2dLockMs,
    onConnected: (s) => sessionState.connected(s),
    onDisconnected: (s, current) => sessionState.disconnected(s, current),
    admission: {
      handshakeTimeoutMs,
      openTimeoutMs: config.amqpOpenTimeout * 1000,
      authTimeoutMs: config.amqpAuthTimeout * 1000,
      maxUnauthenticated: config.amqpMaxUnauthenticated,
      maxUnauthenticatedPerAddress: config.amqpMaxUnauthenticatedPerAddress,
    },
    refusals: connectionCaps.refusals,
  });
  let amqpServer: TlsServer | undefined;
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
    await services.alerts.stop();
    await store.close();
    throw err;
  }

  services.c2d.start();
  services.events.start();
  await services.auditLog.start();
  services.policyUsage.start();

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
        const mqttClosed = new Promise<void>((resolve) => mqtt.close(() => resolve()));
        const amqpClosed = new Promise<void>((resolve) => (amqpServer === undefined ? resolve() : amqpServer.close(() => resolve())));
        broker.closeAll('hub stopping');
        amqp.closeAll('hub stopping');
        await mqttClosed;
        await amqpClosed;
        await app.close();
        await services.c2d.stop();
        await services.events.stop();
        await services.auditLog.stop();
        await services.policyUsage.stop().catch(() => undefined);
        services.metrics.stop();
        await store.close();
        services.lifecycle.advance('stopped');
      })();
      return stopping;
    },
  };
}
