/**
 * How an AMQP connection gets in, before it has proven anything (issue 14 items 1 and 6), on TLS
 * (AMQPS) and WebSocket (AMQPWSB10) alike:
 *
 * - the TLS handshake is bounded (and a failed or timed-out one closes its socket: node only
 *   reports it), then the connection takes an unauthenticated slot, per address and per listener;
 * - every byte passes the frame guard before rhea reads it: one protocol header per layer, the
 *   pre-authentication frame size, byte and frame budgets;
 * - it must send its header and open within the open timeout, and prove a credential (a CBS
 *   put-token accepted, or a device proven by its certificate) within the authentication timeout
 *   after that.
 *
 * Once authenticated the slot is freed and the guard lifts its pre-authentication bounds.
 * Every connection closed here is reported with its reason (log and metric).
 */
import type { X509Certificate } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { createServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Connection, Container } from 'rhea';
import type { WebSocket } from 'ws';
import { shedHandshakeState } from '../transport/tls-idle.js';
import { AddressSlots, type ConnectionRefusals, type RefusalReason } from '../../access/connection-caps.js';
import { boundRheaDecoder } from './decoder-bounds.js';
import { FrameGuard, type FrameGuardLimits } from './frame-guard.js';
import { peerChain } from '../transport/peer.js';
import { passOutput } from './rhea-output.js';

/** A C2D message is at most 64 KiB; frames carry it with its properties. */
export const MAX_FRAME_SIZE = 256 * 1024;

/**
 * Frame bounds. Before authentication the SDKs send under 1 KiB in at most a dozen frames (open,
 * begin, the $cbs attaches, flow, the put-token); a bearer JWT of a few KiB still fits one 8 KiB
 * frame. The budgets bound what rhea builds from an unauthenticated connection (sessions, links, a
 * message in pieces): measured, an AMQPS connection just under the byte budget holds about 110 KiB
 * of the hub's memory, TLS included.
 */
export const AMQP_FRAME_LIMITS: FrameGuardLimits = {
  maxFrameSize: MAX_FRAME_SIZE,
  preAuthMaxFrameSize: 8 * 1024,
  preAuthMaxBytes: 32 * 1024,
  preAuthMaxFrames: 32,
};

export interface AmqpAdmissionLimits {
  handshakeTimeoutMs: number;
  /** From the end of the TLS handshake (or the WebSocket upgrade) to the client's open. */
  openTimeoutMs: number;
  /** From the client's open to a proven credential. */
  authTimeoutMs: number;
  /** Unauthenticated connections at once, per listener (AMQPS and AMQP over WebSocket each). */
  maxUnauthenticated: number;
  maxUnauthenticatedPerAddress: number;
}

export const DEFAULT_AMQP_ADMISSION: AmqpAdmissionLimits = {
  handshakeTimeoutMs: 10_000,
  openTimeoutMs: 10_000,
  authTimeoutMs: 30_000,
  maxUnauthenticated: 256,
  maxUnauthenticatedPerAddress: 32,
};

export interface AmqpTlsOptions {
  key: string;
  cert: string;
  minVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
}

/** The rhea connection options every accepted connection gets, with the hub's own fields. */
const RHEA_OPTIONS = { max_frame_size: MAX_FRAME_SIZE, idle_time_out: 240_000, reconnect: false };

type Phase =
  | { kind: 'opening'; timer: NodeJS.Timeout }
  | { kind: 'authenticating'; timer: NodeJS.Timeout }
  | { kind: 'authenticated' }
  | { kind: 'closed' };

type Transport = 'amqp' | 'amqp-ws';

/**
 * What a listener knows of a connection's peer: what the TLS socket gave (address, TLS version,
 * client certificate), or what a test says for an in-memory stream.
 */
export interface AmqpPeer {
  transport: Transport;
  remoteAddress: string;
  tlsVersion: string | undefined;
  /** The certificates the client presented, leaf first; read only when a device link needs them. */
  chain(): X509Certificate[] | undefined;
}

/** The peer of a TLS socket (AMQPS, or the HTTPS socket under an AMQP WebSocket). */
export function tlsAmqpPeer(socket: TLSSocket, transport: Transport): AmqpPeer {
  return { transport, remoteAddress: socket.remoteAddress ?? '', tlsVersion: socket.getProtocol() ?? undefined, chain: () => peerChain(socket) };
}

