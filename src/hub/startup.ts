/**
 * Start-up plumbing the composition root (hub.ts) calls: the data dir, the store with its master
 * key, the first-start records, and listening with one clear line per failure.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, chmodSync, constants, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { hostname } from 'node:os';
import { join, parse } from 'node:path';
import { createServer, isIP, type Server as NetServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { HubError } from '../core/errors.js';
import { SecretBox } from '../core/secret-box.js';
import { loadMasterKey, MASTER_KEY_FILE } from '../store/master-key.js';
import { TLS_DIR } from '../pki/server-tls.js';
import type { Store } from '../store/ports.js';
import type { SqlStore } from '../store/sql/sql-store.js';
import { openSqliteStore } from '../store/sqlite/open-sqlite-store.js';
import { LOG_FILE } from '../log/sqlite/open-sqlite-log.js';
import { openPostgresStore } from '../store/postgres/open-postgres-store.js';
import { DEFAULT_POLICIES, newPolicy } from '../auth/policies.js';

export const SQLITE_FILE = 'gatehouse.db';
/** What `gatehouse info` and the CLI read to find a running hub (hub.ts writes it). */
export const STATE_FILE = 'gatehouse.json';
/** This node's id when --node-id does not give one: made at its first start, kept across restarts. */
export const NODE_ID_FILE = 'node-id';

/**
 * The node's id: --node-id, else the one in the data dir, else a new one (the machine's name and
 * six random hex digits, so nodes sharing a machine never share an id) written there 0600.
 */
export function resolveNodeId(dataDir: string, configured: string | undefined): string {
  if (configured !== undefined) return configured;
  const file = join(dataDir, NODE_ID_FILE);
  try {
    const kept = readFileSync(file, 'utf8').trim();
    if (/^[A-Za-z0-9._:-]{1,128}$/.test(kept)) return kept;
  } catch {
    /* first start: made below */
  }
  const base = hostname().replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 100) || 'node';
  const id = `${base}-${randomBytes(3).toString('hex')}`;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}

export class StartupError extends Error {
  override name = 'StartupError';
}

export function redactDatabaseUrl(url: string): string {
  const u = new URL(url);
  u.password = '';
  return u.toString();
}

/**
 * The data dir holds the master key and the database: it is created 0700 and what the hub keeps
 * in it 0600 (the SQLite files, the master key, the state file, `tls/`). At every start, one of
 * those that group or others may access is tightened (owner bits kept) with a warning when it is
 * ours, and the start is refused when it belongs to another user (we cannot fix it). Files the hub
 * does not know are left alone: the 0700 dir already keeps other users out. Symbolic links inside
 * are not followed (the operator put that file elsewhere on purpose).
 */
