/**
 * bench/dps: device provisioning registrations per second against a real `gatehouse start`, over
 * the DPS MQTT topic API (wire doc §4.1). A benchmark, not a test: it prints a table and, with
 * --write, replaces its section in docs/benchmarks.md.
 *
 * One symmetric-key enrollment group is created through the DPS service REST API (empty keys, so
 * the hub generates them); then N distinct devices `bench-<n>` register with keys derived from the
 * group key, each a full flow on its own connection: TLS handshake, CONNECT, SUBSCRIBE
 * `$dps/registrations/res/#`, PUBLISH `$dps/registrations/PUT/iotdps-register/?$rid=`, the 200
 * answer with status `assigned`, UNSUBSCRIBE/UNSUBACK, DISCONNECT. The load generator is a child
 * process speaking MQTT with mqtt-packet over node:tls (not the provisioning SDK, to keep client
 * cost low); device tokens are computed before the measured window. Bounded: N registrations per
 * concurrency level, a deadline per run, loopback only (127.0.61.1).
 *
 *   node dist/bench/dps.js [--devices 1000] [--concurrency 16,32] [--cpu-prof DIR] [--write]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { generateSasToken } from '../src/auth/sas.js';
import { arg, argString, percentile, procCpuSeconds, machineBusySeconds, writeBenchmarkSection, PROFILER_PRELOAD } from './support.js';
import { deriveDeviceKey } from '../src/dps/registration-service.js';
import { cli, removeDir, ROOT, startHubProcess, type HubProcess } from '../test/support/hub-process.js';

const HUB_ADDR = '127.0.61.1';
const SECTION_TITLE = '## Provisioning: registrations per second (bench/dps)';
const GROUP_ID = 'bench-group';
const AZURE_PER_SECOND = 1000 / 60;
const GOAL_PER_SECOND = 500;
const RUN_DEADLINE_S = 45;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------- load generator side

interface WorkerSpec {
  host: string;
  caFile: string;
  idScope: string;
  groupKey: string;
  first: number;
  count: number;
  concurrency: number;
  prefix: string;
}

interface WorkerResult {
  attempted: number;
  ok: number;
  errors: number;
  firstError: string | undefined;
  seconds: number;
  p50ms: number;
  p99ms: number;
  genCpuS: number;
  protocol: string;
}

class Wire {
  readonly #queue: Packet[] = [];
  readonly #waiters: Array<(p: Packet | undefined) => void> = [];
  closed = false;
  readonly closedP: Promise<void>;

  constructor(readonly socket: TLSSocket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: Packet) => {
      const w = this.#waiters.shift();
      if (w !== undefined) w(p);
      else this.#queue.push(p);
    });
    parser.on('error', () => socket.destroy());
    socket.on('data', (c: Buffer) => parser.parse(c));
    socket.on('error', () => undefined);
    this.closedP = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        for (const w of this.#waiters.splice(0)) w(undefined);
        resolve();
      }),
    );
  }

  send(p: Packet): void {
    this.socket.write(mqttPacket.generate(p));
  }

  next(timeoutMs = 10_000): Promise<Packet | undefined> {
    const q = this.#queue.shift();
    if (q !== undefined) return Promise.resolve(q);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      const w = (p: Packet | undefined) => {
        clearTimeout(t);
        resolve(p);
      };
      const t = setTimeout(() => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new Error('no packet in time'));
      }, timeoutMs);
      this.#waiters.push(w);
    });
  }

  /** The next packet that is not a PUBACK (the server PUBACKs the QoS 1 register PUBLISH). */
  async nextNonAck(): Promise<Packet | undefined> {
    for (let i = 0; i < 4; i++) {
      const p = await this.next();
      if (p?.cmd !== 'puback') return p;
    }
    return undefined;
  }
}

const DISCONNECT = mqttPacket.generate({ cmd: 'disconnect' });
const SUBSCRIBE = mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$dps/registrations/res/#', qos: 1 }] });
const UNSUBSCRIBE = mqttPacket.generate({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['$dps/registrations/res/#'] });

