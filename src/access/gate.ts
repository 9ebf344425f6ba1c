/**
 * The access gate: the one place every listener asks "may this in?". It holds the live hub
 * settings and applies them to
 *
 * - network connections (IP filter, before TLS: a rejected address costs no handshake),
 * - device and module authentication (disableDeviceSAS / disableModuleSAS / disableLocalAuth on
 *   policy-signed device tokens, lockout),
 * - service callers (SAS policies unless disableLocalAuth, operator bearer tokens, lockout),
 *
 * and reports every decision on the SecurityEvents stream (audit log, metrics, alerts).
 * A changed setting is applied at once: new TLS contexts on every listener, and live sessions
 * and sockets the new settings no longer allow are closed.
 *
 * Every refusal looks the same to the caller as a bad credential; the reason is for the log.
 */
import { createHash } from 'node:crypto';
import type { Server as NetServer, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { decodeJwt } from 'jose';
import type { Clock } from '../core/clock.js';
import type { AuthFailure } from '../core/auth-failure.js';
import { HubError, unauthorized } from '../core/errors.js';
import type { DeviceAuthResult, DeviceCredentials } from '../auth/device-authenticator.js';
import type { ServiceAuthenticator, ServicePrincipal } from '../auth/service-authenticator.js';
import type { ConnectionTable, LiveSession } from '../hub/connections.js';
import type { AuthEvent, AuthFailureCode, AuthProtocol, AuthSubject, SecurityEvents } from '../core/security-events.js';
import { IpFilter, normalizeAddress } from './ip-filter.js';
import { LockoutGuard, type AttemptKeys, type NewLock } from './lockout.js';
import type { ConnectionCaps } from './connection-caps.js';
import type { OperatorPrincipal, OperatorService } from './operators.js';
import { tlsRank, type HubSettings, type HubSettingsBody } from '../core/settings.js';
import { tlsRefusal } from './tls-refusal.js';
import type { CounterStore } from '../store/ports.js';

/** Where the gate records which rights of a shared access policy an operation needed (src/policies/policy-usage.ts). */
export interface RightsUsage {
  record(policy: string, right: string): void;
}

export interface PeerContext {
  remote: string;
  protocol: AuthProtocol;
  tls?: string | undefined;
}

export interface DeviceAuthentication {
  authenticate(c: DeviceCredentials, peer?: PeerContext): Promise<DeviceAuthResult>;
  /** An authenticated device reached for what is not its own: recorded (audit, metrics, alerts), never counted toward lockout. */
  deviceDenied(device: { deviceId: string; moduleId: string | null }, denial: DeviceDenial, peer: PeerContext): void;
  /** An edge refused an attempt before any credential was checked: recorded, never counted toward lockout. */
  refusedBeforeAuth(attempt: UnverifiedAttempt, peer: PeerContext): void;
}

/**
 * An attempt an edge refused before the gate checked a credential: a CONNECT or CBS audience naming
 * another hub, a registration under an unknown ID scope, a CONNECT that cannot be read.
 */
export interface UnverifiedAttempt {
  subject: AuthSubject;
  /** What the caller claimed to be (device id, `deviceId/moduleId`, registration id, policy name), '' when nothing. */
  identity: string;
  /** sas, x509, symmetricKey, ... as far as the edge can tell. */
  method?: string | undefined;
  failure: AuthFailure;
}

/** Why an authenticated device was refused an action. */
export interface DeviceDenial {
  code: Extract<AuthFailureCode, 'cross_device' | 'forbidden_topic'>;
  /** What it tried, for the operator: `publish to devices/d2/messages/events/`. */
  reason: string;
}

export type Principal = ServicePrincipal | OperatorPrincipal;

/** A listener the gate watches: its sockets and how to give it a new TLS minimum. */
interface WatchedServer {
  protocol: AuthProtocol;
  sockets: Set<Socket>;
  setMinTls(version: HubSettingsBody['minTlsVersion']): void;
}

/** Why the settings would refuse a live session, or undefined when they allow it. */
export function sessionRefusal(s: LiveSession, settings: HubSettingsBody, filter: IpFilter): string | undefined {
  if (s.remoteAddress !== undefined && !filter.check(s.remoteAddress).allowed) return `address ${normalizeAddress(s.remoteAddress)} rejected by the IP filter`;
  if (s.tlsVersion !== undefined && tlsRank(s.tlsVersion) < tlsRank(settings.minTlsVersion)) return `${s.tlsVersion} is below the minimum TLS ${settings.minTlsVersion}`;
  return methodRefusal(s.authMethod, s.moduleId, settings)?.reason;
}

/**
 * A policy-signed device token is refused by disableLocalAuth (a hub-scoped key, as in Azure) and
 * also by disableDeviceSAS / disableModuleSAS: those switches mean "no SAS for devices (modules)",
 * whatever key signed it. Stricter than Azure, which lets policy tokens through unless local auth
 * is off (docs/decisions/0002-secure-defaults.md).
 */
function methodRefusal(method: string | undefined, moduleId: string | null, settings: HubSettingsBody): AuthFailure | undefined {
  const off = (reason: string): AuthFailure => ({ code: 'auth_method_disabled', reason });
  if (method === 'policy-sas' && settings.disableLocalAuth) return off('policy-signed SAS tokens are disabled by hub settings (disableLocalAuth)');
  const signedBy = method === 'sas' ? 'SAS keys' : method === 'policy-sas' ? 'policy-signed SAS tokens' : undefined;
  if (signedBy === undefined) return undefined;
  if (moduleId === null && settings.disableDeviceSAS) return off(`device ${signedBy} are disabled by hub settings (disableDeviceSAS)`);
  if (moduleId !== null && settings.disableModuleSAS) return off(`module ${signedBy} are disabled by hub settings (disableModuleSAS)`);
  return undefined;
}

export function credentialHash(value: string | Buffer): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 32);
}

