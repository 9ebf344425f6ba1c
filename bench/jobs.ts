/**
 * bench/jobs: how fast a twin-update job goes over a fleet on a real `gatehouse start` (SQLite,
 * default durability), and what it does to live telemetry meanwhile.
 *
 *   (1) job alone: a twin-update job (a tag and a desired property) over every device: devices/s,
 *       from the moment it is seen running to `completed`.
 *   (2) telemetry alone: --connected devices publish QoS 1 as fast as their windows allow, for as
 *       long as (1) took: msgs/s and PUBACK latency.
 *   (3) both: the same job again (another value) and, once it runs, the same telemetry: the job's
 *       devices/s and the telemetry's msgs/s; the slowdown is 1 − (3)/(2).
 * Rounds interleave (1)-(3). Goal (issue 18): ≥ 2,000 devices/s with ≤ 20 % telemetry slowdown.
 *
 * Devices are the MQTT load generator of bench/mqtt (bench/mqtt-load.ts: one TLS connection per
 * device, a window of unacknowledged PUBLISHes each). Loopback only: the hub on 127.0.69.1.
 *
 *   node dist/bench/jobs.js [--devices 10000] [--connected 1000] [--window 10] [--rounds 2] [--job-max-rate N] [--write]
 *
 * --job-max-rate is passed to the hub (its default otherwise: 2,500 devices/s per job).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { generateSasToken } from '../src/auth/sas.js';
import { arg, argString, fmt1, fmt2, fmtInt, mark, measured, settle, sleep, table, writeBenchmarkSection } from './support.js';
import { createDevices, Generator, httpsCall, parseConnectionString, type PublishResult, type Target } from './mqtt-load.js';
import { removeDir, startHubProcess, type HubProcess } from '../test/support/hub-process.js';

const HUB_ADDR = '127.0.69.1';
const SECTION_TITLE = '## Jobs: a twin-update job over the fleet, and live telemetry meanwhile (bench/jobs)';

interface JobDoc {
  status: string;
  deviceJobStatistics: { deviceCount: number; succeededCount: number; failedCount: number };
}

async function main(): Promise<void> {
  const nDevices = arg('devices', 10_000);
  const connected = arg('connected', 1000);
  const window = arg('window', 10);
  const rounds = arg('rounds', 2);
  const dir = mkdtempSync(join(tmpdir(), 'gh-bench-jobs-'));
  const deviceKey = randomBytes(32).toString('base64');
  let hub: HubProcess | undefined;
  let gen: Generator | undefined;
  try {
    const maxRate = argString('job-max-rate');
    hub = await startHubProcess({ address: HUB_ADDR, dataDir: join(dir, 'hub'), useTestCa: false, extraArgs: ['--max-connections-per-address', '0', ...(maxRate === undefined ? [] : ['--job-max-rate', maxRate])] });
    const hubPid = hub.proc.pid ?? 0;
    const hubCa = readFileSync(hub.caFile, 'utf8');
    await createDevices(hub, hubCa, nDevices, deviceKey, []);
    const { keyName, key } = parseConnectionString(hub.connectionString);
    const token = generateSasToken({ resource: HUB_ADDR, key, keyName, expiry: Math.floor(Date.now() / 1000) + 7200 });
    const agent = new Agent({ keepAlive: true, maxSockets: 2, ca: hubCa });
    const call = async (method: string, path: string, body?: unknown): Promise<unknown> => {
      const r = await httpsCall(agent, HUB_ADDR, token, method, path, Buffer.from(body === undefined ? '' : JSON.stringify(body)), { 'content-type': 'application/json' });
      if (r.status !== 200) throw new Error(`${method} ${path}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
      return JSON.parse(r.body) as unknown;
    };
    let jobNo = 0;
    /** Creates a twin-update job over every device; resolves when it runs, with a promise of its devices/s. */
    const startJob = async (): Promise<{ done: Promise<{ devicesPerS: number; seconds: number; failed: number }> }> => {
      const id = `bench-${++jobNo}`;
      await call('PUT', `/jobs/v2/${id}`, { jobId: id, type: 'scheduleUpdateTwin', queryCondition: '*', updateTwin: { etag: '*', tags: { wave: jobNo }, properties: { desired: { firmware: `fw-${jobNo}` } } }, maxExecutionTimeInSeconds: 3600 });
      let job = (await call('GET', `/jobs/v2/${id}`)) as JobDoc;
      while (job.status !== 'running' && job.status !== 'completed') {
        await sleep(20);
        job = (await call('GET', `/jobs/v2/${id}`)) as JobDoc;
      }
      const t0 = performance.now();
      const done = (async () => {
        while (job.status === 'running') {
          await sleep(50);
          job = (await call('GET', `/jobs/v2/${id}`)) as JobDoc;
        }
        if (job.status !== 'completed') throw new Error(`job ${id} ended ${job.status}`);
        const seconds = (performance.now() - t0) / 1000;
        return { devicesPerS: job.deviceJobStatistics.deviceCount / seconds, seconds, failed: job.deviceJobStatistics.failedCount };
      })();
      return { done };
    };

    gen = Generator.start();
    const target: Target = { host: HUB_ADDR, port: 8883, caPem: hubCa, auth: { kind: 'sas', hubHost: HUB_ADDR, key: deviceKey } };
    const opened = await gen.call<{ opened: number; errors: number; firstError?: string }>({ kind: 'publish-open', target, conns: connected, offset: 0, payloadBytes: 64 }, 120_000);
    if (opened.errors > 0) throw new Error(`devices failed to connect: ${opened.firstError ?? ''}`);
    const publish = (seconds: number) => (gen as Generator).call<PublishResult>({ kind: 'publish-run', total: 100_000_000, window, maxSeconds: seconds }, (seconds + 60) * 1000);
    // Warm-up, not counted.
    await publish(2);
    await (await startJob()).done;

    const rows: string[][] = [];
    const alone: number[] = [];
    const together: number[] = [];
    const telemetryAlone: number[] = [];
    const telemetryWith: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      await settle(hubPid);
      const j1 = await (await startJob()).done;
      await settle(hubPid);
      const t1 = await measured(hubPid, () => publish(Math.max(2, j1.seconds)));
      await settle(hubPid);
      const j = await startJob();
      const t2 = await measured(hubPid, () => publish(Math.max(2, j1.seconds * 0.9)));
      const j2 = await j.done;
      alone.push(j1.devicesPerS);
      together.push(j2.devicesPerS);
      telemetryAlone.push(t1.r.rate);
      telemetryWith.push(t2.r.rate);
      rows.push([
        String(round),
        `${fmtInt(j1.devicesPerS)} (${fmt1(j1.seconds)} s)`,
        `${fmtInt(t1.r.rate)} (p50 ${fmt1(t1.r.p50ms)} / p99 ${fmt1(t1.r.p99ms)} ms)`,
        `${fmtInt(j2.devicesPerS)} (${fmt1(j2.seconds)} s)`,
        `${fmtInt(t2.r.rate)} (p50 ${fmt1(t2.r.p50ms)} / p99 ${fmt1(t2.r.p99ms)} ms)`,
        `${fmt1((1 - t2.r.rate / t1.r.rate) * 100)} %`,
        fmt2(loadavg()[0] ?? 0),
      ]);
      process.stderr.write(`round ${round}: job alone ${fmtInt(j1.devicesPerS)} devices/s; telemetry ${fmtInt(t1.r.rate)} msgs/s alone, ${fmtInt(t2.r.rate)} with the job (${fmtInt(j2.devicesPerS)} devices/s)\n`);
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const slowdown = 1 - mean(telemetryWith) / mean(telemetryAlone);
    const section = [
      `${nDevices.toLocaleString('en-US')} devices, ${connected.toLocaleString('en-US')} of them connected and publishing QoS 1 (window ${window}); SQLite; ${rounds} rounds; --job-max-rate ${maxRate ?? '2500 (default)'}.`,
      '',
      table(['round', 'job alone: devices/s', 'telemetry alone: msgs/s', 'job with telemetry: devices/s', 'telemetry with the job: msgs/s', 'slowdown', 'load'], rows),
      '',
      `Goal: ≥ 2,000 devices/s (${fmtInt(mean(together))} with telemetry, ${fmtInt(mean(alone))} alone: ${mark(mean(together) >= 2000)}) with ≤ 20 % telemetry slowdown (${fmt1(slowdown * 100)} %: ${mark(slowdown <= 0.2)}).`,
    ].join('\n');
    process.stdout.write(`${SECTION_TITLE}\n\n${section}\n`);
    if (process.argv.includes('--write')) writeBenchmarkSection(SECTION_TITLE, section);
    agent.destroy();
  } finally {
    await gen?.call({ kind: 'publish-close' }).catch(() => undefined);
    gen?.stop();
    await hub?.stop();
    removeDir(dir);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
