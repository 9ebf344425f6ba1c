/**
 * `gatehouse device export --out FILE` and `device import --in FILE`: a registry moved through a
 * file in the `devices.txt` format of Azure's import/export jobs (one ExportImportDevice per line:
 * id, eTag, status, authentication, twinETag, tags, properties, capabilities), over the service
 * REST API, with a progress bar on stderr. Export pages the devices with the query API and reads
 * each identity for its keys (left out with --exclude-keys); import sends 100 lines per bulk
 * request (`POST /devices`, each line's importMode, createOrUpdate when it has none), and writes
 * the lines that failed to --errors (default FILE.errors.log), as importErrors.log does.
 */
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { devicesTxtLine } from '../../core/devices-txt.js';
import { CliError, encodeId, type RestClient } from '../rest-client.js';
import { progressPrinter } from '../progress.js';
import { connectionOptions, withClient, type ConnOpts } from './common.js';

const BULK = 100;
const READERS = 8;

interface ExportOpts extends ConnOpts {
  out: string;
  excludeKeys?: boolean;
}

interface ImportOpts extends ConnOpts {
  in: string;
  errors?: string;
}

type Json = Record<string, unknown>;

async function write(out: WriteStream, line: string): Promise<void> {
  if (!out.write(`${line}\n`)) await once(out, 'drain');
}

async function exportDevices(c: RestClient, o: ExportOpts): Promise<number> {
  const twins = (await c.query('/devices/query', { query: 'SELECT * FROM devices' })) as Json[];
  const out = createWriteStream(o.out, { mode: 0o600 });
  const draw = progressPrinter(process.stderr.isTTY === true);
  const started = Date.now();
  try {
    // Identities are read READERS at a time and written in the query's order.
    for (let i = 0; i < twins.length; i += READERS) {
      const slice = twins.slice(i, i + READERS);
      const devices = await Promise.all(slice.map(async (t) => (await c.call('GET', `/devices/${encodeId(String(t.deviceId))}`)).body as Json));
      for (let k = 0; k < slice.length; k++) await write(out, devicesTxtLine(devices[k] as Json, slice[k] as Json, o.excludeKeys === true));
      const done = i + slice.length;
      const perSecond = done / Math.max(0.001, (Date.now() - started) / 1000);
      draw(done, twins.length, `${done}/${twins.length} devices exported, ${perSecond.toFixed(0)}/s`, perSecond);
    }
  } finally {
    out.end();
    await once(out, 'close');
  }
  if (twins.length === 0) draw(0, 0, '0 devices exported', 0);
  return twins.length;
}

async function readLines(file: string): Promise<unknown[]> {
  const entries: unknown[] = [];
  let n = 0;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    n++;
    if (line.trim() === '') continue;
    try {
      entries.push(JSON.parse(line) as unknown);
    } catch {
      throw new CliError('IotHubFormatError', `${file} line ${n} is not JSON`);
    }
  }
  return entries;
}

/** One bulk request's per-device errors (a partly failed request is a 400 that lists them). */
async function bulk(c: RestClient, chunk: unknown[]): Promise<{ errors?: unknown[] }> {
  try {
    return ((await c.call('POST', '/devices', chunk)).body ?? {}) as { errors?: unknown[] };
  } catch (err) {
    if (err instanceof CliError && err.code === 'BulkRegistryOperationFailure') return (err.body ?? {}) as { errors?: unknown[] };
    throw err;
  }
}

async function importDevices(c: RestClient, o: ImportOpts): Promise<{ imported: number; failed: number; errorsFile?: string }> {
  const entries = await readLines(o.in);
  const draw = progressPrinter(process.stderr.isTTY === true);
  const started = Date.now();
  const errors: string[] = [];
  for (let i = 0; i < entries.length; i += BULK) {
    const chunk = entries.slice(i, i + BULK);
    const body = await bulk(c, chunk);
    for (const e of body.errors ?? []) errors.push(JSON.stringify(e));
    const done = i + chunk.length;
    const perSecond = done / Math.max(0.001, (Date.now() - started) / 1000);
    draw(done, entries.length, `${done}/${entries.length} lines imported, ${errors.length} failed, ${perSecond.toFixed(0)}/s`, perSecond);
  }
  if (entries.length === 0) draw(0, 0, '0 lines imported', 0);
  if (errors.length === 0) return { imported: entries.length, failed: 0 };
  const errorsFile = o.errors ?? `${o.in}.errors.log`;
  const out = createWriteStream(errorsFile, { mode: 0o600 });
  for (const e of errors) await write(out, e);
  out.end();
  await once(out, 'close');
  return { imported: entries.length - errors.length, failed: errors.length, errorsFile };
}

export function registerDeviceTransfer(device: Command): void {
  connectionOptions(device.command('export').description("write every device (identity, keys, twin tags and properties) to a file in Azure's devices.txt format"))
    .requiredOption('--out <file>', 'the file to write (created 0600: it holds device keys unless --exclude-keys)')
    .option('--exclude-keys', 'leave the symmetric keys out (Azure: excludeKeysInExport)')
    .action(async (o: ExportOpts) => {
      const n = await withClient(o, (c) => exportDevices(c, o));
      process.stdout.write(`${JSON.stringify({ exported: n, file: o.out, keys: o.excludeKeys !== true })}\n`);
    });
  connectionOptions(device.command('import').description("create, update or delete devices from a devices.txt file (each line's importMode, createOrUpdate by default)"))
    .requiredOption('--in <file>', 'the devices.txt file to read')
    .option('--errors <file>', 'where the lines that failed go (default: <in>.errors.log)')
    .action(async (o: ImportOpts) => {
      const r = await withClient(o, (c) => importDevices(c, o));
      process.stdout.write(`${JSON.stringify(r)}\n`);
      if (r.failed > 0) throw new CliError('ImportIncomplete', `${r.failed} of ${r.imported + r.failed} lines could not be applied: see ${r.errorsFile ?? ''}`);
    });
}
