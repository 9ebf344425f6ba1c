/**
 * bench/registry: device create+get per second against a real `gatehouse start`, through the
 * unmodified azure-iothub Registry and through a raw keep-alive HTTPS client, on SQLite and on
 * PostgreSQL. A benchmark, not a test: it prints a table and, with --write, updates
 * docs/benchmarks.md. Bounded: N devices per run, fixed concurrency, loopback only.
 *
 *   node dist/bench/registry.js [--devices 2000] [--concurrency 16] [--write]
 *
 * PostgreSQL profile (raw HTTPS only): alternated runs of one or more hub builds and pool sizes,
 * with the CPU per registry op of the hub, of its PostgreSQL backends (/proc, found by
 * application_name in pg_stat_activity) and of the load generator, and the load average:
 *
 *   node dist/bench/registry.js --postgres-profile [--builds before=/path/to/other/checkout,after=.]
 *     [--pool-sizes 10] [--rounds 2] [--devices 3000] [--concurrency 16] [--write]
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:https';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { generateSasToken } from '../src/auth/sas.js';
import { arg, argString, machineBusySeconds, percentile, procCpuSeconds, writeBenchmarkSection } from './support.js';
import { removeDir, ROOT, startHubProcess, type HubProcess } from '../test/support/hub-process.js';

interface WorkerResult {
  client: 'azure-iothub' | 'raw https';
  devices: number;
  seconds: number;
  pairsPerSecond: number;
  opsPerSecond: number;
  p50ms: number;
  p99ms: number;
  /** CPU-seconds the load generator (this worker process) spent in the measured run. */
  clientCpuSeconds: number;
}

async function runPool(n: number, concurrency: number, op: (i: number) => Promise<void>): Promise<{ seconds: number; latencies: number[] }> {
  const latencies: number[] = [];
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) {
        const t = performance.now();
        await op(i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { seconds: (performance.now() - start) / 1000, latencies: latencies.sort((a, b) => a - b) };
}

function summarize(client: WorkerResult['client'], n: number, r: { seconds: number; latencies: number[] }, cpu: NodeJS.CpuUsage): WorkerResult {
  return {
    clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
    client,
    devices: n,
    seconds: Number(r.seconds.toFixed(2)),
    pairsPerSecond: Math.round(n / r.seconds),
    opsPerSecond: Math.round((2 * n) / r.seconds),
    p50ms: Number(percentile(r.latencies, 50).toFixed(2)),
    p99ms: Number(percentile(r.latencies, 99).toFixed(2)),
  };
}

/** Worker: runs in a child process whose NODE_EXTRA_CA_CERTS trusts the hub under test. */
async function worker(kind: 'sdk' | 'raw', cs: string, n: number, concurrency: number, prefix: string): Promise<WorkerResult> {
  if (kind === 'sdk') {
    const { Registry } = (await import('azure-iothub')).default;
    const registry = Registry.fromConnectionString(cs);
    const cpu0 = process.cpuUsage();
    const r = await runPool(n, concurrency, async (i) => {
      const id = `${prefix}-${i}`;
      await registry.create({ deviceId: id });
      await registry.get(id);
    });
    return summarize('azure-iothub', n, r, process.cpuUsage(cpu0));
  }
  const host = /HostName=([^;]+)/.exec(cs)?.[1] ?? '';
  const key = /SharedAccessKey=([^;]+)/.exec(cs)?.[1] ?? '';
  const token = generateSasToken({ resource: host, key, keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 3600 });
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const call = (method: string, path: string, body?: string) =>
    new Promise<void>((resolve, reject) => {
      const req = request(
        {
          host,
          port: 443,
          method,
          path: `${path}?api-version=2021-04-12`,
          agent,
          headers: { authorization: token, ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }) },
        },
        (res) => {
          res.resume();
          res.on('end', () => ((res.statusCode ?? 500) < 300 ? resolve() : reject(new Error(`HTTP ${String(res.statusCode)}`))));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const cpu0 = process.cpuUsage();
  const r = await runPool(n, concurrency, async (i) => {
    const id = `${prefix}-${i}`;
    await call('PUT', `/devices/${id}`, JSON.stringify({ deviceId: id }));
    await call('GET', `/devices/${id}`);
  });
  agent.destroy();
  return summarize('raw https', n, r, process.cpuUsage(cpu0));
}

function runWorker(hub: HubProcess, kind: 'sdk' | 'raw', n: number, concurrency: number): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(ROOT, 'dist/bench/registry.js'), '--worker', kind, '--cs', hub.connectionString, '--devices', String(n), '--concurrency', String(concurrency), '--prefix', `${kind}-${randomBytes(3).toString('hex')}`],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: hub.caFile }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as WorkerResult) : reject(new Error(`worker exited ${String(code)}`))));
  });
}

