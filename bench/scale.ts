/**
 * bench/scale: many idle TLS MQTT devices on one hub node, against Mosquitto at the same count.
 * A benchmark, not a test: it prints one table and, with --write, replaces its section in
 * docs/benchmarks.md.
 *
 *   1. N SAS devices created through the registry's bulk API (100 per request), then the hub
 *      restarted on the same data so the memory baseline holds no creation garbage.
 *   2. Connect all N (TLS, CONNECT clean session 0, one SUBSCRIBE to the C2D topic) from W client
 *      processes (bench/scale-clients.ts), each from its own loopback source addresses (1,000
 *      connections per address, see PER_SOURCE): the time to connect all,
 *      and the hub's RSS per connection (VmRSS after minus before, over the connections).
 *   3. Idle for S seconds, each client sending PINGREQ once per keep-alive period: connections
 *      the hub closed meanwhile (goal 0), pings left unanswered.
 *   4. Reconnect storm: every socket reset at once (a network outage), then every device
 *      reconnects from fresh source addresses, --storm-in-flight attempts at once per client
 *      process (default 1,000: a client process that starts all its devices' handshakes at once
 *      starves on its own CPU and measures itself, not the hub), retrying a refused attempt after 1-5 s:
 *      the time until all are back, and the refusals by reason (client side, and the hub's
 *      `gatehouse_connections_refused_total`).
 *   5. Mosquitto (TLS, password file) with the same clients and count: its RSS per connection.
 *
 * Needs file descriptors: it re-executes itself under `ulimit -n` (root can raise the hard
 * limit; Node raises its soft limit to the hard one at start), so the hub, Mosquitto and the
 * clients it starts inherit it. Where the limit cannot be raised (a container), more devices than
 * one process may hold are spread over processes, as a node would run them there: the hub as
 * `--hub-workers K` worker processes (`gatehouse start --workers K`, on PostgreSQL and NATS, one
 * port), Mosquitto as K instances on K ports, the clients over as many processes; RSS and CPU are
 * then the sums over the primary and its workers (and over the Mosquitto instances). The hub runs with `--max-connections-per-address 0` (the default
 * cap, 256 open sockets per address, is for attackers; the clients here are few addresses).
 * Loopback only: the hub on 127.0.132.1, Mosquitto on 127.0.132.2:18883, clients from 127.2.x.y.
 *
 *   node dist/bench/scale.js [--devices 100000] [--idle-seconds 300] [--workers 4] [--keepalive 120]
 *     [--in-flight 64] [--storm-seconds 300] [--storm-in-flight 1000] [--hub-workers K] [--no-mosquitto] [--memory-only] [--heap-snapshots DIR]
 *     [--cpu-prof DIR] [--write]
 *
 * --memory-only stops after the hub's RSS per connection (one JSON line); --heap-snapshots DIR also
 * writes V8 heap snapshots of the hub before and after connecting; --cpu-prof DIR writes a CPU
 * profile of each hub process over the connect phase.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createDevRootCa } from '../src/pki/dev-ca.js';
import { generateSasToken } from '../src/auth/sas.js';
import { arg, argString, fmt1, fmtInt, mark, procCpuSeconds, PROFILER_PRELOAD, ratio, runPool, settle, sleep, stopChild, table, WindowProfiler, writeBenchmarkSection } from './support.js';
import { pathToFileURL } from 'node:url';
import { deviceId, Generator, httpsCall, parseConnectionString, startMosquitto, type Mosquitto } from './mqtt-load.js';
import type { OpenResult, OpenSpec, ScaleTarget, ScaleTask } from './scale-clients.js';
import { childPids, ROOT, removeDir, startHubProcess, type HubProcess } from '../test/support/hub-process.js';
import { DATABASE_URL, NATS_URL } from '../test/support/cluster.js';
import pg from 'pg';
import { PARSER_IDLE_MS } from '../src/protocol/mqtt/packet-reader.js';

const HUB_ADDR = '127.0.132.1';
const MOSQ_ADDR = '127.0.132.2';
const MOSQ_PORT = 18883;
/**
 * Connections per client source address. Not more: binding a socket to an address with port 0
 * makes the kernel look for a free port among those the address already uses, and at 16,000
 * per address that search took 63 % of a client process's time (a CPU profile of a 100,000 run).
 */
