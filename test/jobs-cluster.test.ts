/**
 * Jobs in a cluster (PostgreSQL and NATS): a job created through one node reaches a device
 * connected to the other, whichever node runs it: a direct method answered by the device there
 * (unmodified azure-iot-device client), an offline device reported as failed, and a twin update
 * whose desired patch the device's node pushes to it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startAgent, startCluster, type Agent, type Cluster } from './support/cluster.js';

const HOSTNAME = 'hub.jobs.test';
const [A, B] = ['127.0.98.1', '127.0.98.2'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster;
/** Talks to node A (the service side). */
let service: Agent;
/** The device, connected to node B. */
let deviceSide: Agent;

interface Job {
  status: string;
  deviceJobStatistics: { deviceCount: number; failedCount: number; succeededCount: number };
}

async function rest<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  return service.call('rest', { hostname: HOSTNAME, key: cluster.ownerKey, method, path, ...(body === undefined ? {} : { body }) });
}

async function finished(id: string): Promise<Job> {
  for (const end = Date.now() + 60_000; Date.now() < end; await sleep(250)) {
    const r = await rest<Job>('GET', `/jobs/v2/${id}`);
    assert.equal(r.status, 200);
    if (['completed', 'failed', 'cancelled'].includes(r.body.status)) return r.body;
  }
  throw new Error(`job ${id} did not finish in 60 s`);
}

describe('jobs across two nodes', () => {
  before(async () => {
    cluster = await startCluster({ addresses: [A, B], hostname: HOSTNAME });
    service = await startAgent(HOSTNAME, A);
    deviceSide = await startAgent(HOSTNAME, B);
    for (const id of ['jc-1', 'jc-2']) assert.equal((await rest('PUT', `/devices/${id}`, { deviceId: id })).status, 200);
    const dev = await rest<{ authentication: { symmetricKey: { primaryKey: string } } }>('GET', '/devices/jc-1');
    await deviceSide.call('device.open', { name: 'jc-1', connectionString: `HostName=${HOSTNAME};DeviceId=jc-1;SharedAccessKey=${dev.body.authentication.symmetricKey.primaryKey}`, transport: 'mqtt', method: 'getFirmware' });
    await sleep(500); // the SDK subscribes to methods after onDeviceMethod returns
  });

  after(async () => {
    service?.kill();
    deviceSide?.kill();
    await cluster?.stop();
  });

  it('a method job created on one node is answered by a device on the other; the offline one fails', async () => {
    const put = await rest('PUT', '/jobs/v2/cluster-method', {
      jobId: 'cluster-method',
      type: 'scheduleDeviceMethod',
      queryCondition: "deviceId IN ['jc-1', 'jc-2']",
      cloudToDeviceMethod: { methodName: 'getFirmware', payload: { verbose: true }, responseTimeoutInSeconds: 10 },
      maxExecutionTimeInSeconds: 120,
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const job = await finished('cluster-method');
    assert.equal(job.status, 'completed');
    assert.deepEqual(job.deviceJobStatistics, { deviceCount: 2, failedCount: 1, succeededCount: 1, runningCount: 0, pendingCount: 0 });
    await deviceSide.waitFor((e) => e.event === 'method' && e.name === 'jc-1', 5000, 'the method at the device');
    const rows = await rest<Array<{ deviceId: string; status: string; outcome: { deviceMethodResponse: { status: number; payload: unknown } | null }; error?: { code: string } }>>('POST', '/devices/query', {
      query: "SELECT * FROM devices.jobs WHERE jobId = 'cluster-method'",
    });
    const by = new Map(rows.body.map((r) => [r.deviceId, r]));
    assert.deepEqual(by.get('jc-1')?.outcome.deviceMethodResponse, { status: 200, payload: { echo: { verbose: true }, at: 'jc-1' } });
    assert.equal(by.get('jc-2')?.error?.code, 'DeviceNotOnline');
  });

  it("a twin-update job's desired patch reaches the device on the other node", async () => {
    const put = await rest('PUT', '/jobs/v2/cluster-twin', {
      jobId: 'cluster-twin',
      type: 'scheduleUpdateTwin',
      queryCondition: "deviceId = 'jc-1'",
      updateTwin: { etag: '*', properties: { desired: { mode: 'eco' } } },
      maxExecutionTimeInSeconds: 120,
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal((await finished('cluster-twin')).status, 'completed');
    await deviceSide.waitFor((e) => e.event === 'desired' && e.name === 'jc-1' && (e.patch as { mode?: string }).mode === 'eco', 10_000, 'the desired patch at the device');
  });
});
