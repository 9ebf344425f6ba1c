/**
 * The embedded blob store on the hub's HTTPS port: requests under `/<account>/` (Azurite's
 * path-style URLs, `/devstoreaccount1/<container>/<blob>`) are streamed to the embedded Azurite
 * (hub/files/azurite.ts) as they are, body and answer alike, before Fastify parses anything; every
 * other request goes to the Fastify app. Azurite checks the SAS or shared key itself; the proxy
 * adds and removes nothing but hop-by-hop headers. The device SDKs can only reach port 443 (and
 * Microsoft's e2e settings expect `BlobEndpoint=https://<hub>/devstoreaccount1`), hence one port.
 */
import type { IncomingMessage, ServerResponse, OutgoingHttpHeaders } from 'node:http';
import { Agent, request, type Server } from 'node:https';
import type { Logger } from 'pino';

export interface BlobProxyTarget {
  /** The account, the first path segment the proxy claims. */
  accountName: string;
  /** Its port on 127.0.0.1, once it runs (the embedded store starts at its first request). */
  port(): Promise<number>;
  /** The CA of the embedded store's certificate. */
  ca: string;
}

/** RFC 9110 §7.6.1: not forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function forwardable(headers: IncomingMessage['headers']): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

/** True when the request is for the blob store: `/<account>` or `/<account>/...` (any case, any query). */
export function isBlobPath(url: string | undefined, accountName: string): boolean {
  if (url === undefined) return false;
  const path = url.split('?', 1)[0] ?? '';
  const lower = path.toLowerCase();
  const prefix = `/${accountName.toLowerCase()}`;
  return lower === prefix || lower.startsWith(`${prefix}/`);
}

/**
 * Puts the proxy in front of the server's request listeners (Fastify's). The target may be set
 * later (the store starts after the app is built); until then blob paths go to Fastify (404).
 */
export function installBlobProxy(server: Server, logger: Logger): (target: BlobProxyTarget | undefined) => void {
  let target: BlobProxyTarget | undefined;
  let agent: Agent | undefined;
  // Fastify's handler is the server's first request listener (it made the server); the others
  // (the request timeouts' bookkeeping, http-timeouts.ts) still hear every request.
  const fastify = server.listeners('request')[0] as ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  if (fastify === undefined) throw new Error('the HTTPS server has no request handler to put the blob proxy in front of');
  server.removeListener('request', fastify);
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    if (target !== undefined && agent !== undefined && isBlobPath(req.url, target.accountName)) {
      void forward(req, res, target, agent, logger);
      return;
    }
    fastify.call(server, req, res);
  });
  return (t) => {
    agent?.destroy();
    target = t;
    agent = t === undefined ? undefined : new Agent({ keepAlive: true, maxSockets: 64, ca: t.ca });
  };
}

const BUSY = '<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>The blob store is not available.</Message></Error>';

/** Never rejects: a store that cannot start or answer is a 503 or 502 to this request. */
async function forward(req: IncomingMessage, res: ServerResponse, target: BlobProxyTarget, agent: Agent, logger: Logger): Promise<void> {
  let port: number;
  try {
    // The body waits, paused, until the store runs (a request stream flows only once piped).
    port = await target.port();
  } catch (err) {
    logger.error({ event: 'blob-proxy.store-down', err }, 'the embedded blob store could not start');
    res.writeHead(503, { 'content-type': 'application/xml' });
    res.end(BUSY);
    req.resume();
    return;
  }
  if (req.destroyed) return;
  const upstream = request(
    { host: '127.0.0.1', port, method: req.method, path: req.url, headers: forwardable(req.headers), agent },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, forwardable(answer.headers));
      answer.pipe(res);
      answer.on('error', () => res.destroy());
    },
  );
  upstream.on('error', (err) => {
    logger.warn({ event: 'blob-proxy.failed', err: err.message, method: req.method }, 'the embedded blob store did not answer');
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'application/xml' });
      res.end(BUSY);
    } else res.destroy();
  });
  // The client went away mid-upload: so does the upstream request (Azurite drops the partial block).
  req.on('aborted', () => upstream.destroy());
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}
