/**
 * `gatehouse monitor-events`, like `az iot hub monitor-events`: follows the hub's built-in event
 * stream (`GET /events`, Server-Sent Events) and prints each event in az's shape (src/cli/az-event.ts),
 * one compact JSON object per line; `-o table` for people. `--props sys|app|anno|all` adds what az
 * adds; `--timeout` is az's: seconds without a new event before it stops (0: never).
 *
 * `--from` is where to start: `now` (new events), `earliest` (everything the hub's log still
 * keeps) or a position as the stream's event ids give it (per partition, the last sequence number
 * seen: `12.-1.40.7`). A stream that drops after it was established is resumed from the last
 * event's id (Last-Event-ID), so nothing is printed twice or skipped; a refusal (bad credentials, bad arguments) or a hub that cannot be
 * reached at first is an error.
 */
import { request, type RequestOptions } from 'node:https';
import { Option, type Command } from 'commander';
import { azEvent, type PropKind, type StreamEvent } from '../az-event.js';
import { resolveConnection, type ServiceConnection } from '../connection.js';
import { CliError, networkError, usage } from '../errors.js';
import { follow, parseTimeout, sleep } from '../follow.js';
import { tableStream } from '../output.js';
import { API_VERSION, authorization, errorFromResponse, serverName } from '../rest-client.js';
import { alias, connectionChoice, connectionOptions, intInRange, type ConnOpts } from './common.js';

interface MonitorOpts extends ConnOpts {
  deviceId?: string;
  moduleId?: string;
  interface?: string;
  props?: string[];
  contentType?: string;
  messageCount?: number;
  from: string;
  timeout: string;
}

interface StreamTarget {
  deviceId: string | undefined;
  /** now, earliest or a position (the hub checks it against its partition count). */
  from: string;
  /** Resume after this position (sent as Last-Event-ID). */
  lastEventId: string | undefined;
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;
/** az's default: stop after 300 s without an event. */
const DEFAULT_TIMEOUT_S = '300';

const TABLE = tableStream([
  ['enqueuedTime', 24],
  ['origin', 20],
  ['module', 12],
  ['payload', 0],
]);

/** az's device and module filters take `*` and `?` wildcards. */
function matcher(pattern: string | undefined): ((id: string) => boolean) | undefined {
  if (pattern === undefined) return undefined;
  if (!/[*?]/.test(pattern)) return (id) => id === pattern;
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return (id) => re.test(id);
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
  const query = new URLSearchParams({ 'api-version': API_VERSION, from: String(target.from) });
  if (target.deviceId !== undefined) query.set('deviceId', target.deviceId);
  const servername = serverName(conn.hostName);
  const options: RequestOptions = {
    host: conn.connectHost,
    port: conn.port,
    method: 'GET',
    path: `/events?${query.toString()}`,
    agent: false,
    ...(conn.ca === undefined ? {} : { ca: conn.ca }),
    ...(servername === undefined ? {} : { servername }),
    headers: {
      authorization: authorization(conn),
      accept: 'text/event-stream',
      'user-agent': 'gatehouse-cli',
      ...(target.lastEventId === undefined ? {} : { 'last-event-id': target.lastEventId }),
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
        res.on('end', () => reject(errorFromResponse(status, text)));
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
      reject(networkError(conn, err));
    });
    req.end();
  });
}

const POSITION = /^(-1|\d{1,15})(\.(-1|\d{1,15})){0,31}$/;

function parseFrom(text: string): string {
  if (text === 'now' || text === 'earliest' || POSITION.test(text)) return text;
  throw usage("--from must be now, earliest or a position as the stream's event ids give it (p0.p1...)");
}

