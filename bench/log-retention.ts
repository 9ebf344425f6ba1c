/**
 * `npm run bench:log-retention [-- --records N --rate R]`: what a retention pass costs
 * the appends that run beside it, on the hub's SQLite log (its own file, written by its writer
 * thread, each commit's WAL fdatasynced: the hub's default).
 *
 * A full log prunes by size once a minute: at 10k msgs/s, about 600,000 records a pass. The pass
 * deletes in chunks on the writer thread, between commits; an append that arrives during a chunk
 * waits for it. Here: one partition filled with N records of ~700 bytes (the size bench/routing's
 * messages have in the log), then appends paced at R a second (one message each, as devices
 * send) for a quiet second, then for as long as a pass that deletes two thirds of the log takes.
 * Reported: each append's latency (call to durable) in the quiet second and during the pass, and
 * the pass's time per deleted record.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LocalBus } from '../src/bus/local/local-bus.js';
import { HubBus } from '../src/bus/subjects.js';
import type { LogMessage } from '../src/log/log-ports.js';
import { openSqliteLog } from '../src/log/sqlite/open-sqlite-log.js';
import { arg, fmt1, fmt2, fmtInt, percentile, sleep, table, writeBenchmarkSection } from './support.js';

const RECORDS = arg('records', 300_000);
const RATE = arg('rate', 2000);
const SECTION_TITLE = '## Event log: appends during a retention pass (bench/log-retention)';

const systemJson = JSON.stringify({
  'content-type': 'application/json',
  'content-encoding': 'utf-8',
  'iothub-connection-device-id': 'bench-00001',
  'iothub-connection-auth-method': '{"scope":"device","type":"sas","issuer":"iothub"}',
  'iothub-connection-auth-generation-id': '460749226650398024',
  'iothub-enqueuedtime': '2026-12-06T13:27:12.965Z',
  'iothub-message-source': 'Telemetry',
});
const body = Buffer.from(JSON.stringify({ sentAt: 0, pad: randomBytes(110).toString('hex') }));
const message = (i: number): LogMessage => ({ deviceId: `bench-${String(i % 100).padStart(5, '0')}`, moduleId: null, body, properties: {}, systemProperties: JSON.parse(systemJson) as Record<string, string>, systemJson, endpoints: ['events'] });

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-log-retention-'));
  const retention = { maxAgeMs: 24 * 3600_000, maxBytesPerPartition: Number.MAX_SAFE_INTEGER };
  const log = await openSqliteLog({ file: join(dir, 'log.db'), partitionCount: 1, retention, bus: new HubBus(new LocalBus({ nodeId: 'bench' }), 'bench') });
  try {
    for (let i = 0; i < RECORDS; i += 1000) await log.append(Array.from({ length: Math.min(1000, RECORDS - i) }, (_, k) => message(i + k)));
    const head = await log.partitionProperties(0);
    const bytes = Number(head.lastEnqueuedOffset);

    /** Appends paced at RATE until `until` resolves; each one's latency in ms. */
    const paced = async (until: Promise<unknown>): Promise<number[]> => {
      const out: number[] = [];
      const pending: Promise<void>[] = [];
      let done = false;
      void until.then(() => (done = true));
      const start = performance.now();
      for (let n = 0; !done; n++) {
        const due = start + (n * 1000) / RATE;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
        const t = performance.now();
        pending.push(log.append([message(n)]).then(() => void out.push(performance.now() - t)));
      }
      await Promise.all(pending);
      return out.sort((a, b) => a - b);
    };

    const quiet = await paced(sleep(1000));
    // Two thirds of the log over budget: the pass deletes them, oldest first.
    retention.maxBytesPerPartition = Math.floor(bytes / 3);
    let pruned = 0;
    let passMs = 0;
    const pass = (async () => {
      const t = performance.now();
      pruned = await log.enforceRetention();
      passMs = performance.now() - t;
    })();
    const during = await paced(pass);

    const row = (what: string, l: number[]) => [what, fmtInt(l.length), `${fmt2(percentile(l, 50))} / ${fmt2(percentile(l, 99))} / ${fmt1(l.at(-1) ?? NaN)}`];
    const section = `${SECTION_TITLE}

Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}: one partition of ${fmtInt(RECORDS)} records
(~${fmtInt(bytes / RECORDS)} bytes each in the log), appends of one message paced at ${fmtInt(RATE)}/s, each resolving once its commit's WAL is fdatasynced.

${table(['appends', 'count', 'ms p50 / p99 / max (call → durable)'], [row('quiet (1 s, no pass)', quiet), row('during the retention pass', during)])}

The pass deleted ${fmtInt(pruned)} records in ${fmtInt(passMs)} ms (${fmt2((passMs * 1000) / Math.max(1, pruned))} µs a record, appends running beside it).
`;
    process.stdout.write(`${section}\n`);
    if (process.argv.includes('--write')) writeBenchmarkSection(SECTION_TITLE, section);
  } finally {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
