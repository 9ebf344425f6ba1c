/**
 * What every benchmark in bench/ shares: argument parsing, percentiles, CPU readings from /proc,
 * and writing its own section into docs/benchmarks.md without touching the others.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ROOT } from '../test/support/hub-process.js';

/** `--name N`: a positive number, or the fallback. */
export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

export function argString(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** utime + stime of a process (all threads), or of one of its threads, in seconds. */
export function procCpuSeconds(pid: number, tid?: number): number {
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** Busy CPU-seconds of the whole machine (all cores) from /proc/stat. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
  return busy / CLK_TCK;
}

/** Replaces (or appends) the section starting with `title` in docs/benchmarks.md. */
export function writeBenchmarkSection(title: string, section: string): void {
  const file = join(ROOT, 'docs', 'benchmarks.md');
  let doc = '';
  try {
    doc = readFileSync(file, 'utf8');
  } catch {
    doc = '# Benchmarks\n\nNumbers measured with the scripts in `bench/`; each section says how.\n\n';
  }
  const start = doc.indexOf(title);
  if (start >= 0) {
    const end = doc.indexOf('\n## ', start + 5);
    doc = doc.slice(0, start) + section.trimEnd() + '\n' + (end >= 0 ? doc.slice(end) : '');
  } else {
    doc = `${doc.trimEnd()}\n\n${section.trimEnd()}\n`;
  }
  writeFileSync(file, doc);
}

/** A preload (--import) that runs the inspector's sampling profiler between two SIGUSR2s. */
export const PROFILER_PRELOAD = `import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
const dir = process.env.GH_BENCH_PROF_DIR;
let session, n = 0;
process.on('SIGUSR2', () => {
  if (session === undefined) {
    session = new Session();
    session.connect();
    session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 200 }, () => session.post('Profiler.start')));
    return;
  }
  const s = session;
  session = undefined;
  s.post('Profiler.stop', (err, r) => {
    if (!err) writeFileSync(dir + '/window-' + process.pid + '-' + ++n + '.cpuprofile.tmp', JSON.stringify(r.profile));
    s.disconnect();
  });
});
`;

// ---------------------------------------------------------------- processes, pools, tables

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export async function runPool(n: number, concurrency: number, deadline: number, op: (i: number) => Promise<void>): Promise<{ done: number; errors: number; firstError: string | undefined }> {
  let next = 0;
  let done = 0;
  let errors = 0;
  let firstError: string | undefined;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      for (let i = next++; i < n && performance.now() < deadline; i = next++) {
        try {
          await op(i);
          done++;
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
        }
      }
    }),
  );
  return { done, errors, firstError };
}

/** Run time and run-queue wait of one thread, in seconds (/proc/<pid>/task/<tid>/schedstat). */
export function schedSeconds(pid: number, tid: number): { run: number; wait: number } {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return { run: (run ?? NaN) / 1e9, wait: (wait ?? NaN) / 1e9 };
  } catch {
    return { run: NaN, wait: NaN };
  }
}

export function waitPort(host: string, port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = netConnect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`${host}:${port} did not open in ${ms} ms`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

export function waitReady(child: ChildProcess, what: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${what} not ready in ${ms} ms: ${out}`)), ms);
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${what} exited with ${String(code)}: ${out}`));
    });
  });
}

/** A child this process started dies with it, even when the run ends on an exception. */
export function reapOnExit(child: ChildProcess): void {
  const reap = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', reap);
  child.once('exit', () => process.off('exit', reap));
}

export function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, 5000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
export const fmt1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
export const fmt2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
export const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
export const mark = (ok: boolean) => (ok ? 'met' : '**not met**');

