/**
 * A node dies and NATS restarts under load (issue 16): three nodes behind a TCP balancer, 200
 * devices on the unmodified MQTT SDK sending QoS 1 telemetry, a back end sending C2D messages
 * through the balancer. One node is killed with SIGKILL: its devices reconnect through the
 * balancer to the others (the SDK's own retry). Then the cluster's NATS server is stopped and
 * started again during traffic. Afterwards every PUBACKed message is readable from the hub's log
 * (`GET /events?from=earliest` on a surviving node, as a back end reads it) and every C2D message
 * the hub accepted reached its device.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { TcpBalancer } from '../src/cli/cluster/balancer.js';
import pg from 'pg';
import { DATABASE_URL, startAgent, startCluster, type Agent, type Cluster } from './support/cluster.js';
import { readWholeLog } from './support/sse-reader.js';

const HOSTNAME = 'hub.failover.test';
const FRONT = '127.0.35.1';
const NODES = ['127.0.35.11', '127.0.35.12', '127.0.35.13'];
const NATS_ADDR = '127.0.35.5';
const NATS_PORT = 14222;
const DEVICES = 200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function startNats(): ChildProcess {
  const proc = spawn('nats-server', ['-a', NATS_ADDR, '-p', String(NATS_PORT)], { stdio: 'ignore' });
  process.once('exit', () => proc.kill('SIGKILL'));
  return proc;
}

async function natsUp(): Promise<void> {
  const { connect } = await import('node:net');
  for (let i = 0; i < 50; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect({ host: NATS_ADDR, port: NATS_PORT }, () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error('nats-server did not start');
}

describe('a node killed and NATS restarted under load', () => {
  let nats: ChildProcess;
  let cluster: Cluster;
  let balancer: TcpBalancer;
  const agents: Agent[] = [];

  before(async () => {
    nats = startNats();
    await natsUp();
    cluster = await startCluster({ addresses: NODES, hostname: HOSTNAME, natsUrl: `nats://${NATS_ADDR}:${NATS_PORT}` });
    balancer = new TcpBalancer({ address: FRONT, ports: [443, 8883, 5671], backends: NODES, downMs: 10_000 });
    await balancer.listen();
  });

  after(async () => {
    for (const a of agents) a.kill();
    await balancer?.close();
    await cluster?.stop();
    nats?.kill('SIGKILL');
  });

  it('loses nothing acknowledged', async () => {
    const admin = await startAgent(HOSTNAME, FRONT);
    agents.push(admin);
    const devices: Array<{ id: string; connectionString: string }> = [];
    for (let i = 0; i < DEVICES; i++) {
      const id = `fo-${i}`;
      const r = await admin.call<{ status: number; body: { authentication: { symmetricKey: { primaryKey: string } } } }>('rest', { hostname: HOSTNAME, key: cluster.ownerKey, method: 'PUT', path: `/devices/${id}`, body: { deviceId: id } });
      assert.equal(r.status, 200);
      devices.push({ id, connectionString: `HostName=${HOSTNAME};DeviceId=${id};SharedAccessKey=${r.body.authentication.symmetricKey.primaryKey}` });
    }
    const fleets = [await startAgent(HOSTNAME, FRONT), await startAgent(HOSTNAME, FRONT)];
    agents.push(...fleets);
    await Promise.all(fleets.map((f, i) => f.call('fleet.start', { devices: devices.filter((_, j) => j % 2 === i), intervalMs: 500 }, 120_000)));

    // C2D from the back end, through the balancer, all along. Each batch is a fresh service client, so
    // the count per phase says whether the cluster took C2D before the kill, after it, and after the
    // bus came back; how many fit in a phase depends on the machine, so the last phase runs until
    // enough went through (or a deadline passes) rather than for a fixed time.
    // The sender runs in its own process and is started again when it dies: azure-iothub's service
    // client can crash its process when a connection drops while it opens (its translateError makes an
    // error whose amqpError is itself, and getErrorName then recurses until the stack overflows). That
    // is the SDK's bug, seen in CI when node 2 was killed; what the test checks is the hub's side.
    const accepted: string[] = [];
    let c2dFailed = 0;
    let senderRestarts = 0;
    let sending = true;
    let sender = await startAgent(HOSTNAME, FRONT);
    agents.push(sender);
    const c2dLoop = (async () => {
      for (let batch = 0; sending; batch++) {
        if (!sender.alive) {
          senderRestarts++;
          sender = await startAgent(HOSTNAME, FRONT);
          agents.push(sender);
        }
        const messages = Array.from({ length: 10 }, (_, k) => ({ deviceId: `fo-${(batch * 10 + k) % DEVICES}`, body: `c2d-${batch}-${k}` }));
        const r = await sender.call<{ accepted: string[]; failed: number }>('service.c2dMany', { connectionString: cluster.connectionString, messages }, 60_000).catch(() => ({ accepted: [], failed: messages.length }));
        accepted.push(...r.accepted);
        c2dFailed += r.failed;
        await sleep(200);
      }
    })();

    await sleep(5000);
    const beforeKill = accepted.length;
    cluster.nodes[1]!.proc.kill('SIGKILL'); // node 2 dies; its devices come back through the balancer
    await sleep(12_000);
    const beforeNatsDown = accepted.length;
    nats.kill('SIGKILL'); // the bus goes away during traffic...
    await sleep(2000);
    nats = startNats(); // ...and comes back
    await natsUp();
    const afterNatsBack = accepted.length;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
      await sleep(1000);
      if (accepted.length - afterNatsBack >= 50 && Date.now() > deadline - 50_000) break;
    }
    const recovered = accepted.length - afterNatsBack;

    sending = false;
    await c2dLoop;
    await Promise.all(fleets.map((f) => f.call('fleet.quiet', {})));
    await sleep(8000); // in-flight sends finish; C2D locks of the dead node's sessions lapse or are released

    const stats = await Promise.all(fleets.map((f) => f.call<{ acked: string[]; failedSends: number; c2d: string[] }>('fleet.stats', {})));
    const acked = stats.flatMap((s) => s.acked);
    const received = new Set(stats.flatMap((s) => s.c2d));
    // The log as a back end reads it, from the start, on a node that lived (tens of thousands of records).
    const records = await readWholeLog({ address: NODES[0]!, hostname: HOSTNAME, ownerKey: cluster.ownerKey, caFile: cluster.nodes[0]!.caFile });
    const db = new pg.Client({ connectionString: DATABASE_URL });
    await db.connect();
    // Where the C2D messages nobody received are (still queued? locked by whom?), for the failure message.
    const pending = await db.query<{ device_id: string; body: Buffer; delivery_count: number; lock_owner: string | null; locked_until: string | null }>(
      `SELECT device_id, body, delivery_count, lock_owner, locked_until FROM "${cluster.schema}".c2d_messages ORDER BY seq LIMIT 20`,
    );
    await db.end();
    const pendingNow = pending.rows.map((r) => `${r.device_id} ${r.body.toString()} deliveries=${r.delivery_count} lock=${r.lock_owner ?? '-'} until=${r.locked_until === null ? '-' : Number(r.locked_until) - Date.now()}ms`);
    const stream = records.map((r) => r.systemProperties['message-id'] ?? '');
    const inStream = new Map<string, number>();
    for (const p of stream) inStream.set(p, (inStream.get(p) ?? 0) + 1);

    const lost = acked.filter((id) => !inStream.has(id));
    const duplicated = [...inStream.values()].filter((n) => n > 1).length;
    const undelivered = accepted.filter((b) => !received.has(b));
    process.stdout.write(
      `# failover: ${acked.length} telemetry acked, ${lost.length} lost, ${duplicated} stored twice; ${accepted.length} C2D accepted (${beforeKill} before the kill, ${beforeNatsDown - beforeKill} before the outage, ${recovered} after; ${c2dFailed} refused, sender restarted ${senderRestarts} times), ${undelivered.length} undelivered\n`,
    );
    assert.ok(acked.length > DEVICES * 20, `telemetry flowed: ${acked.length}`);
    assert.deepEqual(lost.slice(0, 10), [], `acknowledged telemetry missing from the log: ${lost.length}`);
    // Stored twice happens (the SDK resends what was not acknowledged before the kill); read twice must not.
    assert.equal(new Set(records.map((r) => `${r.partition}/${r.sequenceNumber}`)).size, records.length, 'the reader delivered a record twice');
    assert.ok(beforeKill > 0, 'no C2D accepted before the kill');
    assert.ok(beforeNatsDown > beforeKill, 'no C2D accepted between the kill and the NATS outage');
    assert.ok(recovered >= 50, `C2D accepted after NATS came back: ${recovered} in 60 s`);
    assert.deepEqual(undelivered.slice(0, 10), [], `accepted C2D messages never delivered: ${undelivered.length}; still in the store: ${pendingNow.join('; ')}`);
  });
});
