/**
 * Start-up plumbing the composition root (hub.ts) calls: the data dir, the store with its master
 * key, the first-start records, and listening with one clear line per failure.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Server as NetServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { SecretBox } from '../core/secret-box.js';
import { loadMasterKey } from '../config/master-key.js';
import type { Store } from '../store/ports.js';
import { openSqliteStore } from '../store/sqlite/open-sqlite-store.js';
import { openPostgresStore } from '../store/postgres/open-postgres-store.js';
import { DEFAULT_POLICIES, newPolicy } from '../auth/policies.js';

export const SQLITE_FILE = 'gatehouse.db';

export class StartupError extends Error {
  override name = 'StartupError';
}

export function redactDatabaseUrl(url: string): string {
  const u = new URL(url);
  u.password = '';
  return u.toString();
}

export function ensureWritableDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    accessSync(dir, constants.W_OK);
  } catch (err) {
    throw new StartupError(`cannot write the data dir ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Opens the store a data dir (or a PostgreSQL URL) points at, with the master key. */
export async function openHubStore(
  dataDir: string,
  databaseUrl: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ store: Store; keyWarning?: string; keySource: string }> {
  const master = loadMasterKey(dataDir, env);
  const box = new SecretBox(master.key);
  const store = databaseUrl === undefined ? await openSqliteStore(join(dataDir, SQLITE_FILE), box) : await openPostgresStore(databaseUrl, box);
  // A wrong master key must stop the start, not surface later as undecryptable rows.
  try {
    const check = await store.getSecretMeta('master-key-check');
    if (check === undefined) await store.setSecretMeta('master-key-check', 'gatehouse');
  } catch {
    await store.close();
    throw new StartupError(`the master key (${master.source}) does not match this database`);
  }
  return master.warning === undefined ? { store, keySource: master.source } : { store, keySource: master.source, keyWarning: master.warning };
}

/**
 * Every start: any default policy missing (a first start, or a data dir older than the policy)
 * with fresh keys; existing policies are never touched. First start: the hub's identity. Idempotent.
 */
export async function initializeStore(store: Store, logger: Logger): Promise<void> {
  const existing = new Set((await store.listPolicies()).map((p) => p.name));
  const added: string[] = [];
  for (const def of DEFAULT_POLICIES) {
    if (existing.has(def.name)) continue;
    await store.putPolicy(newPolicy(def.name, def.rights));
    added.push(def.name);
  }
  if (added.length > 0) logger.info({ event: 'policies.added', policies: added }, 'created default shared access policies');
  if ((await store.getMeta('hub.id')) !== undefined) return;
  await store.setMeta('hub.id', randomBytes(8).toString('hex'));
  logger.info({ event: 'hub.initialized' }, 'initialized the hub identity');
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

export function listenTls(server: NetServer, port: number, host: string): Promise<void> {
  const ready = listening(server, port, host);
  server.listen(port, host);
  return ready;
}
