/**
 * Security events: one in-process stream that every authentication point, every change and the
 * session lifecycle report to, and that the audit log, the metrics, the alert rules and the
 * brute-force guard read. Producers never wait on consumers: `emit` is synchronous and a
 * listener that throws is isolated (its error goes to `onListenerError`).
 *
 * Nothing secret enters an event: reasons are operator-facing text, change payloads go through
 * `redactSecrets` before they are emitted.
 */
import type { JsonValue } from '../core/json.js';

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
export type AuthProtocol = 'mqtt' | 'mqtt-ws' | 'https' | 'https-device' | 'dps-mqtt' | 'dps-https' | 'est' | 'amqp' | 'amqp-ws';

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
  /** A short, bounded category of the reason, for metrics and alerts. */
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

/** Bounded failure categories (metric label values, alert rule filters). */
export const AUTH_FAILURE_CODES = [
  'bad_credentials',
  'expired',
  'not_yet_valid',
  'unknown_identity',
  'disabled',
  'revoked',
  'scope',
  'auth_method_disabled',
  'ip_filtered',
  // TLS handshakes the hub refused: a protocol version below the minimum, no cipher in common, anything else.
  'tls_version',
  'tls_cipher',
  'tls_handshake',
  'locked_out',
  'insufficient_rights',
  // An authenticated device publishing, subscribing or attaching to another identity's topics or links.
  'cross_device',
  // An authenticated device publishing or subscribing outside the topic API (not another device's).
  'forbidden_topic',
  'malformed',
  'other',
] as const;

export type AuthFailureCode = (typeof AUTH_FAILURE_CODES)[number];

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

/** Maps an authenticator's free-text reason to its bounded category. */
export function classifyAuthFailure(reason: string): AuthFailureCode {
  const r = reason.toLowerCase();
  if (r.includes('locked')) return 'locked_out';
  if (r.includes('ip filter')) return 'ip_filtered';
  if (r.includes('disabled by hub settings') || r.includes('is disabled on this hub')) return 'auth_method_disabled';
  if (r.includes('revoked')) return 'revoked';
  if (r.includes('expired')) return 'expired';
  if (r.includes('not valid before') || r.includes('not yet valid')) return 'not_yet_valid';
  if (r.includes('is disabled')) return 'disabled';
  if (r.includes('lacks') || r.includes('role')) return 'insufficient_rights';
  if (r.includes('scope') || r.includes('another host')) return 'scope';
  // Before "unknown": the device authenticator says "bad signature, unknown identity or ..." on
  // purpose (it does not tell the two apart), and a wrong key is the common case.
  if (r.includes('signature') || r.includes('mismatch') || r.includes('chain') || r.includes(' cn ') || r.includes('password')) return 'bad_credentials';
  if (r.includes('unknown')) return 'unknown_identity';
  if (r.includes('malformed') || r.includes('no credentials')) return 'malformed';
  return 'other';
}
