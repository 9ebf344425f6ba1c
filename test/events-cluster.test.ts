/**
 * Live telemetry readers across the cluster (issue 16 item 5): devices send QoS 1 telemetry to two
 * nodes at once while `GET /events` readers on a third node (from=now and from a seq) and on one of
 * the sending nodes (whose own batches commit between the other node's) follow the stream. Each
 * reader must get every stored event once, in seq order, with nothing skipped: what the store holds
 * is the reference.
 */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { generateSasToken } from '../src/auth/sas.js';
import { DATABASE_URL, startAgent, startCluster, type Agent, type Cluster } from './support/cluster.js';

const HOSTNAME = 'hub.events.test';
const [A, B, C] = ['127.0.33.1', '127.0.33.2', '127.0.33.3'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster;
const agents: Record<string, Agent> = {};

interface Reader {
  seqs: number[];
  bodies: string[];
  opened: Promise<void>;
  close(): void;
}

/** A Server-Sent Events reader of GET /events on one node. */
function openReader(address: string, from: string): Reader {
  const token = generateSasToken({ resource: HOSTNAME, key: cluster.ownerKey, keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 600 });
  const r: Reader = { seqs: [], bodies: [], opened: Promise.resolve(), close: () => undefined };
  r.opened = new Promise((resolve, reject) => {
    const req = request(
      { host: address, servername: HOSTNAME, port: 443, path: `/events?from=${from}`, headers: { authorization: token, host: HOSTNAME }, ca: readFileSync(cluster.nodes[0]!.caFile) },
      (res) => {
        if (res.statusCode !== 200) return reject(new Error(`GET /events answered ${res.statusCode}`));
        res.setEncoding('utf8');
        let text = '';
        res.on('data', (chunk: string) => {
          // The first bytes are the stream's opening comment, written once the subscription exists.
          resolve();
          text += chunk;
          const blocks = text.split('\n\n');
          text = blocks.pop() ?? '';
          for (const b of blocks) {
            const data = b.split('\n').find((l) => l.startsWith('data: '));
            if (data === undefined) continue;
            const e = JSON.parse(data.slice(6)) as { seq: number; systemProperties: Record<string, string> };
            r.seqs.push(e.seq);
            r.bodies.push(e.systemProperties['message-id'] ?? '');
          }
        });
      },
    );
    req.on('error', reject);
    req.end();
    r.close = () => req.destroy();
  });
  return r;
}

async function stored(): Promise<Array<{ seq: number; messageId: string }>> {
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  try {
    const rows = await db.query<{ seq: string; system_properties: string }>(`SELECT seq, system_properties FROM "${cluster.schema}".events ORDER BY seq`);
    return rows.rows.map((r) => ({ seq: Number(r.seq), messageId: (JSON.parse(r.system_properties) as Record<string, string>)['message-id'] ?? '' }));
  } finally {
    await db.end();
  }
}

async function createDevice(deviceId: string): Promise<string> {
  const r = await agents[A]!.call<{ status: number; body: { authentication: { symmetricKey: { primaryKey: string } } } }>('rest', {
    hostname: HOSTNAME,
    key: cluster.ownerKey,
    method: 'PUT',
    path: `/devices/${deviceId}`,
    body: { deviceId },
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return `HostName=${HOSTNAME};DeviceId=${deviceId};SharedAccessKey=${r.body.authentication.symmetricKey.primaryKey}`;
}

function assertInOrderOnce(name: string, got: readonly number[], expected: readonly number[]): void {
  for (let i = 1; i < got.length; i++) assert.ok(got[i]! > got[i - 1]!, `${name}: seq ${got[i]} after ${got[i - 1]}`);
  const missing = expected.filter((s) => !got.includes(s));
  const extra = got.filter((s) => !expected.includes(s));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, `${name}: ${got.length} received, ${expected.length} stored`);
}

describe('live telemetry readers in a cluster of three nodes', () => {
  before(async () => {
    cluster = await startCluster({ addresses: [A, B, C], hostname: HOSTNAME });
    for (const address of [A, B]) agents[address] = await startAgent(HOSTNAME, address);
  });

  after(async () => {
    for (const a of Object.values(agents)) a.kill();
    await cluster?.stop();
  });

  it('readers on any node see every node\'s telemetry once, in seq order, from now and from a seq', async () => {
    // History the 'now' readers must not see, and a seq for the resuming readers to start inside it.
    const early = await createDevice('ev-early');
    await agents[A]!.call('device.open', { name: 'early', connectionString: early, transport: 'mqtt' });
    for (let i = 0; i < 3; i++) await agents[A]!.call('device.send', { name: 'early', body: `history-${i}` });
    await agents[A]!.call('device.close', { name: 'early' });
    const history = await stored();
    assert.equal(history.length, 3);
    const resumeFrom = history[0]!.seq;
    await sleep(1000); // every node has heard of the history by now

    const readers = {
      'C from=now': openReader(C, 'now'),
      'A from=now': openReader(A, 'now'),
      [`C from=${resumeFrom}`]: openReader(C, String(resumeFrom)),
      [`A from=${resumeFrom}`]: openReader(A, String(resumeFrom)),
    };
    await Promise.all(Object.values(readers).map((r) => r.opened));

    const fleets = { [A]: [] as Array<{ id: string; connectionString: string }>, [B]: [] as Array<{ id: string; connectionString: string }> };
    for (let i = 0; i < 12; i++) {
      const id = `ev-${i}`;
      fleets[i % 2 === 0 ? A : B]!.push({ id, connectionString: await createDevice(id) });
    }
    // Both nodes append at once, each in its own group-committed batches.
    await Promise.all([A, B].map((n) => agents[n]!.call('fleet.start', { devices: fleets[n], intervalMs: 15 })));
    await sleep(4000);
    await Promise.all([A, B].map((n) => agents[n]!.call('fleet.quiet', {})));
    await sleep(1000); // the last sends are acknowledged

    const acked = (await Promise.all([A, B].map((n) => agents[n]!.call<{ acked: string[] }>('fleet.stats', {})))).flatMap((s) => s.acked);
    const all = await stored();
    const live = all.filter((e) => e.seq > history[2]!.seq);
    assert.ok(live.length >= 500, `only ${live.length} events sent`);
    const storedIds = new Set(live.map((e) => e.messageId));
    assert.deepEqual(acked.filter((id) => !storedIds.has(id)), [], 'every acknowledged message is stored');

    const last = all[all.length - 1]!.seq;
    const deadline = Date.now() + 10_000;
    while (Object.values(readers).some((r) => (r.seqs.at(-1) ?? 0) < last) && Date.now() < deadline) await sleep(100);
    await sleep(300); // anything after the last seq (a duplicate) would show now
    for (const r of Object.values(readers)) r.close();

    for (const [name, r] of Object.entries(readers)) {
      const expected = name.endsWith('now') ? live : all.filter((e) => e.seq > resumeFrom);
      assertInOrderOnce(name, r.seqs, expected.map((e) => e.seq));
    }
  });
});
