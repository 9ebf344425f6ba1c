/**
 * How a CLI command finds a hub: `--connection-string`, GATEHOUSE_CONNECTION_STRING, or a data
 * dir (the `iothubowner` policy of the hub that lives there).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isIP } from 'node:net';
import { openHubStore, STATE_FILE, type HubState } from '../hub.js';
import type { Store } from '../store/ports.js';

export interface ServiceConnection {
  hostName: string;
  keyName: string;
  key: string;
  /** Where to open the socket (may differ from hostName for a data-dir hub bound elsewhere). */
  connectHost: string;
  port: number;
  ca: string | undefined;
  /** An operator bearer token; used instead of the policy key when set. */
  bearer?: string | undefined;
}

export function parseConnectionString(cs: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of cs.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`malformed connection string segment '${part.slice(0, 20)}'`);
    out.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return out;
}

export function readState(dataDir: string): HubState {
  const file = join(resolve(dataDir), STATE_FILE);
  if (!existsSync(file)) throw new Error(`no hub has started in ${dataDir} (missing ${STATE_FILE}); run gatehouse start first`);
  return JSON.parse(readFileSync(file, 'utf8')) as HubState;
}

/** Opens the store of a data-dir hub (the master key must be readable). */
export async function openStoreFor(dataDir: string, databaseUrl?: string): Promise<{ store: Store; state: HubState }> {
  const state = readState(dataDir);
  const url = databaseUrl ?? process.env.GATEHOUSE_DATABASE_URL ?? state.databaseUrl;
  const { store } = await openHubStore(resolve(dataDir), state.store === 'postgres' ? url : undefined);
  return { store, state };
}

function caFromEnv(explicit: string | undefined): string | undefined {
  const file = explicit ?? process.env.GATEHOUSE_CA_FILE;
  return file === undefined ? undefined : readFileSync(file, 'utf8');
}

export async function resolveConnection(opts: {
  connectionString?: string;
  dataDir?: string;
  caFile?: string;
  databaseUrl?: string;
  token?: string;
}): Promise<ServiceConnection> {
  const conn = await resolvePolicyConnection(opts);
  const bearer = opts.token ?? process.env.GATEHOUSE_TOKEN;
  return bearer === undefined || bearer === '' ? conn : { ...conn, bearer };
}

async function resolvePolicyConnection(opts: {
  connectionString?: string;
  dataDir?: string;
  caFile?: string;
  databaseUrl?: string;
  token?: string;
}): Promise<ServiceConnection> {
  const cs = opts.connectionString ?? process.env.GATEHOUSE_CONNECTION_STRING;
  if (cs !== undefined && cs !== '') {
    const f = parseConnectionString(cs);
    const hostName = f.get('HostName');
    const keyName = f.get('SharedAccessKeyName');
    const key = f.get('SharedAccessKey');
    if (hostName === undefined || keyName === undefined || key === undefined) {
      throw new Error('the connection string needs HostName, SharedAccessKeyName and SharedAccessKey');
    }
    const m = /^(.*?)(?::(\d+))?$/.exec(hostName);
    const host = m?.[1] ?? hostName;
    return { hostName, keyName, key, connectHost: host, port: m?.[2] === undefined ? 443 : Number(m[2]), ca: caFromEnv(opts.caFile) };
  }
  if (opts.dataDir === undefined) {
    throw new Error('give --connection-string, set GATEHOUSE_CONNECTION_STRING, or give --data-dir');
  }
  const { store, state } = await openStoreFor(opts.dataDir, opts.databaseUrl);
  try {
    const owner = await store.getPolicy('iothubowner');
    const hasToken = (opts.token ?? process.env.GATEHOUSE_TOKEN ?? '') !== '';
    if (owner === undefined && !hasToken) throw new Error('this hub has no iothubowner policy; use --connection-string or --token');
    const wildcard = state.bind === '::' || state.bind === '0.0.0.0';
    return {
      hostName: state.hostname,
      keyName: owner?.name ?? '',
      key: owner?.primaryKey ?? '',
      connectHost: wildcard ? (isIP(state.hostname) !== 0 ? state.hostname : '127.0.0.1') : state.bind,
      port: state.httpsPort,
      ca: caFromEnv(opts.caFile) ?? readFileSync(state.caFile, 'utf8'),
    };
  } finally {
    await store.close();
  }
}

export function policyConnectionString(hostName: string, name: string, key: string): string {
  return `HostName=${hostName};SharedAccessKeyName=${name};SharedAccessKey=${key}`;
}

export function deviceConnectionString(hostName: string, deviceId: string, key: string, moduleId?: string): string {
  return `HostName=${hostName};DeviceId=${deviceId}${moduleId === undefined ? '' : `;ModuleId=${moduleId}`};SharedAccessKey=${key}`;
}
