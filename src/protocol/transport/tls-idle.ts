/**
 * What Node's TLS server keeps on every connection after the handshake and never uses again
 * (issue 19: memory per idle device). Both are Node's own leftovers, dropped by the listener that
 * holds the socket for hours:
 *
 * - The handshake timer. `TLSSocket` arms it with `setTimeout(handshakeTimeout)` and clears it
 *   at 'secure' with `setTimeout(0)`, which stops the Timeout but leaves it (and the bound
 *   `_onTimeout` it calls) on the socket under Node's private `timeout` symbol: ~0.17 KB.
 * - A `once('connect')` listener that `TLSSocket` puts on the TCP socket it wraps, for a socket
 *   still connecting. An accepted socket is connected already, so it never fires and is never
 *   removed: the once wrapper, its bound function and the closure, ~0.15 KB.
 *
 * Both are looked up defensively: on a Node that keeps neither, this does nothing.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

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
}