export function ensurePrivateDataDir(dir: string, logger: Logger): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    accessSync(dir, constants.W_OK);
  } catch (err) {
    throw new StartupError(`cannot write the data dir ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (process.platform === 'win32') return; // no POSIX modes
  const own = [MASTER_KEY_FILE, STATE_FILE, NODE_ID_FILE, SQLITE_FILE, `${SQLITE_FILE}-wal`, `${SQLITE_FILE}-shm`, `${SQLITE_FILE}-journal`, LOG_FILE, `${LOG_FILE}-wal`, `${LOG_FILE}-shm`, TLS_DIR].map((f) => join(dir, f));
  const tlsDir = join(dir, TLS_DIR);
  const inTls = existsAsDir(tlsDir) ? readdirSync(tlsDir).map((f) => join(tlsDir, f)) : [];
  const st = statSync(dir);
  if ((st.mode & 0o077) !== 0 && ((st.mode & 0o1000) !== 0 || dir === parse(dir).root)) {
    // /tmp, /: never made private on the hub's behalf.
    throw new StartupError(`${dir} is a shared directory; give the hub a data dir of its own`);
  }
  tighten(dir, st, logger);
  for (const path of [...own, ...inTls]) {
    const entry = lstatOrUndefined(path);
    if (entry !== undefined && (entry.isFile() || entry.isDirectory())) tighten(path, entry, logger);
  }
}

function tighten(path: string, st: Stats, logger: Logger): void {
  const was = st.mode & 0o777;
  if ((was & 0o077) === 0) return;
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new StartupError(`${path} is readable by group or others (mode ${was.toString(8)}) and belongs to another user; chmod go-rwx it, or run the hub as its owner`);
  }
  const now = was & 0o700;
  try {
    chmodSync(path, now);
  } catch (err) {
    throw new StartupError(`${path} is readable by group or others (mode ${was.toString(8)}) and cannot be changed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  logger.warn({ event: 'data-dir.permissions', path, mode: was.toString(8) }, `${path} was readable by group or others (mode ${was.toString(8)}); changed to ${now.toString(8)}`);
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function existsAsDir(path: string): boolean {
  return lstatOrUndefined(path)?.isDirectory() === true;
}

/** Opens the store a data dir (or a PostgreSQL URL) points at, with the master key. */
export async function openHubStore(
  dataDir: string,
  databaseUrl: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ store: SqlStore; box: SecretBox; keyWarning?: string; keySource: string }> {
  const master = loadMasterKey(dataDir, env);
  const box = new SecretBox(master.key);
  const store = databaseUrl === undefined ? await openSqliteStore(join(dataDir, SQLITE_FILE), box) : await openPostgresStore(databaseUrl, box);
  // A wrong master key must stop the start, not surface later as undecryptable rows.
  try {
    // Inserted once (by whichever node of a cluster is first), opened by every start after.
    await store.insertSecretMetaIfAbsent('master-key-check', 'gatehouse');
  } catch {
    await store.close();
    throw new StartupError(`the master key (${master.source}) does not match this database`);
  }
  return master.warning === undefined ? { store, box, keySource: master.source } : { store, box, keySource: master.source, keyWarning: master.warning };
}

/** Meta record: the default policies this hub has created once (JSON array of names). */
const DEFAULT_POLICIES_CREATED = 'policies.defaults-created';

/**
 * Every start: each default policy this hub never created (a first start, or a data dir older
 * than the policy) is created with fresh keys; one an operator deleted stays deleted, and existing
 * policies are never touched. First start: the hub's identity. Idempotent.
 *
 * Safe when several nodes start at once on one empty database: a default policy another node
 * inserted first (the name is the primary key) is left as that node made it, and the hub
 * identity is inserted only where there is none (insertMetaIfAbsent); no lock is held.
 */
export async function initializeStore(store: Store, logger: Logger): Promise<void> {
  const existing = new Set((await store.listPolicies()).map((p) => p.name));
  const record = await store.getMeta(DEFAULT_POLICIES_CREATED);
  // A data dir from before the record: its missing defaults are created this once, as they always were.
  const created = new Set(record === undefined ? [] : (JSON.parse(record) as string[]));
  const added: string[] = [];
  for (const def of DEFAULT_POLICIES) {
    if (existing.has(def.name) || created.has(def.name)) continue;
    try {
      await store.putPolicy(newPolicy(def.name, def.rights));
      added.push(def.name);
    } catch (err) {
      // Another node starting at the same moment created it: theirs is the one.
      if (!(err instanceof HubError && err.code === 'PolicyAlreadyExists')) throw err;
    }
  }
  if (DEFAULT_POLICIES.some((d) => !created.has(d.name))) await store.setMeta(DEFAULT_POLICIES_CREATED, JSON.stringify([...new Set([...created, ...DEFAULT_POLICIES.map((d) => d.name)])]));
  if (added.length > 0) logger.info({ event: 'policies.added', policies: added }, 'created default shared access policies');
  if ((await store.getMeta('hub.id')) !== undefined) return;
  const ours = randomBytes(8).toString('hex');
  if ((await store.insertMetaIfAbsent('hub.id', ours)) === ours) logger.info({ event: 'hub.initialized' }, 'initialized the hub identity');
}

/** A listen failure as one line an operator can act on. */
function listenError(err: NodeJS.ErrnoException, port: number, host: string): Error {
  if (err.code === 'EADDRINUSE') return new StartupError(`port ${port} on ${host} is already in use`);
  if (err.code === 'EACCES') return new StartupError(`not allowed to listen on port ${port} (ports below 1024 need privileges)`);
  if (err.code === 'EADDRNOTAVAIL') return new StartupError(`cannot listen on ${host}: no such local address`);
  return err;
}

export async function listenHttp(app: FastifyInstance, port: number, host: string): Promise<void> {
  try {
    await app.listen({ port, host });
  } catch (err) {
    throw listenError(err as NodeJS.ErrnoException, port, host);
  }
}

/** Resolves once a server already told to listen (rhea's) is listening. */
export function listening(server: NetServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (server.listening) return resolve();
    server.once('listening', () => resolve());
    server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, port, host)));
  });
}

/**
 * Fails with the listen error's one line when a port cannot be had, before anything is written:
 * each port is bound and let go at once (they are all held together, so one port given twice
 * fails too). Taken again in the meantime, the real listen still reports it.
 */
export async function ensurePortsFree(host: string, ports: readonly number[]): Promise<void> {
  const probes: NetServer[] = [];
  try {
    for (const port of ports) {
      const probe = createServer();
      probes.push(probe);
      const ready = listening(probe, port, host);
      probe.listen(port, host);
      await ready;
    }
  } finally {
    await Promise.all(probes.map((p) => new Promise<void>((resolve) => (p.listening ? p.close(() => resolve()) : resolve()))));
  }
}

/** `::`, `0.0.0.0` and their spellings: every interface. */
export function isWildcardAddress(host: string): boolean {
  return isIP(host) !== 0 && /^[0:.]+$/.test(host);
}

/** Listening on every interface is a choice worth a line in the log (the default is loopback). */
export function warnIfAllInterfaces(bind: string, logger: Logger): void {
  if (!isWildcardAddress(bind)) return;
  logger.warn(
    { event: 'listen.all-interfaces', bind },
    `listening on every interface (--bind ${bind}): any network that reaches this machine reaches the hub; keep the IP filter and a firewall in front of it`,
  );
}

export function listenTls(server: NetServer, port: number, host: string): Promise<void> {
  const ready = listening(server, port, host);
  server.listen(port, host);
  return ready;
}