const PER_SOURCE = 1_000;
const SECTION_TITLE = '## 100,000 devices on one node (bench/scale)';
const HUB_ARGS = ['--max-connections-per-address', '0'];
const CLIENTS = join(ROOT, 'dist/bench/scale-clients.js');

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN);
}

/** A server: one process, or a primary with its workers (read each time: a worker may be restarted). */
type Server = () => number[];
const single = (pid: number): Server => () => [pid];
const withChildren = (pid: number): Server => () => [pid, ...childPids(pid)];
const groupRssKb = (s: Server) => s().reduce((kb, pid) => kb + rssKb(pid), 0);
const groupCpuSeconds = (s: Server) => s().reduce((sec, pid) => sec + procCpuSeconds(pid), 0);

function nofileLimit(): number {
  const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m?.[2] === 'unlimited' ? Infinity : Number(m?.[2] ?? 0);
}

/**
 * Re-executes this bench under a higher fd limit when it lacks one (root with CAP_SYS_RESOURCE can
 * raise the hard limit). Where it cannot (a container), a server holds at most the hard limit less
 * its own files: more devices than that is refused here, with the reason.
 */
function ensureFdLimit(need: number, devices: number, processes: number): void {
  if (nofileLimit() >= need || process.env.GH_SCALE_REEXEC === '1') return;
  if (spawnSync('/bin/sh', ['-c', `ulimit -n ${need}`]).status !== 0) {
    const limit = nofileLimit();
    if (Math.ceil(devices / processes) > limit - 1000) {
      process.stderr.write(
        `bench/scale: ${devices} connections over ${processes} server process(es) need ${Math.ceil(devices / processes) + 1000} open files in each; the hard limit here is ${limit} ` +
          `and cannot be raised (no CAP_SYS_RESOURCE). Run with --hub-workers ${Math.ceil(devices / (limit - 2000))}, or where \`ulimit -n ${need}\` works.\n`,
      );
      process.exit(2);
    }
    return;
  }
  process.stderr.write(`bench/scale: raising the open-file limit to ${need} (was ${nofileLimit()})\n`);
  const r = spawnSync('/bin/sh', ['-c', `ulimit -n ${need} && exec "$0" "$@"`, process.execPath, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, GH_SCALE_REEXEC: '1' },
  });
  process.exit(r.status ?? 1);
}

/** Bulk-creates `count` SAS devices, 100 per request (the registry's bulk API), 4 requests in flight. */
async function createDevices(hub: HubProcess, caPem: string, count: number, key: string): Promise<number> {
  const { host, keyName, key: policyKey } = parseConnectionString(hub.connectionString);
  const token = generateSasToken({ resource: host, key: policyKey, keyName, expiry: Math.floor(Date.now() / 1000) + 7200 });
  const agent = new Agent({ keepAlive: true, maxSockets: 4, ca: caPem });
  const auth = { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: key } };
  const t0 = performance.now();
  const r = await runPool(Math.ceil(count / 100), 4, performance.now() + 1_800_000, async (b) => {
    const ids = Array.from({ length: Math.min(100, count - b * 100) }, (_, k) => deviceId(b * 100 + k));
    const body = Buffer.from(JSON.stringify(ids.map((id) => ({ id, importMode: 'create', status: 'enabled', authentication: auth }))));
    const res = await httpsCall(agent, host, token, 'POST', '/devices', body, { 'content-type': 'application/json' });
    if (res.status !== 200) throw new Error(`bulk create: HTTP ${res.status} ${res.body.slice(0, 200)}`);
  });
  agent.destroy();
  if (r.errors > 0 || r.done < Math.ceil(count / 100)) throw new Error(`device creation failed: ${r.firstError ?? 'deadline'}`);
  return (performance.now() - t0) / 1000;
}

