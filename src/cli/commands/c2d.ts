/**
 * Cloud-to-device commands, in the manner of `az iot device c2d-message send` / `purge`:
 * `gatehouse device c2d-send|c2d-purge` and `gatehouse c2d feedback`.
 */
import { request } from 'node:https';
import { isIP } from 'node:net';
import { Option, type Command } from 'commander';
import { generateSasToken } from '../../auth/sas.js';
import { resolveConnection, type ServiceConnection } from '../connection.js';
import { print } from '../output.js';
import { API_VERSION, CliError, encodeId } from '../rest-client.js';
import { connectionOptions, withClient, type ConnOpts } from './common.js';

interface SendOpts extends ConnOpts {
  deviceId: string;
  data: string;
  props?: string;
  ack?: string;
  messageId?: string;
  correlationId?: string;
  expiry?: string;
  contentType?: string;
  contentEncoding?: string;
}

interface FeedbackOpts extends ConnOpts {
  after?: string;
  top?: string;
}

/** `k=v;k2=v2` (az's --props). */
export function parseProps(text: string | undefined): Array<[string, string]> {
  if (text === undefined) return [];
  const out: Array<[string, string]> = [];
  for (const part of text.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`--props: '${part}' is not key=value`);
    out.push([part.slice(0, eq).trim(), part.slice(eq + 1).trim()]);
  }
  return out;
}

/** ISO-8601, or milliseconds since the epoch as az takes it. */
export function parseExpiry(text: string): string {
  const at = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(at)) throw new Error(`--expiry: '${text}' is neither ISO-8601 nor epoch milliseconds`);
  return new Date(at).toISOString();
}

/** One raw-body POST (RestClient speaks JSON only). */
function postRaw(conn: ServiceConnection, path: string, body: Buffer, headers: Record<string, string>): Promise<Record<string, string | string[] | undefined>> {
  const host = conn.hostName.replace(/:\d+$/, '');
  const token = generateSasToken({ resource: conn.hostName, key: conn.key, keyName: conn.keyName, expiry: Math.floor(Date.now() / 1000) + 3600 });
  return new Promise((resolvePromise, reject) => {
    const req = request(
      {
        host: conn.connectHost,
        port: conn.port,
        method: 'POST',
        path: `${path}?api-version=${API_VERSION}`,
        ...(isIP(host) === 0 ? { servername: host } : {}),
        ...(conn.ca === undefined ? {} : { ca: conn.ca }),
        headers: { authorization: token, 'user-agent': 'gatehouse-cli', 'content-length': String(body.length), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status < 300) {
            resolvePromise(res.headers);
            return;
          }
          const text = Buffer.concat(chunks).toString('utf8');
          let message: unknown;
          try {
            message = (JSON.parse(text) as { Message?: unknown }).Message;
          } catch {
            message = undefined;
          }
          const m = typeof message === 'string' ? /^ErrorCode:([^;]+);(.*)$/s.exec(message) : null;
          reject(m?.[1] === undefined ? new CliError(`Http${status}`, text.slice(0, 200), status) : new CliError(m[1], m[2] ?? '', status));
        });
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => reject(new CliError('ConnectionFailed', `cannot reach ${conn.connectHost}:${conn.port}: ${err.code ?? err.message}`)));
    req.end(body);
  });
}

function sendHeaders(o: SendOpts): Record<string, string> {
  const h: Record<string, string> = {};
  if (o.messageId !== undefined) h['iothub-messageid'] = o.messageId;
  if (o.correlationId !== undefined) h['iothub-correlationid'] = o.correlationId;
  if (o.ack !== undefined) h['iothub-ack'] = o.ack;
  if (o.expiry !== undefined) h['iothub-expiry'] = parseExpiry(o.expiry);
  if (o.contentType !== undefined) h['iothub-contenttype'] = o.contentType;
  if (o.contentEncoding !== undefined) h['iothub-contentencoding'] = o.contentEncoding;
  for (const [k, v] of parseProps(o.props)) h[`iothub-app-${k}`] = v;
  return h;
}

function registerDeviceC2d(device: Command): void {
  connectionOptions(device.command('c2d-send').description('send a cloud-to-device message'))
    .requiredOption('-d, --device-id <id>', 'device id')
    .requiredOption('--data <text>', 'message body')
    .option('--props <k=v;k2=v2>', 'application properties')
    .addOption(new Option('--ack <mode>', 'delivery feedback to request').choices(['none', 'positive', 'negative', 'full']))
    .option('--mid, --message-id <id>', 'message id (a uuid when omitted)')
    .option('--cid, --correlation-id <id>', 'correlation id')
    .option('--expiry <time>', 'absolute expiry: ISO-8601 or epoch milliseconds (default: 1 hour)')
    .option('--ct, --content-type <type>', 'content type')
    .option('--ce, --content-encoding <enc>', 'content encoding')
    .action(async (o: SendOpts) => {
      const headers = sendHeaders(o);
      const conn = await resolveConnection({
        ...(o.connectionString === undefined ? {} : { connectionString: o.connectionString }),
        ...(o.dataDir === undefined ? {} : { dataDir: o.dataDir }),
        ...(o.caFile === undefined ? {} : { caFile: o.caFile }),
        ...(o.databaseUrl === undefined ? {} : { databaseUrl: o.databaseUrl }),
      });
      const res = await postRaw(conn, `/devices/${encodeId(o.deviceId)}/messages/deviceBound`, Buffer.from(o.data, 'utf8'), headers);
      print({ deviceId: o.deviceId, messageId: res['iothub-messageid'] }, o.output, ['deviceId', 'messageId']);
    });

  connectionOptions(device.command('c2d-purge').description("delete every pending cloud-to-device message of a device"))
    .requiredOption('-d, --device-id <id>', 'device id')
    .action(async (o: ConnOpts & { deviceId: string }) => {
      const res = await withClient(o, (c) => c.call('DELETE', `/devices/${encodeId(o.deviceId)}/commands`));
      print(res.body, o.output, ['deviceId', 'totalMessagesPurged']);
    });
}

/** `gatehouse c2d ...`, plus the `c2d-*` subcommands of `gatehouse device` (register after registerDevice). */
export function registerC2d(program: Command): void {
  const device = program.commands.find((c) => c.name() === 'device');
  if (device === undefined) throw new Error('registerC2d: register the device command first');
  registerDeviceC2d(device);

  const c2d = program.command('c2d').description('cloud-to-device delivery feedback');
  connectionOptions(c2d.command('feedback').description('delivery feedback records, oldest first'))
    .option('--after <seq>', 'only records after this sequence number', '0')
    .option('--top <n>', 'at most this many (max 1000)', '100')
    .action(async (o: FeedbackOpts) => {
      const q = `after=${encodeURIComponent(o.after ?? '0')}&top=${encodeURIComponent(o.top ?? '100')}`;
      const res = await withClient(o, (c) => c.call('GET', `/messages/serviceBound/feedback?${q}`));
      print(res.body, o.output, ['seq', 'originalMessageId', 'deviceId', 'statusCode', 'enqueuedTimeUtc']);
    });
}