async function main(): Promise<void> {
  const wi = process.argv.indexOf('--worker');
  const n = arg('devices', 2000);
  const concurrency = arg('concurrency', 16);
  if (wi >= 0) {
    const kind = process.argv[wi + 1] === 'sdk' ? 'sdk' : 'raw';
    const cs = process.argv[process.argv.indexOf('--cs') + 1] ?? '';
    const prefix = process.argv[process.argv.indexOf('--prefix') + 1] ?? 'bench';
    process.stdout.write(JSON.stringify(await worker(kind, cs, n, concurrency, prefix)));
    return;
  }
  if (process.argv.includes('--postgres-profile')) {
    await postgresProfile(n, concurrency);
    return;
  }

  const pgUrl = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `gh_bench_${randomBytes(4).toString('hex')}`;
  const rows: Array<WorkerResult & { store: string }> = [];
  for (const store of ['sqlite', 'postgres'] as const) {
    const url = new URL(pgUrl);
    url.searchParams.set('schema', schema);
    const hub = await startHubProcess({
      address: store === 'sqlite' ? '127.0.30.1' : '127.0.30.2',
      useTestCa: false,
      extraArgs: store === 'postgres' ? ['--database-url', url.toString()] : [],
    });
    try {
      // Warm-up (TLS sessions, JIT, statement caches), not counted.
      await runWorker(hub, 'raw', 200, concurrency);
      for (const kind of ['sdk', 'raw'] as const) rows.push({ store, ...(await runWorker(hub, kind, n, concurrency)) });
    } finally {
      await hub.stop();
      removeDir(hub.dataDir);
    }
  }
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.end();

  const azure = 5000 / 60;
  const header = `| store | client | devices | create+get pairs/s | registry ops/s | × Azure S3 unit (83.3 ops/s) | p50 pair ms | p99 pair ms |`;
  const lines = rows.map(
    (r) =>
      `| ${r.store} | ${r.client} | ${r.devices} | ${r.pairsPerSecond} | ${r.opsPerSecond} | ${(r.opsPerSecond / azure).toFixed(0)}× | ${r.p50ms} | ${r.p99ms} |`,
  );
  const table = [header, '|---|---|---|---|---|---|---|---|', ...lines].join('\n');
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const pgVersion = spawnSync('psql', ['--version'], { encoding: 'utf8' }).stdout.trim();
  const section = `## Registry: device create + get (bench/registry)

Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpu}, Node ${process.version}, ${pgVersion || 'PostgreSQL'};
hub and clients on one machine over loopback TLS 1.3, ${concurrency} requests in flight, every
device created (PUT /devices/{id}) and read back (GET). One "registry op" is one call, as Azure
counts them. Azure IoT Hub S3 allows 5,000 registry operations per minute per unit
(83.3/s; *IoT Hub quotas and throttling*).

${table}

Reading it: the azure-iothub rows include the SDK's own cost (a fresh SAS token per call, its
request pipeline) on the same two cores the hub uses; the raw rows reuse one token over keep-alive
connections and show the hub's ceiling on this machine.
`;
  process.stdout.write(`${section}\n`);
  if (process.argv.includes('--write')) {
    writeBenchmarkSection('## Registry: device create + get', section);
  }
}

