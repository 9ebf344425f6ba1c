/**
 * The embedded blob store: Azurite, Microsoft's Azure Storage emulator (npm `azurite`), as a child
 * process of the hub. Azurite has no library API (its package's main is a VS Code extension), so
 * the hub forks azurite-child.ts, which runs Azurite's own `azurite-blob` entry point: on
 * 127.0.0.1 at a port the system picks, TLS with a certificate from the hub's CA, its data under
 * the hub's data dir, telemetry off, and one account whose key the hub generated and keeps sealed
 * (Azurite's well-known development key is never accepted: AZURITE_ACCOUNTS replaces it). Devices
 * and services reach it through the hub's HTTPS port (protocol/http/blob-proxy.ts).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';

export interface EmbeddedAzurite {
  /** `https://127.0.0.1:<port>/<account>`. */
  endpoint: string;
  port: number;
  stop(): Promise<void>;
}

export interface AzuriteOptions {
  /** Its workspace (blobs and metadata), created 0700. */
  dir: string;
  accountName: string;
  accountKey: string;
  certPem: string;
  keyPem: string;
  logger: Logger;
  startTimeoutMs?: number;
}

/** Whether `pid` is alive and is an embedded Azurite (by its command line, where /proc tells). */
function isAzuriteChild(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('azurite-child');
  } catch {
    return false;
  }
}

/**
 * Waits for the Azurite of a hub that died (it stops itself when its channel to the hub closes,
 * saving its metadata as it goes) before another one opens the same directory: two at once would
 * overwrite each other's metadata. Killed after `graceMs`.
 */
async function waitForPrevious(pidFile: string, log: Logger, graceMs = 10_000): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isAzuriteChild(pid)) return;
  log.warn({ event: 'azurite.previous', pid }, 'waiting for the Azurite of an earlier hub process to stop');
  const end = Date.now() + graceMs;
  while (isAzuriteChild(pid)) {
    if (Date.now() > end) {
      process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 40 && isAzuriteChild(pid); i++) await sleep(50);
      return;
    }
    await sleep(100);
  }
}

export async function startAzurite(opts: AzuriteOptions): Promise<EmbeddedAzurite> {
  mkdirSync(join(opts.dir, 'tls'), { recursive: true, mode: 0o700 });
  const certFile = join(opts.dir, 'tls', 'cert.pem');
  const keyFile = join(opts.dir, 'tls', 'key.pem');
  writeFileSync(certFile, opts.certPem, { mode: 0o600 });
  writeFileSync(keyFile, opts.keyPem, { mode: 0o600 });
  const require = createRequire(import.meta.url);
  const main = require.resolve('azurite/dist/src/blob/main.js');
  const args = [
    '--blobHost', '127.0.0.1',
    '--blobPort', '0',
    '--location', opts.dir,
    '--cert', certFile,
    '--key', keyFile,
    // The account is the first path segment (/devstoreaccount1/...), whatever host name the device used.
    '--disableProductStyleUrl',
    '--disableTelemetry',
    '--silent',
    // The device SDK's x-ms-version may be newer than this Azurite knows.
    '--skipApiVersionCheck',
    '--loose',
  ];
  const log = opts.logger.child({ component: 'azurite' });
  const pidFile = join(opts.dir, 'azurite.pid');
  await waitForPrevious(pidFile, log);
  const child: ChildProcess = fork(fileURLToPath(new URL('./azurite-child.js', import.meta.url)), args, {
    // Nothing of the hub's environment: no AZURITE_DB, no keys.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    execArgv: [],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  if (child.pid !== undefined) writeFileSync(pidFile, `${child.pid}\n`, { mode: 0o600 });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`Azurite did not start in ${(opts.startTimeoutMs ?? 30_000) / 1000} s: ${out.slice(-500)}`)), opts.startTimeoutMs ?? 30_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /successfully listens on https:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stderr?.on('data', (c: Buffer) => {
      out += c.toString();
      log.warn({ event: 'azurite.stderr', text: c.toString().slice(0, 500) }, 'Azurite wrote to stderr');
    });
    child.once('exit', (code) => fail(new Error(`Azurite exited with ${String(code)} before it listened: ${out.slice(-500)}`)));
    child.send({ accounts: `${opts.accountName}:${opts.accountKey}`, main });
  });
  child.removeAllListeners('exit');
  child.stdout?.removeAllListeners('data');
  child.stdout?.resume();
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null) resolve();
    child.once('exit', (code, signal) => {
      if (!stopping) log.error({ event: 'azurite.exited', code, signal }, 'the embedded Azurite exited; file upload fails until the hub restarts');
      resolve();
    });
  });
  let stopping = false;
  log.info({ event: 'azurite.started', port, pid: child.pid }, 'embedded Azurite blob service started');
  return {
    endpoint: `https://127.0.0.1:${port}/${opts.accountName}`,
    port,
    async stop() {
      stopping = true;
      // Closing the channel makes it stop itself (azurite-child.ts); SIGKILL if it takes too long.
      if (child.connected) child.disconnect();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      rmSync(pidFile, { force: true });
    },
  };
}
