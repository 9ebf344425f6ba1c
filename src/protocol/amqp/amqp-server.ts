/**
 * AMQP 1.0 (wire doc §6.7-6.8, Appendix A) on `rhea` as the server: TLS on the AMQP port and
 * WebSocket (`AMQPWSB10`) on the HTTPS port. Clients authenticate per connection with CBS
 * put-token on `$cbs` (no SASL layer, or SASL ANONYMOUS); each link is authorized when it is
 * attached, against what that connection's tokens allow, and detached when the token that allowed
 * it expires without renewal.
 *
 * Service side (`azure-iothub` Client): sender link `/messages/devicebound` into the durable C2D
 * queues, receiver link `/messages/serviceBound/feedback`, and `/messages/serviceBound/filenotifications`.
 * Every refusal names an AMQP error condition and closes only that link or connection.
 */
import type { X509Certificate } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import rhea, { type Connection, type Container, type EventContext, type Message, type Receiver, type Sender } from 'rhea';

type Link = Sender | Receiver;
import type { Clock } from '../../core/clock.js';
import type { AccessGate, PeerContext, Principal } from '../../access/gate.js';
import type { DeviceIdentity } from '../../auth/device-authenticator.js';
import { authorize } from '../../access/access.js';
import type { DataAction } from '../../access/roles.js';
import type { Right } from '../../core/types.js';
import { ServiceLinks, type ServiceLinkDeps } from './service-links.js';
import { AmqpAdmission, DEFAULT_AMQP_ADMISSION, type AmqpAdmissionLimits, type AmqpConnectionTag, type AmqpPeer, type AmqpTlsOptions } from './amqp-admission.js';
import type { ConnectionRefusals } from '../../access/connection-caps.js';
import type { WebSocket } from 'ws';
import { AmqpDeviceSession, parseDeviceAddress, type DeviceLinkDeps, type DeviceLinkKind } from './device-session.js';
import { identityKey } from '../../hub/connections.js';
import { decidePutToken } from './cbs-put-token.js';
import { UNWATCHED, streamBackpressure, webSocketBackpressure, type ConnectionPressure } from './amqp-backpressure.js';
import type { EventHubEndpoint } from './eventhub-endpoint.js';
import { DpsLinks, installDpsSasl } from './dps-links.js';
import { remoteAttach, type AttachTerminus } from './rhea-link.js';
import type { DpsDeps } from '../transport/device-ports.js';

export const AMQP_WS_PROTOCOL = 'AMQPWSB10';

export interface AmqpDeps extends ServiceLinkDeps, Omit<DeviceLinkDeps, 'c2d' | 'clock' | 'logger' | 'pressure'> {
  hostname(): string;
  gate: AccessGate;
  clock: Clock;
  logger: Logger;
  /** Timeouts and caps before authentication (defaults: DEFAULT_AMQP_ADMISSION). */
  admission?: AmqpAdmissionLimits;
  /** Where connections closed before authentication are reported. */
  refusals: ConnectionRefusals;
  /** The built-in Event Hubs-compatible endpoint (eventhub-endpoint.ts). */
  eventHubs?: EventHubEndpoint;
  /** Device provisioning over AMQP (dps-links.ts); without it provisioning links are refused as an unknown ID scope. */
  dps?: DpsDeps;
}

/** What a connection's CBS tokens allow, and until when. */
interface Grant {
  principal: Principal;
  expiresAt: number;
}

interface ConnState {
  conn: Connection;
  peer: PeerContext;
  cbsSender: Sender | undefined;
  /** The service grant (one per connection: a later put-token replaces it). */
  service: Grant | undefined;
  serviceTimer: NodeJS.Timeout | undefined;
  /** Links attached under the service grant: detached when it lapses. */
  serviceLinks: Set<Link>;
  /** Device identities this connection has proven (CBS token or the TLS client certificate). */
  devices: Map<string, { session: AmqpDeviceSession; timer: NodeJS.Timeout | undefined }>;
  /** Device tokens put on $cbs before the first link: identity key -> token. */
  deviceTokens: Map<string, string>;
  /** The client's certificates, leaf first (from the TLS socket under the connection). */
  chain: AmqpPeer['chain'];
  /** Its read and output bounds (amqp-backpressure.ts). */
  pressure: ConnectionPressure;
}

