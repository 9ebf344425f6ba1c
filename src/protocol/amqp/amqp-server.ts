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
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import rhea, { type Connection, type Container, type EventContext, type Message, type Receiver, type Sender } from 'rhea';

type Link = Sender | Receiver;
import { HubError } from '../../core/errors.js';
import { parseSasToken } from '../../auth/sas.js';
import type { Clock } from '../../core/clock.js';
import type { AccessGate, PeerContext, Principal } from '../../security/gate.js';
import { rolesAllow, type Action } from '../../security/roles.js';
import type { Right } from '../../core/types.js';
import { ServiceLinks, type ServiceLinkDeps } from './service-links.js';

export const AMQP_WS_PROTOCOL = 'AMQPWSB10';
/** A C2D message is at most 64 KiB; frames carry it with its properties. */
const MAX_FRAME_SIZE = 256 * 1024;

export interface AmqpDeps extends ServiceLinkDeps {
  hostname(): string;
  gate: AccessGate;
  clock: Clock;
  logger: Logger;
}

/** What a connection's CBS tokens allow, and until when. */
interface Grant {
  principal: Principal;
  expiresAt: number;
}

interface ConnState {
  peer: PeerContext;
  cbsSender: Sender | undefined;
  /** The service grant (one per connection: a later put-token replaces it). */
  service: Grant | undefined;
  serviceTimer: NodeJS.Timeout | undefined;
  /** Links attached under the service grant: detached when it lapses. */
  serviceLinks: Set<Link>;
}

function condition(err: unknown): { condition: string; description: string } {
  if (err instanceof HubError) {
    const c =
      err.code === 'DeviceNotFound'
        ? 'amqp:not-found'
        : err.code === 'DeviceMaximumQueueDepthExceeded'
          ? 'amqp:resource-limit-exceeded'
          : err.code === 'MessageTooLarge'
            ? 'amqp:link:message-size-exceeded'
            : err.code === 'IotHubUnauthorizedAccess'
              ? 'amqp:unauthorized-access'
              : err.code === 'ThrottlingException'
                ? 'com.microsoft:device-container-throttled'
                : err.status >= 500
                  ? 'amqp:internal-error'
                  : 'amqp:invalid-field';
    return { condition: c, description: err.message };
  }
  return { condition: 'amqp:internal-error', description: 'internal error' };
}

export { condition as amqpCondition };

export class AmqpServer {
  readonly container: Container;
  readonly #state = new WeakMap<Connection, ConnState>();
  readonly #service: ServiceLinks;
  readonly #connections = new Set<Connection>();

