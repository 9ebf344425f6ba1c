/**
 * Why an authentication (or an authenticated caller's request) was refused, as a value decided
 * where the refusal is decided: the authenticator, the attestation, the EST provisioner, the
 * gate. Nothing downstream reads the reason text to find the category; the text is for the
 * operator and may carry names the caller chose (a device id, a policy name).
 *
 * The codes are stable: they are the `reason` label of `gatehouse_auth_failures_total`, the
 * `reasons` filter of alert rules and the audit log's `reasonCode`, and are listed in
 * docs/errors.md (a test keeps the two in step). Add one only for a category an operator would
 * alert on separately; never rename one.
 */
export const AUTH_FAILURE_CODES = [
  // A wrong key, signature, password or certificate; also an unknown device or enrollment where the
  // hub deliberately does not tell the two apart (device SAS, DPS).
  'bad_credentials',
  'expired',
  'not_yet_valid',
  // An identity the credential names does not exist (policy, operator, X.509 device).
  'unknown_identity',
  // Valid credentials of a disabled identity (device, enrollment, group, operator).
  'disabled',
  'revoked',
  // A credential for another resource: another hub, device, registration, ID scope or group.
  'scope',
  // Hub settings switched the method off (disableDeviceSAS, disableModuleSAS, disableLocalAuth).
  'auth_method_disabled',
  'ip_filtered',
  // TLS handshakes the hub refused: a protocol version below the minimum, no cipher in common, anything else.
  'tls_version',
  'tls_cipher',
  'tls_handshake',
  'locked_out',
  // Authenticated, but its rights do not cover what it asked (a route, a device another enrollment made).
  'insufficient_rights',
  // An authenticated device publishing, subscribing or attaching to another identity's topics or links.
  'cross_device',
  // An authenticated device publishing or subscribing outside the topic API (not another device's).
  'forbidden_topic',
  // No credential, or one (or the attempt carrying it) that cannot be read.
  'malformed',
  'other',
] as const;

export type AuthFailureCode = (typeof AUTH_FAILURE_CODES)[number];

/** A refusal as its decider states it: the bounded code and the operator-facing reason (never for the caller). */
export interface AuthFailure {
  code: AuthFailureCode;
  reason: string;
}
