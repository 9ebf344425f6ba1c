/**
 * `gatehouse monitor-events`, like `az iot hub monitor-events`: follows the hub's built-in event
 * stream (`GET /events`, Server-Sent Events) and prints each event as one compact JSON line.
 * A stream that drops after it was established is resumed with Last-Event-ID, so nothing is
 * printed twice or skipped; a refusal (bad credentials, bad arguments) or a hub that cannot be
 * reached at first is an error.
 */
import { request, type RequestOptions } from 'node:https';
import { isIP } from 'node:net';
import type { Command } from 'commander';
import { generateSasToken } from '../../auth/sas.js';
import { resolveConnection, type ServiceConnection } from '../connection.js';
import { API_VERSION, CliError } from '../rest-client.js';
import { connectionOptions, type ConnOpts } from './common.js';

interface MonitorOpts extends ConnOpts {
  device?: string;
  from: string;
  timeout?: string;
}

interface StreamTarget {
  deviceId: string | undefined;
  from: 'now' | number;
  /** Resume after this seq (sent as Last-Event-ID). */
  lastEventId: number | undefined;
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;

function parseArgs(o: MonitorOpts): { from: 'now' | number; timeoutMs: number | undefined } {
  const from = o.from === 'now' ? 'now' : /^\d{1,15}$/.test(o.from) ? Number(o.from) : undefined;
  if (from === undefined) throw new CliError('ArgumentInvalid', '--from must be now or a non-negative integer seq');
  if (o.timeout === undefined) return { from, timeoutMs: undefined };
  const seconds = Number(o.timeout);
  if (o.timeout.trim() === '' || !Number.isFinite(seconds) || seconds <= 0) {
    throw new CliError('ArgumentInvalid', '--timeout must be a positive number of seconds');
  }
  return { from, timeoutMs: seconds * 1000 };
}

function errorFrom(status: number, text: string): CliError {
  try {
    const message = (JSON.parse(text) as { Message?: unknown }).Message;
    const m = typeof message === 'string' ? /^ErrorCode:([^;]+);(.*)$/s.exec(message) : null;
    if (m?.[1] !== undefined) return new CliError(m[1], m[2] ?? '', status);
  } catch {
    // not JSON: fall through
  }
  return new CliError(`Http${status}`, text.slice(0, 200), status);
}

/** Incremental SSE parser: calls back with (event, data, id) for every complete event. */
function sseParser(onEvent: (event: string, data: string, id: string | undefined) => void): (chunk: string) => void {
  let buf = '';
  let event = 'message';
  let data: string[] = [];
  let id: string | undefined;
  return (chunk) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line === '') {
        if (data.length > 0) onEvent(event, data.join('\n'), id);
        event = 'message';
        data = [];
        id = undefined;
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') data.push(value);
      else if (field === 'event') event = value;
      else if (field === 'id') id = value;
    }
  };
}

/**
 * One HTTPS request to GET /events. Resolves when the stream ends (server closed it, or `signal`
 * aborted); rejects with a CliError when the hub refuses or cannot be reached. `onOpen` runs once
 * the hub accepted the stream.
 */
function streamOnce(
  conn: ServiceConnection,
  target: StreamTarget,
  signal: AbortSignal,
  onOpen: () => void,
  onEvent: (event: string, data: string, id: string | undefined) => void,
): Promise<void> {
  const host = conn.hostName.replace(/:\d+$/, '');
  const query = new URLSearchParams({ 'api-version': API_VERSION, from: String(target.from) });
  if (target.deviceId !== undefined) query.set('deviceId', target.deviceId);
  const token = generateSasToken({ resource: conn.hostName, key: conn.key, keyName: conn.keyName, expiry: Math.floor(Date.now() / 1000) + 3600 });
  const options: RequestOptions = {
    host: conn.connectHost,
    port: conn.port,
    method: 'GET',
    path: `/events?${query.toString()}`,
    agent: false,
    ...(conn.ca === undefined ? {} : { ca: conn.ca }),
    ...(isIP(host) === 0 ? { servername: host } : {}),
    headers: {
      authorization: token,
      accept: 'text/event-stream',
      'user-agent': 'gatehouse-cli',
      ...(target.lastEventId === undefined ? {} : { 'last-event-id': String(target.lastEventId) }),
    },
  };
  return new Promise((resolve, reject) => {
    if (signal.aborted) return resolve();
    const req = request(options, (res) => {
      res.setEncoding('utf8');
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        let text = '';
        res.on('data', (c: string) => (text += c));
        res.on('end', () => reject(errorFrom(status, text)));
        return;
      }
      onOpen();
      res.on('data', sseParser(onEvent));
      res.on('close', () => resolve());
    });
    const abort = () => {
      req.destroy();
      resolve();
    };
    signal.addEventListener('abort', abort, { once: true });
    req.on('close', () => signal.removeEventListener('abort', abort));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (signal.aborted) return resolve();
      reject(new CliError('ConnectionFailed', `cannot reach ${conn.connectHost}:${conn.port}: ${err.code ?? err.message}`));
    });
    req.end();
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

async function monitor(o: MonitorOpts): Promise<void> {
  const { from, timeoutMs } = parseArgs(o);
  const conn = await resolveConnection(o);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const onStdoutError = () => stop.abort(); // EPIPE: the reader went away
  process.stdout.on('error', onStdoutError);
  const timer = timeoutMs === undefined ? undefined : setTimeout(onSignal, timeoutMs);

  const target: StreamTarget = { deviceId: o.device, from, lastEventId: undefined };
  let everOpen = false;
  let retryMs = RETRY_MIN_MS;
  let announced = false;
  const print = (event: string, data: string, id: string | undefined) => {
    if (event !== 'telemetry' || stop.signal.aborted) return;
    let line: string;
    try {
      line = JSON.stringify(JSON.parse(data));
    } catch {
      return; // not ours: the hub only sends JSON
    }
    process.stdout.write(`${line}\n`);
    if (id !== undefined && /^\d+$/.test(id)) target.lastEventId = Number(id);
  };
  try {
    while (!stop.signal.aborted) {
      try {
        await streamOnce(conn, target, stop.signal, () => {
          everOpen = true;
          retryMs = RETRY_MIN_MS;
          if (announced) process.stderr.write('note: event stream resumed\n');
          announced = false;
        }, print);
      } catch (err) {
        // A refusal is final; a lost hub after a good start is waited for.
        if (!everOpen || (err instanceof CliError && err.status !== undefined && err.status < 500)) throw err;
      }
      if (stop.signal.aborted) break;
      if (!announced) process.stderr.write('note: event stream interrupted; reconnecting\n');
      announced = true;
      await sleep(retryMs, stop.signal);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    }
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.stdout.off('error', onStdoutError);
  }
}

export function registerMonitorEvents(program: Command): void {
  connectionOptions(program.command('monitor-events').description('print device telemetry from the built-in event stream, one JSON object per line'))
    .option('-d, --device <id>', 'only events from this device')
    .option('--from <now|seq>', 'start with new events (now) or after this seq (0 = everything kept)', 'now')
    .option('--timeout <seconds>', 'stop after this many seconds (exit 0); default: until SIGINT or SIGTERM')
    .action(async (o: MonitorOpts) => {
      await monitor(o);
    });
}
