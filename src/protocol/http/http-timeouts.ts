/**
 * Timeouts on the HTTPS listener (issue 14 item 6). Node bounds a request's headers
 * (`headersTimeout`) and the whole request (`requestTimeout`) once its first byte has arrived,
 * and answers 408; but a socket that finishes the TLS handshake and then sends nothing is never
 * timed out (keep-alive only bounds the idle time after a response). So a connection that has
 * sent no byte within the header timeout of its handshake is closed. Every such close is reported.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ConnectionRefusals } from '../../access/connection-caps.js';

export interface HttpTimeouts {
  handshakeMs: number;
  /** To a request's complete headers, the first one counted from the end of the handshake. */
  headersMs: number;
  /** To a request's complete body. */
  requestMs: number;
}

/** The node https server options that carry the timeouts (Fastify passes `https` to createServer). */
export function httpsServerTimeouts(t: HttpTimeouts): { handshakeTimeout: number; headersTimeout: number; connectionsCheckingInterval: number } {
  // node checks header and request deadlines on this interval (30 s by default: 60 s of headers took 90).
  return { handshakeTimeout: t.handshakeMs, headersTimeout: t.headersMs, connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(t.headersMs / 4))) };
}

/** Starts the first-request deadline on each new connection and reports node's header and request timeouts. */
export function watchHttpTimeouts(server: HttpsServer, t: HttpTimeouts, refusals: ConnectionRefusals): void {
  const firstRequest = new WeakMap<Socket, NodeJS.Timeout>();
  const inFlight = new WeakSet<Socket>();
  const arrived = (socket: Socket) => {
    const timer = firstRequest.get(socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    firstRequest.delete(socket);
  };
  server.on('secureConnection', (socket: TLSSocket) => {
    const timer = setTimeout(() => {
      firstRequest.delete(socket);
      // Bytes arrived: node's header timeout runs from the first of them and answers 408.
      if (socket.bytesRead > 0) return;
      refusals.report({ listener: 'https', reason: 'headers_timeout', remote: socket.remoteAddress ?? '', detail: `no request within ${t.headersMs} ms of the handshake` });
      socket.destroy();
    }, t.headersMs);
    timer.unref();
    firstRequest.set(socket, timer);
    socket.once('close', () => arrived(socket));
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    arrived(req.socket);
    inFlight.add(req.socket);
    res.once('close', () => inFlight.delete(req.socket));
  });
  server.on('upgrade', (req: IncomingMessage) => arrived(req.socket));
  // Fastify's own clientError handler answers 408 and closes; this one only reports.
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    if (err.code !== 'ERR_HTTP_REQUEST_TIMEOUT') return;
    const reason = inFlight.has(socket) ? 'request_timeout' : 'headers_timeout';
    refusals.report({ listener: 'https', reason, remote: socket.remoteAddress ?? '', detail: reason === 'request_timeout' ? `no complete request within ${t.requestMs} ms` : `no complete headers within ${t.headersMs} ms` });
  });
}
