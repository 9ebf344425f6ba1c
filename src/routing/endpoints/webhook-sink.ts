/**
 * The HTTPS webhook endpoint: POSTs to a URL the user runs.
 *
 * - `json` (default): one POST per batch, `application/json`, an array of envelopes (envelope.ts)
 *   in log order. A batch is one round trip, and the receiver stores it or not as a whole; it
 *   dedupes on (iothub, partition, sequenceNumber), which every envelope carries.
 * - `raw`: one POST per message, in order, the body as the device sent it (Content-Type from its
 *   `content-type` system property), properties as headers (envelope.ts `messageHeaders`,
 *   percent-encoded). Per message because the body is the message: there is nothing to put a
 *   second one in. A failure stops the batch; the retry sends it from its first message again.
 *
 * Signature (when the endpoint has a `secret`): `x-gatehouse-timestamp: <unix seconds>` and
 * `x-gatehouse-signature: sha256=<hex>`, the HMAC-SHA256 under the secret of
 * `<timestamp>.<raw request body>`. A receiver recomputes it over the bytes it received, compares
 * in constant time and refuses a timestamp more than 5 minutes from its clock (the replay window;
 * each attempt is signed anew, so a retry is never stale).
 *
 * 2xx is delivered; anything else, a timeout, a refused connection or a TLS failure rejects with
 * the reason. TLS certificates are always verified (`ca` for a private CA); `http://` is allowed
 * only to a loopback address. Redirects are not followed (a 3xx rejects), so a receiver cannot
 * send the batch and its signature elsewhere. Error messages name the URL without user, password
 * or query, and never a header value or the secret.
 */
import { createHmac, X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { webhookEndpoint, type WebhookEndpoint } from '../routing-config.js';
import { configError, isLoopbackHost, parseEndpointConfig, safeUrl } from './config-check.js';
import { envelope, messageHeaders, mimeHeader, reasonOf, redact } from './envelope.js';
import { EndpointConfigError, type EndpointSink, type RoutedMessage } from './sink.js';
import { timeoutOf, type SinkDeps } from './sink-deps.js';

export const SIGNATURE_HEADER = 'x-gatehouse-signature';
export const TIMESTAMP_HEADER = 'x-gatehouse-timestamp';
/** How far a receiver should let a timestamp be from its clock (documented; the receiver enforces it). */
export const REPLAY_WINDOW_SECONDS = 300;

/** Headers the sink sets itself, which `headers` may not replace. */
const RESERVED_HEADER = /^(host|content-type|content-length|transfer-encoding|connection|keep-alive|upgrade|te|trailer|expect|x-gatehouse-.*|iothub-.*)$/i;
const MAX_RESPONSE_BYTES = 64 * 1024;

/** `sha256=<hex>` of `<timestamp>.<body>`: what the sink sends and what a receiver recomputes. */
export function webhookSignature(secret: string, timestamp: string, body: Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}

function checkConfig(raw: WebhookEndpoint): { config: WebhookEndpoint; url: URL } {
  const config = parseEndpointConfig(webhookEndpoint, raw, 'webhook');
  const url = new URL(config.url);
  const problem = (p: string): EndpointConfigError => configError('webhook', config.name, p);
  if (url.username !== '' || url.password !== '') throw problem('the url may not hold a user or password (put credentials in headers, which are sealed)');
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw problem(`http:// is allowed only to a receiver on this machine (localhost, 127.x, [::1]); use https:// for ${url.hostname}`);
  }
  if (url.hash !== '') throw problem('the url may not have a #fragment');
  for (const name of Object.keys(config.headers ?? {})) {
    if (RESERVED_HEADER.test(name)) throw problem(`header '${name}' is set by the endpoint itself`);
  }
  if (config.ca !== undefined) {
    if (url.protocol !== 'https:') throw problem('ca applies to https:// urls only');
    const pems = config.ca.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (pems.length === 0) throw problem('ca holds no PEM certificate');
    for (const pem of pems) {
      try {
        new X509Certificate(pem);
      } catch {
        throw problem('ca holds a certificate that does not parse');
      }
    }
  }
  return { config, url };
}

