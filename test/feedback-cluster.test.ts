/**
 * The C2D feedback queue shared by the nodes (issue 16 item 4): two back ends, each an unmodified
 * azure-iothub feedback receiver on its own node, compete for one queue as on Azure. Every
 * feedback record reaches one of them once; a batch a back end took and never settled (a plain
 * AMQP receiver that hangs: the SDK accepts every batch on arrival) is handed to the other node's
 * receiver once its lock lapses (--feedback-lock-seconds 5), and an accepted batch never again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startAgent, startCluster, type Agent, type Cluster } from './support/cluster.js';

const HOSTNAME = 'hub.feedback.test';
const [A, B] = ['127.0.57.1', '127.0.57.2'] as const;
const LOCK_SECONDS = 5;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster;
const agents: Record<string, Agent> = {};
/** The device (and the C2D sender) live in a third client process, pinned to A. */
let deviceSide: Agent;

async function until(what: string, cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(200)) if (await cond()) return;
  throw new Error(`timed out waiting for ${what}`);
}

const got = async (via: string) => (await agents[via]!.call<string[][]>('feedback.got', {})).flat();

/** Sends `ids` with ack full; the device completes each, so each gives one Success record. */
async function sendWithFeedback(ids: string[]): Promise<void> {
  const r = await deviceSide.call<{ accepted: string[] }>('service.c2dMany', {
    connectionString: cluster.connectionString,
    ack: 'full',
    messages: ids.map((body) => ({ deviceId: 'fb-dev', body })),
  });
  assert.deepEqual(r.accepted, ids);
  await until(`the device to get ${ids.join(', ')}`, async () => ids.every((id) => deviceSide.events.some((e) => e.event === 'c2d' && e.body === id)));
}

describe('the C2D feedback queue across two nodes', () => {
  before(async () => {
    cluster = await startCluster({ addresses: [A, B], hostname: HOSTNAME, extraArgs: ['--feedback-lock-seconds', String(LOCK_SECONDS)] });
    for (const address of [A, B]) agents[address] = await startAgent(HOSTNAME, address);
    deviceSide = await startAgent(HOSTNAME, A);
    const r = await deviceSide.call<{ status: number; body: { authentication: { symmetricKey: { primaryKey: string } } } }>('rest', {
      hostname: HOSTNAME,
      key: cluster.ownerKey,
      method: 'PUT',
      path: '/devices/fb-dev',
      body: { deviceId: 'fb-dev' },
    });
    assert.equal(r.status, 200);
    const cs = `HostName=${HOSTNAME};DeviceId=fb-dev;SharedAccessKey=${r.body.authentication.symmetricKey.primaryKey}`;
    await deviceSide.call('device.open', { name: 'fb', connectionString: cs, transport: 'mqtt' });
  });

  after(async () => {
    for (const a of [...Object.values(agents), deviceSide]) a?.kill();
    await cluster?.stop();
  });

  it('two receivers on two nodes get each feedback record once between them', async () => {
    await Promise.all([A, B].map((n) => agents[n]!.call('feedback.start', { connectionString: cluster.connectionString })));
    const ids = Array.from({ length: 40 }, (_, i) => `fb-${i}`);
    // In small groups, so that the records come in several batches that both receivers compete for.
    for (let i = 0; i < ids.length; i += 4) await sendWithFeedback(ids.slice(i, i + 4));
    await until('every record at a receiver', async () => {
      const all = [...(await got(A)), ...(await got(B))];
      return ids.every((id) => all.includes(id));
    });
    await sleep((LOCK_SECONDS + 2) * 1000); // a completed batch would come again by now if it could
    const [atA, atB] = [await got(A), await got(B)];
    const all = [...atA, ...atB].sort();
    assert.deepEqual(all, [...ids].sort(), `A got ${atA.length}, B got ${atB.length}`);
  });

  it('a batch taken and never settled goes to the other node\'s receiver once its lock lapses; then never again', async () => {
    // On A, a back end that takes a batch and hangs; B's receiver is away meanwhile.
    await Promise.all([A, B].map((n) => agents[n]!.call('feedback.stop', {})));
    await agents[A]!.call('feedback.hold', { hostname: HOSTNAME, key: cluster.ownerKey });
    const ids = ['fb-held-1', 'fb-held-2', 'fb-held-3'];
    await sendWithFeedback(ids);
    const hold = await agents[A]!.waitFor((e) => e.event === 'feedback' && e.by === 'hold', 10_000, 'the batch at the hung back end');
    const takenAt = Date.now();
    const held = hold.ids as string[];
    // B comes back: it gets what nobody holds at once, and what A holds once the lock lapsed.
    const before = (await got(B)).length;
    await agents[B]!.call('feedback.start', { connectionString: cluster.connectionString });
    await until('every record at B', async () => ids.every((id) => (agents[B]!.events.some((e) => e.event === 'feedback' && (e.ids as string[]).includes(id)))), 30_000);
    assert.ok(Date.now() - takenAt >= (LOCK_SECONDS - 1) * 1000, 'the held batch came again only after its lock');
    // B accepted them: nobody gets them again, the hung back end included.
    await sleep((LOCK_SECONDS + 2) * 1000);
    assert.deepEqual([...(await got(B)).slice(before)].sort(), ids, 'each once at B');
    const atHold = agents[A]!.events.filter((e) => e.event === 'feedback' && e.by === 'hold').flatMap((e) => e.ids as string[]);
    assert.deepEqual(atHold, held, 'the hung back end got its batch once');
  });
});
