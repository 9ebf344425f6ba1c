/**
 * Issue 18 items 5 and 7 in a cluster of two nodes (PostgreSQL + NATS): `GET /statistics/service`
 * counts the devices connected to every node, whichever node answers (the registry holds the
 * connection state, not one node's memory), and a digital twin command sent through one node
 * reaches a device connected to the other. Clients are unmodified SDKs in agent processes pinned
 * to one node each.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clusterWithAgents } from './support/cluster.js';

const HOSTNAME = 'pnp.cluster.test';
const [A, B] = ['127.0.122.1', '127.0.122.2'] as const;

const nodes = clusterWithAgents([A, B], HOSTNAME);
const agents = nodes.agents;

async function rest(via: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  return agents[via]!.call('rest', { hostname: HOSTNAME, key: nodes.cluster.ownerKey, method, path, body });
}

async function createDevice(deviceId: string): Promise<string> {
  const r = await rest(A, 'PUT', `/devices/${deviceId}`, { deviceId });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const key = (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
  return `HostName=${HOSTNAME};DeviceId=${deviceId};SharedAccessKey=${key}`;
}

async function connectedVia(via: string, want: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  let last: unknown;
  while (Date.now() < deadline) {
    const r = await rest(via, 'GET', '/statistics/service');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    last = r.body;
    if ((r.body as { connectedDeviceCount?: number }).connectedDeviceCount === want) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.fail(`node ${via} answered ${JSON.stringify(last)}, wanted connectedDeviceCount ${want}`);
}

describe('IoT Plug and Play and service statistics in a cluster of two nodes', () => {
  it('statistics/service counts the devices on both nodes from either; a component command through B reaches a device on A', { timeout: 120_000 }, async () => {
    const onA = await createDevice('st-a');
    const onB = await createDevice('st-b');
    await connectedVia(A, 0);
    await agents[A]!.call('device.open', { name: 'a', connectionString: onA, transport: 'mqtt', method: 'thermostat1*getMaxMinReport' });
    await agents[B]!.call('device.open', { name: 'b', connectionString: onB, transport: 'amqp' });
    await connectedVia(A, 2);
    await connectedVia(B, 2);

    const r = await rest(B, 'POST', '/digitaltwins/st-a/components/thermostat1/commands/getMaxMinReport?connectTimeoutInSeconds=5&responseTimeoutInSeconds=10', { since: 'boot' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { echo: { since: 'boot' }, at: 'a' });

    await agents[A]!.call('device.close', { name: 'a' });
    await connectedVia(B, 1);
    await agents[B]!.call('device.close', { name: 'b' });
    await connectedVia(A, 0);
  });
});
