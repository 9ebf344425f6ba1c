/**
 * A CBS put-token on `$cbs` (wire doc §6.7): what the token proves, decided here; the server
 * replies and applies the grant (a device session, the connection's service grant, or an Event
 * Hubs reader's). Refusals are logged without the token and reach the gate's audit as a device
 * login would.
 */
import type { Connection, Message } from 'rhea';
import type { Logger } from 'pino';
import { HubError } from '../../core/errors.js';
import { parseSasToken } from '../../auth/sas.js';
import type { AccessGate, PeerContext, Principal } from '../../access/gate.js';
import type { DeviceIdentity } from '../../auth/device-authenticator.js';
import type { EventHubEndpoint } from './eventhub-endpoint.js';
import { claimedBy } from './cbs-claim.js';

export interface CbsDeps {
  hostname(): string;
  gate: AccessGate;
  logger: Logger;
  eventHubs?: EventHubEndpoint;
}

export type CbsGrant =
  | { kind: 'none' }
  | { kind: 'eventHubs' }
  | { kind: 'device'; identity: DeviceIdentity }
  | { kind: 'service'; principal: Principal; expiresAt: number };

export interface CbsDecision {
  status: number;
  description: string;
  grant: CbsGrant;
}

const refused = (status: number, description: string): CbsDecision => ({ status, description, grant: { kind: 'none' } });
const UNAUTHORIZED = refused(401, 'Unauthorized');

export async function decidePutToken(deps: CbsDeps, conn: Connection, peer: PeerContext, msg: Message): Promise<CbsDecision> {
  const props = (msg.application_properties ?? {}) as Record<string, unknown>;
  const token = typeof msg.body === 'string' ? msg.body : Buffer.isBuffer(msg.body) ? msg.body.toString('utf8') : '';
  let audience = typeof props.name === 'string' ? props.name : '';
  try {
    // The device SDK passes the token's `sr` as it appears in the token: URL-encoded.
    audience = decodeURIComponent(audience);
  } catch {
    return refused(400, 'Bad request: the audience is not valid percent-encoding.');
  }
  if (props.operation !== 'put-token' || token === '') return refused(400, 'Bad request: operation put-token with a token body is required.');
  if (deps.eventHubs?.isAudience(audience) === true) {
    const r = await deps.eventHubs.putToken(conn, peer, audience, token);
    return { ...r, grant: r.status < 300 ? { kind: 'eventHubs' } : { kind: 'none' } };
  }
  const host = deps.hostname().toLowerCase();
  const isService = token.startsWith('Bearer ') || audience.toLowerCase() === host || audience === 'https://iothubs.azure.net/.default';
  if (!isService) return devicePutToken(deps, peer, host, audience, token);
  try {
    const principal = await deps.gate.authenticateService(token, '/messages/devicebound', peer);
    const expiresAt = principal.kind === 'operator' ? principal.expiresAt : parseSasToken(token).expiry * 1000;
    return { status: 200, description: 'OK', grant: { kind: 'service', principal, expiresAt } };
  } catch (err) {
    if (err instanceof HubError && err.code === 'IotHubUnauthorizedAccess') {
      deps.logger.warn({ event: 'auth.denied', protocol: peer.protocol, remote: peer.remote, reason: String(err.cause) }, 'CBS put-token refused');
      return UNAUTHORIZED;
    }
    throw err;
  }
}

/** A device or module token: `name` is its resource, `<host>/devices/<id>[/modules/<mid>]`. */
async function devicePutToken(deps: CbsDeps, peer: PeerContext, host: string, audience: string, token: string): Promise<CbsDecision> {
  const m = new RegExp(`^${host.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/devices/([^/]+)(?:/modules/([^/]+))?$`, 'i').exec(audience);
  let deviceId: string | undefined;
  let moduleId: string | null = null;
  try {
    deviceId = m?.[1] === undefined ? undefined : decodeURIComponent(m[1]);
    moduleId = m?.[2] === undefined ? null : decodeURIComponent(m[2]);
  } catch {
    deviceId = undefined;
  }
  if (deviceId === undefined) {
    const forHost = (audience.split('/')[0] ?? '').toLowerCase().replace(/:\d{1,5}$/, '');
    const failure = forHost === host ? { code: 'malformed' as const, reason: `CBS audience ${audience.slice(0, 200)} names no device of this hub` } : { code: 'scope' as const, reason: `CBS audience names another hub (${audience.slice(0, 200)})` };
    deps.gate.refusedBeforeAuth({ ...claimedBy(audience, token), method: 'sas', failure }, peer);
    deps.logger.warn({ event: 'auth.denied', protocol: peer.protocol, remote: peer.remote, audience: audience.slice(0, 200), reason: failure.reason }, 'CBS put-token refused');
    return UNAUTHORIZED;
  }
  const result = await deps.gate.authenticate({ deviceId, moduleId, sasToken: token, peerChain: undefined }, peer);
  if (!result.ok) {
    deps.logger.warn({ event: 'auth.denied', protocol: peer.protocol, remote: peer.remote, deviceId: deviceId.slice(0, 128), reason: result.reason }, 'CBS put-token refused');
    return UNAUTHORIZED;
  }
  return { status: 200, description: 'OK', grant: { kind: 'device', identity: result.identity } };
}
