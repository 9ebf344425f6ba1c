/**
 * Device provisioning over MQTT (wire doc §4.1), on the hub's MQTT port, told apart from hub
 * devices by the CONNECT username `<idScope>/registrations/<registrationId>/api-version=...`.
 *
 * Topics: SUBSCRIBE `$dps/registrations/res/#`; PUBLISH `$dps/registrations/PUT/iotdps-register/?$rid=`
 * and `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=&operationId=`; answers on
 * `$dps/registrations/res/<status>/?$rid=...`, always with a JSON body, ASCII only (the SDK decodes
 * as ASCII), with `status` present; UNSUBSCRIBE gets its UNSUBACK (without it `register()` hangs).
 */
import type { IConnectPacket, IPublishPacket, ISubscribePacket } from 'mqtt-packet';
import type { AuthFailure } from '../../../core/auth-failure.js';
import { HubError, isHubError } from '../../../core/errors.js';
import { isJsonObject, type JsonValue } from '../../../core/json.js';
import type { MqttConnection } from '../connection.js';
import { RetryLater } from '../../../dps/throttle.js';
import { credentialHash } from '../../../access/gate.js';

export const DPS_RESPONSE_FILTER = '$dps/registrations/res/#';

/** `<scope>/registrations/<id>/...`: the registration id, or undefined when not a DPS username. */
export function dpsUsername(username: string): { scope: string; registrationId: string } | undefined {
  const parts = username.split('/');
  if (parts.length < 3 || parts[1] !== 'registrations') return undefined;
  const scope = parts[0] ?? '';
  const registrationId = parts[2] ?? '';
  if (!/^0ne[0-9A-F]{8}$/i.test(scope) || registrationId === '') return undefined;
  return { scope, registrationId };
}

