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
 *   node dist/bench/jobs.js [--devices 10000] [--connected 1000] [--window 10] [--rounds 2] [--job-max-rate N] [--cpu-prof DIR] [--write]
 *
 * --job-max-rate is passed to the hub (its default otherwise: 2,500 devices/s per job).
 * --cpu-prof DIR writes V8 CPU profiles of the hub for (1) and (3) of each round (bench/support.ts WindowProfiler).
 *
 * CPU: the hub's utime+stime from /proc around (1) gives its CPU per device of a job; around (2),
 * with the load generator's own CPU, the cores telemetry alone keeps busy. On a machine telemetry
 * already fills, a job at R devices/s takes R × (CPU per device) cores from it, so the slowdown is
 * at least that over telemetry's cores: the printed ceiling says what CPU per device the goal needs.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { generateSasToken } from '../src/auth/sas.js';
import { arg, argString, fmt1, fmt2, fmtInt, mark, measured, PROFILER_PRELOAD, settle, sleep, table, WindowProfiler, writeBenchmarkSection } from './support.js';
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
    const cpuProf = argString('cpu-prof');
    let env: NodeJS.ProcessEnv | undefined;
    if (cpuProf !== undefined) {
      mkdirSync(cpuProf, { recursive: true });
      const preload = join(dir, 'profiler-preload.mjs');
      writeFileSync(preload, PROFILER_PRELOAD);
      env = { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}`, GH_BENCH_PROF_DIR: cpuProf };
    }
    hub = await startHubProcess({
      address: HUB_ADDR,
      dataDir: join(dir, 'hub'),
      useTestCa: false,
      extraArgs: ['--max-connections-per-address', '0', ...(maxRate === undefined ? [] : ['--job-max-rate', maxRate])],
      ...(env === undefined ? {} : { env }),
    });
    const hubPid = hub.proc.pid ?? 0;
    const profiler = cpuProf === undefined ? undefined : new WindowProfiler(cpuProf, hubPid, 'hub');
    const profiled = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
      if (profiler === undefined) return fn();
      profiler.start();
      try {
        return await fn();
      } finally {
        process.stderr.write(`hub CPU profile of ${name}: ${(await profiler.stop(name)) ?? 'not written'}\n`);
      }
    };
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
    const jobCpuPerDevice: number[] = [];
    const telemetryCores: number[] = [];
    const loads: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      await settle(hubPid);
      loads.push(loadavg()[0] ?? 0);
      const m1 = await profiled(`job-alone-${round}`, () => measured(hubPid, async () => (await startJob()).done));
      const j1 = m1.r;
      await settle(hubPid);
      const t1 = await measured(hubPid, () => publish(Math.max(2, j1.seconds)));
      await settle(hubPid);
      const [t2, j2] = await profiled(`job-with-telemetry-${round}`, async () => {
        const j = await startJob();
        const t = await measured(hubPid, () => publish(Math.max(2, j1.seconds * 0.9)));
        return [t, await j.done] as const;
      });
      // The hub's CPU over the job alone (creation to completion, the expansion included), per device.
      jobCpuPerDevice.push(m1.serverCpuS / nDevices);
      telemetryCores.push((t1.serverCpuS + (t1.r.genCpuPct / 100) * t1.wallS) / t1.wallS);
      alone.push(j1.devicesPerS);
      together.push(j2.devicesPerS);
      telemetryAlone.push(t1.r.rate);
      telemetryWith.push(t2.r.rate);
      rows.push([
        String(round),
        `${fmtInt(j1.devicesPerS)} (${fmt1(j1.seconds)} s; ${fmtInt((m1.serverCpuS / nDevices) * 1e6)} µs CPU/device)`,
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
    const cpuPerDevice = mean(jobCpuPerDevice);
    const tCores = mean(telemetryCores);
    const jobCores = 2000 * cpuPerDevice;
    const n = cpus().length;
    const ceiling = [
      `CPU arithmetic (hub utime+stime from /proc): the job costs the hub ${fmtInt(cpuPerDevice * 1e6)} µs of CPU per device, so 2,000 devices/s`,
      `take ${fmt2(jobCores)} cores. Telemetry alone kept ${fmt2(tCores)} cores busy here (hub and load generator); on a quiet machine it fills all ${n}.`,
      `Where it does, the job's cores come out of telemetry's: at 2,000 devices/s a slowdown of at least ${fmt1((jobCores / n) * 100)} % (${fmt2(jobCores)} / ${n}),`,
      `and the goal's ≤ 20 % needs ≤ ${fmtInt(((0.2 * n) / 2000) * 1e6)} µs of hub CPU per device (≤ ${fmtInt((0.2 / 2000) * 1e6)} µs if the hub's one main thread is what telemetry is bound by).`,
    ].join('\n');
    const section = [
      SECTION_TITLE,
      '',
      `${nDevices.toLocaleString('en-US')} devices, ${connected.toLocaleString('en-US')} of them connected and publishing QoS 1 (window ${window}); SQLite; ${rounds} rounds; --job-max-rate ${maxRate ?? '2500 (default)'};`,
      `1-minute load average before each round ${loads.map(fmt2).join(', ')} (${cpus().length} cores shared with other work).`,
      '',
      table(['round', 'job alone: devices/s', 'telemetry alone: msgs/s', 'job with telemetry: devices/s', 'telemetry with the job: msgs/s', 'slowdown', 'load'], rows),
      '',
      `Goal: ≥ 2,000 devices/s (${fmtInt(mean(together))} with telemetry, ${fmtInt(mean(alone))} alone: ${mark(mean(together) >= 2000)}) with ≤ 20 % telemetry slowdown (${fmt1(slowdown * 100)} %: ${mark(slowdown <= 0.2)}).`,
      '',
      ceiling,
    ].join('\n');
    process.stdout.write(`${section}\n`);
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
