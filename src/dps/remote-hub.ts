/**
 * A linked hub reached over its service REST API (wire doc §6): provisioning creates or updates
 * the device identity there and applies the initial twin. Authenticates with a SAS from the
 * hub's iothubowner or registryReadWrite connection string; https to its HostName on 443,
 * trusting the default CAs plus NODE_EXTRA_CA_CERTS. Failures are HubErrors (the hub's own code
 * when it names one), so a registration that cannot reach its hub ends `failed`.
 */
import { Agent, request } from 'node:https';
import { isIP } from 'node:net';
import { generateSasToken, strictEncode } from '../auth/sas.js';
import { ERROR_CODES, HubError, type ErrorCode } from '../core/errors.js';
import { isJsonObject, type JsonObject } from '../core/json.js';

const API_VERSION = '2021-04-12';
const TIMEOUT_MS = 15_000;

export interface RemoteHubCredentials {
  hostName: string;
  keyName: string;
  key: string;
}

export function parseHubConnectionString(cs: string): RemoteHubCredentials {
  const f = new Map<string, string>();
  for (const part of cs.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error('malformed connection string');
    f.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const hostName = f.get('HostName');
  const keyName = f.get('SharedAccessKeyName');
  const key = f.get('SharedAccessKey');
  if (hostName === undefined || keyName === undefined || key === undefined || hostName === '' || keyName === '' || key === '') {
    throw new Error('a linked hub connection string needs HostName, SharedAccessKeyName and SharedAccessKey');
  }
  return { hostName, keyName, key };
}

export interface RemoteResponse {
  status: number;
  etag: string | undefined;
  body: unknown;
}

export class RemoteHub {
  readonly creds: RemoteHubCredentials;
  static readonly #agent = new Agent({ keepAlive: true });

  constructor(connectionString: string) {
    this.creds = parseHubConnectionString(connectionString);
  }

  /** The device, or undefined when the hub has none with this id. */
  async getDevice(deviceId: string): Promise<{ etag: string | undefined; device: JsonObject } | undefined> {
    const r = await this.#call('GET', `/devices/${strictEncode(deviceId)}`, undefined, {}, [404]);
    if (r.status === 404) return undefined;
    return { etag: r.etag, device: isJsonObject(r.body) ? r.body : {} };
  }

  /** Creates (no etag) or updates (If-Match etag) the device. */
  async putDevice(deviceId: string, device: JsonObject, etag?: string): Promise<JsonObject> {
    const headers: Record<string, string> = etag === undefined ? {} : { 'if-match': etag.startsWith('"') ? etag : `"${etag}"` };
    const r = await this.#call('PUT', `/devices/${strictEncode(deviceId)}`, device, headers);
    return isJsonObject(r.body) ? r.body : {};
  }

  async getTwin(deviceId: string): Promise<JsonObject | undefined> {
    const r = await this.#call('GET', `/twins/${strictEncode(deviceId)}`, undefined, {}, [404]);
    return r.status === 404 || !isJsonObject(r.body) ? undefined : r.body;
  }

  async patchTwin(deviceId: string, patch: JsonObject): Promise<void> {
    await this.#call('PATCH', `/twins/${strictEncode(deviceId)}`, patch, { 'if-match': '"*"' });
  }

  /** Replaces tags and desired properties wholesale (`PUT /twins/{id}`). */
  async replaceTwin(deviceId: string, twin: JsonObject): Promise<void> {
    await this.#call('PUT', `/twins/${strictEncode(deviceId)}`, twin, { 'if-match': '"*"' });
  }

  #call(method: string, path: string, body: unknown, headers: Record<string, string>, allowed: number[] = []): Promise<RemoteResponse> {
    const { hostName, keyName, key } = this.creds;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const token = generateSasToken({ resource: hostName, key, keyName, expiry: Math.floor(Date.now() / 1000) + 3600 });
    const unreachable = (why: string) => new HubError('ServiceUnavailable', `The linked IoT hub ${hostName} cannot be reached.`, { cause: why });
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: hostName,
          port: 443,
          method,
          path: `${path}?api-version=${API_VERSION}`,
          agent: RemoteHub.#agent,
          ...(isIP(hostName) === 0 ? { servername: hostName } : {}),
          timeout: TIMEOUT_MS,
          headers: {
            authorization: token,
            'user-agent': 'gatehouse-dps',
            accept: 'application/json',
            ...(payload === undefined ? {} : { 'content-type': 'application/json; charset=utf-8', 'content-length': String(payload.length) }),
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => reject(unreachable(err.message)));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              if (text !== '') parsed = JSON.parse(text);
            } catch {
              parsed = text;
            }
            const status = res.statusCode ?? 0;
            const etagHeader = res.headers.etag;
            if (status >= 300 && !allowed.includes(status)) {
              reject(remoteError(hostName, status, parsed));
              return;
            }
            resolve({ status, etag: typeof etagHeader === 'string' ? etagHeader : undefined, body: parsed });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => reject(unreachable(err.code ?? err.message)));
      req.end(payload);
    });
  }
}

/** The remote hub's own error code when its body names a known one (`ErrorCode:<Code>;...`). */
function remoteError(hostName: string, status: number, body: unknown): HubError {
  const message = isJsonObject(body) && typeof body.Message === 'string' ? body.Message : '';
  const m = /^ErrorCode:([^;]+);(.*)$/s.exec(message);
  const code = m?.[1];
  if (code !== undefined && code in ERROR_CODES) {
    return new HubError(code as ErrorCode, `Linked IoT hub ${hostName}: ${(m?.[2] ?? '').slice(0, 200)}`);
  }
  return new HubError(status === 401 || status === 403 ? 'IotHubUnauthorizedAccess' : 'ServiceUnavailable', `The linked IoT hub ${hostName} answered ${status}.`);
}
