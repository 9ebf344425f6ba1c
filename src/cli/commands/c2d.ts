/**
 * Cloud-to-device commands, in the manner of `az iot device c2d-message send` / `purge`:
 * `gatehouse device c2d-send|c2d-purge`, and `gatehouse c2d feedback`, which with `--wait`
 * follows the feedback as it arrives (like `az iot hub monitor-feedback`), one JSON line per record.
 */
import { Option, type Command } from 'commander';
import { CliError, usage } from '../errors.js';
import { follow, parseTimeout, sleep } from '../follow.js';
import { print, tableStream } from '../output.js';
import { encodeId, type RestClient } from '../rest-client.js';
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
  after: string;
  top: string;
  deviceId?: string;
  wait?: boolean;
  waitOnMsg?: string;
  timeout?: string;
}

interface FeedbackRecord {
  seq: number;
  originalMessageId: string;
  deviceId: string;
  statusCode: string;
  [k: string]: unknown;
}

const FEEDBACK_COLUMNS = ['seq', 'originalMessageId', 'deviceId', 'statusCode', 'enqueuedTimeUtc'];
const FEEDBACK_STREAM = tableStream([
  ['seq', 6],
  ['originalMessageId', 36],
  ['deviceId', 20],
  ['statusCode', 21],
  ['enqueuedTimeUtc', 24],
]);
const FEEDBACK_POLL_MS = 1000;

/** `k=v;k2=v2` (az's --props). */
export function parseProps(text: string | undefined): Array<[string, string]> {
  if (text === undefined) return [];
  const out: Array<[string, string]> = [];
  for (const part of text.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw usage(`--props: '${part}' is not key=value`);
    out.push([part.slice(0, eq).trim(), part.slice(eq + 1).trim()]);
  }
  return out;
}

/** ISO-8601, or milliseconds since the epoch as az takes it. */
export function parseExpiry(text: string): string {
  const at = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(at)) throw usage(`--expiry: '${text}' is neither ISO-8601 nor epoch milliseconds`);
  return new Date(at).toISOString();
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
      const res = await withClient(o, (c) => c.call('POST', `/devices/${encodeId(o.deviceId)}/messages/deviceBound`, undefined, headers, Buffer.from(o.data, 'utf8')));
      print({ deviceId: o.deviceId, messageId: res.headers['iothub-messageid'] }, o.output, ['deviceId', 'messageId']);
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
  connectionOptions(c2d.command('feedback').description('delivery feedback records, oldest first; --wait follows new ones as they arrive'))
    .option('--after <seq>', 'only records after this sequence number', '0')
    .option('--top <n>', 'at most this many (max 1000; without --wait)', '100')
    .option('-d, --device-id <id>', 'only records of this device')
    .option('--wait', 'keep printing records as they arrive, one JSON object per line, until SIGINT or --timeout')
    .option('--wait-on-msg <message-id>', 'wait until the record of this message arrives, then stop (exit 1 if --timeout comes first); implies --wait')
    .option('--to, --timeout <seconds>', 'with --wait: stop after this many seconds without a new record; 0 (default) waits for ever')
    .action(async (o: FeedbackOpts) => {
      if (!/^\d{1,15}$/.test(o.after)) throw usage('--after must be a non-negative whole number');
      if (o.wait !== true && o.waitOnMsg === undefined) {
        if (o.timeout !== undefined) throw usage('--timeout needs --wait');
        const q = `after=${encodeURIComponent(o.after)}&top=${encodeURIComponent(o.top)}`;
        const res = await withClient(o, (c) => c.call('GET', `/messages/serviceBound/feedback?${q}`));
        const rows = (res.body as FeedbackRecord[]).filter((r) => o.deviceId === undefined || r.deviceId === o.deviceId);
        print(rows, o.output, FEEDBACK_COLUMNS);
        return;
      }
      await withClient(o, (c) => followFeedback(c, o));
    });
}

/** Polls the feedback log from `--after` on and prints each record once, in seq order. */
async function followFeedback(client: RestClient, o: FeedbackOpts): Promise<void> {
  const f = follow(parseTimeout(o.timeout));
  let after = Number(o.after);
  let everRead = false;
  let interrupted = false;
  let found = false;
  if (o.output === 'table') process.stdout.write(`${FEEDBACK_STREAM.header}\n`);
  try {
    while (!f.signal.aborted && !found) {
      let page: FeedbackRecord[];
      try {
        page = (await client.call('GET', `/messages/serviceBound/feedback?after=${after}&top=1000`)).body as FeedbackRecord[];
        everRead = true;
        if (interrupted) process.stderr.write('note: feedback resumed\n');
        interrupted = false;
      } catch (err) {
        // A refusal is final; a hub lost after a good start is waited for.
        if (!everRead || !(err instanceof CliError) || (err.status !== undefined && err.status < 500)) throw err;
        if (!interrupted) process.stderr.write(`note: ${err.message}; retrying\n`);
        interrupted = true;
        await sleep(FEEDBACK_POLL_MS, f.signal);
        continue;
      }
      for (const r of page) {
        after = Math.max(after, r.seq);
        if (o.deviceId !== undefined && r.deviceId !== o.deviceId) continue;
        f.touch();
        if (o.output === 'table') process.stdout.write(`${FEEDBACK_STREAM.row(r)}\n`);
        else process.stdout.write(`${JSON.stringify(r)}\n`);
        if (o.waitOnMsg !== undefined && r.originalMessageId === o.waitOnMsg) {
          found = true;
          break;
        }
      }
      if (page.length < 1000 && !found) await sleep(FEEDBACK_POLL_MS, f.signal);
    }
    if (o.waitOnMsg !== undefined && !found && f.timedOut()) {
      throw new CliError('Timeout', `no feedback for message ${o.waitOnMsg} within --timeout ${o.timeout ?? ''} seconds`);
    }
  } finally {
    f.dispose();
  }
}
