import type { Logger } from 'pino';
import type { DeviceAuthentication } from '../../access/gate.js';
import type { DpsDeps, TelemetrySink } from '../transport/device-ports.js';
import type { Clock } from '../../core/clock.js';
import type { ConnectionTable } from '../../hub/connections.js';
import type { MethodService } from '../../hub/methods/method-service.js';
import type { TwinService } from '../../hub/twins/twin-service.js';
import type { C2dLockHolder } from '../../hub/c2d/c2d-service.js';
import type { C2dMessage } from '../../store/c2d-ports.js';
import type { SessionStore } from '../../store/session-ports.js';
import type { MqttConnection } from './connection.js';
import { DEFAULT_OUTPUT_LIMITS, type OutputLimits } from '../transport/backpressure.js';

/** The part of the C2D service that delivery over MQTT needs. */
export interface C2dDelivery {
  lockNext(deviceId: string, max: number, lockMs: number | undefined, holder: C2dLockHolder): Promise<C2dMessage[]>;
  complete(deviceId: string, lockToken: string): Promise<void>;
  abandon(deviceId: string, lockToken: string): Promise<void>;
}

export interface BrokerLimits {
  connectTimeoutMs: number;
  /** Body + system property values + application property names and values (wire doc §9.1). */
  maxMessageBytes: number;
  /** C2D messages in flight (sent, not yet PUBACKed) per connection. */
  c2dInFlight: number;
  /** How long a C2D message stays locked to one MQTT delivery attempt. */
  c2dLockMs: number;
  /** Unsent output per connection: where reading stops, where the connection is closed. */
  output: OutputLimits;
}

export const DEFAULT_BROKER_LIMITS: BrokerLimits = {
  connectTimeoutMs: 10_000,
  maxMessageBytes: 256 * 1024,
  c2dInFlight: 10,
  c2dLockMs: 60_000,
  output: DEFAULT_OUTPUT_LIMITS,
};

export interface BrokerDeps {
  hostname(): string;
  authenticator: DeviceAuthentication;
  connections: ConnectionTable;
  sessions: SessionStore;
  telemetry: TelemetrySink;
  twins: TwinService;
  methods: MethodService;
  c2d: C2dDelivery | undefined;
  clock: Clock;
  logger: Logger;
  limits: BrokerLimits;
  dps?: DpsDeps;
  /** Events inform (connection state, metrics); they cannot refuse. */
  onConnected(conn: MqttConnection): void;
  onDisconnected(conn: MqttConnection, wasCurrent: boolean): void;
  onActivity(conn: MqttConnection): void;
}
