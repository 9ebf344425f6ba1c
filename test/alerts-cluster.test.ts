/**
 * Alert windows count across the cluster (issue 16 item 4): failed logins spread over two nodes,
 * neither past the default hub-wide rule's threshold on its own (10 in 10 minutes), trip it once
 * together, and the cluster records one alert, not one per node. A rule created or deleted through
 * one node applies on the other, whose events it counts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { clusterWithAgents } from './support/cluster.js';

const HOSTNAME = 'hub.alerts.test';
const [A, B] = ['127.0.38.1', '127.0.38.2'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const nodes = clusterWithAgents([A, B], HOSTNAME);
const agents = nodes.agents;

type Alert = { rule: string; state: string; value: number };

async function firedAlerts(via: string, rule = 'failed-logins-hub'): Promise<Alert[]> {
  const r = await agents[via]!.call<{ status: number; body: { value: Alert[] } }>('rest', { hostname: HOSTNAME, key: nodes.cluster.ownerKey, method: 'GET', path: '/alerts?state=fired' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.value.filter((a) => a.rule === rule);
}

async function rest(via: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  return agents[via]!.call<{ status: number; body: unknown }>('rest', { hostname: HOSTNAME, key: nodes.cluster.ownerKey, method, path, ...(body === undefined ? {} : { body }) });
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(200)) {
    const v = await probe();
    if (v !== undefined) return v;
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** `n` calls with a wrong key for `policy` through node `via`: each one an authentication failure there. */
async function failLogins(via: string, policy: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await agents[via]!.call<{ status: number }>('rest', { hostname: HOSTNAME, key: randomBytes(32).toString('base64'), keyName: policy, method: 'GET', path: '/devices' });
    assert.equal(r.status, 401);
  }
}

describe('alert windows across two nodes', () => {
  it('failures on two nodes, under the threshold on each, trip the hub-wide rule once', async () => {
    // Two identities, six failures each: below the lockout's 10 per identity, so every one is counted.
    await failLogins(A, 'registryRead', 6);
    await sleep(1000);
    assert.deepEqual(await firedAlerts(B), [], 'six failures are not past the threshold of 10');
    await failLogins(B, 'service', 6);
    let fired: Alert[] = [];
    for (const end = Date.now() + 10_000; fired.length === 0 && Date.now() < end; await sleep(200)) fired = await firedAlerts(A);
    assert.equal(fired.length, 1, 'the sum, 12, is past it');
    assert.ok(fired[0]!.value > 10, `value ${fired[0]!.value}`);
    // Both nodes saw the window cross: still one alert, recorded by one of them.
    await sleep(2000);
    assert.equal((await firedAlerts(B)).length, 1);
  });

  it('a rule created through one node counts the other node\'s events, and deleting it there resolves its alert', async () => {
    const created = await rest(B, 'PUT', '/alerts/rules/made-on-b', { kind: 'authFailures', scope: 'hub', threshold: 2, windowSeconds: 300, actions: { log: true } });
    assert.ok(created.status === 200 || created.status === 201, JSON.stringify(created.body));
    await sleep(1000);
    // Only node A sees these failures: it fires the rule only if it learned of it from B.
    await failLogins(A, 'registryRead', 3);
    const fired = await waitFor('made-on-b to fire', async () => ((await firedAlerts(A, 'made-on-b')).length > 0 ? firedAlerts(A, 'made-on-b') : undefined));
    assert.equal(fired.length, 1);
    assert.equal(fired[0]!.value, 3);
    const deleted = await rest(B, 'DELETE', '/alerts/rules/made-on-b');
    assert.ok(deleted.status === 200 || deleted.status === 204, JSON.stringify(deleted.body));
    await waitFor('the alert to resolve', async () => ((await firedAlerts(A, 'made-on-b')).length === 0 ? true : undefined));
    const rules = (await rest(A, 'GET', '/alerts/rules')) as { status: number; body: { value: Array<{ name: string }> } };
    assert.ok(!rules.body.value.some((r) => r.name === 'made-on-b'), 'node A no longer lists it');
  });
});