function openTls(host: string, ctx: SecureContext): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host, port: 8883, secureContext: ctx });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('TLS handshake timed out'));
    }, 10_000);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.setNoDelay(true);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function waitClose(socket: TLSSocket, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    const t = setTimeout(() => {
      socket.destroy();
      resolve();
    }, ms);
    socket.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** One registration, the whole flow on its own connection; throws unless the answer is 200 + assigned. */
async function registerOnce(host: string, ctx: SecureContext, idScope: string, id: string, token: string, rid: number, proto: { v: string }): Promise<void> {
  const socket = await openTls(host, ctx);
  if (proto.v === '') proto.v = `${socket.getProtocol() ?? ''} ${socket.getCipher().name}`;
  try {
    const wire = new Wire(socket);
    wire.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: id,
      keepalive: 60,
      username: `${idScope}/registrations/${id}/api-version=2019-03-31`,
      password: Buffer.from(token),
    });
    const ca = await wire.next();
    if (ca?.cmd !== 'connack' || ca.returnCode !== 0) throw new Error(ca?.cmd === 'connack' ? `CONNACK ${String(ca.returnCode)}` : 'no CONNACK');
    socket.write(SUBSCRIBE);
    const sa = await wire.next();
    if (sa?.cmd !== 'suback') throw new Error(`${sa?.cmd ?? 'close'} instead of SUBACK`);
    wire.send({
      cmd: 'publish',
      topic: `$dps/registrations/PUT/iotdps-register/?$rid=${rid}`,
      payload: Buffer.from(JSON.stringify({ registrationId: id })),
      qos: 1,
      messageId: 2,
      retain: false,
      dup: false,
    });
    const res = await wire.nextNonAck();
    if (res?.cmd !== 'publish') throw new Error(`${res?.cmd ?? 'close'} instead of the register answer`);
    if (!res.topic.startsWith(`$dps/registrations/res/200/?$rid=${rid}`)) throw new Error(`answer on ${res.topic}: ${Buffer.from(res.payload).toString().slice(0, 200)}`);
    const body = JSON.parse(Buffer.from(res.payload).toString('utf8')) as { status?: string; registrationState?: { status?: string } };
    if (body.status !== 'assigned') throw new Error(`status ${String(body.status)}`);
    socket.write(UNSUBSCRIBE);
    const ua = await wire.nextNonAck();
    if (ua?.cmd !== 'unsuback') throw new Error(`${ua?.cmd ?? 'close'} instead of UNSUBACK`);
    socket.write(DISCONNECT);
    socket.end();
    await waitClose(socket, 5000);
  } finally {
    socket.destroy();
  }
}

async function worker(spec: WorkerSpec): Promise<WorkerResult> {
  const ctx = createSecureContext({ ca: readFileSync(spec.caFile, 'utf8') });
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  // Client-side crypto outside the measured window: derived keys and SAS tokens.
  const devices = Array.from({ length: spec.count }, (_, k) => {
    const id = `${spec.prefix}${spec.first + k}`;
    const key = deriveDeviceKey(spec.groupKey, id);
    return { id, token: generateSasToken({ resource: `${spec.idScope}/registrations/${id}`, key, keyName: 'registration', expiry }) };
  });
  const latencies: number[] = [];
  const proto = { v: '' };
  let next = 0;
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  const deadline = performance.now() + RUN_DEADLINE_S * 1000;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(spec.concurrency, spec.count) }, async () => {
      for (let i = next++; i < spec.count && performance.now() < deadline; i = next++) {
        const d = devices[i];
        if (d === undefined) break;
        const t = performance.now();
        try {
          await registerOnce(spec.host, ctx, spec.idScope, d.id, d.token, i + 1, proto);
          latencies.push(performance.now() - t);
          ok++;
        } catch (err) {
          errors++;
          firstError ??= `${d.id}: ${(err as Error).message}`;
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  latencies.sort((a, b) => a - b);
  return {
    attempted: ok + errors,
    ok,
    errors,
    firstError,
    seconds,
    p50ms: percentile(latencies, 50),
    p99ms: percentile(latencies, 99),
    genCpuS: (c.user + c.system) / 1e6,
    protocol: proto.v,
  };
}

function runWorker(spec: WorkerSpec): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, [join(ROOT, 'dist/bench/dps.js'), '--worker', JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const reap = () => child.kill('SIGKILL');
    process.once('exit', reap);
    const timer = setTimeout(() => child.kill('SIGKILL'), (RUN_DEADLINE_S + 30) * 1000);
    let out = '';
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      process.off('exit', reap);
      if (code === 0) resolve(JSON.parse(out) as WorkerResult);
      else reject(new Error(`load generator exited ${String(code)}`));
    });
  });
}

