/**
 * Live telemetry readers across the cluster (issue 16 item 5, on the partitioned log): devices send
 * QoS 1 telemetry to two nodes at once while `GET /events` readers on a third node and on one of
 * the sending nodes follow the log, from now and from a position (the id of an earlier event).
 * Each reader must get every stored record once, in order within its partition, with nothing
 * skipped: what the log holds is the reference. Run on both log stores: the cluster's PostgreSQL
 * (the default) and NATS JetStream (`--event-log jetstream`), where PostgreSQL must hold no record.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { connect } from '@nats-io/transport-node';
import { openJetStreamLog } from '../src/log/jetstream/jetstream-log.js';
import { DATABASE_URL, NATS_URL, startAgent, startCluster, type Agent, type Cluster } from './support/cluster.js';
import { openEventReader, type EventReader } from './support/sse-reader.js';

const HOSTNAME = 'hub.events.test';
const [A, B, C] = ['127.0.56.1', '127.0.56.2', '127.0.56.3'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster;
const agents: Record<string, Agent> = {};

function openReader(address: string, query: string, lastEventId?: string): EventReader {
  return openEventReader({ address, hostname: HOSTNAME, ownerKey: cluster.ownerKey, caFile: cluster.nodes[0]!.caFile }, query, lastEventId);
}

interface Stored {
  partition: number;
  seq: number;
  messageId: string;
}
const key = (r: { partition: number; seq: number }) => `${r.partition}/${r.seq}`;

/** `p`, or a failure naming `what` after `ms`: a stuck reader fails its test instead of hanging the file. */
function within<T>(what: string, p: Promise<T>, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}\n${nodeWarnings()}`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** The nodes' warnings and errors (log level 40 and up), for a failure message: what a stuck reader's node said. */
function nodeWarnings(): string {
  const lines = cluster.nodes.flatMap((n) => n.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l)).map((l) => `${n.address}: ${l.slice(0, 600)}`));
  return lines.length === 0 ? 'no node logged a warning' : lines.slice(-20).join('\n');
}

async function until(what: string, ready: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}\n${nodeWarnings()}`);
    await sleep(50);
  }
}

async function query<T extends pg.QueryResultRow>(sql: string): Promise<T[]> {
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  try {
    return (await db.query<T>(sql)).rows;
  } finally {
    await db.end();
  }
}

/** What the SQL log holds, read from its table in the cluster's schema. */
async function storedInTable(): Promise<Stored[]> {
  const rows = await query<{ part: number; seq: string; system_properties: string }>(`SELECT part, seq, system_properties FROM "${cluster.schema}".log_records ORDER BY part, seq`);
  return rows.map((r) => ({ partition: Number(r.part), seq: Number(r.seq), messageId: (JSON.parse(r.system_properties) as Record<string, string>)['message-id'] ?? '' }));
}

/** The hub's JetStream log, opened beside the nodes on a connection of the test's. */
async function withJetStreamLog<T>(fn: (log: Awaited<ReturnType<typeof openJetStreamLog>>) => Promise<T>, id?: string): Promise<T> {
  const hubId = id ?? (await query<{ value: string }>(`SELECT value FROM "${cluster.schema}".meta WHERE key = 'hub.id'`))[0]!.value;
  const nats = new URL(NATS_URL);
  const nc = await connect({ servers: `${nats.hostname}:${nats.port || 4222}` });
  try {
    const log = await openJetStreamLog(nc, { hubId, prefix: `gatehouse.${hubId}`, retention: { maxAgeMs: 3600_000, maxBytesPerPartition: 1 << 30 } });
    try {
      return await fn(log);
    } finally {
      await log.close();
    }
  } finally {
    await nc.close();
  }
}