/** The rhea connection option that carries the peer to the server's connection_open (see AmqpServer). */
export interface AmqpConnectionTag {
  gatehouse_peer: AmqpPeer;
  /** What the connection's backpressure is registered under: the stream, or the TLS socket under a WebSocket. */
  gatehouse_stream: object;
}

/** One connection on its way in. */
class Admission {
  #phase: Phase;

  constructor(
    private readonly conn: Connection,
    readonly guard: FrameGuard,
    private readonly limits: AmqpAdmissionLimits,
    private readonly release: () => void,
    /** Closes the connection for a reason; graceful: an AMQP close first, the socket a second later. */
    private readonly cut: (reason: RefusalReason, detail: string, graceful: boolean) => void,
  ) {
    this.#phase = { kind: 'opening', timer: this.#after(limits.openTimeoutMs, () => cut('open_timeout', `no open within ${limits.openTimeoutMs} ms`, false)) };
  }

  /** Passes a chunk through the guard; false when the connection was closed for it. */
  feed(chunk: Buffer): boolean {
    const refused = this.guard.feed(chunk);
    if (refused === undefined) return true;
    this.cut(refused.kind === 'protocol' ? 'protocol_violation' : 'pre_auth_limit', refused.reason, false);
    return false;
  }

  /**
   * rhea could not decode what the client sent. rhea only half-closes the socket then and goes on
   * reading into a parser that lost its place (it buffered whatever size it read next: GBs), so
   * the connection is cut here, at once.
   */
  unreadable(detail: string): void {
    if (this.#phase.kind === 'closed') return;
    this.cut('protocol_violation', detail, false);
  }

  opened(): void {
    if (this.#phase.kind !== 'opening') return;
    clearTimeout(this.#phase.timer);
    const ms = this.limits.authTimeoutMs;
    this.#phase = { kind: 'authenticating', timer: this.#after(ms, () => this.cut('auth_timeout', `no credential within ${ms} ms of the open`, true)) };
  }

  authenticated(): void {
    if (this.#phase.kind === 'authenticated' || this.#phase.kind === 'closed') return;
    clearTimeout(this.#phase.timer);
    this.#phase = { kind: 'authenticated' };
    this.guard.authenticated();
    this.release();
  }

  closed(): void {
    if (this.#phase.kind === 'opening' || this.#phase.kind === 'authenticating') clearTimeout(this.#phase.timer);
    this.#phase = { kind: 'closed' };
    this.release();
  }

  /** The AMQP close the hub sends on a timeout (before the socket goes). */
  closeAmqp(description: string): void {
    try {
      this.conn.close({ condition: 'amqp:unauthorized-access', description });
    } catch {
      // already closing
    }
  }

  #after(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  }
}

/**
 * rhea 3 keeps the SASL layer's state on the connection (lib/sasl.js: the SelectiveServer picks
 * the SaslServer, whose transport is `read_complete` once it has sent an OK outcome). Reading it
 * is the only way to know when the client may send the AMQP header; `preauth-limits` tests both a
 * SASL client (this must turn true) and a pipelined header (it must not be true before).
 */
function saslOutcomeSent(conn: Connection): boolean {
  const sasl = (conn as unknown as { sasl_transport?: { selected?: { transport?: { read_complete?: unknown } } } }).sasl_transport;
  return sasl?.selected?.transport?.read_complete === true;
}

/**
 * rhea ends the socket as soon as it reads the client's close after its own (lib/connection.js
 * `input`), before it answers what came with that close: it answers an end or a detach on a later
 * tick (a nextTick that registers its next pass, on another). Those answers were lost, and a client
 * that waits for them hung: told of the hub's close while a link attached, the provisioning SDK ends
 * its session and closes in one write, then waits for the session's end until its 30 s timeout. So
 * the socket ends once the ticks rhea queued have run (setImmediate comes after all of them).
 */
function endAfterPendingPass(socket: { end(): unknown }): void {
  const end = socket.end.bind(socket);
  socket.end = () => setImmediate(end);
}

/**
 * rhea's idle timers (the heartbeat it sends, the silence it allows), which it stops when the socket
 * ends; an answer it wrote after that (endAfterPendingPass) started a new one, which would hold the
 * closed connection for twice the idle timeout. Stopped again once the socket is closed.
 */
function stopIdleTimers(conn: Connection): void {
  const timers = conn as unknown as { heartbeat_in?: NodeJS.Timeout; heartbeat_out?: NodeJS.Timeout };
  clearTimeout(timers.heartbeat_in);
  clearTimeout(timers.heartbeat_out);
  timers.heartbeat_in = undefined;
  timers.heartbeat_out = undefined;
}

/** SASL mechanisms by name, each a factory of rhea's server mechanism objects (lib/sasl.js). */
export type SaslMechanisms = Record<string, () => unknown>;

/** rhea accepts a server-side socket through `accept`, which its typings leave out. */
function accept(conn: Connection, socket: { end(): unknown }, sasl: SaslMechanisms | undefined): void {
  endAfterPendingPass(socket);
  (conn as unknown as { accept(socket: unknown): Connection }).accept(socket);
  if (sasl === undefined) return;
  // rhea builds a connection's SASL server from the container's mechanisms (the list it offers);
  // the factories this connection calls are its own, so a mechanism knows whose socket it serves.
  const layer = (conn as unknown as { sasl_transport?: { transports?: Record<number, { mechanisms?: SaslMechanisms }>; mechanisms?: SaslMechanisms } }).sasl_transport;
  const server = layer?.transports?.[3] ?? layer;
  if (server?.mechanisms !== undefined) server.mechanisms = { ...server.mechanisms, ...sasl };
}

export class AmqpAdmission {
  readonly #admissions = new WeakMap<Connection, Admission>();
  readonly #slots: Record<Transport, AddressSlots>;
  /** Live streams given to `handle` (AMQPS sockets), for closeAll. */
  readonly sockets = new Set<Duplex>();

  constructor(
    private readonly container: Container,
    private readonly limits: AmqpAdmissionLimits,
    private readonly refusals: ConnectionRefusals,
    /** Sees each admitted transport before rhea does (the output and read bounds hook in here). */
    private readonly observe: { stream?(stream: Duplex, peer: AmqpPeer): void; ws?(ws: WebSocket, tlsSocket: TLSSocket): void; sasl?(peer: AmqpPeer): SaslMechanisms } = {},
  ) {
    // rhea decodes every frame the guard lets through: bound what its decoder builds from one.
    boundRheaDecoder();
    const slots = () => new AddressSlots(limits.maxUnauthenticatedPerAddress, limits.maxUnauthenticated);
    this.#slots = { amqp: slots(), 'amqp-ws': slots() };
  }

  /** The AMQPS server (not yet listening): each secured socket becomes a rhea connection behind a guard. */
  createTlsServer(tls: AmqpTlsOptions): TlsServer {
    const server = createServer({
      key: tls.key,
      cert: tls.cert,
      minVersion: tls.minVersion,
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: this.limits.handshakeTimeoutMs,
    });
    // The access gate's watch adds the per-address cap and closes sockets whose handshake failed.
    server.on('secureConnection', (socket: TLSSocket) => {
      // rhea writes a pass's frames corked, so Nagle's algorithm only delays: a small frame (a
      // transfer, a twin answer) waits for the ACK of the last, which a client that has nothing
      // to send back (a settled Event Hubs reader) delays by up to 40 ms. As the MQTT listener does.
      socket.setNoDelay(true);
      shedHandshakeState(socket);
      this.handle(socket, tlsAmqpPeer(socket, 'amqp'));
    });
    return server;
  }

  /**
   * A connection on any byte stream: the AMQPS listener's TLS socket, or a test's in-memory pair
   * (`peer` then says what the TLS socket would have). It takes an unauthenticated slot, and every
   * chunk passes the guard before rhea reads it.
   */
  handle(stream: Duplex, peer: AmqpPeer): void {
    const remote = peer.remoteAddress;
    const release = this.#takeSlot(peer.transport, remote);
    if (release === undefined) {
      stream.destroy();
      return;
    }
    this.sockets.add(stream);
    const tag: AmqpConnectionTag = { gatehouse_peer: peer, gatehouse_stream: stream };
    const conn = this.container.create_connection({ ...RHEA_OPTIONS, ...tag } as never);
    // With an error: rhea learns of a socket's end through 'error' or 'end', never 'close'.
    const admission = this.#admit(conn, peer.transport, remote, release, () => stream.destroy(new Error('closed by the hub')), stream);
    stream.on('data', (chunk: Buffer) => admission.feed(chunk));
    stream.once('close', () => {
      this.sockets.delete(stream);
      admission.closed();
      stopIdleTimers(conn);
    });
    this.observe.stream?.(stream, peer);
    // After the guard's listener, so it sees every chunk before rhea does.
    accept(conn, stream, this.observe.sasl?.(peer));
  }

  /** An upgraded WebSocket (subprotocol AMQPWSB10) from the HTTPS server. */
  acceptWebSocket(ws: WebSocket, tlsSocket: TLSSocket): void {
    const remote = tlsSocket.remoteAddress ?? '';
    const release = this.#takeSlot('amqp-ws', remote);
    if (release === undefined) {
      ws.terminate();
      return;
    }
    const peer = tlsAmqpPeer(tlsSocket, 'amqp-ws');
    const tag: AmqpConnectionTag = { gatehouse_peer: peer, gatehouse_stream: tlsSocket };
    const conn = this.container.create_connection({ ...RHEA_OPTIONS, ...tag } as never);
    const admission = this.#admit(conn, 'amqp-ws', remote, release, () => ws.terminate());
    ws.once('close', () => {
      admission.closed();
      stopIdleTimers(conn);
    });
    this.observe.ws?.(ws, tlsSocket);
    accept(conn, rheaSocket(ws, remote, (chunk) => admission.feed(chunk)), this.observe.sasl?.(peer));
  }

  /** The client's open arrived (rhea's connection_open). */
  opened(conn: Connection): void {
    this.#admissions.get(conn)?.opened();
  }

  /** The connection proved a credential. */
  authenticated(conn: Connection): void {
    this.#admissions.get(conn)?.authenticated();
  }

  #takeSlot(transport: Transport, remote: string): (() => void) | undefined {
    const slot = this.#slots[transport].take(remote);
    if (slot.ok) return slot.release;
    const detail = slot.limit === 'address' ? `more than ${this.limits.maxUnauthenticatedPerAddress} unauthenticated connections from this address` : `more than ${this.limits.maxUnauthenticated} unauthenticated connections`;
    this.refusals.report({ listener: transport, reason: 'unauthenticated_limit', remote, detail });
    return undefined;
  }

  #admit(conn: Connection, transport: Transport, remote: string, release: () => void, destroy: () => void, stream?: Duplex): Admission {
    const guard = new FrameGuard(AMQP_FRAME_LIMITS, () => saslOutcomeSent(conn));
    const admission: Admission = new Admission(conn, guard, this.limits, release, (reason, detail, graceful) => {
      this.refusals.report({ listener: transport, reason, remote, detail });
      admission.closed();
      if (!graceful) return destroy();
      admission.closeAmqp(detail);
      setTimeout(destroy, 1000).unref();
    });
    this.#admissions.set(conn, admission);
    // rhea's reader failed (lib/connection.js `input`: a ProtocolError, or a TypeError from decoding a
    // frame body). The listeners get the error only, hence one pair per connection.
    const unreadable = (err: unknown) => admission.unreadable(`a frame the hub cannot decode: ${String(err).slice(0, 200)}`);
    conn.on('protocol_error', unreadable);
    conn.on('error', unreadable);
    // rhea writes what a connection owes (dispositions, flow) on a later tick; what it throws there
    // would end the process. A transfer that began a delivery without a delivery-id made it throw
    // "Field first is mandatory" when the hub settled it: that connection goes, not the hub.
    const raw = conn as unknown as { _process(): void };
    const process = raw._process.bind(conn);
    // What one pass owes (a batch of Event Hubs transfers, say) leaves in one socket write
    // (rhea-output.ts); corked, with the SASL frames too, and in one TLS write and system call.
    const output = passOutput(conn);
    raw._process = () => {
      stream?.cork();
      try {
        output.pass(process);
      } catch (err) {
        admission.unreadable(`the connection's state cannot be written: ${String(err).slice(0, 200)}`);
      } finally {
        stream?.uncork();
      }
    };
    return admission;
  }
}

/**
 * rhea's socket interface over a `ws` WebSocket (what rhea's lib/ws.js `wrap` does), with the
 * guard in front of rhea's reader: a chunk it refuses never reaches rhea.
 */
function rheaSocket(ws: WebSocket, remote: string, admit: (chunk: Buffer) => boolean) {
  return {
    end: () => ws.close(),
    write: (data: Buffer) => ws.send(data, { binary: true }),
    on: (event: string, handler: (arg?: unknown) => void) => {
      if (event === 'data') {
        ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
          const chunk = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
          if (admit(chunk)) handler(chunk);
        });
      } else if (event === 'end') ws.on('close', () => handler());
      else if (event === 'error') ws.on('error', (err: Error) => handler(err));
    },
    get_id_string: () => remote,
  };
}