export class AmqpServer {
  readonly container: Container;
  readonly #state = new WeakMap<Connection, ConnState>();
  readonly #service: ServiceLinks;
  readonly #connections = new Set<Connection>();
  readonly #admission: AmqpAdmission;
  /** Each connection's read and output bounds, by its stream (the TLS socket under a WebSocket). */
  readonly #backpressure = new WeakMap<object, ConnectionPressure>();
  readonly #dps: DpsLinks;

  constructor(private readonly deps: AmqpDeps) {
    this.container = rhea.create_container({ id: `gatehouse-${deps.hostname()}`, autoaccept: false });
    this.#service = new ServiceLinks(deps, deps.logger);
    installDpsSasl(this.container);
    this.#dps = new DpsLinks({ dps: deps.dps, gate: deps.gate, logger: deps.logger, authenticated: (conn) => this.#admission.authenticated(conn) });
    this.#admission = new AmqpAdmission(this.container, deps.admission ?? DEFAULT_AMQP_ADMISSION, deps.refusals, {
      sasl: (peer) => this.#dps.saslMechanisms(peer),
      stream: (stream, peer) => this.#backpressure.set(stream, streamBackpressure(stream, peer, deps.logger)),
      ws: (ws, tlsSocket) => this.#backpressure.set(tlsSocket, webSocketBackpressure(ws, tlsSocket, deps.logger)),
    });
    const c = this.container;
    c.on('connection_open', (ctx: EventContext) => this.#onOpen(ctx));
    c.on('receiver_open', (ctx: EventContext) => this.#onReceiverOpen(ctx));
    c.on('sender_open', (ctx: EventContext) => this.#onSenderOpen(ctx));
    c.on('message', (ctx: EventContext) => this.#onMessage(ctx));
    c.on('sendable', (ctx: EventContext) => {
      if (ctx.sender === undefined) return;
      this.#service.sendable(ctx.sender);
      this.deps.eventHubs?.sendable(ctx.sender);
      for (const d of this.#state.get(ctx.connection)?.devices.values() ?? []) if (d.session.owns(ctx.sender)) d.session.sendable();
    });
    c.on('accepted', (ctx: EventContext) => this.#settled(ctx, 'accepted'));
    c.on('released', (ctx: EventContext) => this.#settled(ctx, 'released'));
    c.on('modified', (ctx: EventContext) => this.#settled(ctx, 'released'));
    c.on('rejected', (ctx: EventContext) => this.#settled(ctx, 'rejected'));
    c.on('sender_close', (ctx: EventContext) => this.#linkGone(ctx.connection, ctx.sender));
    c.on('receiver_close', (ctx: EventContext) => this.#linkGone(ctx.connection, ctx.receiver));
    c.on('disconnected', (ctx: EventContext) => this.#onGone(ctx.connection));
    c.on('connection_close', (ctx: EventContext) => this.#onGone(ctx.connection));
    // A frame rhea cannot read concerns that connection only: the admission cuts it with the reason
    // (rhea passes these two events the error alone, so they are heard on each connection there).
  }

  /** The TLS listener (AMQPS), not yet listening. */
  createTlsServer(tls: AmqpTlsOptions): TlsServer {
    return this.#admission.createTlsServer(tls);
  }

  /**
   * A connection on any byte stream, with what its TLS socket would say of the peer: the AMQPS
   * listener's path, and a test's in-memory one.
   */
  handle(stream: Duplex, peer: AmqpPeer): void {
    this.#admission.handle(stream, peer);
  }

  /** An upgraded WebSocket (subprotocol AMQPWSB10) from the HTTPS server. */
  acceptWebSocket(ws: WebSocket, tlsSocket: TLSSocket): void {
    this.#admission.acceptWebSocket(ws, tlsSocket);
  }

  /** Closes every connection with a reason; sockets whose peer does not answer within a second are destroyed. */
  closeAll(reason: string): void {
    for (const conn of this.#connections) {
      try {
        conn.close({ condition: 'amqp:connection:forced', description: reason });
      } catch {
        // already gone
      }
    }
    this.#service.stop();
    this.deps.eventHubs?.closeAll();
    setTimeout(() => {
      for (const socket of this.#admission.sockets) socket.destroy(new Error(reason));
    }, 1000).unref();
  }

  #log(level: 'info' | 'warn', conn: Connection | undefined, fields: Record<string, unknown>, msg: string): void {
    const st = conn === undefined ? undefined : this.#state.get(conn);
    this.deps.logger[level]({ ...fields, protocol: st?.peer.protocol, remote: st?.peer.remote }, msg);
  }

  #onOpen(ctx: EventContext): void {
    const conn = ctx.connection;
    // Every connection the admission accepted carries its peer (amqp-admission.ts).
    const tag = (conn as unknown as { options: Partial<AmqpConnectionTag> }).options;
    const from = tag.gatehouse_peer;
    const peer: PeerContext = { remote: from?.remoteAddress ?? '', protocol: from?.transport ?? 'amqp', tls: from?.tlsVersion };
    const chain = from === undefined ? () => undefined : () => from.chain();
    const pressure = (tag.gatehouse_stream === undefined ? undefined : this.#backpressure.get(tag.gatehouse_stream)) ?? UNWATCHED;
    this.#state.set(conn, { conn, peer, cbsSender: undefined, service: undefined, serviceTimer: undefined, serviceLinks: new Set(), devices: new Map(), deviceTokens: new Map(), chain, pressure });
    this.#connections.add(conn);
    this.#admission.opened(conn);
    this.#dps.opened(conn);
  }

  #onGone(conn: Connection): void {
    const st = this.#state.get(conn);
    if (st?.serviceTimer !== undefined) clearTimeout(st.serviceTimer);
    if (st !== undefined) for (const l of st.serviceLinks) this.#service.detached(l);
    if (st !== undefined) {
      for (const d of st.devices.values()) {
        if (d.timer !== undefined) clearTimeout(d.timer);
        d.session.close('connection closed');
      }
    }
    this.deps.eventHubs?.connectionGone(conn);
    this.#connections.delete(conn);
    this.#state.delete(conn);
  }

  #linkGone(conn: Connection, link: Link | undefined): void {
    if (link === undefined) return;
    const st = this.#state.get(conn);
    st?.serviceLinks.delete(link);
    this.#service.detached(link);
    this.deps.eventHubs?.detached(conn, link);
    for (const d of st?.devices.values() ?? []) if (d.session.owns(link)) d.session.detach(link);
  }

  #settled(ctx: EventContext, outcome: 'accepted' | 'released' | 'rejected'): void {
    this.#service.settled(ctx, outcome);
    const link = ctx.sender;
    if (link === undefined) return;
    for (const d of this.#state.get(ctx.connection)?.devices.values() ?? []) if (d.session.owns(link)) d.session.settled(ctx, outcome);
  }

  // ---- links ---------------------------------------------------------------------------------

  /** The client attached a sender: we receive on its target address. */
  #onReceiverOpen(ctx: EventContext): void {
    const receiver = ctx.receiver as Receiver;
    const address = (receiver.target as { address?: string } | undefined)?.address ?? '';
    const st = this.#state.get(ctx.connection);
    if (st === undefined) return receiver.close({ condition: 'amqp:internal-error', description: 'no connection state' });
    echoTermini(receiver);
    if (address === '$cbs') return;
    if (this.#dps.attach(receiver, st.peer, st.chain, address)) return;
    const dev = parseDeviceAddress(address);
    if (dev !== undefined) return this.#attachDeviceOrRefuse(st, receiver, 'in', dev, address);
    if (address.toLowerCase() === '/messages/devicebound') {
      const refusal = this.#serviceRefusal(st, 'cloudToDeviceMessages/send', ['ServiceConnect'], 'attach');
      if (refusal !== undefined) return this.#refuseLink(receiver, st, address, refusal);
      st.serviceLinks.add(receiver);
      return;
    }
    if (this.deps.eventHubs?.receiverOpened(ctx.connection, st.peer, receiver, address) === true) return;
    this.#refuseLink(receiver, st, address, { condition: 'amqp:not-found', description: `No node at ${address.slice(0, 200)}` });
  }

  /** The client attached a receiver: we send from its source address. */
  #onSenderOpen(ctx: EventContext): void {
    const sender = ctx.sender as Sender;
    const address = (sender.source as { address?: string } | undefined)?.address ?? '';
    const st = this.#state.get(ctx.connection);
    if (st === undefined) return sender.close({ condition: 'amqp:internal-error', description: 'no connection state' });
    echoTermini(sender);
    if (address === '$cbs') {
      st.cbsSender = sender;
      return;
    }
    if (this.#dps.attach(sender, st.peer, st.chain, address)) return;
    const dev = parseDeviceAddress(address);
    if (dev !== undefined) return this.#attachDeviceOrRefuse(st, sender, 'out', dev, address);
    const lower = address.toLowerCase();
    if (lower === '/messages/servicebound/feedback' || lower === '/messages/servicebound/filenotifications') {
      const refusal = this.#serviceRefusal(st, 'cloudToDeviceMessages/feedback', ['ServiceConnect'], 'attach');
      if (refusal !== undefined) return this.#refuseLink(sender, st, address, refusal);
      if (lower === '/messages/servicebound/feedback') this.#service.attachFeedback(sender);
      else if (!this.#service.attachFileNotifications(sender)) return this.#refuseLink(sender, st, address, { condition: 'amqp:not-found', description: 'File upload notifications are not available on this hub.' });
      st.serviceLinks.add(sender);
      return;
    }
    if (this.deps.eventHubs?.senderOpened(ctx.connection, st.peer, sender, address, st.pressure) === true) return;
    this.#refuseLink(sender, st, address, { condition: 'amqp:not-found', description: `No node at ${address.slice(0, 200)}` });
  }

  #refuseLink(link: Link, st: ConnState, address: string, error: { condition: string; description: string }): void {
    this.deps.logger.warn({ event: 'amqp.link-refused', protocol: st.peer.protocol, remote: st.peer.remote, address: address.slice(0, 200), condition: error.condition, reason: error.description }, 'AMQP link refused');
    link.close(error);
  }

  /**
   * The same decision as the HTTPS routes (security/access.ts); an allowed policy's right counts as
   * used. An attach without a live service token is recorded (a message racing its token's expiry
   * is not: the link closes with the token).
   */
  #serviceRefusal(st: ConnState, action: DataAction, anyOf: readonly Right[], on: 'attach' | 'message'): { condition: string; description: string } | undefined {
    const g = st.service;
    if (g === undefined || g.expiresAt <= this.deps.clock.now()) {
      if (on === 'attach') {
        const attempt =
          g === undefined
            ? { subject: 'policy' as const, identity: '', failure: { code: 'malformed' as const, reason: `${action} link without a service token on $cbs` } }
            : { subject: g.principal.kind, identity: g.principal.name, failure: { code: 'expired' as const, reason: `${action} link after the service token expired` } };
        this.deps.gate.refusedBeforeAuth(attempt, st.peer);
      }
      return { condition: 'amqp:unauthorized-access', description: 'Put a service token on $cbs first.' };
    }
    const p = g.principal;
    const decision = authorize(p, { kind: 'service', action, anyOf });
    if (decision.allowed) {
      if (p.kind === 'policy') this.deps.gate.policyUsed(p.name, decision.used);
      return undefined;
    }
    this.deps.gate.denied(p, decision.reason, st.peer);
    return { condition: 'amqp:unauthorized-access', description: `${p.kind} ${p.name} may not ${action}.` };
  }

  // ---- messages --------------------------------------------------------------------------------

  #onMessage(ctx: EventContext): void {
    const receiver = ctx.receiver as Receiver;
    const address = (receiver.target as { address?: string } | undefined)?.address ?? '';
    const st = this.#state.get(ctx.connection);
    if (st === undefined) return;
    if (address === '$cbs') {
      ctx.delivery?.accept();
      st.pressure.begin();
      void this.#putToken(st, ctx.message as Message)
        .catch((err: unknown) => this.deps.logger.error({ err }, 'CBS put-token failed'))
        .finally(() => st.pressure.end());
      return;
    }
    if (this.#dps.onMessage(ctx)) return;
    const dev = parseDeviceAddress(address);
    if (dev !== undefined) {
      const d = st.devices.get(identityKey(dev.deviceId, dev.moduleId));
      if (d === undefined || !d.session.owns(receiver)) {
        ctx.delivery?.reject({ condition: 'amqp:unauthorized-access', description: 'The link is not authorized.' });
        return;
      }
      d.session.onMessage(dev.kind, ctx);
      return;
    }
    if (this.deps.eventHubs?.onMessage(ctx, address) === true) return;
    if (address.toLowerCase() === '/messages/devicebound') {
      // The grant may have lapsed since the attach.
      const refusal = this.#serviceRefusal(st, 'cloudToDeviceMessages/send', ['ServiceConnect'], 'message');
      if (refusal !== undefined) {
        ctx.delivery?.reject(refusal);
        return;
      }
      this.#service.onDeviceboundMessage(ctx);
    }
  }

  async #putToken(st: ConnState, msg: Message): Promise<void> {
    const decision = await decidePutToken(this.deps, st.conn, st.peer, msg);
    const g = decision.grant;
    if (g.kind === 'eventHubs') this.#admission.authenticated(st.conn);
    else if (g.kind === 'device') this.#grantDevice(st, g.identity);
    else if (g.kind === 'service') this.#grantService(st, { principal: g.principal, expiresAt: g.expiresAt });
    st.cbsSender?.send({
      to: msg.reply_to,
      correlation_id: msg.message_id,
      application_properties: { 'status-code': decision.status, 'status-description': decision.description },
      body: null,
    });
  }

  /**
   * A proven device identity: a session (new, or the existing one with a renewed expiry).
   * `certificate`: the client leaf it was proven with, which a revocation must find.
   */
  #grantDevice(st: ConnState, identity: DeviceIdentity, certificate?: X509Certificate): AmqpDeviceSession {
    const key = identityKey(identity.deviceId, identity.moduleId);
    let d = st.devices.get(key);
    if (d === undefined || d.session.closed) {
      const session = new AmqpDeviceSession(identity, { remote: st.peer.remote, protocol: st.peer.protocol === 'amqp-ws' ? 'amqp-ws' : 'amqp', tls: st.peer.tls, certificate }, {
        connections: this.deps.connections,
        telemetry: this.deps.telemetry,
        twins: this.deps.twins,
        methods: this.deps.methods,
        c2d: this.deps.c2d,
        clock: this.deps.clock,
        logger: this.deps.logger,
        maxMessageBytes: this.deps.maxMessageBytes,
        c2dInFlight: this.deps.c2dInFlight,
        c2dLockMs: this.deps.c2dLockMs,
        pressure: st.pressure,
        onConnected: (s) => this.deps.onConnected(s),
        onDisconnected: (s, current) => {
          this.deps.onDisconnected(s, current);
          const cur = st.devices.get(key);
          if (cur?.session === s) {
            if (cur.timer !== undefined) clearTimeout(cur.timer);
            st.devices.delete(key);
          }
        },
      });
      // One session per identity across MQTT and AMQP: the newer one takes over.
      const previous = this.deps.connections.register(session);
      previous?.close('taken over by a new connection for the same identity');
      d = { session, timer: undefined };
      st.devices.set(key, d);
      this.deps.onConnected(session);
      this.deps.logger.info({ event: 'auth.accepted', protocol: st.peer.protocol, remote: st.peer.remote, deviceId: identity.deviceId, moduleId: identity.moduleId, method: identity.method, tls: st.peer.tls }, 'device connected');
    } else {
      d.session.identity = identity;
    }
    if (d.timer !== undefined) clearTimeout(d.timer);
    this.#admission.authenticated(st.conn);
    const session = d.session;
    if (identity.expiresAt !== undefined) {
      // The links close when the token (or certificate) runs out without renewal.
      const ms = Math.max(0, Math.min(identity.expiresAt - this.deps.clock.now(), 2 ** 31 - 1));
      d.timer = setTimeout(() => session.close('the credential expired and was not renewed'), ms);
      d.timer.unref();
    }
    return session;
  }

  /**
   * rhea's attach event cannot wait for #attachDevice: what fails inside it (the store behind the
   * gate) refuses that link and is logged. Dropped, the rejection was unhandled, which ends the
   * process.
   */
  #attachDeviceOrRefuse(st: ConnState, link: Link, direction: 'in' | 'out', dev: { deviceId: string; moduleId: string | null; kind: DeviceLinkKind }, address: string): void {
    this.#attachDevice(st, link, direction, dev, address).catch((err: unknown) => {
      this.deps.logger.error({ err, event: 'amqp.attach-failed', protocol: st.peer.protocol, remote: st.peer.remote, address: address.slice(0, 200) }, 'AMQP device link attach failed');
      try {
        link.close({ condition: 'amqp:internal-error', description: 'The link could not be attached.' });
      } catch {
        // already closed
      }
    });
  }

  /** A device link: the identity must be proven on this connection (CBS token, or now by the client certificate). */
  async #attachDevice(st: ConnState, link: Link, direction: 'in' | 'out', dev: { deviceId: string; moduleId: string | null; kind: DeviceLinkKind }, address: string): Promise<void> {
    const key = identityKey(dev.deviceId, dev.moduleId);
    let session = st.devices.get(key)?.session;
    if (session === undefined || session.closed) {
      // A device proven on this connection reaching for another device's address.
      const proven = [...st.devices.values()].find((d) => !d.session.closed)?.session.identity;
      if (proven !== undefined) return this.#crossDevice(st, link, address, proven);
      const chain = st.chain();
      // Without a token or a certificate too: the gate refuses and records it, as a CONNECT without credentials.
      const result = await this.deps.gate.authenticate({ deviceId: dev.deviceId, moduleId: dev.moduleId, sasToken: undefined, peerChain: chain }, st.peer);
      if (!result.ok) {
        const description = chain === undefined ? 'Put a device token on $cbs first, or present the device certificate.' : 'Unauthorized';
        return this.#refuseLink(link, st, address, { condition: 'amqp:unauthorized-access', description });
      }
      session = this.#grantDevice(st, result.identity, chain?.[0]);
    }
    if (dev.kind === 'c2d' && dev.moduleId !== null) return this.#refuseLink(link, st, address, { condition: 'amqp:not-found', description: 'Modules receive on their inputs.' });
    // Which way each link may go: the device sends telemetry, receives C2D, and talks both ways on methods and twin.
    const allowed = dev.kind === 'events' ? direction === 'in' : dev.kind === 'c2d' ? direction === 'out' : true;
    if (!allowed) return this.#refuseLink(link, st, address, { condition: 'amqp:not-allowed', description: `Cannot attach that way to ${dev.kind}.` });
    session.attach(dev.kind, link, direction);
  }

  /** Recorded as a security event; like MQTT, the connection closes (one row per connection, not a flood of refused links). */
  #crossDevice(st: ConnState, link: Link, address: string, device: { deviceId: string; moduleId: string | null }): void {
    this.deps.gate.deviceDenied(device, { code: 'cross_device', reason: `attach to ${address.slice(0, 200)} refused: another device's link` }, st.peer);
    this.#refuseLink(link, st, address, { condition: 'amqp:unauthorized-access', description: 'Unauthorized' });
    link.connection.close({ condition: 'amqp:unauthorized-access', description: "A device may attach only to its own links." });
  }

  #grantService(st: ConnState, grant: Grant): void {
    st.service = grant;
    this.#admission.authenticated(st.conn);
    if (st.serviceTimer !== undefined) clearTimeout(st.serviceTimer);
    // Links attached under the grant are detached when it lapses without renewal.
    const ms = Math.max(0, Math.min(grant.expiresAt - this.deps.clock.now(), 2 ** 31 - 1));
    st.serviceTimer = setTimeout(() => {
      if (st.service !== grant) return;
      st.service = undefined;
      for (const link of st.serviceLinks) {
        try {
          link.close({ condition: 'amqp:unauthorized-access', description: 'The token expired and was not renewed.' });
        } catch {
          // already closed
        }
      }
      st.serviceLinks.clear();
    }, ms);
    st.serviceTimer.unref();
  }
}

/**
 * Answers a client's attach with its own source and target (their addresses). rhea answers with
 * neither unless told, and a null source (to a receiving client) or target (to a sending one)
 * says the link is refused (AMQP 1.0, 2.6.3): proton-j clients, Azure's Java SDKs among them,
 * then wait for the detach and never open the link. Called before rhea writes the answer (the
 * next tick); a link refused after is detached with its error, as before.
 */
function echoTermini(link: Link): void {
  const remote = remoteAttach(link);
  // A terminus without an address (a dynamic one) is answered as one without an address.
  const fields = (t: AttachTerminus) => (typeof t?.address === 'string' ? { address: t.address } : {}) as { address: string };
  if (remote?.source !== null && remote?.source !== undefined) link.set_source(fields(remote.source));
  if (remote?.target !== null && remote?.target !== undefined) link.set_target(fields(remote.target));
}