  constructor(private readonly deps: AmqpDeps) {
    this.container = rhea.create_container({ id: `gatehouse-${deps.hostname()}`, autoaccept: false });
    this.#service = new ServiceLinks(deps, deps.logger);
    const c = this.container;
    c.on('connection_open', (ctx: EventContext) => this.#onOpen(ctx));
    c.on('receiver_open', (ctx: EventContext) => this.#onReceiverOpen(ctx));
    c.on('sender_open', (ctx: EventContext) => this.#onSenderOpen(ctx));
    c.on('message', (ctx: EventContext) => this.#onMessage(ctx));
    c.on('sendable', (ctx: EventContext) => {
      if (ctx.sender !== undefined) this.#service.sendable(ctx.sender);
    });
    c.on('accepted', (ctx: EventContext) => this.#service.settled(ctx, 'accepted'));
    c.on('released', (ctx: EventContext) => this.#service.settled(ctx, 'released'));
    c.on('modified', (ctx: EventContext) => this.#service.settled(ctx, 'released'));
    c.on('rejected', (ctx: EventContext) => this.#service.settled(ctx, 'rejected'));
    c.on('sender_close', (ctx: EventContext) => this.#linkGone(ctx.connection, ctx.sender));
    c.on('receiver_close', (ctx: EventContext) => this.#linkGone(ctx.connection, ctx.receiver));
    c.on('disconnected', (ctx: EventContext) => this.#onGone(ctx.connection));
    c.on('connection_close', (ctx: EventContext) => this.#onGone(ctx.connection));
    // A malformed frame concerns that connection only: rhea closes it; nothing escapes.
    c.on('protocol_error', (ctx: EventContext & { error?: unknown }) => this.#log('warn', ctx.connection, { event: 'amqp.protocol-error', reason: String(ctx.error ?? 'protocol error') }, 'AMQP protocol error'));
    c.on('error', (ctx: EventContext & { error?: unknown }) => this.#log('info', ctx.connection, { event: 'amqp.error', reason: String(ctx.error ?? 'error') }, 'AMQP connection error'));
  }

  /** The TLS listener (AMQPS). */
  listenTls(opts: { port: number; host: string; key: string; cert: string; minVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3' }): TlsServer {
    return this.container.listen({
      port: opts.port,
      host: opts.host,
      transport: 'tls',
      key: opts.key,
      cert: opts.cert,
      minVersion: opts.minVersion,
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: 10_000,
      max_frame_size: MAX_FRAME_SIZE,
      idle_time_out: 240_000,
      gatehouse_transport: 'amqp',
    } as unknown as Parameters<Container['listen']>[0]) as TlsServer;
  }

  /** An upgraded WebSocket (subprotocol AMQPWSB10) from the HTTPS server. */
  acceptWebSocket(ws: unknown, tlsSocket: TLSSocket): void {
    this.container.websocket_accept(ws as never, {
      max_frame_size: MAX_FRAME_SIZE,
      idle_time_out: 240_000,
      gatehouse_transport: 'amqp-ws',
      gatehouse_peer: { remote: tlsSocket.remoteAddress ?? '', tls: tlsSocket.getProtocol() ?? undefined },
    } as never);
  }

  closeAll(reason: string): void {
    for (const conn of this.#connections) {
      try {
        conn.close({ condition: 'amqp:connection:forced', description: reason });
      } catch {
        // already gone
      }
    }
    this.#service.stop();
  }

  #log(level: 'info' | 'warn', conn: Connection | undefined, fields: Record<string, unknown>, msg: string): void {
    const st = conn === undefined ? undefined : this.#state.get(conn);
    this.deps.logger[level]({ ...fields, protocol: st?.peer.protocol, remote: st?.peer.remote }, msg);
  }

  #onOpen(ctx: EventContext): void {
    const conn = ctx.connection;
    const options = (conn as unknown as { options: Record<string, unknown> }).options;
    const transport = options.gatehouse_transport === 'amqp-ws' ? 'amqp-ws' : 'amqp';
    let peer: PeerContext;
    if (transport === 'amqp-ws') {
      const p = options.gatehouse_peer as { remote: string; tls?: string } | undefined;
      peer = { remote: p?.remote ?? '', protocol: 'amqp-ws', tls: p?.tls };
    } else {
      const socket = conn.get_tls_socket() as TLSSocket | undefined;
      peer = { remote: socket?.remoteAddress ?? '', protocol: 'amqp', tls: socket?.getProtocol() ?? undefined };
    }
    this.#state.set(conn, { peer, cbsSender: undefined, service: undefined, serviceTimer: undefined, serviceLinks: new Set() });
    this.#connections.add(conn);
  }

  #onGone(conn: Connection): void {
    const st = this.#state.get(conn);
    if (st?.serviceTimer !== undefined) clearTimeout(st.serviceTimer);
    if (st !== undefined) for (const l of st.serviceLinks) this.#service.detached(l);
    this.#connections.delete(conn);
    this.#state.delete(conn);
  }

  #linkGone(conn: Connection, link: Link | undefined): void {
    if (link === undefined) return;
    this.#state.get(conn)?.serviceLinks.delete(link);
    this.#service.detached(link);
  }

  // ---- links ---------------------------------------------------------------------------------

  /** The client attached a sender: we receive on its target address. */
  #onReceiverOpen(ctx: EventContext): void {
    const receiver = ctx.receiver as Receiver;
    const address = (receiver.target as { address?: string } | undefined)?.address ?? '';
    const st = this.#state.get(ctx.connection);
    if (st === undefined) return receiver.close({ condition: 'amqp:internal-error', description: 'no connection state' });
    if (address === '$cbs') return;
    if (address.toLowerCase() === '/messages/devicebound') {
      const refusal = this.#serviceRefusal(st, 'cloudToDeviceMessages/send', ['ServiceConnect']);
      if (refusal !== undefined) return this.#refuseLink(receiver, st, address, refusal);
      st.serviceLinks.add(receiver);
      return;
    }
    this.#refuseLink(receiver, st, address, { condition: 'amqp:not-found', description: `No node at ${address.slice(0, 200)}` });
  }

  /** The client attached a receiver: we send from its source address. */
  #onSenderOpen(ctx: EventContext): void {
    const sender = ctx.sender as Sender;
    const address = (sender.source as { address?: string } | undefined)?.address ?? '';
    const st = this.#state.get(ctx.connection);
    if (st === undefined) return sender.close({ condition: 'amqp:internal-error', description: 'no connection state' });
    if (address === '$cbs') {
      st.cbsSender = sender;
      return;
    }
    const lower = address.toLowerCase();
    if (lower === '/messages/servicebound/feedback' || lower === '/messages/servicebound/filenotifications') {
      const refusal = this.#serviceRefusal(st, 'cloudToDeviceMessages/feedback', ['ServiceConnect']);
      if (refusal !== undefined) return this.#refuseLink(sender, st, address, refusal);
      st.serviceLinks.add(sender);
      if (lower === '/messages/servicebound/feedback') this.#service.attachFeedback(sender);
      return;
    }
    this.#refuseLink(sender, st, address, { condition: 'amqp:not-found', description: `No node at ${address.slice(0, 200)}` });
  }

  #refuseLink(link: Link, st: ConnState, address: string, error: { condition: string; description: string }): void {
    this.deps.logger.warn({ event: 'amqp.link-refused', protocol: st.peer.protocol, remote: st.peer.remote, address: address.slice(0, 200), condition: error.condition, reason: error.description }, 'AMQP link refused');
    link.close(error);
  }

  #serviceRefusal(st: ConnState, action: Action, rights: readonly Right[]): { condition: string; description: string } | undefined {
    const g = st.service;
    if (g === undefined || g.expiresAt <= this.deps.clock.now()) return { condition: 'amqp:unauthorized-access', description: 'Put a service token on $cbs first.' };
    const p = g.principal;
    const ok = p.kind === 'operator' ? rolesAllow(p.roles, action) : rights.some((r) => p.rights.has(r));
    return ok ? undefined : { condition: 'amqp:unauthorized-access', description: `${p.kind} ${p.name} may not ${action}.` };
  }

  // ---- messages --------------------------------------------------------------------------------

  #onMessage(ctx: EventContext): void {
    const receiver = ctx.receiver as Receiver;
    const address = (receiver.target as { address?: string } | undefined)?.address ?? '';
    const st = this.#state.get(ctx.connection);
    if (st === undefined) return;
    if (address === '$cbs') {
      ctx.delivery?.accept();
      void this.#putToken(st, ctx.message as Message).catch((err: unknown) => this.deps.logger.error({ err }, 'CBS put-token failed'));
      return;
    }
    if (address.toLowerCase() === '/messages/devicebound') {
      // The grant may have lapsed since the attach.
      const refusal = this.#serviceRefusal(st, 'cloudToDeviceMessages/send', ['ServiceConnect']);
      if (refusal !== undefined) {
        ctx.delivery?.reject(refusal);
        return;
      }
      this.#service.onDeviceboundMessage(ctx);
    }
  }

  async #putToken(st: ConnState, msg: Message): Promise<void> {
    const props = (msg.application_properties ?? {}) as Record<string, unknown>;
    const reply = (status: number, description: string) => {
      const sender = st.cbsSender;
      if (sender === undefined) return;
      sender.send({
        to: msg.reply_to,
        correlation_id: msg.message_id,
        application_properties: { 'status-code': status, 'status-description': description },
        body: null,
      });
    };
    const token = typeof msg.body === 'string' ? msg.body : Buffer.isBuffer(msg.body) ? msg.body.toString('utf8') : '';
    const audience = typeof props.name === 'string' ? props.name : '';
    if (props.operation !== 'put-token' || token === '') return reply(400, 'Bad request: operation put-token with a token body is required.');
    const host = this.deps.hostname().toLowerCase();
    const isService = token.startsWith('Bearer ') || audience.toLowerCase() === host || audience === 'https://iothubs.azure.net/.default';
    if (!isService) return reply(401, 'Unauthorized');
    try {
      const principal = await this.deps.gate.authenticateService(token, '/messages/devicebound', st.peer);
      const expiresAt = principal.kind === 'operator' ? principal.expiresAt : parseSasToken(token).expiry * 1000;
      this.#grantService(st, { principal, expiresAt });
      reply(200, 'OK');
    } catch (err) {
      if (err instanceof HubError && err.code === 'IotHubUnauthorizedAccess') {
        this.deps.logger.warn({ event: 'auth.denied', protocol: st.peer.protocol, remote: st.peer.remote, reason: String(err.cause) }, 'CBS put-token refused');
        return reply(401, 'Unauthorized');
      }
      throw err;
    }
  }

  #grantService(st: ConnState, grant: Grant): void {
    st.service = grant;
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
