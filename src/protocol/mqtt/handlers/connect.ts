/**
 * CONNECT, top to bottom (wire doc §3.1, §3.8; MQTT 3.1.1 §3.1-3.2):
 * check protocol -> parse client id and username -> authenticate -> take over an older session
 * -> restore or clear the persistent session -> CONNACK -> start timers -> drain C2D.
 *
 * CONNACK codes: 1 unacceptable protocol, 2 identifier rejected, 4 bad credentials (unknown device
 * and wrong key look the same), 5 not authorized (valid credentials, disabled identity). 3 is kept
 * for overload, the only refusal the SDK retries.
 *
 * The gate records what it refuses; a CONNECT refused here, before the gate, is recorded here
 * (`refusedBeforeAuth`: audited like a failed login, not counted toward lockout).
 */
import type { IConnectPacket } from 'mqtt-packet';
import type { AuthFailure } from '../../../core/auth-failure.js';
import { isDtmi, printable, validateDeviceId } from '../../../core/ids.js';
import type { MqttConnection } from '../connection.js';
import { c2dFilter } from '../topics.js';
import { dpsUsername, handleDpsConnect, refuseProvisioning } from './dps.js';

function connack(conn: MqttConnection, returnCode: number, sessionPresent = false): void {
  conn.send({ cmd: 'connack', returnCode, sessionPresent });
}

/**
 * A CONNECT refused before the gate: recorded as a failed authentication of the identity its client
 * id claims (the raw client id when it cannot be parsed), then refused.
 */
function refuseUnverified(conn: MqttConnection, packet: IConnectPacket, returnCode: number, failure: AuthFailure): void {
  const clientId = packet.clientId ?? '';
  const claimed = parseClientId(clientId);
  const method = packet.password !== undefined && packet.password.length > 0 ? 'sas' : conn.peer.chain?.[0] !== undefined ? 'x509' : 'none';
  conn.deps.authenticator.refusedBeforeAuth(
    {
      subject: claimed?.moduleId === null || claimed === undefined ? 'device' : 'module',
      identity: claimed === undefined ? clientId : claimed.moduleId === null ? claimed.deviceId : `${claimed.deviceId}/${claimed.moduleId}`,
      method,
      failure,
    },
    { remote: conn.peer.remoteAddress, protocol: conn.peer.transport, tls: conn.peer.tlsVersion },
  );
  refuse(conn, returnCode, failure.reason, clientId);
}

function refuse(conn: MqttConnection, returnCode: number, reason: string, clientId: string): void {
  conn.deps.logger.warn(
    { event: 'auth.denied', protocol: conn.peer.transport, remote: conn.peer.remoteAddress, clientId: clientId.slice(0, 260), returnCode, reason },
    'device connection refused',
  );
  connack(conn, returnCode);
  conn.close(reason);
}

/** `deviceId` or `deviceId/moduleId`; undefined when malformed. */
export function parseClientId(clientId: string): { deviceId: string; moduleId: string | null } | undefined {
  const parts = clientId.split('/');
  if (parts.length < 1 || parts.length > 2) return undefined;
  try {
    const deviceId = validateDeviceId(parts[0]);
    const moduleId = parts[1] === undefined ? null : validateDeviceId(parts[1], 'module');
    return { deviceId, moduleId };
  } catch {
    return undefined;
  }
}

/**
 * `<host>/<deviceId>[/<moduleId>]/?api-version=...` (wire doc §3.1). Returns the path segments
 * before the query, or undefined when the host is not this hub.
 */
export function parseUsername(username: string, hostname: string): string[] | undefined {
  const q = username.indexOf('?');
  const path = (q < 0 ? username : username.slice(0, q)).replace(/\/+$/, '');
  const segments = path.split('/');
  const host = (segments[0] ?? '').toLowerCase();
  const want = hostname.toLowerCase();
  if (host !== want && host.replace(/:\d{1,5}$/, '') !== want) return undefined;
  return segments.slice(1);
}

/**
 * The `model-id` an IoT Plug and Play device appends to the username query (wire doc §3.1; the SDK
 * does not percent-encode it). Undefined when absent.
 */
export function usernameModelId(username: string): string | undefined {
  const q = username.indexOf('?');
  if (q < 0) return undefined;
  for (const part of username.slice(q + 1).split('&')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).toLowerCase() !== 'model-id') continue;
    const raw = part.slice(eq + 1);
    try {
      return decodeURIComponent(raw);
    } catch {
      return raw;
    }
  }
  return undefined;
}

