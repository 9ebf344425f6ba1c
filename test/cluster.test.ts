/**
 * Three nodes, one PostgreSQL schema and the machine's NATS (issue 16): a device on one node is
 * served by calls that land on the others, as behind a load balancer. Every client is an
 * unmodified SDK in an agent process pinned to one node; all nodes answer to one hostname.
 */
import assert from 'node:assert/strict';
import { KeyObject, type webcrypto } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { spawnReaped, BIN } from './support/hub-process.js';
import { startAgent, startCluster, type Agent, type Cluster } from './support/cluster.js';

x509.cryptoProvider.set(globalThis.crypto);

const HOSTNAME = 'hub.cluster.test';
const [A, B, C] = ['127.0.30.1', '127.0.30.2', '127.0.30.3'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster;
const agents: Record<string, Agent> = {};

async function rest(via: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  return agents[via]!.call('rest', { hostname: HOSTNAME, key: cluster.ownerKey, method, path, body });
}

async function createDevice(deviceId: string, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await rest(A, 'PUT', `/devices/${deviceId}`, { deviceId, ...extra });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const key = (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
  return `HostName=${HOSTNAME};DeviceId=${deviceId};SharedAccessKey=${key}`;
}

describe('a cluster of three nodes (PostgreSQL + NATS)', () => {
  before(async () => {
    cluster = await startCluster({ addresses: [A, B, C], hostname: HOSTNAME });
    for (const address of [A, B, C]) agents[address] = await startAgent(HOSTNAME, address);
  });

  after(async () => {
    for (const a of Object.values(agents)) a.kill();
    await cluster?.stop();
  });

  it('started at once on an empty schema: one set of default policies', async () => {
    for (const via of [A, B, C]) {
      const r = await rest(via, 'GET', '/policies');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const names = (r.body as { value: Array<{ keyName: string }> }).value.map((p) => p.keyName).sort();
      assert.equal(new Set(names).size, names.length, `no policy twice: ${names.join(', ')}`);
      assert.ok(names.includes('iothubowner'));
    }
  });

  it('a device on A gets a C2D message sent through B, a desired patch made through B, and answers a method invoked through C', async () => {
    const cs = await createDevice('cl-dev-1');
    await agents[A]!.call('device.open', { name: 'd1', connectionString: cs, transport: 'mqtt' });

    await agents[B]!.call('service.c2d', { connectionString: cluster.connectionString, deviceId: 'cl-dev-1', body: 'through-B' });
    await agents[A]!.waitFor((e) => e.event === 'c2d' && e.body === 'through-B', 5000, 'C2D sent through B');

    await agents[B]!.call('service.twin', { connectionString: cluster.connectionString, deviceId: 'cl-dev-1', patch: { properties: { desired: { gate: 'open' } } } });
    await agents[A]!.waitFor((e) => e.event === 'desired' && (e.patch as { gate?: string }).gate === 'open', 5000, 'desired patch made through B');

    const started = Date.now();
    const answer = await agents[C]!.call<{ status: number; payload: unknown }>('service.method', { connectionString: cluster.connectionString, deviceId: 'cl-dev-1', payload: { n: 7 } });
    assert.deepEqual(answer, { status: 200, payload: { echo: { n: 7 }, at: 'd1' } });
    assert.ok(Date.now() - started < 5000);
    await agents[A]!.call('device.close', { name: 'd1' });
  });

  it('monitor-events on C sees telemetry sent to A while it runs', async () => {
    const cs = await createDevice('cl-dev-2');
    await agents[A]!.call('device.open', { name: 'd2', connectionString: cs, transport: 'amqp' });
    const mon = spawnReaped([BIN, 'monitor-events', '--data-dir', cluster.nodes[2]!.dataDir, '--device-id', 'cl-dev-2', '--timeout', '8'], cluster.env);
    // The reader is attached before the event exists: this is the live path, not history.
    for (const until = Date.now() + 15_000; !mon.output().includes('Starting event monitor') && Date.now() < until; ) await sleep(50);
    assert.match(mon.output(), /Starting event monitor, filtering on device: cl-dev-2/);
    await agents[A]!.call('device.send', { name: 'd2', body: 'live-from-A' });
    const deadline = Date.now() + 5000;
    while (!mon.output().includes('live-from-A') && Date.now() < deadline) await sleep(100);
    mon.proc.kill('SIGINT');
    await mon.exited;
    assert.match(mon.output(), /live-from-A/);
    await agents[A]!.call('device.close', { name: 'd2' });
  });

  it('disabling the device through B drops its session on A within a second', async () => {
    const cs = await createDevice('cl-dev-3');
    await agents[A]!.call('device.open', { name: 'd3', connectionString: cs, transport: 'mqtt', retry: false });
    const started = Date.now();
    await agents[B]!.call('service.disable', { connectionString: cluster.connectionString, deviceId: 'cl-dev-3' });
    const took = Date.now() - started;
    await agents[A]!.waitFor((e) => e.event === 'disconnect' && e.name === 'd3', Math.max(100, 1000 - took + 500), 'disconnect after disable');
    assert.ok(Date.now() - started < 1500, `dropped after ${Date.now() - started} ms`);
  });

  it('a certificate revoked through C drops the X.509 session it opened on A within a second', async () => {
    const created = await rest(C, 'POST', '/certificateAuthorities', { name: 'cl-ca' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await createDevice('cl-dev-x', { authentication: { type: 'certificateAuthority' } });
    const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: new x509.Name([{ CN: ['cl-dev-x'] }]), keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams });
    const signed = await rest(B, 'POST', '/certificateAuthorities/cl-ca/sign', { csr: csr.toString('pem'), deviceId: 'cl-dev-x' });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const { serial, chain } = signed.body as { serial: string; chain: string };
    const keyPem = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString();
    await agents[A]!.call('device.open', { name: 'dx', connectionString: `HostName=${HOSTNAME};DeviceId=cl-dev-x;x509=true`, cert: chain, key: keyPem, transport: 'mqtt', retry: false });

    const started = Date.now();
    const revoked = await rest(C, 'POST', '/certificateAuthorities/cl-ca/revoke', { serial, reason: 'keyCompromise' });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    await agents[A]!.waitFor((e) => e.event === 'disconnect' && e.name === 'dx', 1500, 'disconnect after revocation');
    assert.ok(Date.now() - started < 1500, `dropped after ${Date.now() - started} ms`);
  });

  it('the same device connecting to B takes its session over from A', async () => {
    const cs = await createDevice('cl-dev-4');
    await agents[A]!.call('device.open', { name: 'd4a', connectionString: cs, transport: 'mqtt', retry: false });
    await agents[B]!.call('device.open', { name: 'd4b', connectionString: cs, transport: 'mqtt' });
    await agents[A]!.waitFor((e) => e.event === 'disconnect' && e.name === 'd4a', 3000, 'the old session on A closed');
    // The registry says Connected (the new owner's write), and C2D now reaches B.
    await sleep(500);
    const dev = await rest(C, 'GET', '/devices/cl-dev-4');
    assert.equal((dev.body as { connectionState: string }).connectionState, 'Connected');
    await agents[C]!.call('service.c2d', { connectionString: cluster.connectionString, deviceId: 'cl-dev-4', body: 'to-the-new-owner' });
    await agents[B]!.waitFor((e) => e.event === 'c2d' && e.name === 'd4b' && e.body === 'to-the-new-owner', 5000, 'C2D on B');
  });

  it('bad logins spread over the three nodes trip the lockout as they would on one', async () => {
    const settings = await rest(A, 'PATCH', '/settings', { lockout: { enabled: true, maxFailures: 30, maxFailuresPerAddress: 1000, windowSeconds: 600, lockoutSeconds: 60, maxLockoutSeconds: 60 } });
    assert.equal(settings.status, 200, JSON.stringify(settings.body));
    const cs = await createDevice('cl-dev-5');
    const wrong = cs.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`);
    const nodes = [A, B, C];
    for (let i = 0; i < 50; i++) {
      const via = nodes[i % 3]!;
      await agents[via]!.call('device.open', { name: `bad-${i}`, connectionString: wrong, transport: 'mqtt' }).catch(() => undefined);
    }
    // Each node saw 16 or 17 failures, under 30: only counting across the cluster locks the address.
    const audit = await rest(A, 'GET', '/auditLog?limit=1000');
    const rows = (audit.body as { entries: Array<{ identity?: string; reasonCode?: string | null; outcome?: string }> }).entries;
    const locked = rows.filter((r) => r.identity === 'cl-dev-5' && r.reasonCode === 'locked_out');
    assert.ok(locked.length >= 15, `logins refused as locked out: ${locked.length}`);
  });
});