/** The hub's refusal counters (`gatehouse_connections_refused_total`) on the mqtt listener. */
async function hubRefusals(hub: HubProcess, caPem: string): Promise<Record<string, number>> {
  const { host, keyName, key } = parseConnectionString(hub.connectionString);
  const token = generateSasToken({ resource: host, key, keyName, expiry: Math.floor(Date.now() / 1000) + 600 });
  const agent = new Agent({ keepAlive: false, ca: caPem });
  try {
    const r = await httpsCall(agent, host, token, 'GET', '/metrics', Buffer.alloc(0), {});
    if (r.status !== 200) process.stderr.write(`bench/scale: GET /metrics: HTTP ${r.status} ${r.body.slice(0, 200)}\n`);
    const out: Record<string, number> = {};
    for (const m of r.body.matchAll(/^gatehouse_connections_refused_total\{([^}]*)\}\s+(\d+)/gm)) {
      const labels = m[1] ?? '';
      if (!/listener="mqtt"/.test(labels)) continue;
      out[/reason="([^"]+)"/.exec(labels)?.[1] ?? '?'] = Number(m[2]);
    }
    return out;
  } catch (err) {
    process.stderr.write(`bench/scale: GET /metrics failed: ${(err as Error).message}\n`);
    return {};
  } finally {
    agent.destroy();
  }
}

const diff = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v - (b[k] ?? 0)]).filter(([, v]) => (v as number) > 0)) as Record<string, number>;

const merge = (rs: Array<Record<string, number>>) =>
  rs.reduce<Record<string, number>>((acc, r) => {
    for (const [k, v] of Object.entries(r)) acc[k] = (acc[k] ?? 0) + v;
    return acc;
  }, {});

