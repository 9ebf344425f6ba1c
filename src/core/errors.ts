/**
 * One error vocabulary for the whole hub. Every failure a caller can see is a HubError with a
 * stable code from ERROR_CODES; each edge (HTTP, MQTT, CLI) maps it once. The message is safe to
 * show to the caller; anything that would reveal more (which check failed on a login, whether a
 * device exists) goes into `cause` for the log only.
 *
 * The names and numbers follow Azure IoT Hub's (C# service SDK ErrorCode.cs) so that the official
 * SDKs raise the same typed errors they raise against Azure. docs/errors.md lists every code; a
 * test keeps the two in step.
 */

export interface ErrorCodeInfo {
  /** HTTP status class of the error. */
  readonly status: number;
  /** Azure's six-digit numeric code. */
  readonly number: number;
  /** One line for docs/errors.md. */
  readonly summary: string;
}

import type { AuthFailureCode } from './auth-failure.js';

export const ERROR_CODES = {
  ArgumentInvalid: { status: 400, number: 400004, summary: 'A request field, path segment or header is invalid.' },
  ArgumentNull: { status: 400, number: 400005, summary: 'A required request field is missing.' },
  IotHubFormatError: { status: 400, number: 400006, summary: 'The request body is not valid JSON or not the expected shape.' },
  DeviceDefinedMultipleTimes: { status: 400, number: 400011, summary: 'A bulk request names the same device more than once.' },
  BulkRegistryOperationFailure: { status: 400, number: 400013, summary: 'At least one operation of a bulk registry request failed.' },
  InvalidOperation: { status: 400, number: 400003, summary: 'The operation is not allowed in the current state.' },
  AlertRuleInvalid: { status: 400, number: 400901, summary: 'An alert rule name or definition is invalid; the message names the field and what it must be.' },
  RoutingInvalid: { status: 400, number: 400951, summary: 'A routing document is invalid: its shape, a limit (100 routes, 10 endpoints per type, 10 enrichments), a name used twice or reserved (events), or a route or enrichment naming no endpoint; the message names each problem.' },
  RoutingQueryInvalid: { status: 400, number: 400952, summary: 'A route condition or an enrichment value is not valid in the routing query language; the message names the route or key and the position.' },
  IotHubUnauthorizedAccess: { status: 401, number: 401002, summary: 'Missing, malformed, expired or wrongly scoped credentials, or rights that do not cover the call.' },
  CertificateNotAccepted: { status: 403, number: 403010, summary: 'The client certificate was not issued by this hub, is revoked, not yet valid, or expired beyond the renewal grace period; or an EST enroll asks for a registration id the factory credential may not enroll.' },
  IotHubQuotaExceeded: { status: 403, number: 403002, summary: 'A hub quota is exhausted.' },
  JobQuotaExceeded: { status: 403, number: 403003, summary: 'The hub holds the maximum number of unfinished jobs (100); wait for some to finish or cancel them.' },
  TooManyDevices: { status: 403, number: 413002, summary: 'The hub holds the maximum number of identities.' },
  DeviceMaximumQueueDepthExceeded: { status: 403, number: 403004, summary: "The device's cloud-to-device queue holds the maximum number of pending messages (50)." },
  PolicyLimitExceeded: { status: 400, number: 400030, summary: 'A hub holds at most 16 shared access policies.' },
  DeviceNotFound: { status: 404, number: 404001, summary: 'No device with this id (or the caller may not know).' },
  ModuleNotFound: { status: 404, number: 404010, summary: 'No module with this id on the device.' },
  OperatorNotFound: { status: 404, number: 404401, summary: 'No operator with this id.' },
  RoleAssignmentNotFound: { status: 404, number: 404402, summary: 'No role assignment matches.' },
  PolicyNotFound: { status: 404, number: 404403, summary: 'No shared access policy with this name.' },
  ResourceNotFound: { status: 404, number: 404000, summary: 'No such route or resource.' },
  EnrollmentNotFound: { status: 404, number: 404201, summary: 'No DPS individual enrollment or enrollment group with this id.' },
  RegistrationNotFound: { status: 404, number: 404202, summary: 'No DPS device registration state with this registration id.' },
  ConfigurationNotFound: { status: 404, number: 404601, summary: 'No automatic device or module configuration with this id.' },
  JobNotFound: { status: 404, number: 404002, summary: 'No job with this id.' },
  ConsumerGroupNotFound: { status: 404, number: 404501, summary: 'No consumer group with this name on the Event Hubs-compatible endpoint.' },
  DeviceNotOnline: { status: 404, number: 404103, summary: 'The device is not connected, or not subscribed to direct methods.' },
  CertificateConflict: { status: 409, number: 409010, summary: 'The registration id already holds an active certificate for another key; renew or revoke it first.' },
  OperatorAlreadyExists: { status: 409, number: 409401, summary: 'An operator with this id already exists.' },
  PolicyAlreadyExists: { status: 409, number: 409402, summary: 'A shared access policy with this name already exists.' },
  SettingsLockout: { status: 409, number: 409403, summary: 'The settings change would lock the caller (or every administrator) out; fix the cause or pass force.' },
  ConfigurationAlreadyExists: { status: 409, number: 409601, summary: 'A configuration with this id already exists (an update sends If-Match).' },
  JobAlreadyExists: { status: 409, number: 409701, summary: 'A job with this id already exists (job ids are never reused).' },
  DeviceAlreadyExists: { status: 409, number: 409001, summary: 'A device with this id already exists.' },
  ModuleAlreadyExistsOnDevice: { status: 409, number: 409301, summary: 'A module with this id already exists on the device.' },
  PreconditionFailed: { status: 412, number: 412001, summary: 'The If-Match etag does not match the current version.' },
  DeviceMessageLockLost: { status: 412, number: 412002, summary: 'The lock token of a cloud-to-device message is unknown or its lock expired.' },
  MessageTooLarge: { status: 413, number: 413001, summary: 'The request body exceeds the size limit.' },
  UnsupportedMediaType: { status: 415, number: 415001, summary: 'The request Content-Type is not accepted on this route.' },
  ThrottlingException: { status: 429, number: 429001, summary: 'Too many requests; retry later.' },
  ServerError: { status: 500, number: 500001, summary: 'An unexpected error inside the hub; the log has the details.' },
  ServiceUnavailable: { status: 503, number: 503001, summary: 'The hub is starting, stopping or overloaded.' },
  GatewayTimeout: { status: 504, number: 504101, summary: 'The device did not answer the direct method in time.' },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class HubError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /**
   * For a refused authentication (401 IotHubUnauthorizedAccess, 403 CertificateNotAccepted): its
   * category, set where the refusal is decided, for the audit log, metrics and alerts. Like the
   * cause, never shown to the caller.
   */
  readonly authFailure: AuthFailureCode | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; authFailure?: AuthFailureCode }) {
    super(message, options !== undefined && 'cause' in options ? { cause: options.cause } : undefined);
    this.name = 'HubError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.authFailure = options?.authFailure;
  }

  get number(): number {
    return ERROR_CODES[this.code].number;
  }
}

export function isHubError(err: unknown): err is HubError {
  return err instanceof HubError;
}

/** The one message every authentication failure shows, whatever the real reason. */
export const UNAUTHORIZED_MESSAGE = 'Unauthorized';

/** A refused authentication: the one 401 every caller sees; the code and the reason (cause) are for the audit and the log. */
export function unauthorized(code: AuthFailureCode, reason: string): HubError {
  return new HubError('IotHubUnauthorizedAccess', UNAUTHORIZED_MESSAGE, { cause: reason, authFailure: code });
}
