/**
 * Security events: one in-process stream that every authentication point, every change and the
 * session lifecycle report to, and that the audit log, the metrics, the alert rules and the
 * brute-force guard read. Producers never wait on consumers: `emit` is synchronous and a
 * listener that throws is isolated (its error goes to `onListenerError`).
 *
 * Nothing secret enters an event: reasons are operator-facing text (their category travels beside
 * them as a code, src/core/auth-failure.ts), change payloads go through
 * `redactSecrets` before they are emitted.
 */
import type { AuthFailureCode } from './auth-failure.js';
import type { JsonValue } from './json.js';

/** Who tried to authenticate. */
export type AuthSubject =
  | 'device'
  | 'module'
  /** A shared access policy (service REST with a SAS token). */
  | 'policy'
  /** An operator with a hub-signed bearer token. */
  | 'operator'
  /** A provisioning registration (DPS over MQTT or HTTPS). */
  | 'registration'
  /** A factory station's EST credential. */
  | 'est-credential'
  /** A network connection refused before any credential (IP filter, TLS handshake). */
  | 'connection';

/** Where the attempt came in. */
export type AuthProtocol = 'mqtt' | 'mqtt-ws' | 'https' | 'https-device' | 'dps-mqtt' | 'dps-https' | 'dps-amqp' | 'est' | 'amqp' | 'amqp-ws';

export interface AuthEvent {
  type: 'auth';
  /** ms since epoch. */
  at: number;
  subject: AuthSubject;
  /** Device id, `deviceId/moduleId`, policy name, operator id, registration id; '' when none was given. At most 260 characters. */
  identity: string;
  outcome: 'success' | 'failure';
  /** Why a failure failed (for the operator; never a token, key or password). */
  reason?: string;
  /** The bounded category of the failure, for metrics and alerts: decided with the reason where the refusal was decided, never read from its text. */
  reasonCode?: AuthFailureCode;
  /** Remote IP address as the socket reports it. */
  remote: string;
  protocol: AuthProtocol;
  /** sas, policy-sas, x509-thumbprint, x509-ca, bearer, basic, symmetricKey, x509, none. */
  method?: string;
  /** TLSv1.2, TLSv1.3. */
  tls?: string;
  /** A SHA-256 (hex, first 32 chars) of the presented credential (never stored in the audit log). */
  credential?: string;
}

/** Bounded failure categories (metric label values, alert rule filters): decided where the failure is decided. */
export { AUTH_FAILURE_CODES, type AuthFailureCode } from './auth-failure.js';

export interface ChangeEvent {
  type: 'change';
  at: number;
  /** `policy:<name>`, `operator:<id>`, `cli:<user>` (offline CLI on the data dir), `hub` (the hub itself). */
  actor: string;
  /** Dotted verb: `device.create`, `device.update`, `settings.update`, `policy.renew-key`, ... */
  action: string;
  /** What changed: `devices/d1`, `settings`, `policies/service`, ... */
  target: string;
  /** State before and after, already passed through `redactSecrets`. */
  before?: JsonValue;
  after?: JsonValue;
  /** Where the request came from, when it came over the network. */
  remote?: string;
}

export interface SessionEvent {
  type: 'session';
  at: number;
  state: 'connected' | 'disconnected';
  deviceId: string;
  moduleId: string | null;
  protocol: AuthProtocol;
  remote: string;
}

export interface C2dEvent {
  type: 'c2d';
  at: number;
  /** A message left the queue without delivery: dead-lettered (too many deliveries) or expired. */
  outcome: 'dead-lettered' | 'expired';
  deviceId: string;
  count: number;
}

export type SecurityEvent = AuthEvent | ChangeEvent | SessionEvent | C2dEvent;

export type SecurityListener = (event: SecurityEvent) => void;

export class SecurityEvents {
  readonly #listeners = new Set<SecurityListener>();

  constructor(private readonly onListenerError: (err: unknown) => void = () => undefined) {}

  on(listener: SecurityListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(event: SecurityEvent): void {
    for (const l of this.#listeners) {
      try {
        l(event);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }
}

/** Field names whose values are secrets wherever they appear. */
const SECRET_FIELDS = /^(primaryKey|secondaryKey|symmetricKey|sharedAccessKey|password|secret|privateKey|privateKeyPem|keyPem|token|connectionString|authorization)$/i;

/** A copy of `value` with every secret field's value replaced by "<redacted>". */
export function redactSecrets(value: unknown): JsonValue {
  if (value === null || value === undefined) return null;
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v));
  if (typeof value === 'object') {
    const out: Record<string, JsonValue> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v === undefined) continue;
      out[k] = SECRET_FIELDS.test(k) && v !== null && v !== '' ? '<redacted>' : redactSecrets(v);
    }
    return out;
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string') return value;
  return String(value);
}
