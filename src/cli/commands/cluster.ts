/**
 * `gatehouse cluster --nodes 3`: a local cluster for development and tests. N `gatehouse start`
 * processes, each on its own loopback address, share one PostgreSQL schema, one NATS, one master
 * key and one server CA; a TCP balancer (balancer.ts) in front answers to the cluster's hostname,
 * as a load balancer does in production. It stays in the foreground; Ctrl-C stops everything.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { createDevRootCa } from '../../pki/dev-ca.js';
import { TcpBalancer } from '../cluster/balancer.js';
import { CliError } from '../errors.js';
import { policyConnectionString, openStoreFor } from '../connection.js';
import { redactDatabaseUrl } from '../../hub/startup.js';

const BIN = fileURLToPath(new URL('../../../../bin/gatehouse.js', import.meta.url));
const PORTS = { https: 443, mqtt: 8883, amqp: 5671 };

interface ClusterOptions {
  nodes: string;
  tlsCaCert?: string;
  tlsCaKey?: string;
  dataDir: string;
  address: string;
  databaseUrl?: string;
  natsUrl: string;
}

/** The front's address and the nodes' (the next addresses after it: .1 -> .11, .12, ...). */
function addresses(front: string, n: number): string[] {
  const parts = front.split('.').map(Number);
  if (isIP(front) !== 4 || parts[0] !== 127) throw new CliError('ArgumentInvalid', '--address must be an IPv4 loopback address (127.x.y.z)');
  return Array.from({ length: n }, (_, i) => `${parts[0]}.${parts[1]}.${parts[2]}.${parts[3]! + 10 + i}`);
}

