/**
 * Bounds on connections before anyone is authenticated (issue 14): how many sockets one address
 * may hold open on a listener, refused at TCP accept before any TLS work; slots for connections
 * that have not yet authenticated (per address and per listener, used by AMQP); and one place
 * that reports every connection the hub closed for a bound or a timeout: a warning per address,
 * listener and reason at most once a minute (a flood must not flood the log) and a counter
 * `gatehouse_connections_refused_total{listener,reason}`.
 *
 * An address is an IPv4 address, or an IPv6 /64: one IPv6 host usually holds a whole /64, so
 * counting single IPv6 addresses would cap nothing.
 */
import { isIPv4, isIPv6, type Server as NetServer, type Socket } from 'node:net';
import type { Clock } from '../core/clock.js';
import type { AuthProtocol } from '../core/security-events.js';
import { normalizeAddress } from './ip-filter.js';

/** Why the hub closed a connection it had not authenticated (a bounded metric label). */
export type RefusalReason =
  /** Too many open sockets from one address on this listener. */
  | 'address_limit'
  /** Too many unauthenticated connections from one address, or on the listener. */
  | 'unauthenticated_limit'
  | 'handshake_timeout'
  /** No protocol header and open in time (AMQP). */
  | 'open_timeout'
  /** Opened, but no credential proven in time (AMQP). */
  | 'auth_timeout'
  /** No complete request headers in time (HTTPS), the first request after the handshake included. */
  | 'headers_timeout'
  /** No complete request (body included) in time (HTTPS). */
  | 'request_timeout'
  /** Past a pre-authentication bound on frames or bytes (AMQP). */
  | 'pre_auth_limit'
  /** Not the protocol, or a frame over the hub's maximum (AMQP). */
  | 'protocol_violation';

/** The listener a connection came in on: a TLS port (`mqtt`, `https`, `amqp`), or AMQP over WebSocket on the HTTPS port (`amqp-ws`). */
export type ListenerName = AuthProtocol;

/** The key an address is counted under: IPv4 as is, IPv6 by its /64. */
export function addressKey(remote: string): string {
  const a = normalizeAddress(remote.split('%')[0] ?? remote);
  if (isIPv4(a) || !isIPv6(a)) return a;
  const groups = expandIpv6(a);
  return `${groups.slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address, as lowercase hex without leading zeros. */
function expandIpv6(a: string): string[] {
  let text = a.toLowerCase();
  // A dotted IPv4 tail (`64:ff9b::1.2.3.4`) is the last two groups.
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted !== null) {
    const [b0, b1, b2, b3] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array.from({ length: 8 - left.length - right.length }, () => '0');
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16).toString(16));
}

export type Slot = { ok: true; release(): void } | { ok: false; limit: 'address' | 'listener' };

/** Counted slots per address (0: no cap) and in total. */
export class AddressSlots {
  readonly #byAddress = new Map<string, number>();
  #total = 0;

  constructor(
    private readonly perAddress: number,
    private readonly total = Number.POSITIVE_INFINITY,
  ) {}

  take(remote: string): Slot {
    const limit = this.acquire(remote);
    if (limit !== undefined) return { ok: false, limit };
    let held = true;
    return {
      ok: true,
      release: () => {
        if (!held) return;
        held = false;
        this.giveBack(remote);
      },
    };
  }

  /** Takes a slot for `remote` without a release closure (the caller gives it back once, with giveBack); the cap hit if none. */
  acquire(remote: string): 'address' | 'listener' | undefined {
    const key = addressKey(remote);
    const n = this.#byAddress.get(key) ?? 0;
    if (this.perAddress > 0 && n >= this.perAddress) return 'address';
    if (this.#total >= this.total) return 'listener';
    this.#byAddress.set(key, n + 1);
    this.#total += 1;
    return undefined;
  }

  /** Gives back one slot acquired for `remote`. */
  giveBack(remote: string): void {
    const key = addressKey(remote);
    this.#total -= 1;
    const left = (this.#byAddress.get(key) ?? 1) - 1;
    if (left <= 0) this.#byAddress.delete(key);
    else this.#byAddress.set(key, left);
  }

  /** Slots held (for tests and metrics). */
  get held(): number {
    return this.#total;
  }
}

export interface Refusal {
  listener: ListenerName;
  reason: RefusalReason;
  remote: string;
  /** More about the reason for the log (never a credential). */
  detail?: string;
}

/** Reports connections the hub closed: a rate-limited log line and a counter. */
export class ConnectionRefusals {
  readonly #lastLogged = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly deps: {
      log: (fields: Record<string, unknown>, msg: string) => void;
      count?: (listener: ListenerName, reason: RefusalReason) => void;
      clock: Clock;
    },
  ) {}

  report(r: Refusal): void {
    this.deps.count?.(r.listener, r.reason);
    const key = `${r.listener}|${r.reason}|${addressKey(r.remote)}`;
    const now = this.deps.clock.now();
    const last = this.#lastLogged.get(key);
    if (last !== undefined && now - last.at < 60_000) {
      last.suppressed += 1;
      return;
    }
    if (this.#lastLogged.size > 10_000) this.#lastLogged.clear();
    this.#lastLogged.set(key, { at: now, suppressed: 0 });
    this.deps.log(
      { event: 'connection.refused', listener: r.listener, remote: r.remote, reason: r.reason, ...(r.detail === undefined ? {} : { detail: r.detail }), ...(last === undefined || last.suppressed === 0 ? {} : { alsoInTheLastMinute: last.suppressed }) },
      'connection closed for a limit or a timeout',
    );
  }
}

/**
 * Per listener: open sockets per address, refused at TCP accept (before TLS); and a TLS
 * handshake that fails or times out closes its socket (node only emits `tlsClientError`).
 */
export class ConnectionCaps {
  constructor(
    private readonly perAddress: number,
    readonly refusals: ConnectionRefusals,
  ) {}

  /** Call after the IP filter's own `connection` listener: sockets it destroyed are not counted. */
  watch(server: NetServer, listener: ListenerName): void {
    const slots = new AddressSlots(this.perAddress);
    // One close listener for every socket, not a release closure each (~0.1 KB of an idle device):
    // a socket keeps its peer address after it closed (node caches it at the first read, below).
    // 'close' comes once: `on` spares the wrapper `once` makes per connection.
    function giveBack(this: Socket): void {
      slots.giveBack(this.remoteAddress ?? '');
    }
    server.on('connection', (socket: Socket) => {
      if (socket.destroyed) return;
      const remote = socket.remoteAddress ?? '';
      if (slots.acquire(remote) !== undefined) {
        socket.destroy();
        this.refusals.report({ listener, reason: 'address_limit', remote, detail: `more than ${this.perAddress} open connections from ${addressKey(remote)}` });
        return;
      }
      socket.on('close', giveBack);
    });
    server.on('tlsClientError', (err: Error & { code?: string }, socket: Socket) => {
      if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') this.refusals.report({ listener, reason: 'handshake_timeout', remote: socket.remoteAddress ?? '' });
      socket.destroy();
    });
  }
}
