/**
 * Epoch receivers across the cluster (issue 17, in the cluster of issue 16): `EventHubConsumerClient`
 * instances that balance partitions with an owner level may land on different nodes behind a load
 * balancer; a partition of a consumer group must still have one owner. A higher epoch on node B
 * takes the partition from node A's receiver, a lower epoch or a plain receiver on A is refused
 * while B's holds it, and once B's closes A may read again.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clusterWithAgents } from './support/cluster.js';

const HOSTNAME = 'hub.ehcluster.test';
const [A, B] = ['127.0.150.1', '127.0.150.2'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const nodes = clusterWithAgents([A, B], HOSTNAME);
const agents = nodes.agents;

function subscribe(via: string, tag: string, ownerLevel?: number): Promise<unknown> {
  const connectionString = `Endpoint=sb://${HOSTNAME}/;SharedAccessKeyName=iothubowner;SharedAccessKey=${nodes.cluster.ownerKey};EntityPath=hub`;
  return agents[via]!.call('eh.subscribe', { tag, connectionString, partition: '0', ...(ownerLevel === undefined ? {} : { ownerLevel }) });
}

const errorOf = (via: string, tag: string, ms = 15_000) => agents[via]!.waitFor((e) => e.event === 'eh-error' && e.tag === tag, ms, `an error on receiver ${tag}`);

describe('Event Hubs epoch receivers across two nodes', () => {
  it('a higher epoch on node B steals the partition from node A, and holds it against A until it closes', { timeout: 90_000 }, async () => {
    await subscribe(A, 'first', 1);
    await sleep(3000);
    assert.equal(agents[A]!.events.some((e) => e.event === 'eh-error' && e.tag === 'first'), false, 'the first receiver runs');

    await subscribe(B, 'second', 2);
    const stolen = await errorOf(A, 'first');
    assert.equal(stolen.code, 'ReceiverDisconnectedError', String(stolen.message));

    await subscribe(A, 'lower', 1);
    const lower = await errorOf(A, 'lower');
    assert.equal(lower.code, 'ReceiverDisconnectedError', String(lower.message));
    assert.match(String(lower.message), /higher epoch '2'/);
    await agents[A]!.call('eh.close', { tag: 'lower' });

    await subscribe(A, 'plain');
    const plain = await errorOf(A, 'plain');
    assert.equal(plain.code, 'ReceiverDisconnectedError', String(plain.message));
    assert.match(String(plain.message), /epoch '2' already exists/);
    await agents[A]!.call('eh.close', { tag: 'plain' });
    assert.equal(agents[B]!.events.some((e) => e.event === 'eh-error' && e.tag === 'second'), false, "B's receiver kept the partition");

    // B's receiver goes: its claim is released, and a plain receiver on A reads again.
    await agents[B]!.call('eh.close', { tag: 'second' });
    await sleep(1000);
    await subscribe(A, 'after');
    await sleep(4000);
    assert.equal(agents[A]!.events.some((e) => e.event === 'eh-error' && e.tag === 'after'), false, JSON.stringify(agents[A]!.events.filter((e) => e.event === 'eh-error')));
  });
});