const reasons = (r: Record<string, number>) =>
  Object.keys(r).length === 0 ? 'none' : Object.entries(r).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${fmtInt(v)} × ${k}`).join('; ');

interface Split {
  worker: Generator<ScaleTask>;
  offset: number;
  count: number;
}

/** Opens every worker's share at once; `phase` picks fresh source addresses (127.<2+>.<phase>.<n>). */
async function openAll(splits: Split[], targets: ScaleTarget[], phase: number, extra: Pick<OpenSpec, 'inFlight' | 'keepalive' | 'subscribe' | 'retry' | 'deadlineSeconds'>) {
  let addr = 0;
  const t0 = performance.now();
  const results = await Promise.all(
    splits.map((s, i) => {
      const sources = Array.from({ length: Math.ceil(s.count / PER_SOURCE) }, () => {
        const k = addr++;
        return `127.${2 + Math.floor(k / 250)}.${phase}.${(k % 250) + 1}`;
      });
      const target = targets[i % targets.length] as ScaleTarget;
      return s.worker.call<OpenResult>({ kind: 'open', spec: { target, offset: s.offset, count: s.count, sources, ...extra } }, (extra.deadlineSeconds + 180) * 1000);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return {
    seconds,
    opened: results.reduce((n, r) => n + r.opened, 0),
    gaveUp: results.reduce((n, r) => n + r.gaveUp, 0),
    failures: merge(results.map((r) => r.failures)),
    clientCpu: results.reduce((n, r) => n + r.cpuSeconds, 0),
  };
}

type Watch = { up: number; dropped: number; dropReasons: Record<string, number>; pingsSent: number; pongs: number; unanswered: number };
async function watchAll(splits: Split[]) {
  const ws = await Promise.all(splits.map((s) => s.worker.call<Watch>({ kind: 'watch' })));
  return {
    up: ws.reduce((n, w) => n + w.up, 0),
    dropped: ws.reduce((n, w) => n + w.dropped, 0),
    dropReasons: merge(ws.map((w) => w.dropReasons)),
    pingsSent: ws.reduce((n, w) => n + w.pingsSent, 0),
    pongs: ws.reduce((n, w) => n + w.pongs, 0),
    unanswered: ws.reduce((n, w) => n + w.unanswered, 0),
  };
}

/** Idle two of the hub's parser sweeps and 2 s more (the same for Mosquitto), sampling once a second; the last sample. */
async function rssAfterSettling(server: Server): Promise<number> {
  for (const pid of server()) await settle(pid);
  let kb = 0;
  for (let k = 0; k < (2 * PARSER_IDLE_MS) / 1000 + 2; k++) {
    await sleep(1000);
    kb = groupRssKb(server);
  }
  return kb;
}

async function main(): Promise<void> {
  const n = arg('devices', 100_000);
  const idleSeconds = arg('idle-seconds', 300);
  const keepalive = arg('keepalive', 120);
  const inFlight = arg('in-flight', 64);
  const stormSeconds = arg('storm-seconds', 300);
  const stormInFlight = arg('storm-in-flight', 1000);
  const withMosquitto = !process.argv.includes('--no-mosquitto');
  const fdNeed = Math.max(n * 2 + 10_000, 50_000);
  const hardLimit = nofileLimit();
  // Where the limit is too low for one process and cannot be raised, the servers and clients spread.
  const perProcess = hardLimit >= fdNeed || spawnSync('/bin/sh', ['-c', `ulimit -n ${fdNeed}`]).status === 0 ? Infinity : hardLimit - 2000;
  /** Server processes the devices need: the hub's workers, Mosquitto's instances. */
  const spread = Number.isFinite(perProcess) ? Math.ceil(n / perProcess) : 1;
  const hubWorkers = arg('hub-workers', spread);
  const workers = arg('workers', Math.max(2, Math.ceil(n / Math.min(25_000, perProcess))));
  const mosqInstances = spread;
  ensureFdLimit(fdNeed, n, Math.min(hubWorkers, mosqInstances));
  const fdLimit = nofileLimit();
  const cluster = hubWorkers > 1;
  const schema = `gh_bench_scale_${randomBytes(4).toString('hex')}`;
  const databaseUrl = new URL(DATABASE_URL);
  databaseUrl.searchParams.set('schema', schema);
  const hubArgs = cluster ? [...HUB_ARGS, '--workers', String(hubWorkers), '--database-url', databaseUrl.toString(), '--nats-url', NATS_URL] : HUB_ARGS;

  const load0 = loadavg();
  const dir = mkdtempSync(join(tmpdir(), 'gh-bench-scale-'));
  const deviceKey = randomBytes(32).toString('base64');
  let hub: HubProcess | undefined;
  const mosqs: Mosquitto[] = [];
  const gens = Array.from({ length: workers }, () => Generator.start<ScaleTask>(CLIENTS, ['--role', 'worker']));
  const per = Math.ceil(n / workers);
  const splits: Split[] = gens.map((worker, w) => ({ worker, offset: w * per, count: Math.max(0, Math.min(per, n - w * per)) })).filter((s) => s.count > 0);
  const rows: string[][] = [];
  const notes: string[] = [];
  let hubKb = NaN;
  let mosqKb = NaN;
  try {
    // ------------------------------------------------------------ 1. devices, fresh hub
    hub = await startHubProcess({ address: HUB_ADDR, dataDir: join(dir, 'hub'), useTestCa: false, extraArgs: hubArgs });
    const hubCa = readFileSync(hub.caFile, 'utf8');
    const createS = await createDevices(hub, hubCa, n, deviceKey);
    process.stderr.write(`bench/scale: ${fmtInt(n)} devices created in ${fmt1(createS)} s (${fmtInt(n / createS)}/s)\n`);
    await hub.stop();
    const snapshots = argString('heap-snapshots');
    const cpuProf = argString('cpu-prof');
    let hubEnv: NodeJS.ProcessEnv | undefined = snapshots === undefined ? undefined : { NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshots}` };
    if (cpuProf !== undefined) {
      const preload = join(dir, 'profiler-preload.mjs');
      writeFileSync(preload, PROFILER_PRELOAD);
      hubEnv = { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}`, GH_BENCH_PROF_DIR: cpuProf };
    }
    hub = await startHubProcess({ address: HUB_ADDR, dataDir: hub.dataDir, useTestCa: false, extraArgs: hubArgs, ...(hubEnv === undefined ? {} : { env: hubEnv }) });
    const hubPid = hub.proc.pid ?? 0;
    const hubServer = cluster ? withChildren(hubPid) : single(hubPid);
    if (cluster && hubServer().length !== hubWorkers + 1) throw new Error(`expected a primary and ${hubWorkers} workers, found ${hubServer().length} processes`);
    /** --heap-snapshots DIR: a V8 heap snapshot of the hub before and after the connections, then stop. */
    const snapshot = async (): Promise<void> => {
      if (snapshots === undefined) return;
      const count = () => readdirSync(snapshots).filter((f) => f.endsWith('.heapsnapshot')).length;
      const k = count();
      for (const pid of hubServer()) process.kill(pid, 'SIGUSR2');
      for (let i = 0; i < 600 && count() < k + hubServer().length; i++) await sleep(500);
      await sleep(2000);
    };
    const hubTarget: ScaleTarget = { host: HUB_ADDR, port: 8883, caPem: hubCa, auth: { kind: 'sas', hubHost: HUB_ADDR, key: deviceKey } };

    // ------------------------------------------------------------ 2. connect all
    await snapshot();
    const before = await rssAfterSettling(hubServer);
    const cpu0 = groupCpuSeconds(hubServer);
    const loadConnect = loadavg()[0] ?? 0;
    /** --cpu-prof DIR: a CPU profile of each hub process over the connect phase. */
    const profilers = cpuProf === undefined ? [] : hubServer().map((pid, i) => new WindowProfiler(cpuProf, pid, i === 0 ? 'hub' : `hub-worker${i}`));
    for (const p of profilers) p.start();
    const c = await openAll(splits, [hubTarget], 1, { inFlight, keepalive, subscribe: true, retry: false, deadlineSeconds: 600 });
    const connectCpu = groupCpuSeconds(hubServer) - cpu0;
    for (const p of profilers) await p.stop('connect');
    const after = await rssAfterSettling(hubServer);
    // Connections the hub closed since they connected are not in its RSS: count those held now.
    const held = await watchAll(splits);
    hubKb = (after - before) / Math.max(held.up, 1);
    if (held.dropped > 0) notes.push(`${fmtInt(held.dropped)} connections were closed by the hub between connecting and the idle window: ${reasons(held.dropReasons)}`);
    process.stderr.write(`bench/scale: hub ${fmtInt(c.opened)} connected in ${fmt1(c.seconds)} s, failures: ${reasons(c.failures)}; RSS ${fmtInt(before)} → ${fmtInt(after)} kB = ${fmt1(hubKb)} KB/conn\n`);
    if (snapshots !== undefined) await snapshot();
    if (snapshots !== undefined || process.argv.includes('--memory-only')) {
      process.stdout.write(`${JSON.stringify({ devices: n, opened: c.opened, seconds: c.seconds, rssBeforeKb: before, rssAfterKb: after, kbPerConnection: hubKb, hubCpuUsPerConn: (connectCpu / Math.max(c.opened, 1)) * 1e6, load1: loadConnect })}\n`);
      return;
    }
    rows.push([
      'Gatehouse: connect all (TLS + CONNECT + SUBSCRIBE)',
      `${fmtInt(c.opened)} in ${fmt1(c.seconds)} s (${fmtInt(c.opened / c.seconds)}/s)`,
      `all ${fmtInt(n)} within 120 s: ${mark(c.opened === n && c.seconds <= 120)}`,
      `hub CPU ${fmtInt((connectCpu / Math.max(c.opened, 1)) * 1e6)} µs/conn, clients ${fmtInt((c.clientCpu / Math.max(c.opened, 1)) * 1e6)} µs/conn; load ${loadConnect.toFixed(2)}; failed: ${reasons(c.failures)}`,
    ]);

    // ------------------------------------------------------------ 3. idle
    const idleCpu0 = groupCpuSeconds(hubServer);
    const t0 = performance.now();
    let dropped = 0;
    const dropReasons: Array<Record<string, number>> = [];
    let pings = 0;
    let pongs = 0;
    let unanswered = 0;
    while (performance.now() - t0 < idleSeconds * 1000) {
      await sleep(Math.min(30_000, idleSeconds * 1000 - (performance.now() - t0)));
      const w = await watchAll(splits);
      dropped += w.dropped;
      dropReasons.push(w.dropReasons);
      pings += w.pingsSent;
      pongs += w.pongs;
      unanswered = w.unanswered;
      process.stderr.write(`bench/scale: idle ${fmt1((performance.now() - t0) / 1000)} s: ${fmtInt(w.up)} up, ${w.dropped} dropped, ${fmtInt(pings)} pings / ${fmtInt(pongs)} answers\n`);
    }
    const idleCpu = groupCpuSeconds(hubServer) - idleCpu0;
    const idleRss = groupRssKb(hubServer);
    rows.push([
      `Gatehouse: idle ${fmtInt(idleSeconds)} s, keep-alive ${keepalive} s`,
      `${fmtInt(dropped)} dropped`,
      `0 dropped: ${mark(dropped === 0 && c.opened === n)}`,
      `${fmtInt(pings)} PINGREQ, ${fmtInt(pongs)} PINGRESP, ${fmtInt(unanswered)} connections with 2+ unanswered at the end; hub CPU ${fmt1((idleCpu / idleSeconds) * 100)} % of a core; RSS at the end ${fmt1(idleRss / 1024)} MB${dropped > 0 ? `; ${reasons(merge(dropReasons))}` : ''}`,
    ]);

    // ------------------------------------------------------------ 4. reconnect storm
    const refused0 = await hubRefusals(hub, hubCa);
    await Promise.all(splits.map((s) => s.worker.call({ kind: 'drop' })));
    const stormCpu0 = groupCpuSeconds(hubServer);
    const s = await openAll(splits, [hubTarget], 2, { inFlight: Math.min(stormInFlight, per), keepalive, subscribe: false, retry: true, deadlineSeconds: stormSeconds });
    const stormCpu = groupCpuSeconds(hubServer) - stormCpu0;
    const refused = diff(await hubRefusals(hub, hubCa), refused0);
    const refusalCount = Object.values(s.failures).reduce((a, b) => a + b, 0);
    process.stderr.write(`bench/scale: storm ${fmtInt(s.opened)} back in ${fmt1(s.seconds)} s; client failures: ${reasons(s.failures)}; hub refusals: ${reasons(refused)}\n`);
    rows.push([
      `Gatehouse: reconnect storm (all reset, then all reconnect, ${fmtInt(Math.min(stormInFlight, per) * splits.length)} attempts in flight, retry after 1-5 s)`,
      `${fmtInt(s.opened)} back in ${fmt1(s.seconds)} s`,
      '— (report)',
      `${fmtInt(refusalCount)} failed attempts: ${reasons(s.failures)}; hub's refusal counters: ${reasons(refused)}; ${fmtInt(s.gaveUp)} gave up after ${stormSeconds} s; hub CPU ${fmtInt((stormCpu / Math.max(s.opened, 1)) * 1e6)} µs per reconnect`,
    ]);
    const warns = hub.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l));
    if (warns.length > 0) {
      // By event (the log line's `event`, else its message), the most frequent first.
      const byEvent: Record<string, number> = {};
      for (const l of warns) {
        const what = /"event":"([^"]{1,80})"/.exec(l)?.[1] ?? /"msg":"([^"]{1,80})/.exec(l)?.[1] ?? 'unparsed';
        byEvent[what] = (byEvent[what] ?? 0) + 1;
      }
      notes.push(`Hub warnings/errors during the run: ${fmtInt(warns.length)} lines: ${reasons(byEvent)}; the first: \`${(warns[0] ?? '').slice(0, 300)}\``);
    }
    await Promise.all(splits.map((sp) => sp.worker.call({ kind: 'close' })));
    await hub.stop();
    hub = undefined;

    // ------------------------------------------------------------ 5. Mosquitto at the same count
    if (withMosquitto) {
      const ca = await createDevRootCa({ commonName: 'bench-scale CA' });
      const password = randomBytes(12).toString('hex');
      for (let i = 0; i < mosqInstances; i++) {
        const mdir = join(dir, `mosquitto-${i}`);
        mkdirSync(mdir);
        chmodSync(dir, 0o755);
        mosqs.push(await startMosquitto(mdir, ca, 10, password, { address: MOSQ_ADDR, port: MOSQ_PORT + i }));
      }
      const mServer: Server = () => mosqs.map((q) => q.proc.pid ?? 0);
      const mTargets = mosqs.map((_, i): ScaleTarget => ({ host: MOSQ_ADDR, port: MOSQ_PORT + i, caPem: ca.certPem, auth: { kind: 'password', username: 'bench', password } }));
      await sleep(1000);
      const mBefore = groupRssKb(mServer);
      const mcpu0 = groupCpuSeconds(mServer);
      const m = await openAll(splits, mTargets, 3, {
        inFlight,
        keepalive,
        subscribe: true,
        retry: false,
        deadlineSeconds: 600,
      });
      const mcpu = groupCpuSeconds(mServer) - mcpu0;
      const mAfter = await rssAfterSettling(mServer);
      const mHeld = await watchAll(splits);
      mosqKb = (mAfter - mBefore) / Math.max(mHeld.up, 1);
      process.stderr.write(`bench/scale: Mosquitto ${fmtInt(m.opened)} connected in ${fmt1(m.seconds)} s; RSS ${fmtInt(mBefore)} → ${fmtInt(mAfter)} kB = ${fmt1(mosqKb)} KB/conn\n`);
      rows.push([
        `Mosquitto ${mosqs[0]?.version ?? '?'}${mosqs.length > 1 ? `, ${mosqs.length} instances` : ''}: connect all (same clients)`,
        `${fmtInt(m.opened)} in ${fmt1(m.seconds)} s (${fmtInt(m.opened / m.seconds)}/s)`,
        '—',
        `server CPU ${fmtInt((mcpu / Math.max(m.opened, 1)) * 1e6)} µs/conn; failed: ${reasons(m.failures)}`,
      ]);
      const mErr = mosqs.map((q) => q.stderr().trim()).filter(Boolean).join('\n');
      if (mErr !== '') notes.push(`Mosquitto said: ${mErr.split('\n').slice(-2).join(' / ').slice(0, 300)}`);
      await Promise.all(splits.map((sp) => sp.worker.call({ kind: 'close' })));
    }
    rows.splice(1, 0, [
      'RSS per idle TLS connection: Gatehouse / Mosquitto',
      `${fmt1(hubKb)} KB / ${fmt1(mosqKb)} KB (${ratio(hubKb, mosqKb)})`,
      `≤ 1.8× Mosquitto: ${Number.isFinite(mosqKb) ? mark(hubKb <= 1.8 * mosqKb) : 'n/a (no Mosquitto run)'}`,
      `hub VmRSS${cluster ? ` (primary + ${hubWorkers} workers)` : ''} ${fmt1(before / 1024)} → ${fmt1(after / 1024)} MB over the ${fmtInt(held.up)} connections held at the time`,
    ]);
  } finally {
    for (const g of gens) g.stop();
    for (const q of mosqs) await stopChild(q.proc);
    if (hub !== undefined) await hub.stop();
    removeDir(dir);
    if (cluster) {
      const db = new pg.Client({ connectionString: DATABASE_URL });
      await db.connect();
      await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await db.end();
    }
  }

  const section = `${SECTION_TITLE}

Measured ${new Date().toISOString().slice(0, 10)} with \`npm run bench:scale -- --devices ${n} --idle-seconds ${idleSeconds}${stormSeconds === 300 ? '' : ` --storm-seconds ${stormSeconds}`}${stormInFlight === 1000 ? '' : ` --storm-in-flight ${stormInFlight}`}${cluster ? ` --hub-workers ${hubWorkers}` : ''}\` on ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'},
${fmt1(totalmem() / 2 ** 30)} GiB, Node ${process.version}; Gatehouse ${cluster ? `on PostgreSQL and NATS, one node of ${hubWorkers} worker processes sharing the ports (\`--workers ${hubWorkers}\`)` : 'on SQLite, one node (no `--workers`)'}; load average at the start ${load0.map((l) => l.toFixed(2)).join(' / ')}
(other work shared the 2 cores).