/** Created once in the cluster's dir and reused, so a restart keeps the cluster's identity. */
async function sharedSecrets(root: string): Promise<{ masterKey: string; caCert: string; caKey: string; clusterId: string }> {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  // The default schema is named after the cluster's dir, so a new dir never meets a database sealed under another key.
  const idFile = join(root, 'cluster-id');
  if (!existsSync(idFile)) writeFileSync(idFile, `${randomBytes(4).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  const keyFile = join(root, 'master.key');
  if (!existsSync(keyFile)) writeFileSync(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  const caCert = join(root, 'ca.pem');
  const caKey = join(root, 'ca.key');
  if (!existsSync(caCert)) {
    const ca = await createDevRootCa({ commonName: 'Gatehouse local cluster CA', validityDays: 365 });
    writeFileSync(caKey, ca.keyPem, { mode: 0o600 });
    writeFileSync(caCert, ca.certPem, { mode: 0o644 });
  }
  return { masterKey: readFileSync(keyFile, 'utf8').trim(), caCert, caKey, clusterId: readFileSync(idFile, 'utf8').trim() };
}

function startNode(i: number, address: string, opts: ClusterOptions & { root: string; hostname: string; databaseUrl: string }, secrets: { masterKey: string; caCert: string; caKey: string }): Promise<ChildProcess> {
  const dir = join(opts.root, `node-${i}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const log = createWriteStream(join(dir, 'hub.log'), { flags: 'a', mode: 0o600 });
  const args = [BIN, 'start', '--data-dir', dir, '--bind', address, '--hostname', opts.hostname, '--node-id', `node-${i}`, '--database-url', opts.databaseUrl, '--nats-url', opts.natsUrl];
  args.push('--tls-ca-cert', secrets.caCert, '--tls-ca-key', secrets.caKey, '--log-format', 'json');
  const child = spawn(process.execPath, args, { env: { ...process.env, GATEHOUSE_MASTER_KEY: secrets.masterKey }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  return new Promise((resolveReady, reject) => {
    let seen = '';
    const onData = (c: Buffer) => {
      seen += c.toString();
      if (seen.includes('Gatehouse ready')) {
        child.stdout.off('data', onData);
        resolveReady(child);
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new CliError('StartupFailed', `node-${i} (${address}) exited with ${String(code)} before ready; see ${join(dir, 'hub.log')}`)));
  });
}

export function registerCluster(program: Command): void {
  program
    .command('cluster')
    .description('run a local cluster: N nodes on PostgreSQL and NATS behind a TCP balancer (for development and tests)')
    .option('--nodes <n>', 'how many nodes', '3')
    .option('--data-dir <dir>', "the cluster's dir: shared master key and CA, one data dir per node", './gatehouse-cluster')
    .option('--address <ip>', 'where the balancer listens, the name clients use; nodes take the addresses from .11 on', '127.0.31.1')
    .option('--database-url <url>', 'PostgreSQL (env GATEHOUSE_DATABASE_URL); default the local server, database postgres, a schema of this cluster (gatehouse_cluster_<id>)', process.env.GATEHOUSE_DATABASE_URL)
    .option('--tls-ca-cert <file>', "issue the nodes' server certificates from this CA (PEM) instead of the cluster's own development CA")
    .option('--tls-ca-key <file>', 'the key of --tls-ca-cert (PEM)')
    .option('--nats-url <url>', 'NATS (env GATEHOUSE_NATS_URL)', process.env.GATEHOUSE_NATS_URL ?? 'nats://127.0.0.1:4222')
    .action(async (opts: ClusterOptions) => {
      const n = Number(opts.nodes);
      if (!Number.isInteger(n) || n < 1 || n > 16) throw new CliError('ArgumentInvalid', '--nodes must be 1 to 16');
      const root = resolve(opts.dataDir);
      const nodeAddresses = addresses(opts.address, n);
      if ((opts.tlsCaCert === undefined) !== (opts.tlsCaKey === undefined)) throw new CliError('ArgumentInvalid', '--tls-ca-cert and --tls-ca-key go together');
      const generated = await sharedSecrets(root);
      const secrets = opts.tlsCaCert === undefined ? generated : { ...generated, caCert: resolve(opts.tlsCaCert), caKey: resolve(opts.tlsCaKey ?? '') };
      const databaseUrl = opts.databaseUrl ?? `postgres://postgres@127.0.0.1:5432/postgres?schema=gatehouse_cluster_${secrets.clusterId}`;
      const all = { ...opts, root, hostname: opts.address, databaseUrl };
      const children = await Promise.all(nodeAddresses.map((a, i) => startNode(i + 1, a, all, secrets)));
      const balancer = new TcpBalancer({ address: opts.address, ports: Object.values(PORTS), backends: nodeAddresses });
      await balancer.listen();

      process.env.GATEHOUSE_MASTER_KEY = secrets.masterKey; // to read node-1's store for the connection string
      const { store, state } = await openStoreFor(join(root, 'node-1'), databaseUrl);
      const owner = await store.getPolicy('iothubowner');
      await store.close();
      const out = process.stdout;
      out.write(`Gatehouse cluster ready: ${n} nodes behind ${opts.address} (https 443, mqtts 8883, amqps 5671), store ${redactDatabaseUrl(databaseUrl)}\n`);
      nodeAddresses.forEach((a, i) => out.write(`  node-${i + 1}  ${a}  pid ${String(children[i]!.pid)}  log ${join(root, `node-${i + 1}`, 'hub.log')}\n`));
      if (owner !== undefined) out.write(`  connection string  ${policyConnectionString(state.hostname, owner.name, owner.primaryKey)}\n`);
      out.write(`  CA  ${secrets.caCert}   (NODE_EXTRA_CA_CERTS=${secrets.caCert} for the Azure SDKs)\n`);
      out.write(`  a node's CLI:  GATEHOUSE_MASTER_KEY=$(cat ${join(root, 'master.key')}) gatehouse <command> --data-dir ${join(root, 'node-1')}\n`);

      children.forEach((c, i) => c.once('exit', (code, signal) => process.stderr.write(`node-${i + 1} exited (${signal ?? String(code)}); the balancer sends its clients to the others\n`)));
      await new Promise<void>((r) => {
        process.once('SIGINT', r);
        process.once('SIGTERM', r);
      });
      await balancer.close();
      await Promise.all(
        children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise<void>((r) => {
          c.once('exit', () => r());
          c.kill('SIGTERM');
        }))),
      );
    });
}
