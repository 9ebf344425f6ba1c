/** What every device-facing adapter (MQTT, AMQP, HTTPS) needs from the hub for telemetry and provisioning. */
import type { AccessGate } from '../../access/gate.js';
import type { RegistrationService } from '../../dps/registration-service.js';
import type { LogMessage, LogPlacement } from '../../log/log-ports.js';

/** Device provisioning over the same MQTT port (wire doc §4.1). */
export interface DpsDeps {
  idScope(): Promise<string>;
  registration: RegistrationService;
  /** Lockout and security events around attestation (the access gate). */
  gate?: Pick<AccessGate, 'guarded' | 'refusedBeforeAuth'>;
}

/**
 * Durable telemetry intake: resolves, with where the message landed in the log, once it is durable;
 * with undefined when the routes in effect send it nowhere (acknowledged, not stored: decision 0006).
 */
export interface TelemetrySink {
  /** Takes the message over (the caller does not touch it again): durable once the promise resolves. */
  append(message: LogMessage): Promise<LogPlacement | undefined>;
}