// ---------------------------------------------------------------- PostgreSQL profile

interface ProfileRow {
  round: number;
  build: string;
  pool: string;
  r: WorkerResult;
  hubUs: number;
  pgUs: number;
  clientUs: number;
  machineUs: number;
  load1: number;
}

/** CPU-seconds of every PostgreSQL backend whose application_name is `tag`, by pid. */
async function backendCpu(admin: pg.Client, tag: string): Promise<Map<number, number>> {
  const res = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [tag]);
  return new Map(res.rows.map((r) => [r.pid, procCpuSeconds(r.pid)]));
}

function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  // A backend opened during the run started from zero; one closed during it is lost (none are: the pool stays busy).
  for (const [pid, s] of after) sum += s - (before.get(pid) ?? 0);
  return sum;
}

async function postgresProfile(n: number, concurrency: number): Promise<void> {
  const pgUrl = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const builds = (argString('builds') ?? `this=${ROOT}`).split(',').map((b) => {
    const [label = '', dir = ROOT] = b.split('=');
    return { label, bin: join(resolve(dir), 'bin', 'gatehouse.js') };
  });
  const pools = (argString('pool-sizes') ?? 'default').split(',');
  const rounds = arg('rounds', 2);
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  const rows: ProfileRow[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const pool of pools) {
        for (const build of builds) {
          const schema = `gh_bench_${randomBytes(4).toString('hex')}`;
          const url = new URL(pgUrl);
          url.searchParams.set('schema', schema);
          url.searchParams.set('application_name', schema);
          if (pool !== 'default') url.searchParams.set('pool_size', pool);
          const hub = await startHubProcess({ address: '127.0.133.1', useTestCa: false, bin: build.bin, extraArgs: ['--database-url', url.toString()] });
          try {
            await runWorker(hub, 'raw', 300, concurrency);
            const pid = hub.proc.pid ?? 0;
            const [hub0, pg0, m0] = [procCpuSeconds(pid), await backendCpu(admin, schema), machineBusySeconds()];
            const r = await runWorker(hub, 'raw', n, concurrency);
            const [hub1, pg1, m1] = [procCpuSeconds(pid), await backendCpu(admin, schema), machineBusySeconds()];
            const ops = 2 * n;
            const us = (s: number) => Math.round((s * 1e6) / ops);
            const row = { round, build: build.label, pool, r, hubUs: us(hub1 - hub0), pgUs: us(cpuDelta(pg0, pg1)), clientUs: us(r.clientCpuSeconds), machineUs: us(m1 - m0), load1: loadavg()[0] ?? 0 };
            rows.push(row);
            process.stderr.write(`${profileLine(row)}\n`);
          } finally {
            await hub.stop();
            removeDir(hub.dataDir);
            await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
          }
        }
      }
    }
  } finally {
    await admin.end();
  }
  const table = [
    '| round | build | pool | ops/s | p50 pair ms | p99 pair ms | hub µs/op | PostgreSQL backends µs/op | load generator µs/op | whole machine µs/op | load avg 1 min |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(profileLine),
  ].join('\n');
  process.stdout.write(`${table}\n`);
  if (process.argv.includes('--write')) {
    writeBenchmarkSection('## Registry on PostgreSQL (profile)', `## Registry on PostgreSQL (profile)\n\n${table}\n`);
  }
}

function profileLine(x: ProfileRow): string {
  return `| ${x.round} | ${x.build} | ${x.pool} | ${x.r.opsPerSecond} | ${x.r.p50ms} | ${x.r.p99ms} | ${x.hubUs} | ${x.pgUs} | ${x.clientUs} | ${x.machineUs} | ${x.load1.toFixed(2)} |`;
}

await main();
