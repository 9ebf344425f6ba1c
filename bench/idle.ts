/**
 * bench/idle: what a hub costs when nothing happens, beside Mosquitto on the same machine: CPU and
 * wake-ups per second (voluntary context switches: each is a thread that slept and was woken) of a
 * real `gatehouse start` (SQLite) and of Mosquitto with TLS, first with no client, then with
 * --devices idle MQTT devices connected over TLS (keepalive 900 s, each subscribed to its C2D topic,
 * nothing sent).
 *
 * A hub on a fleet of quiet devices, or on a laptop, spends most of its life like this; on a VM
 * every wake-up of a sleeping thread also costs the host an exit and a re-entry.
 *
 *   node dist/bench/idle.js [--devices 100] [--seconds 20] [--hub-bin other/bin/gatehouse.js] [--write]
 *
 * --hub-bin runs another build's hub (a before/after comparison).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDevRootCa } from '../src/pki/dev-ca.js';
import { arg, argString, fmt1, procCpuSeconds, sleep, table, writeBenchmarkSection } from './support.js';
import { createDevices, Generator, startMosquitto, type Mosquitto, type Target } from './mqtt-load.js';
import { removeDir, startHubProcess, type HubProcess } from '../test/support/hub-process.js';

const HUB_ADDR = '127.0.66.1';
const MOSQ_ADDR = '127.0.66.2';
const MOSQ_PORT = 18884;
const SECTION_TITLE = '## Idle: CPU and wake-ups of a hub with nothing to do (bench/idle)';

interface ThreadSample {
  cpuS: number;
  wakeups: number;
}

/** Per thread of `pid`: CPU seconds (procCpuSeconds) and voluntary context switches so far. */
function threads(pid: number): Map<string, ThreadSample> {
  const out = new Map<string, ThreadSample>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const cpuS = procCpuSeconds(pid, Number(tid));
      // A thread that ended between the listing and the reads is left out.
      if (Number.isNaN(cpuS)) continue;
      out.set(tid, { cpuS, wakeups: Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0) });
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

interface Idle {
  /** % of one core, the whole process. */
  cpuPct: number;
  /** Wake-ups per second, the whole process. */
  wakeups: number;
  /** The main thread's (tid = pid). */
  mainCpuPct: number;
  mainWakeups: number;
  threads: number;
}

async function measure(pid: number, seconds: number): Promise<Idle> {
  const a = threads(pid);
  await sleep(seconds * 1000);
  const b = threads(pid);
  let cpu = 0;
  let wake = 0;
  for (const [tid, s] of b) {
    const before = a.get(tid) ?? { cpuS: 0, wakeups: 0 };
    cpu += s.cpuS - before.cpuS;
    wake += s.wakeups - before.wakeups;
  }
  const main = b.get(String(pid));
  const mainBefore = a.get(String(pid));
  return {
    cpuPct: (100 * cpu) / seconds,
    wakeups: wake / seconds,
    mainCpuPct: main === undefined || mainBefore === undefined ? NaN : (100 * (main.cpuS - mainBefore.cpuS)) / seconds,
    mainWakeups: main === undefined || mainBefore === undefined ? NaN : (main.wakeups - mainBefore.wakeups) / seconds,
    threads: b.size,
  };
}

async function main(): Promise<void> {
  const nDevices = arg('devices', 100);
  const seconds = arg('seconds', 20);
  const dir = mkdtempSync(join(tmpdir(), 'gh-bench-idle-'));
  let hub: HubProcess | undefined;
  let mosq: Mosquitto | undefined;
  const gens: Generator[] = [];
  try {
    const bin = argString('hub-bin');
    hub = await startHubProcess({ address: HUB_ADDR, dataDir: join(dir, 'hub'), useTestCa: false, extraArgs: ['--max-connections-per-address', '0'], ...(bin === undefined ? {} : { bin }) });
    const hubCa = readFileSync(hub.caFile, 'utf8');
    const deviceKey = randomBytes(32).toString('base64');
    await createDevices(hub, hubCa, nDevices, deviceKey, []);
    const ca = await createDevRootCa({ commonName: 'bench-idle CA' });
    const mosqPassword = randomBytes(12).toString('hex');
    mosq = await startMosquitto(dir, ca, 10, mosqPassword, { address: MOSQ_ADDR, port: MOSQ_PORT });
    const hubPid = hub.proc.pid ?? 0;
    const mosqPid = mosq.proc.pid ?? 0;

    // Let start-up work (retention's first pass, the first GCs) finish.
    await sleep(5000);
    const bare = await Promise.all([measure(hubPid, seconds), measure(mosqPid, seconds)]);

    const targets: Array<[string, Target]> = [
      ['Gatehouse', { host: HUB_ADDR, port: 8883, caPem: hubCa, auth: { kind: 'sas', hubHost: HUB_ADDR, key: deviceKey } }],
      ['Mosquitto', { host: MOSQ_ADDR, port: MOSQ_PORT, caPem: ca.certPem, auth: { kind: 'password', username: 'bench', password: mosqPassword } }],
    ];
    const opened: number[] = [];
    for (const [name, target] of targets) {
      // A generator each: a generator's idle-open replaces the devices it keeps.
      const gen = Generator.start();
      gens.push(gen);
      const o = await gen.call<{ opened: number; errors: number; firstError?: string }>({ kind: 'idle-open', target, count: nDevices, offset: 0, concurrency: 16 });
      if (o.errors > 0) throw new Error(`${name}: ${o.errors} of ${nDevices} devices failed to connect: ${o.firstError ?? ''}`);
      opened.push(o.opened);
    }
    await sleep(5000);
    const connected = await Promise.all([measure(hubPid, seconds), measure(mosqPid, seconds)]);
    for (const gen of gens) await gen.call({ kind: 'idle-close' });

    const row = (name: string, what: string, m: Idle) => [name, what, `${fmt1(m.cpuPct)} %`, fmt1(m.wakeups), `${fmt1(m.mainCpuPct)} % / ${fmt1(m.mainWakeups)}`, String(m.threads)];
    const rows = [
      row('Gatehouse', 'no client', bare[0] as Idle),
      row('Mosquitto', 'no client', bare[1] as Idle),
      row('Gatehouse', `${opened[0] ?? 0} idle TLS devices`, connected[0] as Idle),
      row('Mosquitto', `${opened[1] ?? 0} idle TLS devices`, connected[1] as Idle),
    ];
    const section = [
      SECTION_TITLE,
      '',
      `Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, Gatehouse on SQLite and Mosquitto ${mosq.version} with TLS, side by side,`,
      `${seconds} s each after 5 s to settle. Wake-ups are voluntary context switches (a thread that slept and was woken), summed over the process's threads; the main thread's alone in the last column.`,
      '',
      table(['server', 'clients', 'CPU (% of a core)', 'wake-ups / s', 'main thread: CPU / wake-ups per s', 'threads'], rows),
    ].join('\n');
    process.stdout.write(`${section}\n`);
    if (process.argv.includes('--write')) writeBenchmarkSection(SECTION_TITLE, section);
  } finally {
    for (const gen of gens) gen.stop();
    mosq?.proc.kill('SIGTERM');
    await hub?.stop();
    removeDir(dir);
  }
}

await main();