async function storedInJetStream(): Promise<Stored[]> {
  return withJetStreamLog(async (log) => {
    const out: Stored[] = [];
    for (let p = 0; p < log.partitionCount; p++) {
      for (const r of await log.read(p, 'earliest', 100_000)) out.push({ partition: p, seq: r.sequenceNumber, messageId: r.systemProperties['message-id'] ?? '' });
    }
    return out;
  });
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

function assertInOrderOnce(name: string, got: EventReader, expected: readonly Stored[]): void {
  const last = new Map<number, number>();
  for (const r of got.records) {
    const before = last.get(r.partition) ?? -1;
    assert.ok(r.sequenceNumber > before, `${name}: partition ${r.partition}: ${r.sequenceNumber} after ${before}`);
    last.set(r.partition, r.sequenceNumber);
  }
  const have = new Set(got.records.map((r) => key({ partition: r.partition, seq: r.sequenceNumber })));
  const want = new Set(expected.map(key));
  const missing = [...want].filter((k) => !have.has(k));
  const extra = [...have].filter((k) => !want.has(k));
  assert.deepEqual({ missing: missing.slice(0, 10), extra: extra.slice(0, 10) }, { missing: [], extra: [] }, `${name}: ${got.records.length} received, ${expected.length} stored`);
  assert.equal(have.size, got.records.length, `${name}: a record came twice`);
}

for (const eventLog of ['sql', 'jetstream'] as const) {
describe(`live telemetry readers in a cluster of three nodes (event log: ${eventLog})`, () => {
  const stored = eventLog === 'sql' ? storedInTable : storedInJetStream;

  before(async () => {
    cluster = await startCluster({ addresses: [A, B, C], hostname: HOSTNAME, extraArgs: ['--event-log', eventLog] });
    for (const address of [A, B]) agents[address] = await startAgent(HOSTNAME, address);
  });

  after(async () => {
    for (const a of Object.values(agents)) a.kill();
    const hubId = eventLog === 'jetstream' && cluster !== undefined ? (await query<{ value: string }>(`SELECT value FROM "${cluster.schema}".meta WHERE key = 'hub.id'`))[0]?.value : undefined;
    await cluster?.stop();
    // The streams outlive the hub's schema: delete them with it.
    if (hubId !== undefined) await withJetStreamLog((log) => log.destroy(), hubId);
  });

  it("readers on any node see every node's telemetry once, in order per partition, from now and from a position", async () => {
    // History the 'now' readers must not see, and a position inside it for the resuming readers.
    const early = await createDevice('ev-early');
    await agents[A]!.call('device.open', { name: 'early', connectionString: early, transport: 'mqtt' });
    for (let i = 0; i < 3; i++) await agents[A]!.call('device.send', { name: 'early', body: `history-${i}` });
    await agents[A]!.call('device.close', { name: 'early' });
    const history = await stored();
    assert.equal(history.length, 3);
    const first = openReader(C, 'from=earliest');
    await within('the from=earliest reader on C to open', first.opened);
    await until('the from=earliest reader on C to get the 3 history records', () => first.records.length >= 3);
    first.close();
    const resumeAt = first.records[0]!;
    const afterResume = (e: Stored) => !(e.partition === resumeAt.partition && e.seq <= resumeAt.sequenceNumber);

    const readers = {
      'C from=now': openReader(C, 'from=now'),
      'A from=now': openReader(A, ''),
      'C from=<position>': openReader(C, `from=${resumeAt.id}`),
      'A Last-Event-ID': openReader(A, 'from=now', resumeAt.id),
    };
    await within('the four readers to open', Promise.all(Object.values(readers).map((r) => r.opened)));

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
    const historyKeys = new Set(history.map(key));
    const live = all.filter((e) => !historyKeys.has(key(e)));
    assert.ok(live.length >= 500, `only ${live.length} messages sent`);
    const storedIds = new Set(live.map((e) => e.messageId));
    assert.deepEqual(acked.filter((id) => !storedIds.has(id)), [], 'every acknowledged message is stored');

    const expected: Record<string, Stored[]> = Object.fromEntries(Object.keys(readers).map((name) => [name, name.endsWith('now') ? live : all.filter(afterResume)]));
    const deadline = Date.now() + 15_000;
    while (Object.entries(readers).some(([name, r]) => r.records.length < expected[name]!.length) && Date.now() < deadline) await sleep(100);
    await sleep(500); // anything more (a duplicate) would show now
    for (const r of Object.values(readers)) r.close();

    for (const [name, r] of Object.entries(readers)) assertInOrderOnce(name, r, expected[name]!);
    if (eventLog === 'jetstream') {
      // The records are on JetStream and nowhere else.
      assert.deepEqual(await storedInTable(), []);
      assert.equal((await query<{ value: string }>(`SELECT value FROM "${cluster.schema}".meta WHERE key = 'log.store'`))[0]?.value, 'jetstream');
    }
  });

  it('refuses to start a node on the other log store, which would hide the history', async () => {
    const other = eventLog === 'sql' ? 'jetstream' : 'sql';
    await assert.rejects(cluster.startNode('127.0.56.4', ['--event-log', other]), (err: Error) => err.message.includes(`start with --event-log ${eventLog}`));
  });
});
}