/** How long a service credential's success stays one audit decision (requests reuse a token). */
const SERVICE_SUCCESS_DEDUP_MS = 60_000;

export class AccessGate implements DeviceAuthentication {
  #settings: HubSettings;
  #filter: IpFilter;
  readonly lockout: LockoutGuard;
  readonly #servers: WatchedServer[] = [];
  readonly #recentServiceSuccess = new Map<string, number>();
  readonly #filteredLogged = new Map<string, number>();

  constructor(
    settings: HubSettings,
    private readonly deps: {
      devices: { authenticate(c: DeviceCredentials): Promise<DeviceAuthResult> };
      service: ServiceAuthenticator;
      operators: OperatorService;
      connections: ConnectionTable;
      events: SecurityEvents;
      clock: Clock;
      log: (fields: Record<string, unknown>, msg: string) => void;
      /** Which rights each policy uses (posture audit evidence). */
      usage?: RightsUsage;
      /** Per-address connection caps and TLS handshake failures, after the IP filter. */
      caps?: ConnectionCaps;
      /** Where the lockout counts, shared by every node on the store. */
      counters: CounterStore;
    },
  ) {
    this.#settings = settings;
    this.#filter = new IpFilter(settings.ipFilter);
    this.lockout = new LockoutGuard(settings.lockout, deps.clock, deps.counters);
  }

  get settings(): HubSettings {
    return this.#settings;
  }

  get ipFilter(): IpFilter {
    return this.#filter;
  }

  // ---- network -------------------------------------------------------------------------------

