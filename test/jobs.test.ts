/**
 * Jobs (issue 18 item 1) driven by Microsoft's unmodified azure-iothub JobClient against a real
 * `gatehouse start` process: a twin-update job over 1,000 devices (statistics, the twins, the
 * desired patch reaching a connected device, `devices.jobs`), a direct-method job that reaches
 * connected devices (unmodified azure-iot-device clients answering) and reports an offline one as
 * failed, cancelling a running job, a job that survives `kill -9` of its hub, the job query with
 * its paging, rights as Azure's, the errors, and `gatehouse job`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { policyKey, restClient, type Rest } from './support/rest.js';

const { Registry, JobClient } = iothub;
const { Client } = deviceSdk;
type Registry = InstanceType<typeof Registry>;
type JobClient = InstanceType<typeof JobClient>;

const ADDRESS = '127.0.97.1';
const FLEET = 1000;
const fleetId = (i: number) => `fleet-${String(i).padStart(4, '0')}`;

let hub: HubProcess;
let registry: Registry;
let jobs: JobClient;
let rest: Rest;
const keys = new Map<string, string>();

interface Job {
  jobId: string;
  status: string;
  type: string;
  startTime?: string;
  endTime?: string;
  deviceJobStatistics: { deviceCount: number; failedCount: number; succeededCount: number; runningCount: number; pendingCount: number };
}

async function getJob(id: string): Promise<Job> {
  return (await jobs.getJob(id)).jobStatus as unknown as Job;
}

async function until(id: string, done: (j: Job) => boolean, ms = 90_000): Promise<Job> {
  const end = Date.now() + ms;
  for (;;) {
    const j = await getJob(id);
    if (done(j)) return j;
    if (Date.now() > end) throw new Error(`job ${id} did not get there in ${ms} ms: ${JSON.stringify(j)}`);
    await sleep(200);
  }
}

async function query<T>(sql: string): Promise<T[]> {
  const q = registry.createQuery(sql, 1000);
  const out: T[] = [];
  // The SDK's next() without arguments starts over when called as a promise: hand it the token.
  do out.push(...((await q.next(q.continuationToken ?? undefined)).result as T[]));
  while (q.hasMoreResults);
  return out;
}

function policyConnectionString(policy: string): string {
  return `HostName=${ADDRESS};SharedAccessKeyName=${policy};SharedAccessKey=${policyKey(hub.dataDir, policy)}`;
}

async function connect(deviceId: string, answer?: (payload: unknown) => unknown): Promise<InstanceType<typeof Client>> {
  const client = Client.fromConnectionString(`HostName=${ADDRESS};DeviceId=${deviceId};SharedAccessKey=${keys.get(deviceId)}`, deviceMqtt.Mqtt);
  await client.open();
  if (answer !== undefined) {
    client.onDeviceMethod('getFirmware', (req, res) => {
      res.send(200, answer(req.payload), () => undefined);
    });
    await sleep(300); // the SDK subscribes to methods after onDeviceMethod returns
  }
  return client;
}

before(async () => {
  hub = await startHubProcess({ address: ADDRESS });
  registry = Registry.fromConnectionString(hub.connectionString);
  jobs = JobClient.fromConnectionString(hub.connectionString);
  rest = restClient(ADDRESS, readFileSync(hub.caFile, 'utf8'), policyKey(hub.dataDir));
  const ids = [...Array.from({ length: FLEET }, (_, i) => fleetId(i)), 'outsider'];
  for (let i = 0; i < ids.length; i += 100) {
    const r = await registry.addDevices(ids.slice(i, i + 100).map((deviceId) => ({ deviceId })));
    assert.equal((r.responseBody as { isSuccessful?: boolean }).isSuccessful, true);
  }
  for (const id of [fleetId(1), fleetId(2), fleetId(3), fleetId(4)]) keys.set(id, String((await registry.get(id)).responseBody.authentication?.symmetricKey?.primaryKey));
});

after(async () => {
  await hub?.stop();
  if (hub !== undefined) removeDir(hub.dataDir);
});

describe('jobs through the azure-iothub JobClient', () => {
  it('a twin-update job over 1,000 devices completes with the right statistics; the twins change and a connected device is told', async () => {
    const device = await connect(fleetId(1));
    try {
      const twin = await device.getTwin();
      const pushed: Array<Record<string, unknown>> = [];
      twin.on('properties.desired', (p: Record<string, unknown>) => pushed.push(p));
      const patch = { etag: '*', tags: { wave: 1 }, properties: { desired: { firmware: '2.0' }, reported: {} } };
      const created = (await jobs.scheduleTwinUpdate('twin-wave-1', "STARTSWITH(deviceId, 'fleet-')", patch, new Date(), 600)).jobStatus as unknown as Job;
      assert.equal(created.status, 'queued');
      assert.equal(created.type, 'scheduleUpdateTwin');
      const done = await until('twin-wave-1', (j) => j.status === 'completed');
      assert.deepEqual(done.deviceJobStatistics, { deviceCount: FLEET, failedCount: 0, succeededCount: FLEET, runningCount: 0, pendingCount: 0 });
      assert.ok(done.endTime !== undefined && Date.parse(done.endTime) >= Date.parse(String(done.startTime)));

      const tagged = await query<{ deviceId: string }>('SELECT deviceId FROM devices WHERE tags.wave = 1');
      assert.equal(tagged.length, FLEET);
      assert.equal((await registry.getTwin('outsider')).responseBody.tags?.wave, undefined, 'the condition left other devices alone');
      assert.equal((await registry.getTwin(fleetId(999))).responseBody.properties.desired.firmware, '2.0');
      for (let i = 0; i < 50 && !pushed.some((p) => p.firmware === '2.0'); i++) await sleep(100);
      assert.ok(pushed.some((p) => p.firmware === '2.0'), 'the desired patch reached the connected device');

      // Per device, as Azure's devices.jobs.
      const rows = await query<{ deviceId: string; jobId: string; jobType: string; status: string }>("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'twin-wave-1'");
      assert.equal(rows.length, FLEET);
      assert.ok(rows.every((r) => r.status === 'completed' && r.jobType === 'scheduleUpdateTwin'));
      const [count] = await query<{ n: number }>("SELECT COUNT() AS n FROM devices.jobs WHERE deviceId = 'fleet-0007' AND status = 'completed'");
      assert.equal(count?.n, 1);
    } finally {
      await device.close();
    }
  });

  it('a method job reaches connected devices and reports the offline one as failed', async () => {
    const clients = await Promise.all([1, 2, 3].map((i) => connect(fleetId(i), () => ({ firmware: `fw-${i}` }))));
    try {
      const targets = [1, 2, 3, 4].map((i) => `'${fleetId(i)}'`).join(', ');
      await jobs.scheduleDeviceMethod('method-1', `deviceId IN [${targets}]`, { methodName: 'getFirmware', payload: { verbose: true }, responseTimeoutInSeconds: 10 }, new Date(), 120);
      const done = await until('method-1', (j) => j.status === 'completed');
      assert.deepEqual(done.deviceJobStatistics, { deviceCount: 4, failedCount: 1, succeededCount: 3, runningCount: 0, pendingCount: 0 });
      const rows = await query<{ deviceId: string; status: string; outcome: { deviceMethodResponse: { status: number; payload: unknown } | null }; error?: { code: string } }>(
        "SELECT * FROM devices.jobs WHERE jobId = 'method-1'",
      );
      const by = new Map(rows.map((r) => [r.deviceId, r]));
      for (const i of [1, 2, 3]) {
        assert.equal(by.get(fleetId(i))?.status, 'completed');
        assert.deepEqual(by.get(fleetId(i))?.outcome.deviceMethodResponse, { status: 200, payload: { firmware: `fw-${i}` } });
      }
      assert.equal(by.get(fleetId(4))?.status, 'failed');
      assert.equal(by.get(fleetId(4))?.error?.code, 'DeviceNotOnline');
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('a scheduled job is queued, then cancelled before it starts', async () => {
    const created = (await jobs.scheduleTwinUpdate('later', "deviceId = 'fleet-0005'", { tags: { later: true } }, new Date(Date.now() + 3_600_000), 120)).jobStatus as unknown as Job;
    assert.equal(created.status, 'queued');
    assert.equal((await getJob('later')).status, 'scheduled');
    const cancelled = (await jobs.cancelJob('later')).jobStatus as unknown as Job;
    assert.equal(cancelled.status, 'cancelled');
    assert.equal((await registry.getTwin(fleetId(5))).responseBody.tags?.later, undefined);
  });

  it('cancel stops a running job: the devices not done yet stay undone', async () => {
    // Every fleet device is offline and the method waits 2 s for each to connect: batches of 100 take 2 s.
    const r = cli(['job', 'create', '--job-id', 'slow', '--jt', 'scheduleDeviceMethod', '-q', "STARTSWITH(deviceId, 'fleet-')", '--mn', 'reboot', '--mct', '2', '--data-dir', hub.dataDir]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as Job).status, 'queued');
    await until('slow', (j) => j.status === 'running' && j.deviceJobStatistics.failedCount > 0);
    const c = cli(['job', 'cancel', '--job-id', 'slow', '--data-dir', hub.dataDir]);
    assert.equal(c.status, 0, c.stderr);
    const cancelled = await until('slow', (j) => j.status === 'cancelled');
    await sleep(3000);
    const later = await getJob('slow');
    assert.equal(later.status, 'cancelled');
    assert.deepEqual(later.deviceJobStatistics, cancelled.deviceJobStatistics, 'nothing moved after the cancel');
    assert.ok(later.deviceJobStatistics.failedCount <= 300, JSON.stringify(later.deviceJobStatistics));
    assert.equal(later.deviceJobStatistics.pendingCount, 0);
    const [canceled] = await query<{ n: number }>("SELECT COUNT() AS n FROM devices.jobs WHERE jobId = 'slow' AND status = 'canceled'");
    assert.equal(canceled?.n, FLEET - later.deviceJobStatistics.failedCount);
  });

  it('a job survives kill -9 of its hub: the restarted hub resumes it and it completes', async () => {
    // Every fleet device is offline and waited for 1 s (connectTimeoutInSeconds, which the SDK does not send: REST): about 20 s in all.
    const put = await rest('PUT', '/jobs/v2/survivor-2', {
      jobId: 'survivor-2',
      type: 'scheduleDeviceMethod',
      queryCondition: "STARTSWITH(deviceId, 'fleet-')",
      cloudToDeviceMethod: { methodName: 'reboot', payload: null, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 1 },
      maxExecutionTimeInSeconds: 600,
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const mid = await until('survivor-2', (j) => j.deviceJobStatistics.failedCount >= 100);
    assert.ok(mid.deviceJobStatistics.failedCount < FLEET, 'killed in the middle');
    hub.proc.kill('SIGKILL');
    await hub.stop();
    hub = await startHubProcess({ address: ADDRESS, dataDir: hub.dataDir });
    registry = Registry.fromConnectionString(hub.connectionString);
    jobs = JobClient.fromConnectionString(hub.connectionString);
    rest = restClient(ADDRESS, readFileSync(hub.caFile, 'utf8'), policyKey(hub.dataDir));
    const done = await until('survivor-2', (j) => j.status === 'completed', 120_000);
    assert.equal(done.deviceJobStatistics.deviceCount, FLEET);
    assert.equal(done.deviceJobStatistics.failedCount + done.deviceJobStatistics.succeededCount, FLEET);
    assert.equal(done.deviceJobStatistics.pendingCount, 0);
    const [count] = await query<{ n: number }>("SELECT COUNT() AS n FROM devices.jobs WHERE jobId = 'survivor-2' AND status = 'failed'");
    assert.equal(count?.n, FLEET);
  });

  it('createQuery lists jobs by type and status, page by page', async () => {
    const q = jobs.createQuery('scheduleDeviceMethod', 'completed' as 'finished', 1);
    const seen: string[] = [];
    let pages = 0;
    do {
      const page = (await q.next(q.continuationToken ?? undefined)).result as Job[];
      pages++;
      for (const j of page) {
        assert.equal(j.type, 'scheduleDeviceMethod');
        assert.equal(j.status, 'completed');
        seen.push(j.jobId);
      }
    } while (q.hasMoreResults);
    assert.deepEqual(seen, ['method-1', 'survivor-2']);
    assert.equal(pages, 2);
    const twinJobs = (await jobs.createQuery('scheduleUpdateTwin').next()).result as Job[];
    assert.deepEqual(twinJobs.map((j) => j.jobId), ['twin-wave-1', 'later']);
    const listed = cli(['job', 'list', '--jt', 'scheduleDeviceMethod', '--js', 'cancelled', '--data-dir', hub.dataDir]);
    assert.equal(listed.status, 0, listed.stderr);
    assert.deepEqual((JSON.parse(listed.stdout) as Job[]).map((j) => j.jobId), ['slow']);
    const shown = cli(['job', 'show', '--job-id', 'twin-wave-1', '--data-dir', hub.dataDir]);
    assert.equal((JSON.parse(shown.stdout) as Job).deviceJobStatistics.succeededCount, FLEET);
  });

  it('rights as Azure: twin updates need RegistryWrite, methods ServiceConnect', async () => {
    const service = JobClient.fromConnectionString(policyConnectionString('service'));
    const registryWriter = JobClient.fromConnectionString(policyConnectionString('registryReadWrite'));
    const reader = JobClient.fromConnectionString(policyConnectionString('registryRead'));
    const method = { methodName: 'getFirmware', payload: null, responseTimeoutInSeconds: 5 };
    await assert.rejects(service.scheduleTwinUpdate('r-1', '*', { tags: { x: 1 } }, new Date(Date.now() + 3_600_000), 60), (e: Error) => e.constructor.name === 'UnauthorizedError');
    await service.scheduleDeviceMethod('r-2', '*', method, new Date(Date.now() + 3_600_000), 60);
    await assert.rejects(registryWriter.scheduleDeviceMethod('r-3', '*', method, new Date(Date.now() + 3_600_000), 60), (e: Error) => e.constructor.name === 'UnauthorizedError');
    await registryWriter.scheduleTwinUpdate('r-4', '*', { tags: { x: 1 } }, new Date(Date.now() + 3_600_000), 60);
    await assert.rejects(reader.scheduleTwinUpdate('r-5', '*', { tags: { x: 1 } }, new Date(), 60), (e: Error) => e.constructor.name === 'UnauthorizedError');
    assert.equal(((await reader.getJob('r-4')).jobStatus as unknown as Job).status, 'scheduled');
    await assert.rejects(service.cancelJob('r-4'), (e: Error) => e.constructor.name === 'UnauthorizedError');
    await registryWriter.cancelJob('r-4');
    await service.cancelJob('r-2');
  });

  it('answers bad requests with stable codes', async () => {
    const missing = await rest('GET', '/jobs/v2/nope');
    assert.equal(missing.status, 404);
    assert.equal(missing.headers['iothub-errorcode'], 'JobNotFound');
    const dup = await rest('PUT', '/jobs/v2/later', { type: 'scheduleUpdateTwin', queryCondition: '*', updateTwin: { tags: { a: 1 } } });
    assert.equal(dup.status, 409);
    assert.equal(dup.headers['iothub-errorcode'], 'JobAlreadyExists');
    for (const [body, message] of [
      [{ type: 'exportDevices', queryCondition: '*' }, /type must be/],
      [{ type: 'scheduleUpdateTwin', queryCondition: "deviceId = 'x", updateTwin: { tags: { a: 1 } } }, /queryCondition/],
      [{ type: 'scheduleUpdateTwin', queryCondition: '*', updateTwin: { properties: { reported: { a: 1 } } } }, /reported/],
      [{ type: 'scheduleDeviceMethod', queryCondition: '*', cloudToDeviceMethod: { methodName: 'a/b' } }, /methodName/],
      [{ type: 'scheduleUpdateTwin', queryCondition: '*', updateTwin: { tags: {} }, startTime: 'tomorrow' }, /startTime/],
    ] as const) {
      const r = await rest('PUT', '/jobs/v2/bad', body);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.headers['iothub-errorcode'], 'ArgumentInvalid');
      assert.match(JSON.stringify(r.body), message);
    }
    const badStatus = await rest('GET', '/jobs/v2/query?jobStatus=done');
    assert.equal(badStatus.status, 400);
  });
});