async function monitor(o: MonitorOpts): Promise<void> {
  const from = parseFrom(o.from);
  const idleMs = parseTimeout(o.timeout);
  const props = new Set((o.props ?? []).map((p) => p.toLowerCase() as PropKind));
  const wantDevice = matcher(o.deviceId);
  const wantModule = matcher(o.moduleId);
  const conn = await resolveConnection(connectionChoice(o));
  const f = follow(idleMs);
  // An exact device id is filtered by the hub; a wildcard here.
  const target: StreamTarget = { deviceId: o.deviceId !== undefined && !/[*?]/.test(o.deviceId) ? o.deviceId : undefined, from, lastEventId: undefined };
  let everOpen = false;
  let retryMs = RETRY_MIN_MS;
  let announced = false;
  let printed = 0;
  // Ends the stream once --message-count events are out.
  const counted = new AbortController();
  const aborted = AbortSignal.any([f.signal, counted.signal]);
  if (o.output === 'table') process.stdout.write(`${TABLE.header}\n`);
  const onEvent = (event: string, data: string, id: string | undefined) => {
    if (event !== 'telemetry' || aborted.aborted) return;
    let e: StreamEvent;
    try {
      e = JSON.parse(data) as StreamEvent;
    } catch {
      return; // not ours: the hub only sends JSON
    }
    if (id !== undefined && POSITION.test(id)) target.lastEventId = id;
    const out = azEvent(e, props, o.contentType);
    if (wantDevice !== undefined && !wantDevice(out.event.origin)) return;
    if (wantModule !== undefined && !wantModule(out.event.module)) return;
    if (o.interface !== undefined && out.event.interface !== o.interface) return;
    f.touch();
    if (o.output === 'table') {
      const payload = typeof out.event.payload === 'string' ? out.event.payload : JSON.stringify(out.event.payload);
      process.stdout.write(`${TABLE.row({ enqueuedTime: e.enqueuedTime, origin: out.event.origin, module: out.event.module, payload })}\n`);
    } else process.stdout.write(`${JSON.stringify(out)}\n`);
    printed += 1;
    if (o.messageCount !== undefined && printed >= o.messageCount) {
      process.stderr.write(`Successfully parsed ${printed} message(s).\n`);
      counted.abort();
    }
  };
  try {
    while (!aborted.aborted) {
      try {
        await streamOnce(
          conn,
          target,
          aborted,
          () => {
            // az's line, printed once the hub has accepted the stream: from here on nothing is missed.
            if (!everOpen) process.stderr.write(`Starting event monitor${o.deviceId !== undefined ? `, filtering on device: ${o.deviceId}` : ''}, use ctrl-c to stop...\n`);
            everOpen = true;
            retryMs = RETRY_MIN_MS;
            if (announced) process.stderr.write('note: event stream resumed\n');
            announced = false;
          },
          onEvent,
        );
      } catch (err) {
        // A refusal is final; a lost hub after a good start is waited for.
        if (!everOpen || (err instanceof CliError && err.status !== undefined && err.status < 500)) throw err;
      }
      if (aborted.aborted) break;
      if (!announced) process.stderr.write('note: event stream interrupted; reconnecting\n');
      announced = true;
      await sleep(retryMs, aborted);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    }
  } finally {
    f.dispose();
  }
}

export function registerMonitorEvents(program: Command): void {
  const cmd = connectionOptions(program.command('monitor-events').description("print device telemetry from the hub's event stream as az iot hub monitor-events does, one JSON object per line"))
    .option('-d, --device-id <id>', 'only events from this device (* and ? match any characters)')
    .option('-m, --module-id <id>', 'only events from this module (* and ? match any characters)')
    .option('-i, --interface <id>', 'only events of this Plug and Play interface')
    .addOption(new Option('-p, --props <kind...>', 'add message properties: sys, app, anno or all (also --properties)').choices(['sys', 'app', 'anno', 'all']))
    .option('--ct, --content-type <type>', "read every payload as this content type (application/json parses it); default: the message's")
    .option('--mc, --message-count <n>', 'stop after this many events', intInRange(1, 1_000_000_000))
    .option('--from <now|earliest|position>', "start with new events (now), with everything the hub keeps (earliest), or after a position as the stream's event ids give it (p0.p1...: per partition, the last sequence number seen)", 'now')
    .option('--to, --timeout <seconds>', 'stop after this many seconds without an event (exit 0); 0 waits for ever (also -t)', DEFAULT_TIMEOUT_S);
  alias(cmd, '--properties <kind...>', 'props', { choices: ['sys', 'app', 'anno', 'all'] });
  alias(cmd, '-t <seconds>', 'timeout');
  // Gatehouse's earlier name for --device-id.
  alias(cmd, '--device <id>', 'deviceId');
  cmd.action(async (o: MonitorOpts) => {
    await monitor(o);
  });
}
