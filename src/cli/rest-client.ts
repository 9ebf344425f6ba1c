/** A small HTTPS client for the CLI: SAS per request, keep-alive, errors as `Code: message`. */
import { Agent, request } from 'node:https';
import { isIP } from 'node:net';
import { generateSasToken, strictEncode } from '../auth/sas.js';
import type { ServiceConnection } from './connection.js';
import { CliError, networkError } from './errors.js';

export { CliError } from './errors.js';

export interface RestResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

export const API_VERSION = '2021-04-12';

/** The TLS server name for a host (none for an IP literal, which SNI does not carry). */
export function serverName(hostName: string): string | undefined {
  const host = hostName.replace(/:\d+$/, '');
  return isIP(host) === 0 ? host : undefined;
}

/** The Authorization header: the operator's bearer token, or a fresh SAS of the policy. */
export function authorization(conn: ServiceConnection): string {
  if (conn.bearer !== undefined) return `Bearer ${conn.bearer}`;
  return generateSasToken({ resource: conn.hostName, key: conn.key, keyName: conn.keyName, expiry: Math.floor(Date.now() / 1000) + 3600 });
}

export class RestClient {
  readonly #agent: Agent;

  constructor(private readonly conn: ServiceConnection) {
    this.#agent = new Agent({ keepAlive: true, ...(conn.ca === undefined ? {} : { ca: conn.ca }) });
  }

  close(): void {
    this.#agent.destroy();
  }

  token(): string {
    return authorization(this.conn);
  }

  /** A JSON request (or a raw body with `raw`); rejects with a CliError on any status from 300. */
  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, raw?: Buffer): Promise<RestResponse> {
    const payload = raw ?? (body === undefined ? undefined : Buffer.from(JSON.stringify(body)));
    const sep = path.includes('?') ? '&' : '?';
    const servername = serverName(this.conn.hostName);
    return new Promise((resolvePromise, reject) => {
      const req = request(
        {
          host: this.conn.connectHost,
          port: this.conn.port,
          method,
          path: `${path}${sep}api-version=${API_VERSION}`,
          agent: this.#agent,
          ...(servername === undefined ? {} : { servername }),
          headers: {
            authorization: this.token(),
            'user-agent': 'gatehouse-cli',
            ...(payload === undefined ? {} : { 'content-length': String(payload.length) }),
            ...(payload === undefined || raw !== undefined ? {} : { 'content-type': 'application/json; charset=utf-8' }),
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            if (text !== '' && String(res.headers['content-type'] ?? '').includes('json')) {
              try {
                parsed = JSON.parse(text);
              } catch {
                parsed = text;
              }
            }
            const status = res.statusCode ?? 0;
            if (status >= 300) {
              reject(errorFromResponse(status, parsed));
              return;
            }
            resolvePromise({ status, headers: res.headers, body: parsed });
          });
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => reject(networkError(this.conn, err)));
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /**
   * A paged query (`POST .../query`): follows `x-ms-continuation` until the results run out or
   * `top` items are in. The service pages at most 1000 items.
   */
  async query(path: string, body: unknown, top?: number): Promise<unknown[]> {
    const out: unknown[] = [];
    let continuation: string | undefined;
    do {
      const want = top === undefined ? 1000 : Math.min(1000, top - out.length);
      const headers: Record<string, string> = { 'x-ms-max-item-count': String(want) };
      if (continuation !== undefined) headers['x-ms-continuation'] = continuation;
      const res = await this.call('POST', path, body, headers);
      if (!Array.isArray(res.body)) throw new CliError('InternalError', `the hub answered ${path} with something other than a list`);
      out.push(...(res.body as unknown[]));
      const next = res.headers['x-ms-continuation'];
      continuation = typeof next === 'string' && next !== '' ? next : undefined;
    } while (continuation !== undefined && (top === undefined || out.length < top));
    return top === undefined ? out : out.slice(0, top);
  }
}

/** The hub's error body (`{"Message":"ErrorCode:<Code>;<text>"}`) as a CliError; anything else as Http<status>. */
export function errorFromResponse(status: number, body: unknown): CliError {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body) as unknown;
    } catch {
      parsed = body;
    }
  }
  const message = (parsed as { Message?: unknown } | null)?.Message;
  if (typeof message === 'string') {
    const m = /^ErrorCode:([^;]+);(.*)$/s.exec(message);
    if (m?.[1] !== undefined) {
      const err = new CliError(m[1], m[2] ?? '', status);
      err.body = parsed;
      return err;
    }
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return new CliError(`Http${status}`, (text ?? '').slice(0, 200), status);
}

export function encodeId(id: string): string {
  return strictEncode(id);
}