/** JSON with every non-ASCII character escaped (the SDK reads DPS payloads as ASCII). */
export function asciiJson(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`), 'ascii');
}

function respond(conn: MqttConnection, status: number, rid: string, body: unknown, retryAfter?: number): void {
  const extra = retryAfter === undefined ? '' : `&retry-after=${retryAfter}`;
  conn.send({ cmd: 'publish', topic: `$dps/registrations/res/${status}/?$rid=${encodeURIComponent(rid)}${extra}`, payload: asciiJson(body), qos: 0, retain: false, dup: false });
}

function errorBody(err: HubError): Record<string, JsonValue> {
  return { errorCode: err.number, trackingId: '', message: err.message, timestampUtc: new Date().toISOString() };
}

/**
 * Refuses a provisioning CONNECT. `unverified`: refused before the gate checked a credential, so
 * recorded here (audited, not counted toward lockout); the gate records what it refuses itself.
 */
export function refuseProvisioning(conn: MqttConnection, packet: IConnectPacket, registrationId: string, returnCode: number, failure: AuthFailure, unverified: boolean): void {
  if (unverified) {
    const x509 = packet.password === undefined || packet.password.length === 0;
    conn.deps.authenticator.refusedBeforeAuth(
      { subject: 'registration', identity: registrationId, method: x509 ? 'x509' : 'symmetricKey', failure },
      { remote: conn.peer.remoteAddress, protocol: 'dps-mqtt', tls: conn.peer.tlsVersion },
    );
  }
  conn.deps.logger.warn(
    { event: 'auth.denied', protocol: `dps-${conn.peer.transport}`, remote: conn.peer.remoteAddress, registrationId: registrationId.slice(0, 128), reason: failure.reason },
    'provisioning connection refused',
  );
  conn.send({ cmd: 'connack', returnCode, sessionPresent: false });
  conn.close(failure.reason);
}

export async function handleDpsConnect(conn: MqttConnection, packet: IConnectPacket, who: { scope: string; registrationId: string }): Promise<void> {
  const dps = conn.deps.dps;
  const unverified = (failure: AuthFailure) => refuseProvisioning(conn, packet, who.registrationId, 4, failure, true);
  // No provisioning service here: the ID scope is as unknown as a wrong one.
  if (dps === undefined) return unverified({ code: 'scope', reason: 'provisioning is not enabled' });
  if (who.scope.toLowerCase() !== (await dps.idScope()).toLowerCase()) return unverified({ code: 'scope', reason: `unknown ID scope ${who.scope}` });
  if (packet.clientId !== who.registrationId) return unverified({ code: 'malformed', reason: 'client id is not the registration id' });
  const password = packet.password?.toString('utf8');
  try {
    // No password: X.509, the certificate presented in the TLS handshake (wire doc §4.4).
    const x509 = password === undefined || password === '';
    const attest = () => (x509 ? dps.registration.attestX509(who.registrationId, conn.peer.chain) : dps.registration.attestSymmetricKey(who.registrationId, password));
    const leaf = conn.peer.chain?.[0];
    conn.dpsAttested =
      dps.gate === undefined
        ? await attest()
        : await dps.gate.guarded(
            { subject: 'registration', identity: who.registrationId, credential: x509 ? (leaf === undefined ? undefined : credentialHash(leaf.raw)) : credentialHash(password), method: x509 ? 'x509' : 'symmetricKey' },
            { remote: conn.peer.remoteAddress, protocol: 'dps-mqtt', tls: conn.peer.tlsVersion },
            attest,
          );
  } catch (err) {
    // The gate recorded the refusal (or, without a gate, nothing records attestation).
    const failure: AuthFailure = isHubError(err) ? { code: err.authFailure ?? 'other', reason: String(err.cause ?? err.message) } : { code: 'other', reason: 'attestation failed' };
    return refuseProvisioning(conn, packet, who.registrationId, 4, failure, false);
  }
  if ((conn.state as string) === 'closed') return;
  conn.kind = 'dps';
  conn.clientId = packet.clientId;
  conn.state = 'connected';
  conn.send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
  conn.startTimers(packet.keepalive ?? 0);
  conn.deps.logger.info({ event: 'auth.accepted', protocol: `dps-${conn.peer.transport}`, remote: conn.peer.remoteAddress, registrationId: who.registrationId }, 'provisioning client connected');
}

export async function handleDpsSubscribe(conn: MqttConnection, packet: ISubscribePacket): Promise<void> {
  for (const s of packet.subscriptions) {
    if (s.topic !== DPS_RESPONSE_FILTER) return conn.close(`provisioning subscription outside ${DPS_RESPONSE_FILTER}`);
    conn.subscriptions.set(s.topic, { topic: s.topic, qos: 1 });
  }
  conn.send({ cmd: 'suback', messageId: packet.messageId, granted: packet.subscriptions.map(() => 1) });
}

/** The topic's query parameters, percent-decoded; undefined when one is not valid percent-encoding. */
function query(topic: string): Map<string, string> | undefined {
  const out = new Map<string, string>();
  const q = topic.indexOf('?');
  if (q < 0) return out;
  for (const part of topic.slice(q + 1).split('&')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    try {
      out.set(part.slice(0, eq), decodeURIComponent(part.slice(eq + 1)));
    } catch {
      return undefined;
    }
  }
  return out;
}

/** 429 + retry-after (seconds): the SDK waits and retries over MQTT (wire doc §4.1). */
function throttled(conn: MqttConnection, rid: string, err: unknown): void {
  if (!(err instanceof RetryLater)) throw err;
  respond(conn, 429, rid, errorBody(err), err.retryAfterSeconds);
}

export async function handleDpsPublish(conn: MqttConnection, packet: IPublishPacket): Promise<void> {
  const dps = conn.deps.dps;
  const attested = conn.dpsAttested;
  if (dps === undefined || attested === undefined) return conn.close('provisioning publish without attestation');
  if (packet.qos === 2) return conn.close('QoS 2 is not supported');
  const params = query(packet.topic);
  if (params === undefined) return conn.close('provisioning request topic is not valid percent-encoding');
  const rid = params.get('$rid') ?? '';
  const path = packet.topic.split('?')[0];
  if (rid === '' || rid.length > 128) return conn.close('provisioning request without $rid');
  if (packet.qos === 1 && packet.messageId !== undefined) conn.send({ cmd: 'puback', messageId: packet.messageId });

  if (path === '$dps/registrations/PUT/iotdps-register/') {
    let body: unknown;
    try {
      body = JSON.parse(Buffer.from(packet.payload).toString('utf8') || '{}');
    } catch {
      return respond(conn, 400, rid, errorBody(new HubError('IotHubFormatError', 'The registration request is not valid JSON.')));
    }
    if (isJsonObject(body) && body.registrationId !== undefined && body.registrationId !== attested.registrationId) {
      return respond(conn, 400, rid, errorBody(new HubError('ArgumentInvalid', 'registrationId does not match the connection.')));
    }
    const payload = isJsonObject(body) ? body.payload : undefined;
    try {
      const op = await dps.registration.register(attested, payload === null ? null : payload, { remote: conn.peer.remoteAddress, protocol: 'dps-mqtt', tls: conn.peer.tlsVersion });
      return respond(conn, 200, rid, op);
    } catch (err) {
      return throttled(conn, rid, err);
    }
  }
  if (path === '$dps/registrations/GET/iotdps-get-operationstatus/') {
    let op;
    try {
      op = await dps.registration.operation(attested.registrationId, params.get('operationId') ?? '');
    } catch (err) {
      return throttled(conn, rid, err);
    }
    if (op === undefined) return respond(conn, 404, rid, errorBody(new HubError('ResourceNotFound', 'No such operation.')));
    return respond(conn, 200, rid, op);
  }
  return conn.close(`provisioning publish to an unknown topic: ${packet.topic.slice(0, 120)}`);
}