  /**
   * Watches a listener: refuses connections from filtered addresses before the TLS handshake,
   * keeps its sockets so a settings change can close the ones it no longer allows.
   */
  watch(server: NetServer, protocol: AuthProtocol, setMinTls: WatchedServer['setMinTls']): void {
    const sockets = new Set<Socket>();
    this.#servers.push({ protocol, sockets, setMinTls });
    setMinTls(this.#settings.minTlsVersion);
    server.on('connection', (socket: Socket) => {
      const remote = socket.remoteAddress ?? '';
      const d = this.#filter.check(remote);
      if (!d.allowed) {
        socket.destroy();
        this.#logFiltered(remote, protocol, d.rule);
        this.#emit({
          subject: 'connection',
          identity: '',
          outcome: 'failure',
          reason: `address ${normalizeAddress(remote)} rejected by the IP filter (${d.rule === undefined ? 'default action' : `rule ${d.rule}`})`,
          reasonCode: 'ip_filtered',
          remote,
          protocol,
        });
        return;
      }
    });
    // A handshake the hub refused (TLS version, no shared cipher, not TLS at all): an event each; the
    // audit log folds a flood from one address into one row a minute (audit-refusals.ts).
    server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      const refusal = tlsRefusal(err);
      if (refusal !== undefined) {
        this.#emit({ subject: 'connection', identity: '', outcome: 'failure', reason: refusal.reason, reasonCode: refusal.code, remote: socket.remoteAddress ?? '', protocol });
      }
      socket.destroy();
    });
    // After the filter's listener: a socket it refused is not counted.
    this.deps.caps?.watch(server, protocol);
    // Established TLS sockets (HTTPS keep-alive included), so a change can close the ones it refuses.
    server.on('secureConnection', (socket: TLSSocket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
  }

  /** One warning per address per minute: a flood from a filtered address must not flood the log. */
  #logFiltered(remote: string, protocol: AuthProtocol, rule: string | undefined): void {
    const now = this.deps.clock.now();
    const last = this.#filteredLogged.get(remote);
    if (last !== undefined && now - last < 60_000) return;
    if (this.#filteredLogged.size > 10_000) this.#filteredLogged.clear();
    this.#filteredLogged.set(remote, now);
    this.deps.log({ event: 'auth.denied', protocol, remote, reason: `address ${normalizeAddress(remote)} rejected by the IP filter (${rule === undefined ? 'default action' : `rule ${rule}`})` }, 'connection refused by the IP filter');
  }

  // ---- devices -------------------------------------------------------------------------------

  async authenticate(c: DeviceCredentials, peer: PeerContext = { remote: '', protocol: 'mqtt' }): Promise<DeviceAuthResult> {
    const target = c.moduleId === null ? c.deviceId : `${c.deviceId}/${c.moduleId}`;
    const leaf = c.peerChain?.[0];
    const credential = c.sasToken !== undefined && c.sasToken !== '' ? credentialHash(c.sasToken) : leaf !== undefined ? credentialHash(leaf.raw) : undefined;
    const keys: AttemptKeys = { address: peer.remote, identity: target === '' ? undefined : `device:${target}` };
    const subject: AuthSubject = c.moduleId === null ? 'device' : 'module';
    const base = { subject, identity: target.slice(0, 260), remote: peer.remote, protocol: peer.protocol, ...(peer.tls === undefined ? {} : { tls: peer.tls }), ...(credential === undefined ? {} : { credential }) };

    const locked = this.#lockedOut(keys);
    let result: DeviceAuthResult;
    if (locked !== undefined) {
      result = { ok: false, outcome: 'unauthorized', code: 'locked_out', reason: locked };
    } else {
      result = await this.deps.devices.authenticate(c);
      if (result.ok) {
        const refusal = methodRefusal(result.identity.method, c.moduleId, this.#settings);
        if (refusal !== undefined) result = { ok: false, outcome: 'unauthorized', ...refusal };
      }
    }
    if (result.ok) {
      this.lockout.succeed(keys);
      if (result.identity.policyName !== undefined) this.deps.usage?.record(result.identity.policyName, 'DeviceConnect');
      this.#emit({ ...base, outcome: 'success', method: result.identity.method });
    } else {
      const method = c.sasToken !== undefined && c.sasToken !== '' ? 'sas' : leaf !== undefined ? 'x509' : 'none';
      // Disabled identities are refused after valid credentials: not a guessing attempt.
      if (result.outcome !== 'forbidden' && locked === undefined) await this.#fail(keys);
      this.#emit({ ...base, outcome: 'failure', reason: result.reason, reasonCode: result.code, method });
    }
    return result;
  }

  /**
   * Runs another authentication (provisioning attestation, EST credentials) under the lockout and
   * reports it: a 401 (or 403 CertificateNotAccepted) HubError from `fn` is a failure, reported with
   * the code its thrower set (`other` if none did), anything returned a success.
   */
  async guarded<T>(a: { subject: AuthSubject; identity: string; credential?: string | undefined; method: string }, peer: PeerContext, fn: () => Promise<T>): Promise<T> {
    const keys: AttemptKeys = { address: peer.remote, identity: a.identity === '' ? undefined : `${a.subject}:${a.identity}` };
    const base = { subject: a.subject, identity: a.identity.slice(0, 260), remote: peer.remote, protocol: peer.protocol, method: a.method, ...(peer.tls === undefined ? {} : { tls: peer.tls }), ...(a.credential === undefined ? {} : { credential: a.credential }) };
    const locked = this.#lockedOut(keys);
    try {
      if (locked !== undefined) throw unauthorized('locked_out', locked);
      const r = await fn();
      this.lockout.succeed(keys);
      this.#emit({ ...base, outcome: 'success' });
      return r;
    } catch (err) {
      if (err instanceof HubError && (err.code === 'IotHubUnauthorizedAccess' || err.code === 'CertificateNotAccepted')) {
        const reason = String(err.cause ?? err.message);
        if (locked === undefined) await this.#fail(keys);
        this.#emit({ ...base, outcome: 'failure', reason, reasonCode: err.authFailure ?? 'other' });
      }
      throw err;
    }
  }

  // ---- service callers -------------------------------------------------------------------------

  /** Authenticates a REST caller: a policy SAS token (unless local auth is off) or an operator bearer token. */
  async authenticateService(authorization: string | undefined, targetPath: string, peer: PeerContext): Promise<Principal> {
    const header = authorization ?? '';
    const bearer = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    const credential = header === '' ? undefined : credentialHash(header);
    // Read before the signature is checked: a claim, so only ever counted together with the address.
    const identity = bearer !== undefined ? `operator:${unverifiedSubject(bearer)}` : `policy:${/(?:^|&)skn=([^&]*)/.exec(header)?.[1] ?? ''}`;
    const keys: AttemptKeys = { address: peer.remote, identity: identity.endsWith(':') ? undefined : identity.slice(0, 200) };
    const subject: AuthSubject = bearer !== undefined ? 'operator' : 'policy';
    const base = { subject, identity: identity.slice(identity.indexOf(':') + 1, 260), remote: peer.remote, protocol: peer.protocol, method: bearer !== undefined ? 'bearer' : 'sas', ...(peer.tls === undefined ? {} : { tls: peer.tls }), ...(credential === undefined ? {} : { credential }) };
    const locked = this.#lockedOut(keys);
    try {
      if (locked !== undefined) throw unauthorized('locked_out', locked);
      let principal: Principal;
      if (bearer !== undefined) principal = await this.deps.operators.authenticate(bearer);
      else {
        if (this.#settings.disableLocalAuth) throw unauthorized('auth_method_disabled', 'shared access policies are disabled by hub settings (disableLocalAuth)');
        principal = await this.deps.service.authenticate(authorization, targetPath);
      }
      this.lockout.succeed(keys);
      if (credential !== undefined && this.#firstSuccess(credential)) this.#emit({ ...base, identity: principal.name, outcome: 'success' });
      return principal;
    } catch (err) {
      if (err instanceof HubError && err.code === 'IotHubUnauthorizedAccess') {
        const reason = String(err.cause ?? 'unauthorized');
        if (locked === undefined) await this.#fail(keys);
        this.#emit({ ...base, outcome: 'failure', reason, reasonCode: err.authFailure ?? 'other' });
      }
      throw err;
    }
  }

  /** A policy used these rights for a request it was allowed. */
  policyUsed(policy: string, rights: readonly string[]): void {
    for (const r of rights) this.deps.usage?.record(policy, r);
  }

  deviceDenied(device: { deviceId: string; moduleId: string | null }, denial: DeviceDenial, peer: PeerContext): void {
    const identity = device.moduleId === null ? device.deviceId : `${device.deviceId}/${device.moduleId}`;
    this.#emit({
      subject: device.moduleId === null ? 'device' : 'module',
      identity: identity.slice(0, 260),
      outcome: 'failure',
      reason: denial.reason.slice(0, 300),
      reasonCode: denial.code,
      remote: peer.remote,
      protocol: peer.protocol,
      ...(peer.tls === undefined ? {} : { tls: peer.tls }),
    });
  }

  /**
   * An edge refused an attempt before any credential was checked (UnverifiedAttempt): recorded like
   * a failed authentication (audit, metrics, alerts), with the edge's code.
   *
   * Not counted toward lockout: the lockout bounds guesses at credentials; nothing was checked here,
   * so nothing was guessed, and the answer is the one a wrong key gets (no oracle to probe). Counting
   * it would let one client with a wrong host name or ID scope in its configuration (a hub moved, a
   * copied connection string) lock the address out for every device behind the same NAT.
   */
  refusedBeforeAuth(a: UnverifiedAttempt, peer: PeerContext): void {
    this.#emit({
      subject: a.subject,
      identity: a.identity.slice(0, 260),
      outcome: 'failure',
      reason: a.failure.reason.slice(0, 300),
      reasonCode: a.failure.code,
      remote: peer.remote,
      protocol: peer.protocol,
      ...(a.method === undefined ? {} : { method: a.method }),
      ...(peer.tls === undefined ? {} : { tls: peer.tls }),
    });
  }

  /** An authenticated caller was denied a route: recorded, not counted toward lockout. */
  denied(principal: Principal, reason: string, peer: PeerContext): void {
    this.#emit({ subject: principal.kind, identity: principal.name, outcome: 'failure', reason, reasonCode: 'insufficient_rights', remote: peer.remote, protocol: peer.protocol, method: principal.kind === 'operator' ? 'bearer' : 'sas' });
  }

  #firstSuccess(credential: string): boolean {
    const now = this.deps.clock.now();
    const last = this.#recentServiceSuccess.get(credential);
    if (last !== undefined && now - last < SERVICE_SUCCESS_DEDUP_MS) return false;
    if (this.#recentServiceSuccess.size > 10_000) this.#recentServiceSuccess.clear();
    this.#recentServiceSuccess.set(credential, now);
    return true;
  }

  /** Why the lockout refuses this attempt unverified (then it is not counted), or undefined. */
  #lockedOut(keys: AttemptKeys): string | undefined {
    const s = this.lockout.check(keys);
    if (!s.locked) return undefined;
    const what = s.scope === 'address' ? 'this address' : 'this identity from this address';
    return `locked out after repeated failures (${what}) until ${new Date(s.until).toISOString()}`;
  }

  /** A verified failure: counted (across the nodes); a lock it sets is logged and recorded as the hub's change. */
  async #fail(keys: AttemptKeys): Promise<void> {
    for (const l of await this.lockout.fail(keys)) this.#lockStarted(l, keys.address);
  }

  #lockStarted(l: NewLock, remote: string): void {
    const target = l.scope === 'address' ? `address:${l.address}` : `address:${l.address}/${l.identity ?? ''}`;
    const after = { scope: l.scope, address: l.address, ...(l.identity === undefined ? {} : { identity: l.identity }), until: new Date(l.until).toISOString(), seconds: l.seconds };
    this.deps.log({ event: 'auth.lockout', ...after }, 'locked out after repeated authentication failures');
    this.deps.events.emit({ type: 'change', at: this.deps.clock.now(), actor: 'hub', action: 'lockout.start', target: target.slice(0, 300), after, remote });
  }

  #emit(e: Omit<AuthEvent, 'type' | 'at'>): void {
    this.deps.events.emit({ type: 'auth', at: this.deps.clock.now(), ...e });
  }

  // ---- settings --------------------------------------------------------------------------------

  /** What a settings change would cut off among live sessions. */
  impact(next: HubSettingsBody): Array<{ deviceId: string; moduleId: string | null; remote: string | undefined; reason: string }> {
    const filter = new IpFilter(next.ipFilter);
    const out: Array<{ deviceId: string; moduleId: string | null; remote: string | undefined; reason: string }> = [];
    for (const s of [...this.deps.connections.sessions()]) {
      const reason = sessionRefusal(s, next, filter);
      if (reason !== undefined) out.push({ deviceId: s.deviceId, moduleId: s.moduleId, remote: s.remoteAddress, reason });
    }
    return out;
  }

  /** Applies new settings at once: TLS contexts, filter, lockout, and closes what they no longer allow. */
  apply(next: HubSettings): { sessionsClosed: number; socketsClosed: number } {
    this.#settings = next;
    this.#filter = new IpFilter(next.ipFilter);
    this.lockout.configure(next.lockout);
    for (const s of this.#servers) s.setMinTls(next.minTlsVersion);
    let sessionsClosed = 0;
    for (const s of [...this.deps.connections.sessions()]) {
      const reason = sessionRefusal(s, next, this.#filter);
      if (reason !== undefined) {
        s.close(`hub settings: ${reason}`);
        sessionsClosed += 1;
      }
    }
    // Sockets without a device session (HTTPS keep-alive, unauthenticated) under the new rules.
    let socketsClosed = 0;
    const min = tlsRank(next.minTlsVersion);
    for (const server of this.#servers) {
      for (const socket of server.sockets) {
        const tls = (socket as TLSSocket).getProtocol?.() ?? undefined;
        const bad = !this.#filter.check(socket.remoteAddress ?? '').allowed || (tls !== undefined && tls !== null && tlsRank(tls) < min);
        if (bad) {
          socket.destroy();
          socketsClosed += 1;
        }
      }
    }
    return { sessionsClosed, socketsClosed };
  }
}

function unverifiedSubject(token: string): string {
  try {
    const sub = decodeJwt(token).sub;
    return typeof sub === 'string' ? sub.slice(0, 128) : '';
  } catch {
    return '';
  }
}
