/**
 * bench/scale: many idle TLS MQTT devices on one hub node, against Mosquitto at the same count.
 * A benchmark, not a test: it prints one table and, with --write, replaces its section in
 * docs/benchmarks.md.
 *
 *   1. N SAS devices created through the registry's bulk API (100 per request), then the hub
 *      restarted on the same data so the memory baseline holds no creation garbage.
 *   2. Connect all N (TLS, CONNECT clean session 0, one SUBSCRIBE to the C2D topic) from W client
 *      processes (bench/scale-clients.ts), each from its own loopback source addresses (20,000
 *      connections per address: an address has ~28k ephemeral ports): the time to connect all,
 *      and the hub's RSS per connection (VmRSS after minus before, over the connections).
 *   3. Idle for S seconds, each client sending PINGREQ once per keep-alive period: connections
 *      the hub closed meanwhile (goal 0), pings left unanswered.
 *   4. Reconnect storm: every socket reset at once (a network outage), then every device
 *      reconnects at once from fresh source addresses, retrying a refused attempt after 1-5 s:
 *      the time until all are back, and the refusals by reason (client side, and the hub's
 *      `gatehouse_connections_refused_total`).
 *   5. Mosquitto (TLS, password file) with the same clients and count: its RSS per connection.
 *
 * Needs file descriptors: it re-executes itself under `ulimit -n` (root can raise the hard
 * limit; Node raises its soft limit to the hard one at start), so the hub, Mosquitto and the
 * clients it starts inherit it. The hub runs with `--max-connections-per-address 0` (the default
 * cap, 256 open sockets per address, is for attackers; the clients here are few addresses).
 * Loopback only: the hub on 127.0.132.1, Mosquitto on 127.0.132.2:18883, clients from 127.2.x.y.
 *
 *   node dist/bench/scale.js [--devices 100000] [--idle-seconds 300] [--workers 4] [--keepalive 120]
 *     [--in-flight 64] [--storm-seconds 300] [--no-mosquitto] [--memory-only] [--heap-snapshots DIR] [--write]
 *
 * --memory-only stops after the hub's RSS per connection (one JSON line); --heap-snapshots DIR also
 * writes V8 heap snapshots of the hub before and after connecting.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createDevRootCa } from '../src/pki/dev-ca.js';
import { generateSasToken } from '../src/auth/sas.js';
import { arg, argString, fmt1, fmtInt, mark, procCpuSeconds, ratio, runPool, settle, sleep, stopChild, table, writeBenchmarkSection } from './support.js';
import { deviceId, Generator, httpsCall, parseConnectionString, startMosquitto, type Mosquitto } from './mqtt-load.js';
import type { OpenResult, OpenSpec, ScaleTarget, ScaleTask } from './scale-clients.js';
import { ROOT, removeDir, startHubProcess, type HubProcess } from '../test/support/hub-process.js';
import { PARSER_IDLE_MS } from '../src/protocol/mqtt/packet-reader.js';

const HUB_ADDR = '127.0.132.1';
const MOSQ_ADDR = '127.0.132.2';
const MOSQ_PORT = 18883;
const PER_SOURCE = 20_000;
const SECTION_TITLE = '## 100,000 devices on one node (bench/scale)';
const HUB_ARGS = ['--max-connections-per-address', '0'];
const CLIENTS = join(ROOT, 'dist/bench/scale-clients.js');

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN);
}

function nofileLimit(): number {
  const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m?.[2] === 'unlimited' ? Infinity : Number(m?.[2] ?? 0);
}

/**
 * Re-executes this bench under a higher fd limit when it lacks one (root with CAP_SYS_RESOURCE can
 * raise the hard limit). Where it cannot (a container), a server holds at most the hard limit less
 * its own files: more devices than that is refused here, with the reason.
 */
