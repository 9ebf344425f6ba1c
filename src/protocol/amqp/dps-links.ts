/**
 * Device provisioning over AMQP (`azure-iot-provisioning-device-amqp`, `Amqp` and `AmqpWs`), on the
 * hub's AMQP listeners as provisioning over MQTT is on its MQTT port. What the SDK does:
 *
 * - symmetric key: SASL PLAIN with the username `<idScope>/registrations/<registrationId>` and the
 *   registration SAS token as the password; X.509: no SASL layer (or ANONYMOUS), the device
 *   certificate in the TLS handshake;
 * - a receiver and a sender link on `<idScope>/registrations/<registrationId>`;
 * - requests as messages with `iotdps-operation-type` `iotdps-register` (body: JSON with the
 *   registration id and an optional custom allocation payload) or `iotdps-get-operationstatus`
 *   with `iotdps-operation-id`; each answered by a message with the request's `correlation_id` and
 *   the operation status as JSON in a data section, or by rejecting the request (throttled:
 *   `com.microsoft:device-container-throttled` with `retry-after` seconds in the error's info,
 *   which the SDK waits and retries on).
 *
 * SASL PLAIN accepts any name of that shape and nothing else: the credential is checked when the
 * first link attaches (rhea's mechanism callback has no connection, so no peer for the lockout);
 * until then the connection is unauthenticated and bounded by the admission's timeouts and caps.
 */