type PostOutcome = { ok: true } | { ok: false; reason: string; retryOnFreshSocket: boolean };

export function createWebhookSink(raw: WebhookEndpoint, deps: SinkDeps): EndpointSink {
  const { config, url } = checkConfig(raw);
  const where = `webhook '${config.name}' (${safeUrl(url)})`;
  const secrets = [config.secret, ...Object.values(config.headers ?? {}), url.search.length > 1 ? url.search.slice(1) : undefined];
  const now = deps.now ?? Date.now;
  const timeoutMs = timeoutOf(deps);
  const agent =
    url.protocol === 'https:'
      ? new https.Agent({ keepAlive: true, maxSockets: 4, ...(config.ca !== undefined ? { ca: config.ca } : {}), rejectUnauthorized: true })
      : new http.Agent({ keepAlive: true, maxSockets: 4 });
  let closed = false;

  function post(body: Buffer, contentType: string, extra: [string, string][]): Promise<PostOutcome> {
    const headers: Record<string, string> = { ...config.headers, 'content-type': contentType, 'content-length': String(body.length) };
    for (const [k, v] of extra) headers[k] = v;
    if (config.secret !== undefined) {
      const ts = String(Math.floor(now() / 1000));
      headers[TIMESTAMP_HEADER] = ts;
      headers[SIGNATURE_HEADER] = webhookSignature(config.secret, ts, body);
    }
    return new Promise<PostOutcome>((resolve) => {
      let settled = false;
      const done = (o: PostOutcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(o);
      };
      const request = url.protocol === 'https:' ? https.request : http.request;
      const req = request(url, { method: 'POST', agent, headers }, (res) => {
        const status = res.statusCode ?? 0;
        let seen = 0;
        res.on('data', (chunk: Buffer) => {
          seen += chunk.length;
          if (seen > MAX_RESPONSE_BYTES) res.destroy();
        });
        res.on('error', () => undefined);
        const finish = (): void => {
          if (status >= 200 && status < 300) done({ ok: true });
          else if (status >= 300 && status < 400) {
            done({ ok: false, reason: `answered ${status} (a redirect${res.headers.location !== undefined ? ' elsewhere' : ''}); webhooks do not follow redirects`, retryOnFreshSocket: false });
          } else done({ ok: false, reason: `answered ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`, retryOnFreshSocket: false });
        };
        res.on('end', finish);
        res.on('close', finish);
      });
      const timer = setTimeout(() => {
        req.destroy();
        done({ ok: false, reason: `no answer within ${timeoutMs} ms`, retryOnFreshSocket: false });
      }, timeoutMs);
      req.on('error', (err) => {
        // A kept-alive socket the receiver closed while idle: Node's documented case for one retry.
        const stale = req.reusedSocket && (err as NodeJS.ErrnoException).code === 'ECONNRESET';
        done({ ok: false, reason: reasonOf(err), retryOnFreshSocket: stale });
      });
      req.end(body);
    });
  }

  async function send(body: Buffer, contentType: string, extra: [string, string][]): Promise<void> {
    let outcome = await post(body, contentType, extra);
    if (!outcome.ok && outcome.retryOnFreshSocket && !closed) outcome = await post(body, contentType, extra);
    if (!outcome.ok) throw new Error(redact(`${where}: ${closed ? 'closed' : outcome.reason}`, secrets));
  }

  return {
    async deliver(batch: readonly RoutedMessage[]): Promise<void> {
      if (closed) throw new Error(`${where}: closed`);
      if (batch.length === 0) return;
      if (config.format === 'json') {
        const body = Buffer.from(JSON.stringify(batch.map((m) => envelope(m, deps.hubName))));
        await send(body, 'application/json; charset=utf-8', []);
        return;
      }
      for (const m of batch) {
        const contentType = m.record.systemProperties['content-type'] ?? 'application/octet-stream';
        const extra = [...messageHeaders(m, deps.hubName)].map(([k, v]) => mimeHeader(k, v));
        await send(m.record.body, /^[\x20-\x7e]+$/.test(contentType) ? contentType : 'application/octet-stream', extra);
      }
    },
    async close(): Promise<void> {
      closed = true;
      agent.destroy();
    },
  };
}