function ensureFdLimit(need: number, devices: number): void {
  if (nofileLimit() >= need || process.env.GH_SCALE_REEXEC === '1') return;
  if (spawnSync('/bin/sh', ['-c', `ulimit -n ${need}`]).status !== 0) {
    const limit = nofileLimit();
    if (devices > limit - 1000) {
      process.stderr.write(
        `bench/scale: ${devices} connections need ${devices + 1000} open files in the hub and in Mosquitto (one process each); the hard limit here is ${limit} ` +
          `and cannot be raised (no CAP_SYS_RESOURCE). Run with --devices ${limit - 1000} or fewer, or where \`ulimit -n ${need}\` works.\n`,
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

/** Opens every worker's share at once; `phase` picks fresh source addresses (127.2.<phase>.<n>). */
async function openAll(splits: Split[], target: ScaleTarget, phase: number, extra: Pick<OpenSpec, 'inFlight' | 'keepalive' | 'subscribe' | 'retry' | 'deadlineSeconds'>) {
  let addr = 1;
  const t0 = performance.now();
  const results = await Promise.all(
    splits.map((s) => {
      const sources = Array.from({ length: Math.ceil(s.count / PER_SOURCE) }, () => `127.2.${phase}.${addr++}`);
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
async function rssAfterSettling(pid: number): Promise<number> {
  await settle(pid);
  let kb = 0;
  for (let k = 0; k < (2 * PARSER_IDLE_MS) / 1000 + 2; k++) {
    await sleep(1000);
    kb = rssKb(pid);
  }
  return kb;
}

async function main(): Promise<void> {
  const n = arg('devices', 100_000);
  const idleSeconds = arg('idle-seconds', 300);
  const workers = arg('workers', Math.max(2, Math.ceil(n / 25_000)));
  const keepalive = arg('keepalive', 120);
  const inFlight = arg('in-flight', 64);
  const stormSeconds = arg('storm-seconds', 300);
  const withMosquitto = !process.argv.includes('--no-mosquitto');
  const fdNeed = Math.max(n * 2 + 10_000, 50_000);
  ensureFdLimit(fdNeed, n);
  const fdLimit = nofileLimit();

  const load0 = loadavg();
  const dir = mkdtempSync(join(tmpdir(), 'gh-bench-scale-'));
  const deviceKey = randomBytes(32).toString('base64');
  let hub: HubProcess | undefined;
  let mosq: Mosquitto | undefined;
  const gens = Array.from({ length: workers }, () => Generator.start<ScaleTask>(CLIENTS, ['--role', 'worker']));
  const per = Math.ceil(n / workers);
  const splits: Split[] = gens.map((worker, w) => ({ worker, offset: w * per, count: Math.max(0, Math.min(per, n - w * per)) })).filter((s) => s.count > 0);
  const rows: string[][] = [];
  const notes: string[] = [];
  let hubKb = NaN;
  let mosqKb = NaN;
  try {
    // ------------------------------------------------------------ 1. devices, fresh hub
    hub = await startHubProcess({ address: HUB_ADDR, dataDir: join(dir, 'hub'), useTestCa: false, extraArgs: HUB_ARGS });
    const hubCa = readFileSync(hub.caFile, 'utf8');
    const createS = await createDevices(hub, hubCa, n, deviceKey);
    process.stderr.write(`bench/scale: ${fmtInt(n)} devices created in ${fmt1(createS)} s (${fmtInt(n / createS)}/s)\n`);
    await hub.stop();
    const snapshots = argString('heap-snapshots');
    const hubEnv = snapshots === undefined ? undefined : { NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshots}` };
    hub = await startHubProcess({ address: HUB_ADDR, dataDir: hub.dataDir, useTestCa: false, extraArgs: HUB_ARGS, ...(hubEnv === undefined ? {} : { env: hubEnv }) });
    const hubPid = hub.proc.pid ?? 0;
    /** --heap-snapshots DIR: a V8 heap snapshot of the hub before and after the connections, then stop. */
    const snapshot = async (): Promise<void> => {
      if (snapshots === undefined) return;
      const count = () => readdirSync(snapshots).filter((f) => f.endsWith('.heapsnapshot')).length;
      const k = count();
      process.kill(hubPid, 'SIGUSR2');
      for (let i = 0; i < 600 && count() === k; i++) await sleep(500);
      await sleep(2000);
    };
    const hubTarget: ScaleTarget = { host: HUB_ADDR, port: 8883, caPem: hubCa, auth: { kind: 'sas', hubHost: HUB_ADDR, key: deviceKey } };

    // ------------------------------------------------------------ 2. connect all
    await snapshot();
    const before = await rssAfterSettling(hubPid);
    const cpu0 = procCpuSeconds(hubPid);
    const loadConnect = loadavg()[0] ?? 0;
    const c = await openAll(splits, hubTarget, 1, { inFlight, keepalive, subscribe: true, retry: false, deadlineSeconds: 600 });
    const connectCpu = procCpuSeconds(hubPid) - cpu0;
    const after = await rssAfterSettling(hubPid);
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
    const idleCpu0 = procCpuSeconds(hubPid);
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
    const idleCpu = procCpuSeconds(hubPid) - idleCpu0;
    const idleRss = rssKb(hubPid);
    rows.push([
      `Gatehouse: idle ${fmtInt(idleSeconds)} s, keep-alive ${keepalive} s`,
      `${fmtInt(dropped)} dropped`,
      `0 dropped: ${mark(dropped === 0 && c.opened === n)}`,
      `${fmtInt(pings)} PINGREQ, ${fmtInt(pongs)} PINGRESP, ${fmtInt(unanswered)} connections with 2+ unanswered at the end; hub CPU ${fmt1((idleCpu / idleSeconds) * 100)} % of a core; RSS at the end ${fmt1(idleRss / 1024)} MB${dropped > 0 ? `; ${reasons(merge(dropReasons))}` : ''}`,
    ]);

    // ------------------------------------------------------------ 4. reconnect storm
    const refused0 = await hubRefusals(hub, hubCa);
    await Promise.all(splits.map((s) => s.worker.call({ kind: 'drop' })));
    const stormCpu0 = procCpuSeconds(hubPid);
    const s = await openAll(splits, hubTarget, 2, { inFlight: per, keepalive, subscribe: false, retry: true, deadlineSeconds: stormSeconds });
    const stormCpu = procCpuSeconds(hubPid) - stormCpu0;
    const refused = diff(await hubRefusals(hub, hubCa), refused0);
    const refusalCount = Object.values(s.failures).reduce((a, b) => a + b, 0);
    process.stderr.write(`bench/scale: storm ${fmtInt(s.opened)} back in ${fmt1(s.seconds)} s; client failures: ${reasons(s.failures)}; hub refusals: ${reasons(refused)}\n`);
    rows.push([
      'Gatehouse: reconnect storm (all reset, all reconnect at once, retry after 1-5 s)',
      `${fmtInt(s.opened)} back in ${fmt1(s.seconds)} s`,
      '— (report)',
      `${fmtInt(refusalCount)} failed attempts: ${reasons(s.failures)}; hub's refusal counters: ${reasons(refused)}; ${fmtInt(s.gaveUp)} gave up after ${stormSeconds} s; hub CPU ${fmtInt((stormCpu / Math.max(s.opened, 1)) * 1e6)} µs per reconnect`,
    ]);
    const warns = hub.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l));
    if (warns.length > 0) notes.push(`Hub warnings/errors during the run: ${fmtInt(warns.length)} lines; the first: \`${(warns[0] ?? '').slice(0, 300)}\``);
    await Promise.all(splits.map((sp) => sp.worker.call({ kind: 'close' })));
    await hub.stop();
    hub = undefined;

    // ------------------------------------------------------------ 5. Mosquitto at the same count
    if (withMosquitto) {
      const ca = await createDevRootCa({ commonName: 'bench-scale CA' });
      const password = randomBytes(12).toString('hex');
      mosq = await startMosquitto(dir, ca, 10, password, { address: MOSQ_ADDR, port: MOSQ_PORT });
      const mpid = mosq.proc.pid ?? 0;
      await sleep(1000);
      const mBefore = rssKb(mpid);
      const mcpu0 = procCpuSeconds(mpid);
      const m = await openAll(splits, { host: MOSQ_ADDR, port: MOSQ_PORT, caPem: ca.certPem, auth: { kind: 'password', username: 'bench', password } }, 3, {
        inFlight,
        keepalive,
        subscribe: true,
        retry: false,
        deadlineSeconds: 600,
      });
      const mcpu = procCpuSeconds(mpid) - mcpu0;
      const mAfter = await rssAfterSettling(mpid);
      const mHeld = await watchAll(splits);
      mosqKb = (mAfter - mBefore) / Math.max(mHeld.up, 1);
      process.stderr.write(`bench/scale: Mosquitto ${fmtInt(m.opened)} connected in ${fmt1(m.seconds)} s; RSS ${fmtInt(mBefore)} → ${fmtInt(mAfter)} kB = ${fmt1(mosqKb)} KB/conn\n`);
      rows.push([
        `Mosquitto ${mosq.version}: connect all (same clients)`,
        `${fmtInt(m.opened)} in ${fmt1(m.seconds)} s (${fmtInt(m.opened / m.seconds)}/s)`,
        '—',
        `server CPU ${fmtInt((mcpu / Math.max(m.opened, 1)) * 1e6)} µs/conn; failed: ${reasons(m.failures)}`,
      ]);
      const mErr = mosq.stderr().trim();
      if (mErr !== '') notes.push(`Mosquitto said: ${mErr.split('\n').slice(-2).join(' / ').slice(0, 300)}`);
      await Promise.all(splits.map((sp) => sp.worker.call({ kind: 'close' })));
    }
    rows.splice(1, 0, [
      'RSS per idle TLS connection: Gatehouse / Mosquitto',
      `${fmt1(hubKb)} KB / ${fmt1(mosqKb)} KB (${ratio(hubKb, mosqKb)})`,
      `≤ 1.8× Mosquitto: ${Number.isFinite(mosqKb) ? mark(hubKb <= 1.8 * mosqKb) : 'n/a (no Mosquitto run)'}`,
      `hub VmRSS ${fmt1(before / 1024)} → ${fmt1(after / 1024)} MB over the ${fmtInt(held.up)} connections held at the time`,
    ]);
  } finally {
    for (const g of gens) g.stop();
    await stopChild(mosq?.proc);
    if (hub !== undefined) await hub.stop();
    removeDir(dir);
  }

  const section = `${SECTION_TITLE}

Measured ${new Date().toISOString().slice(0, 10)} with \`npm run bench:scale -- --devices ${n} --idle-seconds ${idleSeconds}\` on ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'},
${fmt1(totalmem() / 2 ** 30)} GiB, Node ${process.version}; Gatehouse on SQLite, one node (no \`--workers\`); load average at the start ${load0.map((l) => l.toFixed(2)).join(' / ')}
(other work shared the 2 cores).

${table(['what', 'measured', 'goal', 'detail'], rows)}

Method: ${fmtInt(n)} SAS devices created through the registry's bulk API (100 per request), then the hub restarted on the
same data. ${splits.length} client processes (bench/scale-clients.ts: mqtt-packet over node:tls, no MQTT library; one prebuilt CONNECT
per device, answers read from the fixed header) connect ${fmtInt(per)} devices each, ${inFlight} handshakes in flight per process, each
process from its own loopback source addresses (${fmtInt(PER_SOURCE)} connections per address: an address has ~28k ephemeral ports).
Each connection: TLS 1.3, CONNECT (clean session 0, keep-alive ${keepalive} s, a SAS token), one SUBSCRIBE to the device's C2D topic;
the clients send PINGREQ once per keep-alive period while idle. RSS is VmRSS of the server process (settled, sampled 4 s) after minus
before, over the connections. The storm resets every socket at once (RST, as an outage looks to the hub), then each device
reconnects at once from fresh source addresses, a failed attempt retried after 1-5 s (as the SDKs back off). The hub runs
with \`--max-connections-per-address 0\`: its default cap (256 open sockets per address per port) would refuse all but 256 per
source address (a real deployment behind NAT may need the cap raised too). ${
    fdLimit >= fdNeed
      ? `The open-file limit is raised for every process (\`ulimit -n ${fdNeed}\`; Node raises its soft limit to the hard one).`
      : `Open files: this machine's hard limit is ${fmtInt(fdLimit)} per process and cannot be raised (a container without CAP_SYS_RESOURCE), so no single process here, the hub, Mosquitto or bare node:tls, can hold more than about ${fmtInt(fdLimit - 100)} sockets; the run uses ${fmtInt(n)} devices, and 100,000 on one hub process waits for a machine where \`ulimit -n 200000\` works (the bench raises it itself there).`
  }
${notes.length === 0 ? '' : `\n${notes.map((x) => `- ${x}`).join('\n')}\n`}`;
  process.stdout.write(`${section}\n`);
  if (process.argv.includes('--write')) writeBenchmarkSection(SECTION_TITLE, section);
}

await main();
