/**
 * Device provisioning requests, whatever carries them (MQTT: protocol/mqtt/handlers/dps.ts, AMQP:
 * protocol/amqp/dps-links.ts): attestation at connect, the registration request and the operation
 * status poll, each answered as a status (200, 400, 404, 429) and a JSON body the transport frames
 * its own way. The wire doc's §4 is the reference; the SDK transports read the same bodies.
 */
import type { X509Certificate } from 'node:crypto';
import type { PeerContext } from '../../access/gate.js';
import { credentialHash } from '../../access/gate.js';
import type { AuthFailure } from '../../core/auth-failure.js';
import { HubError, isHubError } from '../../core/errors.js';
import { isJsonObject, type JsonValue } from '../../core/json.js';
import type { Attested, RegistrationPeer } from '../../dps/registration-service.js';
import { RetryLater } from '../../dps/throttle.js';
import type { DpsDeps } from './device-ports.js';

/** `<scope>/registrations/<id>[/...]`: the ID scope and registration id, or undefined when not that shape. */
export function dpsUsername(username: string): { scope: string; registrationId: string } | undefined {
  const parts = username.split('/');
  if (parts.length < 3 || parts[1] !== 'registrations') return undefined;
  const scope = parts[0] ?? '';
  const registrationId = parts[2] ?? '';
  if (!/^0ne[0-9A-F]{8}$/i.test(scope) || registrationId === '') return undefined;
  return { scope, registrationId };
}

/** JSON with every non-ASCII character escaped (the SDKs read DPS payloads as ASCII). */
export function asciiJson(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`), 'ascii');
}

export function dpsErrorBody(err: HubError): Record<string, JsonValue> {
  return { errorCode: err.number, trackingId: '', message: err.message, timestampUtc: new Date().toISOString() };
}

export type Attestation =
  | { ok: true; attested: Attested }
  /** `unverified`: refused before a credential was checked (the caller records it); otherwise the gate recorded it. */
  | { ok: false; failure: AuthFailure; unverified: boolean };

/**
 * Proves a registration: with the SAS token when there is one (symmetric key), else with the TLS
 * client certificate. The ID scope must be this service's; the gate counts failures toward lockout.
 */
export async function attestRegistration(dps: DpsDeps | undefined, who: { scope: string; registrationId: string }, credential: { sasToken: string | undefined; chain: X509Certificate[] | undefined }, peer: RegistrationPeer & PeerContext): Promise<Attestation> {
  // No provisioning service here: the ID scope is as unknown as a wrong one.
  if (dps === undefined) return { ok: false, unverified: true, failure: { code: 'scope', reason: 'provisioning is not enabled' } };
  if (who.scope.toLowerCase() !== (await dps.idScope()).toLowerCase()) return { ok: false, unverified: true, failure: { code: 'scope', reason: `unknown ID scope ${who.scope}` } };
  const { sasToken, chain } = credential;
  const x509 = sasToken === undefined || sasToken === '';
  const attest = () => (x509 ? dps.registration.attestX509(who.registrationId, chain) : dps.registration.attestSymmetricKey(who.registrationId, sasToken));
  const leaf = chain?.[0];
  try {
    const attested =
      dps.gate === undefined
        ? await attest()
        : await dps.gate.guarded(
            { subject: 'registration', identity: who.registrationId, credential: x509 ? (leaf === undefined ? undefined : credentialHash(leaf.raw)) : credentialHash(sasToken), method: x509 ? 'x509' : 'symmetricKey' },
            peer,
            attest,
          );
    return { ok: true, attested };
  } catch (err) {
    const failure: AuthFailure = isHubError(err) ? { code: err.authFailure ?? 'other', reason: String(err.cause ?? err.message) } : { code: 'other', reason: 'attestation failed' };
    return { ok: false, unverified: false, failure };
  }
}

export interface DpsReply {
  status: 200 | 400 | 404 | 429;
  body: JsonValue;
  /** Seconds, with 429. */
  retryAfter?: number;
}

function throttled(err: unknown): DpsReply {
  if (!(err instanceof RetryLater)) throw err;
  return { status: 429, body: dpsErrorBody(err), retryAfter: err.retryAfterSeconds };
}

/** `iotdps-register`: the request body as sent (JSON, `registrationId` and an optional custom allocation `payload`). */
export async function registerRequest(dps: DpsDeps, attested: Attested, raw: Buffer, peer: RegistrationPeer): Promise<DpsReply> {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8') || '{}');
  } catch {
    return { status: 400, body: dpsErrorBody(new HubError('IotHubFormatError', 'The registration request is not valid JSON.')) };
  }
  if (isJsonObject(body) && body.registrationId !== undefined && body.registrationId !== attested.registrationId) {
    return { status: 400, body: dpsErrorBody(new HubError('ArgumentInvalid', 'registrationId does not match the connection.')) };
  }
  const payload = isJsonObject(body) ? body.payload : undefined;
  try {
    const op = await dps.registration.register(attested, payload === null ? null : payload, peer);
    return { status: 200, body: op as unknown as JsonValue };
  } catch (err) {
    return throttled(err);
  }
}

/** `iotdps-get-operationstatus`. */
export async function operationStatusRequest(dps: DpsDeps, attested: Attested, operationId: string): Promise<DpsReply> {
  let op;
  try {
    op = await dps.registration.operation(attested.registrationId, operationId);
  } catch (err) {
    return throttled(err);
  }
  if (op === undefined) return { status: 404, body: dpsErrorBody(new HubError('ResourceNotFound', 'No such operation.')) };
  return { status: 200, body: op as unknown as JsonValue };
}