// ------------------------------------------------------------------------------ REST helpers

function parseConnectionString(cs: string): { host: string; keyName: string; key: string } {
  const get = (k: string) => new RegExp(`(?:^|;)${k}=([^;]+)`).exec(cs)?.[1] ?? '';
  return { host: get('HostName'), keyName: get('SharedAccessKeyName'), key: get('SharedAccessKey') };
}

function httpsCall(caPem: string, cs: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: string }> {
  const { host, keyName, key } = parseConnectionString(cs);
  const token = generateSasToken({ resource: host, key, keyName, expiry: Math.floor(Date.now() / 1000) + 600 });
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port: 443,
        method,
        path,
        ca: caPem,
        headers: { authorization: token, ...(data === undefined ? {} : { 'content-type': 'application/json', 'content-length': data.length }) },
        timeout: 30_000,
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.on('error', reject);
    req.end(data);
  });
}

// ------------------------------------------------------------------------------ profiling


async function stopProfile(dir: string, pid: number, n: number, name: string): Promise<string | undefined> {
  process.kill(pid, 'SIGUSR2');
  const tmp = join(dir, `window-${pid}-${n}.cpuprofile.tmp`);
  for (let i = 0; i < 100; i++) {
    await sleep(100);
    try {
      JSON.parse(readFileSync(tmp, 'utf8'));
      const file = join(dir, `hub-dps-${name}.cpuprofile`);
      renameSync(tmp, file);
      return file;
    } catch {
      // not written (completely) yet
    }
  }
  return undefined;
}

// ------------------------------------------------------------------------------------ main

interface Row extends WorkerResult {
  concurrency: number;
  rate: number;
  serverCpuS: number;
  otherCores: number;
}

