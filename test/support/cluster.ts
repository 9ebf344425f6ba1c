/**
 * A test cluster: N real `gatehouse start` processes on one PostgreSQL schema of their own and the
 * machine's NATS, each on its own loopback address, all with one hostname (the name a load
 * balancer would answer to) and one master key. Clients reach a chosen node through an agent
 * process pinned to it (pin-dns.ts), with the unmodified SDKs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before } from 'node:test';
import pg from 'pg';
import { cli, ROOT, startHubProcess, removeDir, type HubProcess } from './hub-process.js';
import { parseConnectionString } from '../../src/cli/connection.js';

export const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const NATS_URL = process.env.GATEHOUSE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

export interface Cluster {
  hostname: string;
  nodes: HubProcess[];
  schema: string;
  masterKey: string;
  /** What a CLI run against a node's data dir needs (the shared master key). */
  env: NodeJS.ProcessEnv;
  /** iothubowner's connection string (any node: they share one store). */
  connectionString: string;
  ownerKey: string;
  /** Starts one more node (or a node again) at `address`. */
  startNode(address: string, extraArgs?: string[]): Promise<HubProcess>;
  stop(): Promise<void>;
}

export async function startCluster(opts: { addresses: string[]; hostname: string; natsUrl?: string; extraArgs?: string[] }): Promise<Cluster> {
  const schema = `gh_cluster_${randomBytes(5).toString('hex')}`;
  const url = new URL(DATABASE_URL);
  url.searchParams.set('schema', schema);
  const masterKey = randomBytes(32).toString('base64');
  const env = { GATEHOUSE_MASTER_KEY: masterKey };
  const args = (extra: string[] = []) => ['--database-url', url.toString(), '--nats-url', opts.natsUrl ?? NATS_URL, ...(opts.extraArgs ?? []), ...extra];
  const startNode = async (address: string, extra?: string[]) => {
    const node = await startHubProcess({ address, hostname: opts.hostname, extraArgs: args(extra), env });
    nodes.push(node);
    return node;
  };
  const nodes: HubProcess[] = [];
  // All at once: the first start of several nodes on an empty schema must be safe.
  const started = await Promise.allSettled(opts.addresses.map((a) => startNode(a)));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(nodes.map((n) => n.stop()));
    for (const n of nodes) removeDir(n.dataDir);
    throw failed.reason;
  }
  nodes.sort((x, y) => opts.addresses.indexOf(x.address) - opts.addresses.indexOf(y.address));
  const cs = cli(['connection-string', '--data-dir', nodes[0]!.dataDir, '--policy', 'iothubowner'], env);
  if (cs.status !== 0) throw new Error(cs.stderr);
  const ownerKey = parseConnectionString(cs.stdout.trim()).get('SharedAccessKey') ?? '';
  return {
    hostname: opts.hostname,
    nodes,
    schema,
    masterKey,
    env,
    connectionString: `HostName=${opts.hostname};SharedAccessKeyName=iothubowner;SharedAccessKey=${ownerKey}`,
    ownerKey,
    startNode,
    async stop() {
      await Promise.all(nodes.map(async (n) => {
        await n.stop();
        removeDir(n.dataDir);
      }));
      const admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    },
  };
}

export interface AgentEvent {
  event: string;
  name?: string;
  [k: string]: unknown;
}

/** A client process whose sockets go to one node. */
export interface Agent {
  call<T = unknown>(op: string, args: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /** The first event (already seen or still to come) that matches, else rejects after timeoutMs. */
  waitFor(pred: (e: AgentEvent) => boolean, timeoutMs?: number, what?: string): Promise<AgentEvent>;
  events: AgentEvent[];
  /** False once the process has exited (calls then fail at once). */
  readonly alive: boolean;
  kill(): void;
}

export async function startAgent(hostname: string, address: string): Promise<Agent> {
  const dist = join(ROOT, 'dist', 'test', 'support');
  const proc: ChildProcess = spawn(process.execPath, ['--import', join(dist, 'pin-dns.js'), join(dist, 'cluster-agent.js')], {
    env: { ...process.env, GATEHOUSE_TEST_PIN: `${hostname.toLowerCase()}=${address}` },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const reap = () => proc.kill('SIGKILL');
  process.once('exit', reap);
  let alive = true;
  // A process that dies (the SDK can crash its own process: see c2dSender in cluster-failover.test)
  // fails its outstanding calls at once instead of leaving them to their timeouts.
  proc.once('exit', (code, signal) => {
    alive = false;
    process.off('exit', reap);
    for (const p of pending.values()) p.reject(new Error(`agent exited (${signal ?? code})`));
    pending.clear();
  });
  const events: AgentEvent[] = [];
  const waiters = new Set<() => void>();
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let next = 1;
  proc.on('message', (m: { id?: number; ok?: boolean; result?: unknown; error?: string } & AgentEvent) => {
    if (m.id !== undefined) {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.ok === true) p?.resolve(m.result);
      else p?.reject(new Error(m.error));
      return;
    }
    events.push(m);
    for (const w of waiters) w();
  });
  const agent: Agent = {
    events,
    call<T>(op: string, args: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
      const id = next++;
      if (!alive) return Promise.reject(new Error('agent exited'));
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${op} took over ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        proc.send({ id, op, args });
      });
    },
    waitFor(pred, timeoutMs = 10_000, what = 'event') {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = events.find(pred);
          if (hit === undefined) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${what} within ${timeoutMs} ms; events: ${JSON.stringify(events.slice(-10))}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
    get alive() {
      return alive;
    },
    kill: () => proc.kill('SIGKILL'),
  };
  await agent.waitFor((e) => e.event === 'ready', 20_000, 'agent ready');
  return agent;
}

/**
 * Nodes on `addresses` and an agent pinned to each, started before the file's tests and stopped
 * after them. `cluster` may be read once the tests run.
 */
export function clusterWithAgents(addresses: readonly string[], hostname: string): { readonly cluster: Cluster; readonly agents: Record<string, Agent> } {
  let cluster: Cluster | undefined;
  const agents: Record<string, Agent> = {};
  before(async () => {
    cluster = await startCluster({ addresses: [...addresses], hostname });
    for (const address of addresses) agents[address] = await startAgent(hostname, address);
  });
  after(async () => {
    for (const a of Object.values(agents)) a.kill();
    await cluster?.stop();
  });
  return {
    get cluster(): Cluster {
      if (cluster === undefined) throw new Error('the cluster has not started');
      return cluster;
    },
    agents,
  };
}
