/**
 * What Node's TLS server keeps on every connection after the handshake and does not need there
 * (issue 19: memory per idle device), dropped or shared by the listener that holds the socket for hours:
 *
 * - The handshake timer. `TLSSocket` arms it with `setTimeout(handshakeTimeout)` and clears it
 *   at 'secure' with `setTimeout(0)`, which stops the Timeout but leaves it (and the bound
 *   `_onTimeout` it calls) on the socket under Node's private `timeout` symbol: ~0.17 KB.
 * - A `once('connect')` listener that `TLSSocket` puts on the TCP socket it wraps, for a socket
 *   still connecting. An accepted socket is connected already, so it never fires and is never
 *   removed: the once wrapper, its bound function and the closure, ~0.15 KB.
 * - The options object Node builds for every server socket (`_tlsOptions`, 13 fields, ~0.13 KB):
 *   the same values for every socket of a server (its secure context, the server, its flags), and
 *   only read after the socket is made. Sockets whose options are equal field by field share the
 *   first one; a changed secure context (a certificate reload) makes the next socket's the new shared one.
 *
 * All are looked up defensively: on a Node that keeps none of them, this does nothing.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** Per server, the options object its sockets share. */
const sharedOptions = new WeakMap<object, Record<string, unknown>>();

let timeoutSymbol: symbol | null | undefined;

/** Node's private per-socket timer symbol (`Symbol('timeout')`), found once; null if there is none. */
function timerSymbol(socket: object): symbol | null {
  if (timeoutSymbol === undefined) timeoutSymbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'timeout') ?? null;
  return timeoutSymbol;
}

/** Call on 'secureConnection' (after the handshake) of a server socket the hub keeps. */
export function shedHandshakeState(socket: TLSSocket): void {
  const sym = timerSymbol(socket);
  if (sym !== null) {
    const held = socket as unknown as Record<symbol, { _destroyed?: boolean } | null | undefined>;
    // Only a timer that was cleared (the handshake's): one armed by socket.setTimeout stays.
    if (held[sym]?._destroyed === true) held[sym] = null;
  }
  const parent = (socket as unknown as { _parent?: Socket | null })._parent;
  if (parent != null && !parent.connecting) parent.removeAllListeners('connect');
  shareOptions(socket as unknown as { _tlsOptions?: Record<string, unknown> });
}

function shareOptions(socket: { _tlsOptions?: Record<string, unknown> }): void {
  const options = socket._tlsOptions;
  const server = options?.server;
  if (options === undefined || typeof server !== 'object' || server === null) return;
  const shared = sharedOptions.get(server);
  if (shared !== undefined && sameFields(shared, options)) socket._tlsOptions = shared;
  else sharedOptions.set(server, options);
}

function sameFields(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const k of keys) if (a[k] !== b[k]) return false;
  return true;
}
