/**
 * Routing in a cluster (issue 17, decision 0006): a routing change made through node B applies to
 * what node A ingests within a second; every message routed on either node reaches the endpoint
 * once in a normal run (one dispatcher per endpoint and partition in the cluster, by lease); the
 * endpoints' health is shared, so both nodes answer the same.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAgent, startCluster, type Agent, type Cluster } from './support/cluster.js';

const HOSTNAME = 'hub.routing.test';
const [A, B] = ['127.0.172.1', '127.0.172.2'] as const;

let cluster: Cluster;
const agents: Record<string, Agent> = {};
let server: Server;
let port = 0;
const got: string[] = [];

async function rest(via: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  return agents[via]!.call<{ status: number; body: unknown }>('rest', { hostname: HOSTNAME, key: cluster.ownerKey, method, path, ...(body === undefined ? {} : { body }) });
}

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`never happened: ${what}`);
    await sleep(100);
  }
}

const routing = (condition: string) => ({
  endpoints: { webhooks: [{ name: 'hook', url: `http://127.0.0.1:${port}/in` }] },
  routes: [{ name: 'r', source: 'DeviceMessages', condition, endpointNames: ['hook'], isEnabled: true }],
  fallbackRoute: { isEnabled: false },
});

describe('routing across two nodes', () => {
  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        for (const e of JSON.parse(Buffer.concat(chunks).toString('utf8')) as Array<{ body: string }>) got.push(e.body);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    cluster = await startCluster({ addresses: [A, B], hostname: HOSTNAME });
    for (const address of [A, B]) agents[address] = await startAgent(HOSTNAME, address);
    for (const id of ['dev-a', 'dev-b']) {
      const r = await rest(B, 'PUT', `/devices/${id}`, { deviceId: id });
      assert.equal(r.status, 200);
      const key = (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
      await agents[id === 'dev-a' ? A : B]!.call('device.open', { name: id, connectionString: `HostName=${HOSTNAME};DeviceId=${id};SharedAccessKey=${key}` });
    }
  });

  after(async () => {
    for (const a of Object.values(agents)) a.kill();
    await cluster?.stop();
    server?.closeAllConnections();
    server?.close();
  });

  it('a change made through node B applies to what node A ingests within a second, and each message is delivered once', { timeout: 120_000 }, async () => {
    assert.equal((await rest(B, 'PUT', '/routing', routing("level = 'one'"))).status, 200);
    await sleep(1000);
    await agents[A]!.call('device.send', { name: 'dev-a', body: 'a-one', props: { level: 'one' } });
    await agents[A]!.call('device.send', { name: 'dev-a', body: 'a-two', props: { level: 'two' } });
    await agents[B]!.call('device.send', { name: 'dev-b', body: 'b-one', props: { level: 'one' } });
    await eventually('both routed messages delivered', () => got.length >= 2);

    assert.equal((await rest(B, 'PUT', '/routing', routing("level = 'two'"))).status, 200);
    await sleep(1000);
    await agents[A]!.call('device.send', { name: 'dev-a', body: 'a-three', props: { level: 'one' } });
    await agents[A]!.call('device.send', { name: 'dev-a', body: 'a-four', props: { level: 'two' } });
    for (let i = 0; i < 10; i++) await agents[i % 2 === 0 ? A : B]!.call('device.send', { name: i % 2 === 0 ? 'dev-a' : 'dev-b', body: `n-${i}`, props: { level: 'two' } });
    await eventually('the later messages delivered', () => got.length >= 13);
    await sleep(2000);
    assert.deepEqual([...got].sort(), ['a-four', 'a-one', 'b-one', ...Array.from({ length: 10 }, (_, i) => `n-${i}`)].sort(), 'each routed message once, nothing else');
  });

  it('both nodes report the same endpoint health', { timeout: 60_000 }, async () => {
    const health = async (via: string) => ((await rest(via, 'GET', '/routing/endpointsHealth')).body as { value: Array<{ endpointId: string; healthStatus: string; lastSuccessfulSendAttemptTime?: string }> }).value;
    const [a, b] = [await health(A), await health(B)];
    assert.deepEqual(a, b);
    assert.equal(a[0]?.endpointId, 'hook');
    assert.equal(a[0]?.healthStatus, 'healthy');
  });
});