export function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** Parent pid of a process (field 4 of /proc/<pid>/stat), or undefined once it is gone. */
function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** Live pids from /proc, with their command names (`comm`). */
function allProcesses(): Array<{ pid: number; comm: string }> {
  const out: Array<{ pid: number; comm: string }> = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      out.push({ pid: Number(name), comm: readFileSync(`/proc/${name}/comm`, 'utf8').trim() });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * A process and all its descendants: a `--workers` hub is a primary that forks its workers, and
 * /proc/<primary>/stat counts none of their CPU while they live (cutime only counts children that exited).
 */
export function processTree(root: number): number[] {
  const byParent = new Map<number, number[]>();
  for (const { pid } of allProcesses()) {
    const pp = parentPid(pid);
    if (pp !== undefined) byParent.set(pp, [...(byParent.get(pp) ?? []), pid]);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const pid = todo.pop() as number;
    out.push(pid);
    todo.push(...(byParent.get(pid) ?? []));
  }
  return out;
}

/** Pids whose command name is `comm` (say every `postgres` backend). */
export function pidsNamed(comm: string): number[] {
  return allProcesses()
    .filter((p) => p.comm === comm)
    .map((p) => p.pid);
}

/** utime + stime of several processes together, in seconds; a process that is gone counts 0. */
export function pidsCpuSeconds(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => {
    const s = procCpuSeconds(pid);
    return sum + (Number.isFinite(s) ? s : 0);
  }, 0);
}

/** Server CPU (all threads), machine busy time and wall time around a measured call. */
export async function measured<T>(
  serverPid: number,
  fn: () => Promise<T>,
): Promise<{ r: T; serverCpuS: number; mainThreadCpuS: number; mainRunQueueS: number; machineBusyS: number; wallS: number; load1: number }> {
  const load1 = loadavg()[0] ?? 0;
  const s0 = procCpuSeconds(serverPid);
  const t0main = procCpuSeconds(serverPid, serverPid);
  const q0 = schedSeconds(serverPid, serverPid).wait;
  const m0 = machineBusySeconds();
  const t0 = performance.now();
  const r = await fn();
  const wallS = (performance.now() - t0) / 1000;
  return {
    r,
    serverCpuS: procCpuSeconds(serverPid) - s0,
    mainThreadCpuS: procCpuSeconds(serverPid, serverPid) - t0main,
    mainRunQueueS: schedSeconds(serverPid, serverPid).wait - q0,
    machineBusyS: machineBusySeconds() - m0,
    wallS,
    load1,
  };
}

/** Waits (at most 15 s) until a server process is quiet: under 5 % of a core over half a second. */
export async function settle(pid: number): Promise<void> {
  const deadline = performance.now() + 15_000;
  while (performance.now() < deadline) {
    const c0 = procCpuSeconds(pid);
    await sleep(500);
    if (!((procCpuSeconds(pid) - c0) / 0.5 >= 0.05)) return;
  }
}

/**
 * `--cpu-prof` is refused in NODE_OPTIONS on Node 20, so the hub gets a preload (`--import`) that
 * runs the inspector's sampling profiler between two SIGUSR2s and writes each window to a file:
 * a profile of the measured window only, without the hub's startup or the device creation.
 */

export class WindowProfiler {
  #n = 0;
  constructor(
    readonly dir: string,
    readonly pid: number,
    readonly label: string,
  ) {}

  start(): void {
    process.kill(this.pid, 'SIGUSR2');
  }

  /** Stops the window and names its file; waits up to 10 s for the hub to write it. */
  async stop(name: string): Promise<string | undefined> {
    process.kill(this.pid, 'SIGUSR2');
    const tmp = join(this.dir, `window-${this.pid}-${++this.#n}.cpuprofile.tmp`);
    for (let i = 0; i < 100; i++) {
      await sleep(100);
      try {
        const text = readFileSync(tmp, 'utf8');
        JSON.parse(text);
        const file = join(this.dir, `${this.label}-${name}.cpuprofile`);
        renameSync(tmp, file);
        return file;
      } catch {
        // not written (completely) yet
      }
    }
    return undefined;
  }
}
