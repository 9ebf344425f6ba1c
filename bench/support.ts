/**
 * What every benchmark in bench/ shares: argument parsing, percentiles, CPU readings from /proc,
 * and writing its own section into docs/benchmarks.md without touching the others.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
