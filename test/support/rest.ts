/**
 * One small HTTPS helper for tests that talk to a hub's REST API directly: SAS of a policy by
 * default, or none, a raw body instead of JSON, and an optional TLS client certificate.
 */
import { request } from 'node:https';
import { generateSasToken } from '../../src/auth/sas.js';
import { parseConnectionString } from '../../src/cli/connection.js';
import { cli } from './hub-process.js';

export interface RestResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  raw: Buffer;
  /** The parsed JSON body when the answer is JSON. */
  body: unknown;
}

export interface CallOptions {
  /** Send the policy's SAS token (default true). */
  auth?: boolean;
  headers?: Record<string, string>;
  /** Sent as is instead of JSON. */
  raw?: Buffer | string;
  /** TLS client certificate and key (PEM). */
  tlsCert?: { cert: string; key: string };
  /** Append api-version (default true). */
  apiVersion?: boolean;
  /** The client's source address (another loopback address stands for another client). */
  localAddress?: string;
}

export type Rest = (method: string, path: string, body?: unknown, opts?: CallOptions) => Promise<RestResult>;

/** The key of a policy of a data-dir hub. */
export function policyKey(dataDir: string, policy = 'iothubowner'): string {
  const r = cli(['connection-string', '--data-dir', dataDir, '--policy', policy]);
  if (r.status !== 0) throw new Error(r.stderr);
  return parseConnectionString(r.stdout.trim()).get('SharedAccessKey') ?? '';
}

export function restClient(host: string, ca: string, key: string, keyName = 'iothubowner'): Rest {
  return (method, path, body, opts = {}) => {
    const token = generateSasToken({ resource: host, key, keyName, expiry: Date.now() / 1000 + 600 });
    const payload = opts.raw !== undefined ? Buffer.from(opts.raw) : body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const fullPath = opts.apiVersion === false ? path : `${path}${path.includes('?') ? '&' : '?'}api-version=2021-04-12`;
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host,
          port: 443,
          method,
          path: fullPath,
          ca,
          // Security level 0: a deliberately weak test certificate is the hub's to refuse.
          ...(opts.tlsCert === undefined ? {} : { cert: opts.tlsCert.cert, key: opts.tlsCert.key, ciphers: 'DEFAULT:@SECLEVEL=0' }),
          agent: false,
          ...(opts.localAddress === undefined ? {} : { localAddress: opts.localAddress }),
          headers: {
            ...(opts.auth === false ? {} : { authorization: token }),
            ...(payload === undefined || opts.raw !== undefined ? {} : { 'content-type': 'application/json' }),
            ...opts.headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const raw = Buffer.concat(chunks);
            let parsed: unknown;
            if (String(res.headers['content-type'] ?? '').includes('json') && raw.length > 0) parsed = JSON.parse(raw.toString('utf8'));
            resolve({ status: res.statusCode ?? 0, headers: res.headers, raw, body: parsed });
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  };
}

/** The ErrorCode of a Gatehouse error answer. */
export function errorCode(r: RestResult): string | undefined {
  const h = r.headers['iothub-errorcode'];
  return typeof h === 'string' ? h : undefined;
}

/** The message of a Gatehouse error answer (after "ErrorCode:X;"). */
export function errorMessage(r: RestResult): string {
  const m = (r.body as { Message?: string } | undefined)?.Message ?? r.raw.toString('utf8');
  return m.replace(/^ErrorCode:[^;]*;/, '');
}
