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
import type { MqttConnection } from '../connection.js';
import { asciiJson, attestRegistration, operationStatusRequest, registerRequest, type DpsReply } from '../../transport/dps-requests.js';

export { dpsUsername } from '../../transport/dps-requests.js';

export const DPS_RESPONSE_FILTER = '$dps/registrations/res/#';

function respond(conn: MqttConnection, rid: string, reply: DpsReply): void {
  const extra = reply.retryAfter === undefined ? '' : `&retry-after=${reply.retryAfter}`;
  conn.send({ cmd: 'publish', topic: `$dps/registrations/res/${reply.status}/?$rid=${encodeURIComponent(rid)}${extra}`, payload: asciiJson(reply.body), qos: 0, retain: false, dup: false });
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
  if (packet.clientId !== who.registrationId) return refuseProvisioning(conn, packet, who.registrationId, 4, { code: 'malformed', reason: 'client id is not the registration id' }, true);
  // No password: X.509, the certificate presented in the TLS handshake (wire doc §4.4).
  const attestation = await attestRegistration(conn.deps.dps, who, { sasToken: packet.password?.toString('utf8'), chain: conn.peer.chain }, { remote: conn.peer.remoteAddress, protocol: 'dps-mqtt', tls: conn.peer.tlsVersion });
  if (!attestation.ok) return refuseProvisioning(conn, packet, who.registrationId, 4, attestation.failure, attestation.unverified);
  if ((conn.state as string) === 'closed') return;
  conn.dpsAttested = attestation.attested;
  conn.kind = 'dps';
  conn.clientId = packet.clientId;
  conn.state = 'connected';
  conn.send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
  conn.startDeadlines(packet.keepalive ?? 0);
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
  const peer = { remote: conn.peer.remoteAddress, protocol: 'dps-mqtt' as const, tls: conn.peer.tlsVersion };
  // 429 answers carry retry-after (seconds): the SDK waits and retries (wire doc §4.1).
  if (path === '$dps/registrations/PUT/iotdps-register/') return respond(conn, rid, await registerRequest(dps, attested, Buffer.from(packet.payload), peer));
  if (path === '$dps/registrations/GET/iotdps-get-operationstatus/') return respond(conn, rid, await operationStatusRequest(dps, attested, params.get('operationId') ?? ''));
  return conn.close(`provisioning publish to an unknown topic: ${packet.topic.slice(0, 120)}`);
}
