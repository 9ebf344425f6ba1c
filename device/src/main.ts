/**
 * gate-controller: the reference device's command line.
 *
 *   gate-controller manufacture --data-dir D --serial S   write the label (once, at the factory)
 *   gate-controller run --data-dir D [--bind A] [--port P] [--factory-bundle DIR] [--ca-file F]
 *                       [--renew-before-days N] [--wifi-networks FILE] [--json]
 *   gate-controller status --data-dir D [--json]         ask a running device
 *   gate-controller press --data-dir D --ms N            a button press of N ms
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { controlRequest, ControlSocket } from './control.js';
import { readFactoryBundle } from './credentials.js';
import { GateController, type DeviceStatus } from './gate-controller.js';
import { newLabel, readLabel, writeLabel } from './label.js';
import { jsonLogger } from './log.js';

const USAGE = `usage:
  gate-controller manufacture --data-dir DIR --serial SERIAL
  gate-controller run --data-dir DIR [--bind ADDRESS] [--port PORT] [--factory-bundle DIR] [--ca-file PEM]
                      [--renew-before-days DAYS] [--wifi-networks JSON-FILE] [--json]
  gate-controller status --data-dir DIR [--json]
  gate-controller press --data-dir DIR --ms MILLISECONDS
`;

class UsageError extends Error {}

export function statusLine(s: DeviceStatus): string {
  const net = s.network.mode === 'access-point' ? `AP ${s.network.ssid ?? ''}` : s.network.mode === 'joined' ? `wifi ${s.network.ssid ?? ''} ${s.network.address ?? ''}` : `wifi down${s.network.error === undefined ? '' : ` (${s.network.error})`}`;
  const where = s.mode === 'setup' || s.mode === 'web' ? `page ${s.web.url ?? 'closed'}${s.web.clientAttached ? ' (client)' : ''}` : `hub ${s.hub.state}${s.hub.deviceId === undefined ? '' : ` ${s.hub.deviceId}`}${s.hub.error === undefined ? '' : ` (${s.hub.error})`}`;
  return `${s.serial} | boot ${s.boots} | ${s.mode} | ${net} | ${where} | relay ${s.relay.state} (${s.relay.pulses} pulses) | LED green ${s.leds.green}, red ${s.leds.red}`;
}

async function run(values: Record<string, string | boolean | undefined>): Promise<void> {
  const dataDir = resolve(String(values['data-dir']));
  const labelFile = join(dataDir, 'label.json');
  if (!existsSync(labelFile)) throw new UsageError(`no label at ${labelFile}: run 'gate-controller manufacture' first`);
  const label = readLabel(labelFile);
  const log = jsonLogger(undefined, { serial: label.serial });
  const json = values.json === true;
  const renewDays = values['renew-before-days'] === undefined ? undefined : Number(values['renew-before-days']);
  if (renewDays !== undefined && !(renewDays >= 0)) throw new UsageError('--renew-before-days is a number of days');
  const port = Number(values.port ?? 8080);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError('--port is 1-65535');
  const wifi = values['wifi-networks'] === undefined ? undefined : new Map(Object.entries(JSON.parse(readFileSync(String(values['wifi-networks']), 'utf8')) as Record<string, string>));

  let last = '';
  const tty = process.stdout.isTTY === true && !json;
  const device = new GateController({
    dataDir,
    label,
    bind: String(values.bind ?? '127.0.0.1'),
    port,
    ...(values['factory-bundle'] === undefined ? {} : { factoryBundle: readFactoryBundle(String(values['factory-bundle'])) }),
    ...(values['ca-file'] === undefined ? {} : { ca: readFileSync(String(values['ca-file']), 'utf8') }),
    ...(renewDays === undefined ? {} : { renewBeforeMs: renewDays * 86_400_000 }),
    ...(wifi === undefined ? {} : { wifiInRange: wifi }),
    log,
    onStatus: (s) => {
      const line = json ? JSON.stringify(s) : statusLine(s);
      if (line === last) return;
      last = line;
      process.stdout.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
    },
  });
  const control = new ControlSocket(join(dataDir, 'control.sock'), async (req) => {
    if (req.op === 'status') return device.status();
    if (req.op === 'press') return { action: device.button.simulate(req.ms) };
    if (req.op === 'down') return void device.button.press();
    return { action: device.button.release() ?? null };
  });
  await control.open();
  await device.boot();
  const stop = async (signal: string) => {
    log.info('stopping', { signal });
    await device.shutdown();
    await control.close();
    if (tty) process.stdout.write('\n');
    process.exit(0);
  };
  // A shutdown that fails still ends the process, with the reason and a non-zero code.
  const stopOrFail = (signal: string) =>
    stop(signal).catch((err: unknown) => {
      log.error('shutdown failed', { error: (err as Error).message });
      process.exit(1);
    });
  process.once('SIGINT', () => void stopOrFail('SIGINT'));
  process.once('SIGTERM', () => void stopOrFail('SIGTERM'));
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      'data-dir': { type: 'string' },
      serial: { type: 'string' },
      bind: { type: 'string' },
      port: { type: 'string' },
      'factory-bundle': { type: 'string' },
      'ca-file': { type: 'string' },
      'renew-before-days': { type: 'string' },
      'wifi-networks': { type: 'string' },
      ms: { type: 'string' },
      json: { type: 'boolean' },
    },
    strict: true,
  });
  if (command === undefined || command === 'help' || command === '--help') {
    process.stdout.write(USAGE);
    return command === undefined ? 1 : 0;
  }
  if (values['data-dir'] === undefined) throw new UsageError('--data-dir is required');
  const dataDir = resolve(values['data-dir']);
  const socket = join(dataDir, 'control.sock');
  switch (command) {
    case 'manufacture': {
      if (values.serial === undefined) throw new UsageError('--serial is required');
      const file = join(dataDir, 'label.json');
      if (existsSync(file)) throw new UsageError(`${file} exists: a device is labelled once`);
      const label = newLabel(values.serial);
      // A new device's directory: created here, private, as the label holds its secrets.
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      writeLabel(file, label);
      // What the sticker shows; the device secret stays in the device.
      process.stdout.write(`${JSON.stringify({ serial: label.serial, setupPassword: label.setupPassword, applicationKey: label.applicationKey }, null, 2)}\n`);
      return 0;
    }
    case 'run':
      await run(values);
      return -1; // keeps running
    case 'status': {
      const s = (await controlRequest(socket, { op: 'status' })) as DeviceStatus;
      process.stdout.write(values.json === true ? `${JSON.stringify(s, null, 2)}\n` : `${statusLine(s)}\n`);
      return 0;
    }
    case 'press': {
      const ms = Number(values.ms);
      if (!(ms >= 0)) throw new UsageError('--ms is the press length in milliseconds');
      const r = (await controlRequest(socket, { op: 'press', ms })) as { action: string };
      process.stdout.write(`${r.action}\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

export function cli(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (err: Error) => {
      process.stderr.write(`gate-controller: ${err.message}\n${err instanceof UsageError ? USAGE : ''}`);
      process.exitCode = err instanceof UsageError ? 2 : 1;
    },
  );
}
