/**
 * How a CLI command finds a hub: `--connection-string` (or az's `--login`),
 * GATEHOUSE_CONNECTION_STRING, or a data dir (a policy of the hub that lives there: `iothubowner`,
 * or `provisioningserviceowner` for the provisioning service's commands).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isIP } from 'node:net';
import { openHubStore, STATE_FILE, type HubState } from '../hub.js';
import type { Store } from '../store/ports.js';
import { CliError } from './errors.js';

export interface ServiceConnection {
  hostName: string;
  keyName: string;
  key: string;
  /** Where to open the socket (may differ from hostName for a data-dir hub bound elsewhere). */
  connectHost: string;
  port: number;
  ca: string | undefined;
  /** Where `ca` came from (a file name), for error messages; undefined: Node's CA store. */
  caSource: string | undefined;
  /** An operator bearer token; used instead of the policy key when set. */
  bearer?: string | undefined;
}

export function parseConnectionString(cs: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of cs.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CliError('ConnectionStringInvalid', `malformed connection string segment '${part.slice(0, 20)}'`);
    out.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return out;
}

export function readState(dataDir: string): HubState {
  const file = join(resolve(dataDir), STATE_FILE);
  if (!existsSync(file)) throw new CliError('HubNotFound', `no hub has started in ${dataDir} (missing ${STATE_FILE}); run gatehouse start first`);
  return JSON.parse(readFileSync(file, 'utf8')) as HubState;
}

/** Opens the store of a data-dir hub (the master key must be readable). */
export async function openStoreFor(dataDir: string, databaseUrl?: string): Promise<{ store: Store; state: HubState }> {
  const state = readState(dataDir);
  const url = databaseUrl ?? process.env.GATEHOUSE_DATABASE_URL ?? state.databaseUrl;
  const { store } = await openHubStore(resolve(dataDir), state.store === 'postgres' ? url : undefined);
  return { store, state };
}

/** A file named on the command line, or FileUnreadable naming the flag. */
export function readFileArg(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError('FileUnreadable', `${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function caFromEnv(explicit: string | undefined): { ca: string; caSource: string } | undefined {
  const file = explicit ?? process.env.GATEHOUSE_CA_FILE;
  if (file === undefined || file === '') return undefined;
  return { ca: readFileArg(file, explicit === undefined ? 'GATEHOUSE_CA_FILE' : '--ca-file'), caSource: file };
}

export interface ConnectionChoice {
  connectionString?: string;
  /** az's name for --connection-string. */
  login?: string;
  dataDir?: string;
  caFile?: string;
  databaseUrl?: string;
  token?: string;
  /** The data-dir hub's policy to use (default iothubowner). */
  policy?: string;
}

export async function resolveConnection(opts: ConnectionChoice): Promise<ServiceConnection> {
  const conn = await resolvePolicyConnection(opts);
  const bearer = opts.token ?? process.env.GATEHOUSE_TOKEN;
  return bearer === undefined || bearer === '' ? conn : { ...conn, bearer };
}

async function resolvePolicyConnection(opts: ConnectionChoice): Promise<ServiceConnection> {
  if (opts.connectionString !== undefined && opts.login !== undefined && opts.connectionString !== opts.login) {
    throw new CliError('ArgumentInvalid', 'give --connection-string or --login, not both');
  }
  const cs = opts.connectionString ?? opts.login ?? process.env.GATEHOUSE_CONNECTION_STRING;
  if (cs !== undefined && cs !== '') {
    const f = parseConnectionString(cs);
    const hostName = f.get('HostName');
    const keyName = f.get('SharedAccessKeyName');
    const key = f.get('SharedAccessKey');
    if (hostName === undefined || keyName === undefined || key === undefined) {
      throw new CliError('ConnectionStringInvalid', 'the connection string needs HostName, SharedAccessKeyName and SharedAccessKey');
    }
    const m = /^(.*?)(?::(\d+))?$/.exec(hostName);
    const host = m?.[1] ?? hostName;
    const ca = caFromEnv(opts.caFile);
    return { hostName, keyName, key, connectHost: host, port: m?.[2] === undefined ? 443 : Number(m[2]), ca: ca?.ca, caSource: ca?.caSource };
  }
  if (opts.dataDir === undefined) {
    throw new CliError('ArgumentMissing', 'give --connection-string, set GATEHOUSE_CONNECTION_STRING, or give --data-dir');
  }
  const policyName = opts.policy ?? 'iothubowner';
  const { store, state } = await openStoreFor(opts.dataDir, opts.databaseUrl);
  try {
    const policy = await store.getPolicy(policyName);
    const hasToken = (opts.token ?? process.env.GATEHOUSE_TOKEN ?? '') !== '';
    if (policy === undefined && !hasToken) throw new CliError('HubNotFound', `this hub has no ${policyName} policy; use --connection-string or --token`);
    const wildcard = state.bind === '::' || state.bind === '0.0.0.0';
    const ca = caFromEnv(opts.caFile) ?? { ca: readFileArg(state.caFile, 'the hub CA'), caSource: state.caFile };
    return {
      hostName: state.hostname,
      keyName: policy?.name ?? '',
      key: policy?.primaryKey ?? '',
      connectHost: wildcard ? (isIP(state.hostname) !== 0 ? state.hostname : '127.0.0.1') : state.bind,
      port: state.httpsPort,
      ca: ca.ca,
      caSource: ca.caSource,
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