async function main(): Promise<void> {
  const wi = process.argv.indexOf('--worker');
  if (wi >= 0) {
    process.stdout.write(JSON.stringify(await worker(JSON.parse(process.argv[wi + 1] ?? '{}') as WorkerSpec)));
    return;
  }
  const n = arg('devices', 1000);
  const levels = (argString('concurrency') ?? '16,32').split(',').map(Number).filter((c) => c > 0);
  const cpuProf = argString('cpu-prof');
  const loadAtStart = loadavg()[0] ?? 0;
  const dir = mkdtempSync(join(tmpdir(), 'gh-bench-dps-'));
  let hubEnv: NodeJS.ProcessEnv | undefined;
  if (cpuProf !== undefined) {
    mkdirSync(cpuProf, { recursive: true });
    const preload = join(dir, 'profiler-preload.mjs');
    writeFileSync(preload, PROFILER_PRELOAD);
    hubEnv = { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}`, GH_BENCH_PROF_DIR: cpuProf };
  }

  let hub: HubProcess | undefined;
  const rows: Row[] = [];
  let warm: WorkerResult | undefined;
  let verified = '';
  try {
    // The service-wide throttle (1,000/min by default, as Azure) would cap the run at 16.7/s.
    hub = await startHubProcess({
      address: HUB_ADDR,
      dataDir: join(dir, 'hub'),
      useTestCa: false,
      extraArgs: ['--dps-registrations-per-minute', '1000000'],
      ...(hubEnv === undefined ? {} : { env: hubEnv }),
    });
    const pid = hub.proc.pid ?? 0;
    const caPem = readFileSync(hub.caFile, 'utf8');
    const info = JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { idScope: string; dpsConnectionString: string };

    const put = await httpsCall(caPem, info.dpsConnectionString, 'PUT', `/enrollmentGroups/${GROUP_ID}?api-version=2021-10-01`, {
      enrollmentGroupId: GROUP_ID,
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } },
      provisioningStatus: 'enabled',
    });
    if (put.status !== 200) throw new Error(`enrollment group: HTTP ${put.status} ${put.body.slice(0, 300)}`);
    const groupKey = (JSON.parse(put.body) as { attestation: { symmetricKey: { primaryKey: string } } }).attestation.symmetricKey.primaryKey;
    if (Buffer.from(groupKey, 'base64').length < 32) throw new Error('no generated group key in the answer');
    process.stderr.write(`bench/dps: hub pid ${pid}, ID scope ${info.idScope}, enrollment group ${GROUP_ID} created\n`);

    const base = { host: HUB_ADDR, caFile: hub.caFile, idScope: info.idScope, groupKey };
    // Warm-up (JIT, statement caches), not counted; its devices are counted in the verification.
    warm = await runWorker({ ...base, first: 0, count: 200, concurrency: 16, prefix: 'warm-' });
    process.stderr.write(`bench/dps: warm-up ${warm.ok}/${warm.attempted} in ${warm.seconds.toFixed(2)} s${warm.firstError === undefined ? '' : `; first error ${warm.firstError}`}\n`);

    let first = 0;
    let profiles = 0;
    for (const concurrency of levels) {
      await sleep(500);
      if (cpuProf !== undefined) process.kill(pid, 'SIGUSR2');
      const s0 = procCpuSeconds(pid);
      const m0 = machineBusySeconds();
      const r = await runWorker({ ...base, first, count: n, concurrency, prefix: 'bench-' });
      const serverCpuS = procCpuSeconds(pid) - s0;
      const busyS = machineBusySeconds() - m0;
      if (cpuProf !== undefined) {
        const file = await stopProfile(cpuProf, pid, ++profiles, `c${concurrency}`);
        process.stderr.write(`bench/dps: hub CPU profile (concurrency ${concurrency}): ${file ?? 'not written'}\n`);
      }
      first += n;
      // Busy time of other processes, in cores (the window is the generator's, slightly shorter than ours).
      const otherCores = Math.max(0, (busyS - serverCpuS - r.genCpuS) / r.seconds);
      rows.push({ ...r, concurrency, rate: r.ok / r.seconds, serverCpuS, otherCores });
      process.stderr.write(
        `bench/dps: concurrency ${concurrency}: ${r.ok}/${r.attempted} in ${r.seconds.toFixed(2)} s = ${(r.ok / r.seconds).toFixed(0)}/s, p50 ${r.p50ms.toFixed(1)} ms, p99 ${r.p99ms.toFixed(1)} ms, server CPU ${serverCpuS.toFixed(2)} s, generator CPU ${r.genCpuS.toFixed(2)} s, other processes ${otherCores.toFixed(2)} cores${r.firstError === undefined ? '' : `; first error ${r.firstError}`}\n`,
      );
    }

    // Every successful registration must have created its device on the hub.
    const expected = warm.ok + rows.reduce((a, r) => a + r.ok, 0);
    const stats = await httpsCall(caPem, hub.connectionString, 'GET', '/statistics/devices?api-version=2021-04-12');
    const total = stats.status === 200 ? (JSON.parse(stats.body) as { totalDeviceCount: number }).totalDeviceCount : NaN;
    const q = await httpsCall(caPem, hub.connectionString, 'POST', '/devices/query?api-version=2021-04-12', { query: "SELECT COUNT() AS n FROM devices WHERE STARTSWITH(deviceId, 'bench-')" });
    const benchCount = q.status === 200 ? ((JSON.parse(q.body) as Array<{ n: number }>)[0]?.n ?? NaN) : NaN;
    const benchExpected = rows.reduce((a, r) => a + r.ok, 0);
    verified =
      `GET /statistics/devices: ${total} devices on the hub, ${expected} expected (${warm.ok} warm-up + ${benchExpected} measured) — ${total === expected ? 'match' : '**mismatch**'}` +
      (Number.isNaN(benchCount) ? ` (device query: HTTP ${q.status} ${q.body.slice(0, 120)})` : `; \`SELECT COUNT() … WHERE STARTSWITH(deviceId, 'bench-')\`: ${benchCount} — ${benchCount === benchExpected ? 'match' : '**mismatch**'}`);
    process.stderr.write(`bench/dps: ${verified}\n`);
  } finally {
    if (hub !== undefined) await hub.stop();
    removeDir(dir);
  }

  const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  const header = '| concurrency | registrations ok / attempted | registrations/s | p50 / p99 ms per registration | server CPU per registration | server CPU (cores) | load generator CPU (cores, per registration) | other processes (cores) | × Azure (16.7/s per service) | goal ≥ 500/s |';
  const lines = rows.map(
    (r) =>
      `| ${r.concurrency} | ${r.ok} / ${r.attempted} | ${fmt(r.rate, 0)} | ${fmt(r.p50ms)} / ${fmt(r.p99ms)} | ${fmt((r.serverCpuS / Math.max(r.ok, 1)) * 1000, 2)} ms | ${fmt(r.serverCpuS / r.seconds, 2)} | ${fmt(r.genCpuS / r.seconds, 2)} (${fmt((r.genCpuS / Math.max(r.ok, 1)) * 1000, 2)} ms) | ${fmt(r.otherCores, 2)} | ${fmt(r.rate / AZURE_PER_SECOND, 0)}× | ${r.rate >= GOAL_PER_SECOND ? 'met' : '**not met**'} (${fmt(r.rate / GOAL_PER_SECOND, 2)}×) |`,
  );
  const errorNotes = rows.filter((r) => r.errors > 0).map((r) => `- concurrency ${r.concurrency}: ${r.errors} failed registrations, first: ${r.firstError ?? ''}`);
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const section = `${SECTION_TITLE}

Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpu}, Node ${process.version}, Gatehouse on SQLite; hub and load generator
are separate processes on the same cores over loopback (${rows[0]?.protocol ?? 'TLS'}); 1-minute load average at the start: ${loadAtStart.toFixed(2)}.
One symmetric-key enrollment group is created through the DPS service REST API (\`PUT /enrollmentGroups/${GROUP_ID}\`, empty keys, so
the hub generates them); then ${n} distinct devices \`bench-<n>\` per concurrency level register over MQTT on port 8883 with keys
derived from the group key. Each registration is the whole device-side flow on a fresh connection: full TLS handshake (no session
resumption), CONNECT with a \`skn=registration\` SAS token, SUBSCRIBE \`$dps/registrations/res/#\`, QoS 1 PUBLISH to
\`$dps/registrations/PUT/iotdps-register/?$rid=…\`, the \`res/200\` answer with status \`assigned\` (the hub creates the device
before answering), UNSUBSCRIBE/UNSUBACK, DISCONNECT; the latency is that whole flow. The load generator is one Node child process
speaking MQTT with mqtt-packet over node:tls, **not the azure-iot-provisioning-device SDK**, to keep client cost low; device keys and
tokens are computed before the measured window. 200 warm-up registrations (\`warm-<n>\`) run first and are not counted. The hub runs
with **\`--dps-registrations-per-minute 1000000\`** so that the service-wide throttle (default 1,000/min, as Azure's) does not cap the
benchmark. Server CPU is utime+stime of the hub process from /proc/<pid>/stat over the measured window; load generator CPU is its
\`process.cpuUsage()\`; "other processes" is the rest of the machine's busy time from /proc/stat (not this benchmark), in cores. Azure DPS allows 1,000 registrations per minute per service (16.7/s; *DPS limits*).

${header}
|---|---|---|---|---|---|---|---|---|---|
${lines.join('\n')}

Verification: ${verified}.
${errorNotes.length === 0 ? '' : `\n${errorNotes.join('\n')}\n`}`;
  process.stdout.write(`${section}\n`);
  if (process.argv.includes('--write')) {
    writeBenchmarkSection(SECTION_TITLE, section);
  }
}

await main();