import type { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import rhea, { type Connection, type Container, type EventContext, type Message, type Receiver, type Sender } from 'rhea';
import type { AccessGate, PeerContext } from '../../access/gate.js';
import type { Attested, RegistrationPeer } from '../../dps/registration-service.js';
import type { DpsDeps } from '../transport/device-ports.js';
import { asciiJson, attestRegistration, dpsUsername, operationStatusRequest, registerRequest, type Attestation, type DpsReply } from '../transport/dps-requests.js';

const OPERATION_TYPE = 'iotdps-operation-type';
const OPERATION_ID = 'iotdps-operation-id';
/** Requests a connection may have waiting for their answer. */
const MAX_PENDING = 16;

/**
 * rhea's server mechanism shape (lib/sasl.js): PLAIN, attesting the registration it names. The SASL
 * outcome is OK for any registration name, attested or not: a refusal is told after the AMQP open,
 * as a connection close with `amqp:unauthorized-access`, which the SDK reports as UnauthorizedError
 * (a failed SASL outcome reaches it only as "disconnected").
 */
class DpsPlain {
  outcome: boolean | undefined = undefined;
  username: string | undefined = undefined;
  attestation: Attestation | undefined = undefined;

  constructor(private readonly attest: (who: { scope: string; registrationId: string }, sasToken: string) => Promise<Attestation>) {}

  start(response: Buffer | undefined): Promise<void> | void {
    // PLAIN: authzid NUL authcid NUL password.
    const fields = (response ?? Buffer.alloc(0)).toString('utf8').split('\u0000');
    const who = fields.length === 3 ? dpsUsername(fields[1] ?? '') : undefined;
    const sasToken = fields[2] ?? '';
    if (who === undefined || sasToken === '') {
      this.outcome = false;
      return;
    }
    return this.attest(who, sasToken).then((a) => {
      this.outcome = true;
      this.username = `${who.scope}/registrations/${who.registrationId}`;
      this.attestation = a;
    });
  }
}

const refuseAll = () => Promise.resolve<Attestation>({ ok: false, unverified: true, failure: { code: 'other', reason: 'no provisioning on this connection' } });

/**
 * Offers SASL PLAIN (for provisioning) beside ANONYMOUS and no SASL layer at all, as before. Each
 * connection gets its own PLAIN factory (DpsLinks.saslMechanisms); this one only names it.
 */
export function installDpsSasl(container: Container): void {
  const mechs = container.sasl_server_mechanisms as unknown as Record<string, () => unknown> & { enable_anonymous(): void };
  mechs.enable_anonymous();
  mechs.PLAIN = () => new DpsPlain(refuseAll);
}

function plainCredential(conn: Connection): DpsPlain | undefined {
  const sasl = (conn as unknown as { sasl_transport?: { selected?: { mechanism?: unknown } } }).sasl_transport;
  const m = sasl?.selected?.mechanism;
  return m instanceof DpsPlain && m.outcome === true ? m : undefined;
}

export interface DpsLinkDeps {
  dps: DpsDeps | undefined;
  gate: Pick<AccessGate, 'refusedBeforeAuth'>;
  logger: Logger;
  /** The connection proved a registration: lift its pre-authentication bounds. */
  authenticated(conn: Connection): void;
}

interface DpsConn {
  address: string;
  peer: RegistrationPeer;
  attestation: Promise<Attestation>;
  attested: Attested | undefined;
  replies: Sender | undefined;
  pending: number;
}

export class DpsLinks {
  readonly #conns = new WeakMap<Connection, DpsConn>();

  constructor(private readonly deps: DpsLinkDeps) {}

  /** This connection's SASL PLAIN: a registration's SAS token, attested before the SASL outcome (a refusal is the SDK's UnauthorizedError). */
  saslMechanisms(peer: { remoteAddress: string; tlsVersion: string | undefined; transport: string }): Record<string, () => unknown> {
    const ctx: PeerContext = { remote: peer.remoteAddress, protocol: peer.transport === 'amqp-ws' ? 'amqp-ws' : 'amqp', tls: peer.tlsVersion };
    return { PLAIN: () => new DpsPlain((who, sasToken) => this.#attest(who, { sasToken, chain: undefined }, ctx)) };
  }

  /** The AMQP open arrived: a connection whose SASL PLAIN registration was refused closes now. Returns whether it did. */
  opened(conn: Connection): boolean {
    const plain = plainCredential(conn);
    if (plain?.attestation === undefined || plain.attestation.ok) return false;
    try {
      conn.close({ condition: 'amqp:unauthorized-access', description: 'Unauthorized' });
    } catch {
      // already closed
    }
    return true;
  }

  /** Attests, and records and logs a refusal (the gate records those it decided itself). */
  async #attest(who: { scope: string; registrationId: string }, credential: { sasToken: string | undefined; chain: X509Certificate[] | undefined }, peer: PeerContext): Promise<Attestation> {
    const dpsPeer = { remote: peer.remote, protocol: 'dps-amqp' as const, tls: peer.tls };
    const a = await attestRegistration(this.deps.dps, who, credential, dpsPeer);
    if (!a.ok) {
      const method = credential.sasToken === undefined ? 'x509' : 'symmetricKey';
      if (a.unverified) this.deps.gate.refusedBeforeAuth({ subject: 'registration', identity: who.registrationId, method, failure: a.failure }, dpsPeer);
      this.deps.logger.warn({ event: 'auth.denied', protocol: 'dps-amqp', remote: peer.remote, registrationId: who.registrationId.slice(0, 128), reason: a.failure.reason }, 'provisioning connection refused');
    }
    return a;
  }

  /** The client attached a sender (its requests) or a receiver (our answers): true when the address is a registration's. */
  attach(link: Sender | Receiver, peer: PeerContext, chain: () => X509Certificate[] | undefined, address: string): boolean {
    const who = registrationAddress(address);
    if (who === undefined) return false;
    const conn = link.connection;
    let st = this.#conns.get(conn);
    if (st === undefined) {
      const plain = plainCredential(conn);
      const dpsPeer = { remote: peer.remote, protocol: 'dps-amqp' as const, tls: peer.tls };
      let attestation: Promise<Attestation>;
      if (plain?.attestation === undefined) attestation = this.#attest(who, { sasToken: undefined, chain: chain() }, peer);
      else if (!plain.attestation.ok) attestation = Promise.resolve(plain.attestation);
      else if (plain.username?.toLowerCase() !== `${who.scope}/registrations/${who.registrationId}`.toLowerCase()) {
        const failure = { code: 'malformed' as const, reason: 'the link names another registration than the SASL user' };
        this.deps.gate.refusedBeforeAuth({ subject: 'registration', identity: who.registrationId, method: 'symmetricKey', failure }, dpsPeer);
        attestation = Promise.resolve({ ok: false, unverified: true, failure });
      } else attestation = Promise.resolve(plain.attestation);
      st = { address: address.replace(/^\/+/, '').toLowerCase(), peer: dpsPeer, attestation, attested: undefined, replies: undefined, pending: 0 };
      this.#conns.set(conn, st);
    } else if (address.replace(/^\/+/, '').toLowerCase() !== st.address) {
      close(link, 'amqp:unauthorized-access', 'A provisioning connection serves one registration.');
      return true;
    }
    const state = st;
    void state.attestation.then((a) => {
      if (link.is_closed()) return;
      if (!a.ok) return this.#refuse(link);
      state.attested = a.attested;
      this.deps.authenticated(conn);
      if (link.is_sender()) state.replies = link as Sender;
      this.deps.logger.info({ event: 'auth.accepted', protocol: 'dps-amqp', remote: peer.remote, registrationId: who.registrationId, link: link.is_sender() ? 'answers' : 'requests' }, 'provisioning link attached');
    });
    return true;
  }

  /** A request on a registration's link; false when the link is not one. */
  onMessage(ctx: EventContext): boolean {
    const conn = ctx.connection;
    const st = this.#conns.get(conn);
    const receiver = ctx.receiver as Receiver | undefined;
    if (st === undefined || receiver === undefined) return false;
    const address = ((receiver.target as { address?: string } | undefined)?.address ?? '').replace(/^\/+/, '').toLowerCase();
    if (address !== st.address) return false;
    const dps = this.deps.dps;
    const attested = st.attested;
    const msg = ctx.message as Message;
    if (dps === undefined || attested === undefined) {
      ctx.delivery?.reject({ condition: 'amqp:unauthorized-access', description: 'The registration is not attested on this connection.' });
      return true;
    }
    const replies = st.replies;
    if (replies === undefined || replies.is_closed()) {
      ctx.delivery?.reject({ condition: 'amqp:not-allowed', description: 'Attach a receiver on the registration address first: the answer goes there.' });
      return true;
    }
    if (st.pending >= MAX_PENDING) {
      ctx.delivery?.reject({ condition: 'com.microsoft:device-container-throttled', description: 'Too many requests waiting for an answer.', info: { 'retry-after': 1 } });
      return true;
    }
    const props = (msg.application_properties ?? {}) as Record<string, unknown>;
    const type = props[OPERATION_TYPE];
    let work: Promise<DpsReply>;
    if (type === 'iotdps-register') work = registerRequest(dps, attested, bodyBytes(msg.body), st.peer);
    else if (type === 'iotdps-get-operationstatus') work = operationStatusRequest(dps, attested, typeof props[OPERATION_ID] === 'string' ? props[OPERATION_ID] : '');
    else {
      ctx.delivery?.reject({ condition: 'com.microsoft:argument-error', description: `${OPERATION_TYPE} must be iotdps-register or iotdps-get-operationstatus.` });
      return true;
    }
    st.pending++;
    const delivery = ctx.delivery;
    work
      .then((reply) => {
        if (reply.status === 200) {
          delivery?.accept();
          replies.send({ correlation_id: msg.correlation_id, body: rhea.message.data_section(asciiJson(reply.body)) });
          return;
        }
        const description = (reply.body as { message?: string }).message ?? 'The request was refused.';
        if (reply.status === 429) delivery?.reject({ condition: 'com.microsoft:device-container-throttled', description, info: { 'retry-after': reply.retryAfter ?? 1 } });
        else if (reply.status === 404) delivery?.reject({ condition: 'amqp:not-found', description });
        else delivery?.reject({ condition: 'com.microsoft:argument-error', description });
      })
      .catch((err: unknown) => {
        this.deps.logger.error({ err, event: 'dps.request-failed', protocol: 'dps-amqp' }, 'provisioning request failed');
        delivery?.reject({ condition: 'amqp:internal-error', description: 'The request failed.' });
      })
      .finally(() => st.pending--);
    return true;
  }

  /**
   * The attestation failed (recorded already): the connection goes with the reason, the link
   * unanswered (a refused attach makes the SDK retry until its timeout; a closed connection ends
   * the registration at once).
   */
  #refuse(link: Sender | Receiver): void {
    try {
      link.connection.close({ condition: 'amqp:unauthorized-access', description: 'Unauthorized' });
    } catch {
      // already closed
    }
  }
}

/** `[/]<idScope>/registrations/<registrationId>` exactly. */
function registrationAddress(address: string): { scope: string; registrationId: string } | undefined {
  const parts = address.replace(/^\/+/, '').split('/');
  if (parts.length !== 3) return undefined;
  return dpsUsername(parts.join('/'));
}

function bodyBytes(body: unknown): Buffer {
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  const content = (body as { content?: unknown } | null | undefined)?.content;
  if (Buffer.isBuffer(content)) return content;
  if (typeof content === 'string') return Buffer.from(content, 'utf8');
  return Buffer.alloc(0);
}

function close(link: Sender | Receiver, condition: string, description: string): void {
  try {
    link.close({ condition, description });
  } catch {
    // already closed
  }
}
