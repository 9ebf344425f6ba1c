/**
 * The hub under fuzz: a real `gatehouse start` process (its own data dir and loopback address,
 * its own dev CA), a device with a symmetric key for the post-authentication sessions, and what
 * the harness watches: /health latency, VmRSS, the process's exit, its error-level log lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { BIN, cli, tempDir } from '../test/support/hub-process.js';
import { policyKey, restClient, type Rest } from '../test/support/rest.js';

/** The device a protocol's post-authentication sessions speak as (one each: a second CONNECT for the same identity takes the first over). */
export const fuzzDevice = (protocol: string): string => `fuzz-${protocol}`;

export interface FuzzHub {
  address: string;
  dataDir: string;
  ca: string;
  idScope: string;
  ownerKey: string;
  /** The symmetric key of a device, created on first use. */
  deviceKey(id: string): Promise<string>;
  proc: ChildProcess;
  rest: Rest;
  /** Exit code or signal once the process has ended, else undefined. */
  exit(): string | undefined;
  exited: Promise<string>;
  /** The last 64 KiB of its output (what it said before a crash). */
  tail(): string;
  /** Error-level log lines by message (pino level >= 50), counted. */
  errors: Map<string, number>;
  rssBytes(): number | undefined;
  /** The V8 heap (used, total) and external memory from the hub's own /metrics. */
  heap(): Promise<{ used: number; total: number; external: number } | undefined>;
  stop(): Promise<string>;
}

export async function startFuzzHub(opts: { address: string; dataDir?: string; extraArgs?: string[] }): Promise<FuzzHub> {
  const dataDir = opts.dataDir ?? tempDir('fuzz');
  const args = [BIN, 'start', '--data-dir', dataDir, '--bind', opts.address, '--hostname', opts.address, '--log-level', 'warn', ...(opts.extraArgs ?? [])];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const reap = () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  };
  process.once('exit', reap);
  let tail = '';
  let line = '';
  const errors = new Map<string, number>();
  const onOutput = (c: Buffer) => {
    const s = c.toString();
    tail = (tail + s).slice(-65536);
    line += s;
    const lines = line.split('\n');
    line = lines.pop() ?? '';
    if (line.length > 65536) line = '';
    for (const l of lines) {
      if (!l.startsWith('{')) continue;
      try {
        const j = JSON.parse(l) as { level?: number; msg?: string; err?: { message?: string; type?: string } };
        if ((j.level ?? 0) >= 50) {
          const key = `${j.msg ?? ''}${j.err === undefined ? '' : `: ${j.err.type ?? ''} ${j.err.message ?? ''}`}`.slice(0, 300);
          errors.set(key, (errors.get(key) ?? 0) + 1);
        }
      } catch {
        // not a log line
      }
    }
  };
  proc.stdout.on('data', onOutput);
  proc.stderr.on('data', onOutput);
  let exitText: string | undefined;
  const exited = new Promise<string>((resolve) =>
    proc.once('exit', (code, signal) => {
      process.off('exit', reap);
      exitText = signal === null ? `exit ${String(code)}` : `signal ${signal}`;
      resolve(exitText);
    }),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hub did not become ready in 30 s:\n${tail}`)), 30_000);
    const check = () => {
      if (/ready/i.test(tail)) {
        clearTimeout(timer);
        proc.stdout.off('data', check);
        resolve();
      }
    };
    proc.stdout.on('data', check);
    void exited.then((why) => {
      clearTimeout(timer);
      reject(new Error(`hub ended (${why}) before ready:\n${tail}`));
    });
  });
  const info = cli(['info', '--data-dir', dataDir, '--json']);
  if (info.status !== 0) throw new Error(`gatehouse info failed: ${info.stderr}`);
  const parsed = JSON.parse(info.stdout) as { caFile: string; idScope: string | null };
  const ca = readFileSync(parsed.caFile, 'utf8');
  const ownerKey = policyKey(dataDir);
  const rest = restClient(opts.address, ca, ownerKey);
  // The fuzzer refuses credentials thousands of times a minute from a few addresses: raise the
  // lockout so the authentication paths behind it stay reachable (the lockout has its own tests).
  const relaxed = await rest('PATCH', '/settings', { lockout: { maxFailures: 1000, maxFailuresPerAddress: 100_000, windowSeconds: 10 } });
  if (relaxed.status !== 200) throw new Error(`PATCH /settings: ${relaxed.status} ${relaxed.raw.toString()}`);
  const keys = new Map<string, Promise<string>>();
  const deviceKey = (id: string): Promise<string> => {
    let key = keys.get(id);
    if (key === undefined) {
      key = rest('PUT', `/devices/${encodeURIComponent(id)}`, { deviceId: id }).then((created) => {
        if (created.status !== 200) throw new Error(`PUT /devices/${id}: ${created.status} ${created.raw.toString()}`);
        return String((created.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey);
      });
      keys.set(id, key);
    }
    return key;
  };
  return {
    address: opts.address,
    dataDir,
    ca,
    idScope: parsed.idScope ?? '0ne00000000',
    ownerKey,
    deviceKey,
    proc,
    rest,
    exit: () => exitText,
    exited,
    tail: () => tail,
    errors,
    rssBytes() {
      try {
        const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${String(proc.pid)}/status`, 'utf8'));
        return m === null ? undefined : Number(m[1]) * 1024;
      } catch {
        return undefined;
      }
    },
    async heap() {
      const r = await rest('GET', '/metrics').catch(() => undefined);
      if (r === undefined || r.status !== 200) return undefined;
      const text = r.raw.toString();
      const metric = (name: string) => Number(new RegExp(`^gatehouse_nodejs_${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
      return { used: metric('heap_size_used_bytes'), total: metric('heap_size_total_bytes'), external: metric('external_memory_bytes') };
    },
    async stop() {
      if (exitText !== undefined) return exitText;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const why = await exited;
      clearTimeout(t);
      return why;
    },
  };
}

/** GET /health on a fresh TLS connection: the status and how long the answer took, or 'timeout' past `timeoutMs`. */
export function healthCheck(hub: { address: string; ca: string }, timeoutMs: number, localAddress?: string): Promise<{ status: number | 'timeout' | 'error'; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let done = false;
    const finish = (status: number | 'timeout' | 'error') => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ status, ms: performance.now() - t0 });
    };
    const req = request(
      { host: hub.address, port: 443, path: '/health', method: 'GET', ca: hub.ca, agent: false, ...(localAddress === undefined ? {} : { localAddress }) },
      (res) => {
        res.resume();
        res.on('end', () => finish(res.statusCode ?? 0));
      },
    );
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    req.on('error', () => finish('error'));
    req.end();
  });
}