${table(['what', 'measured', 'goal', 'detail'], rows)}

Method: ${fmtInt(n)} SAS devices created through the registry's bulk API (100 per request), then the hub restarted on the
same data. ${splits.length} client processes (bench/scale-clients.ts: mqtt-packet over node:tls, no MQTT library; one prebuilt CONNECT
per device, answers read from the fixed header) connect ${fmtInt(per)} devices each, ${inFlight} handshakes in flight per process, each
process from its own loopback source addresses (${fmtInt(PER_SOURCE)} connections per address: binding to an address that holds many more makes the kernel's search for a free port the clients' largest cost).
Each connection: TLS 1.3, CONNECT (clean session 0, keep-alive ${keepalive} s, a SAS token), one SUBSCRIBE to the device's C2D topic;
the clients send PINGREQ once per keep-alive period while idle. RSS is VmRSS of the server's processes (settled, sampled 4 s) after minus
before, over the connections. The storm resets every socket at once (RST, as an outage looks to the hub), then every device
reconnects from fresh source addresses, ${fmtInt(Math.min(stormInFlight, per))} attempts at once per client process (${fmtInt(Math.min(stormInFlight, per) * splits.length)} in all; a client
process that began all its devices' handshakes at once would starve on its own CPU, its timeouts the clients' and not the
hub's), a failed attempt retried after 1-5 s (as the SDKs back off). The hub runs
with \`--max-connections-per-address 0\`: its default cap (256 open sockets per address per port) would refuse all but 256 per
source address (a real deployment behind NAT may need the cap raised too). ${
    fdLimit >= fdNeed
      ? `The open-file limit is raised for every process (\`ulimit -n ${fdNeed}\`; Node raises its soft limit to the hard one).`
      : `Open files: this machine's hard limit is ${fmtInt(fdLimit)} per process and cannot be raised (a container without CAP_SYS_RESOURCE), so no single process here, the hub, Mosquitto or bare node:tls, can hold more than about ${fmtInt(fdLimit - 100)} sockets. ${
          cluster
            ? `So the node is ${hubWorkers} hub worker processes sharing the ports (\`gatehouse start --workers ${hubWorkers}\`, which needs PostgreSQL and NATS: the workers share nothing in memory), and Mosquitto, which has no workers, runs as ${mosqInstances} instances on ${mosqInstances} ports, each client process using one; RSS and CPU are summed over the hub's primary and workers, and over the Mosquitto instances. Where \`ulimit -n\` can be raised the bench does so and runs one hub process on SQLite.`
            : `The run uses ${fmtInt(n)} devices; more are spread over hub worker processes (\`--hub-workers\`).`
        }`
  }
${notes.length === 0 ? '' : `\n${notes.map((x) => `- ${x}`).join('\n')}\n`}`;
  process.stdout.write(`${section}\n`);
  if (process.argv.includes('--write')) writeBenchmarkSection(SECTION_TITLE, section);
}

await main();
