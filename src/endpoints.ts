/**
 * The device protocols' cores, wired to a prepared hub's services: the MQTT broker and the AMQP
 * server. Neither listens: `startHub` hands them its TLS and WebSocket listeners' streams, and the
 * tests' in-memory harness (test/support/protocol-harness.ts) hands them one end of a stream pair,
 * so a packet-level test runs the same wiring without a hub process or a socket.
 */
import type { Logger } from 'pino';
import type { Clock } from './core/clock.js';
import { BUILTIN_ENDPOINT_NAME } from './log/log-ports.js';
import type { PreparedHub } from './hub.js';
import { AmqpServer } from './protocol/amqp/amqp-server.js';
import { ReceiverClaims } from './protocol/amqp/eventhub-claims.js';
import { EventHubEndpoint } from './protocol/amqp/eventhub-endpoint.js';
import { MqttBroker } from './protocol/mqtt/broker.js';
import { DEFAULT_BROKER_LIMITS } from './protocol/mqtt/broker-deps.js';
import { sessionStateRecorder } from './hub/session-state.js';
import { FeedbackQueue } from './hub/c2d/feedback-queue.js';
import { fileNotificationQueue } from './hub/files/file-notifications.js';

export interface ProtocolEndpoints {
  broker: MqttBroker;
  amqp: AmqpServer;
  /** Writes the connection states reported so far (before the store closes). */
  flushConnectionState(): Promise<void>;
}

export function createProtocolEndpoints(prepared: PreparedHub, logger: Logger, clock: Clock): ProtocolEndpoints {
  const { config, store, services, connectionCaps } = prepared;
  const sessionState = sessionStateRecorder(store, services.securityEvents, clock, (err, changes) =>
    logger.warn({ err, event: 'connection-state.write-failed', changes }, 'connection states could not be written'),
  );
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
  // AMQP 1.0: the service client's C2D and feedback, and device sessions, on TLS and WebSocket.
  const amqp = new AmqpServer({
    hostname: () => config.hostname,
    gate: services.gate,
    clock,
    logger: logger.child({ component: 'amqp' }),
    dps: services.dps,
    c2d: services.c2d,
    // One feedback queue for the cluster: each batch goes to one receiver on any node.
    feedback: new FeedbackQueue({
      counters: store.counters,
      meta: store,
      readFeedback: (after, limit) => services.c2d.readFeedback(after, limit),
      clock,
      lockMs: config.feedbackLockSeconds * 1000,
    }),
    // File upload notifications, one queue for the cluster too, locked as long as feedback batches.
    fileNotifications: fileNotificationQueue({
      counters: store.counters,
      notifications: store.fileNotifications,
      settings: () => services.settings.current,
      clock,
      lockMs: config.feedbackLockSeconds * 1000,
    }),
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
      handshakeTimeoutMs: config.tlsHandshakeTimeout * 1000,
      openTimeoutMs: config.amqpOpenTimeout * 1000,
      authTimeoutMs: config.amqpAuthTimeout * 1000,
      maxUnauthenticated: config.amqpMaxUnauthenticated,
      maxUnauthenticatedPerAddress: config.amqpMaxUnauthenticatedPerAddress,
    },
    refusals: connectionCaps.refusals,
    // The built-in Event Hubs-compatible endpoint, reading the partitioned log.
    eventHubs: new EventHubEndpoint({
      log: prepared.eventLog.log,
      consumerGroups: services.consumerGroups,
      hostname: () => config.hostname,
      gate: services.gate,
      clock,
      logger: logger.child({ component: 'eventhubs' }),
      createdAt: prepared.eventHubsCreatedAt,
      // Epoch receivers own a partition across the cluster; on one node the endpoint decides alone.
      claims: new ReceiverClaims(prepared.bus, config.natsUrl === undefined ? undefined : prepared.store.counters, clock),
      // The enrichments configured for `events` (routing's, as its dispatchers apply them to custom endpoints).
      enrich: prepared.routing.enricher,
      latency: services.metrics.deliveries.series(BUILTIN_ENDPOINT_NAME, 'builtin'),
    }),
  });
  return { broker, amqp, flushConnectionState: sessionState.flush };
}
