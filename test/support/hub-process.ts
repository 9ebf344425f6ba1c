/**
 * Runs a real `gatehouse start` process for a test: its own data dir, its own loopback address
 * as bind and hostname, the default ports, server certificate from the test CA that
 * scripts/test.mjs made (so the unmodified SDKs trust it via NODE_EXTRA_CA_CERTS).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = join(ROOT, 'bin', 'gatehouse.js');

export interface HubProcess {
  address: string;
  dataDir: string;
  proc: ChildProcess;
  connectionString: string;
  caFile: string;
  output(): string;
  /** Sends SIGTERM and waits for the exit code. */
  stop(): Promise<number | null>;
}

export function testCaArgs(): string[] {
  const cert = process.env.GATEHOUSE_TEST_CA_CERT;
  const key = process.env.GATEHOUSE_TEST_CA_KEY;
  if (cert === undefined || key === undefined) throw new Error('run the tests with `npm test` (it creates the test CA)');
  return ['--tls-ca-cert', cert, '--tls-ca-key', key];
}

/** The processes `pid` started (a `--workers` hub's workers), by pgrep; none when it has none. */
export function childPids(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `gh-${prefix}-`));
}

/** Runs the CLI to completion. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * A child Node process whose output is collected, killed if the test process dies first (a hub
 * or device left running would hold its address for the next run).
 */
export function spawnReaped(args: string[], env: NodeJS.ProcessEnv = {}): { proc: ChildProcess; output(): string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const reap = () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  };
  process.once('exit', reap);
  proc.once('exit', () => process.off('exit', reap));
  let out = '';
  proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  return { proc, output: () => out, exited };
}

export async function startHubProcess(opts: {
  address: string;
  /** The name clients use (default: the address); cluster nodes share one. */
  hostname?: string;
  dataDir?: string;
  extraArgs?: string[];
  useTestCa?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Another build's bin/gatehouse.js (benchmarks compare builds); default this checkout's. */
  bin?: string;
}): Promise<HubProcess> {
  const dataDir = opts.dataDir ?? tempDir('hub');
  const args = [
    opts.bin ?? BIN,
    'start',
    '--data-dir',
    dataDir,
    '--bind',
    opts.address,
    '--hostname',
    opts.hostname ?? opts.address,
    '--log-level',
    'warn',
    ...(opts.useTestCa === false ? [] : testCaArgs()),
    ...(opts.extraArgs ?? []),
  ];
  const { proc, output, exited } = spawnReaped(args, opts.env);

  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`hub did not become ready in 30 s:\n${output()}`)), 30_000);
    const check = () => {
      if (/ready/i.test(output())) {
        clearTimeout(timer);
        res();
      }
    };
    proc.stdout?.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`hub exited with ${String(code)} before ready:\n${output()}`));
    });
  });

  const info = cli(['info', '--data-dir', dataDir, '--json'], opts.env);
  if (info.status !== 0) throw new Error(`gatehouse info failed: ${info.stderr}`);
  const parsed = JSON.parse(info.stdout) as { connectionString: string; caFile: string };
  return {
    address: opts.address,
    dataDir,
    proc,
    connectionString: parsed.connectionString,
    caFile: parsed.caFile,
    output,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
