/**
 * What `npm test` needs before any test runs, found or started here, so the README's test command
 * holds on a fresh machine by itself: PostgreSQL (for the store and hub conformance tests),
 * NATS (for the bus conformance suite), Debian's Chromium (for the reference device's browser
 * test) and the right to listen on port
 * 443 (the SDKs' HTTPS clients reach no other port). When something cannot be had, one line says
 * what and how to get it, and the run stops before any test.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tcpConnect, createServer } from 'node:net';
import pg from 'pg';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class SetupError extends Error {}

/** Runs a command as root (directly, or through password-less sudo); true when it exited 0. */
function asRoot(cmd, args) {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  const [c, a] = root ? [cmd, args] : ['sudo', ['-n', cmd, ...args]];
  if (!root && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status !== 0) return false;
  return spawnSync(c, a, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }).status === 0;
}

async function pgReady(url) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return { ok: true };
  } catch (err) {
    return { ok: false, err };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** PostgreSQL at GATEHOUSE_TEST_DATABASE_URL (default: the local server, database "test"), started and created if need be. */
export async function ensurePostgres() {
  const url = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  let r = await pgReady(url);
  const local = ['127.0.0.1', 'localhost', '::1', '[::1]'].includes(new URL(url).hostname);
  if (!r.ok && r.err?.code === 'ECONNREFUSED' && local && existsSync('/etc/postgresql')) {
    for (const version of readdirSync('/etc/postgresql')) {
      process.stderr.write(`npm test: starting PostgreSQL ${version}\n`);
      asRoot('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start']);
    }
    for (let i = 0; i < 20 && !r.ok; i++) {
      await sleep(500);
      r = await pgReady(url);
    }
  }
  if (!r.ok && r.err?.code === '3D000') {
    // The server answers but the database is missing: create it.
    const u = new URL(url);
    const db = u.pathname.replace(/^\//, '');
    u.pathname = '/postgres';
    const admin = new pg.Client({ connectionString: u.toString() });
    try {
      await admin.connect();
      await admin.query(`CREATE DATABASE "${db.replace(/"/g, '""')}"`);
    } finally {
      await admin.end().catch(() => undefined);
    }
    r = await pgReady(url);
  }
  if (!r.ok) {
    const safe = new URL(url);
    safe.password = '';
    throw new SetupError(`PostgreSQL is not answering at ${safe} (${r.err?.code ?? r.err?.message}): start it, or point GATEHOUSE_TEST_DATABASE_URL at one`);
  }
}

const CHROMIUM_CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

/** A Chromium for playwright-core (which never downloads one): GATEHOUSE_CHROMIUM, Debian's, or installed with apt. */
export function ensureChromium() {
  const given = process.env.GATEHOUSE_CHROMIUM;
  if (given !== undefined) {
    if (!existsSync(given)) throw new SetupError(`GATEHOUSE_CHROMIUM=${given} does not exist`);
    return given;
  }
  let found = CHROMIUM_CANDIDATES.find((p) => existsSync(p));
  if (found === undefined && existsSync('/usr/bin/apt-get')) {
    process.stderr.write("npm test: installing Debian's chromium for the device's browser test\n");
    if (!asRoot('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'])) {
      asRoot('apt-get', ['update']);
      asRoot('apt-get', ['install', '-y', '--no-install-recommends', 'chromium']);
    }
    found = CHROMIUM_CANDIDATES.find((p) => existsSync(p));
  }
  if (found === undefined) throw new SetupError("no Chromium for the device's browser test: install Debian's chromium (apt-get install chromium), or set GATEHOUSE_CHROMIUM to a Chromium binary");
  return found;
}

/** Test hubs listen on port 443 at their own loopback addresses. */
export async function ensurePort443() {
  const ok = await new Promise((resolve) => {
    const s = createServer();
    s.once('error', (err) => resolve(err.code !== 'EACCES'));
    s.listen(443, '127.0.3.1', () => s.close(() => resolve(true)));
  });
  if (!ok) {
    let node = process.execPath;
    try {
      node = execFileSync('readlink', ['-f', process.execPath], { encoding: 'utf8' }).trim();
    } catch {
      // keep execPath
    }
    throw new SetupError(`test hubs listen on port 443 (the SDKs' HTTPS clients reach no other), which needs root or: sudo setcap cap_net_bind_service=+ep ${node}`);
  }
}

/** True when something at host:port speaks NATS (its first line is an INFO). */
function natsAnswers(host, port) {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host, port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(2000, () => done(false));
    sock.once('error', () => done(false));
    sock.once('data', (d) => done(d.toString('latin1').startsWith('INFO ')));
  });
}

/**
 * NATS with JetStream at GATEHOUSE_TEST_NATS_URL (default nats://127.0.0.1:4222): when nothing
 * answers on loopback, starts `nats-server -a 127.0.0.1 -p 4222 -js` in the background (installed
 * with apt if missing), as ensurePostgres starts PostgreSQL.
 */
export async function ensureNats() {
  const url = new URL(process.env.GATEHOUSE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222');
  const host = url.hostname;
  const port = Number(url.port || 4222);
  if (await natsAnswers(host, port)) return;
  const local = ['127.0.0.1', 'localhost'].includes(host);
  const safe = `${url.protocol}//${host}:${port}`;
  if (!local) throw new SetupError(`NATS is not answering at ${safe}: start it, or point GATEHOUSE_TEST_NATS_URL at one`);
  const which = () => spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).stdout.trim();
  let bin = which();
  if (bin === '' && existsSync('/usr/bin/apt-get')) {
    process.stderr.write("npm test: installing Debian's nats-server for the bus tests\n");
    if (!asRoot('apt-get', ['install', '-y', '--no-install-recommends', 'nats-server'])) {
      asRoot('apt-get', ['update']);
      asRoot('apt-get', ['install', '-y', '--no-install-recommends', 'nats-server']);
    }
    bin = which();
  }
  if (bin === '') throw new SetupError('NATS is not answering at 127.0.0.1:4222 and there is no nats-server: install it (apt-get install nats-server), or point GATEHOUSE_TEST_NATS_URL at a server');
  process.stderr.write(`npm test: starting nats-server on 127.0.0.1:${port}\n`);
  const child = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', mkdtempSync(join(tmpdir(), 'gatehouse-nats-'))], { detached: true, stdio: 'ignore' });
  child.unref();
  for (let i = 0; i < 40; i++) {
    await sleep(250);
    if (await natsAnswers(host, port)) return;
  }
  throw new SetupError(`started nats-server but nothing answers at ${safe}`);
}
