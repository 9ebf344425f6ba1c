/** A small HTTPS client for the CLI: SAS per request, keep-alive, errors as `Code: message`. */
import { Agent, request } from 'node:https';
import { isIP } from 'node:net';
import { generateSasToken, strictEncode } from '../auth/sas.js';
import type { ServiceConnection } from './connection.js';

export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface RestResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

export const API_VERSION = '2021-04-12';

export class RestClient {
  readonly #agent: Agent;

  constructor(private readonly conn: ServiceConnection) {
    this.#agent = new Agent({ keepAlive: true, ...(conn.ca === undefined ? {} : { ca: conn.ca }) });
  }

  close(): void {
    this.#agent.destroy();
  }

  token(): string {
    if (this.conn.bearer !== undefined) return `Bearer ${this.conn.bearer}`;
    return generateSasToken({ resource: this.conn.hostName, key: this.conn.key, keyName: this.conn.keyName, expiry: Math.floor(Date.now() / 1000) + 3600 });
  }

  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<RestResponse> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const sep = path.includes('?') ? '&' : '?';
    const servername = isIP(this.conn.hostName.replace(/:\d+$/, '')) === 0 ? this.conn.hostName.replace(/:\d+$/, '') : undefined;
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
            ...(payload === undefined ? {} : { 'content-type': 'application/json; charset=utf-8', 'content-length': String(payload.length) }),
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
              reject(toCliError(status, parsed));
              return;
            }
            resolvePromise({ status, headers: res.headers, body: parsed });
          });
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => reject(new CliError('ConnectionFailed', `cannot reach ${this.conn.connectHost}:${this.conn.port}: ${err.code ?? err.message}`)));
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }
}

function toCliError(status: number, body: unknown): CliError {
  const message = (body as { Message?: unknown } | null)?.Message;
  if (typeof message === 'string') {
    const m = /^ErrorCode:([^;]+);(.*)$/s.exec(message);
    if (m?.[1] !== undefined) return new CliError(m[1], m[2] ?? '', status);
  }
  return new CliError(`Http${status}`, typeof body === 'string' ? body.slice(0, 200) : JSON.stringify(body).slice(0, 200), status);
}

export function encodeId(id: string): string {
  return strictEncode(id);
}