/** Keeps the announced model id in the twin before the CONNACK, so the twin shows it once the device is connected. */
async function announceModel(conn: MqttConnection, username: string): Promise<void> {
  const modelId = usernameModelId(username);
  const id = conn.identity;
  if (modelId === undefined || id === undefined) return;
  if (!isDtmi(modelId)) {
    conn.deps.logger.warn({ event: 'pnp.model-id-invalid', clientId: conn.clientId, modelId: printable(modelId, 128) }, 'the announced model id is not a DTMI; ignored');
    return;
  }
  conn.modelId = modelId;
  try {
    await conn.deps.twins.announceModel(id.deviceId, id.moduleId, modelId);
  } catch (err) {
    conn.deps.logger.error({ err, clientId: conn.clientId }, 'the announced model id could not be stored');
  }
}

export async function handleConnect(conn: MqttConnection, packet: IConnectPacket): Promise<void> {
  const clientId = packet.clientId ?? '';
  // Provisioning clients share the port; their username names an ID scope (wire doc §4.1).
  const dps = dpsUsername(packet.username ?? '');
  if (packet.protocolId !== 'MQTT' || packet.protocolVersion !== 4) {
    const failure: AuthFailure = { code: 'malformed', reason: `protocol ${String(packet.protocolId)} level ${String(packet.protocolVersion)}` };
    return dps === undefined ? refuseUnverified(conn, packet, 1, failure) : refuseProvisioning(conn, packet, dps.registrationId, 1, failure, true);
  }
  if (dps !== undefined) return handleDpsConnect(conn, packet, dps);

  const ids = parseClientId(clientId);
  if (ids === undefined) return refuseUnverified(conn, packet, 2, { code: 'malformed', reason: 'malformed client id' });

  const segments = parseUsername(packet.username ?? '', conn.deps.hostname());
  if (segments === undefined) {
    const host = (packet.username ?? '').split('/')[0] ?? '';
    return refuseUnverified(conn, packet, 4, { code: 'scope', reason: `username names another hub (${host.slice(0, 128)})` });
  }
  const expected = ids.moduleId === null ? [ids.deviceId] : [ids.deviceId, ids.moduleId];
  if (segments.length !== expected.length || segments.some((s, i) => s !== expected[i])) {
    return refuseUnverified(conn, packet, 4, { code: 'malformed', reason: 'username does not name the client id' });
  }

  const result = await conn.deps.authenticator.authenticate({
    deviceId: ids.deviceId,
    moduleId: ids.moduleId,
    sasToken: packet.password === undefined ? undefined : packet.password.toString('utf8'),
    peerChain: conn.peer.chain,
  }, { remote: conn.peer.remoteAddress, protocol: conn.peer.transport, tls: conn.peer.tlsVersion });
  if ((conn.state as string) === 'closed') return;
  if (!result.ok) return refuse(conn, result.outcome === 'forbidden' ? 5 : 4, result.reason, clientId);

  conn.identity = result.identity;
  conn.clientId = clientId;
  conn.cleanSession = packet.clean !== false;

  // One connection per identity: the newer one wins (wire doc §3.1).
  const previous = conn.deps.connections.register(conn);
  previous?.close('taken over by a new connection for the same identity');

  await announceModel(conn, packet.username ?? '');
  let sessionPresent = false;
  if (conn.cleanSession) {
    await conn.deps.sessions.deleteSession(clientId);
  } else {
    for (const s of await conn.deps.sessions.getSubscriptions(clientId)) conn.subscriptions.set(s.topic, s);
    sessionPresent = conn.subscriptions.size > 0;
  }
  // The connection may have been closed while the store answered (peer gone, taken over).
  if ((conn.state as string) === 'closed') return;

  conn.state = 'connected';
  connack(conn, 0, sessionPresent);
  conn.startDeadlines(packet.keepalive ?? 0);
  conn.deps.logger.info(
    {
      event: 'auth.accepted',
      protocol: conn.peer.transport,
      remote: conn.peer.remoteAddress,
      clientId,
      method: result.identity.method,
      tls: conn.peer.tlsVersion,
      cleanSession: conn.cleanSession,
    },
    'device connected',
  );
  conn.deps.onConnected(conn);
  // Restored subscriptions count now that the session is connected (methods waiters).
  conn.deps.connections.changed(conn);
  if (conn.subscribed(c2dFilter(result.identity))) conn.c2d.kick();
}
