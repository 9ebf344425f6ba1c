/**
 * Automatic device and module configurations (issue 18 item 2) driven by Microsoft's unmodified
 * azure-iothub Registry (addConfiguration, getConfiguration, getConfigurations,
 * updateConfiguration with and without force, removeConfiguration) against a real `gatehouse
 * start` process; the REST shapes, errors and limits checked on the wire; and what a configuration
 * does to the twins it targets: the highest priority wins, the desired properties land on the
 * twin and reach a connected device, the system and custom metrics count them.
 */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { generateSasToken } from '../src/auth/sas.js';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';

const { Registry } = iothub;
const { Client } = deviceSdk;
type Registry = InstanceType<typeof Registry>;
type Configuration = Parameters<Registry['addConfiguration']>[0];

const ADDRESS = '127.0.96.1';

let hub: HubProcess;
let registry: Registry;

function ownerKey(): string {
  const m = /SharedAccessKey=([^;]+)/.exec(hub.connectionString);
  assert.ok(m?.[1]);
  return m[1];
}

/** A raw HTTPS call as iothubowner, for what the SDK does not send. */
function raw(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const token = generateSasToken({ resource: ADDRESS, key: ownerKey(), keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 600 });
  return new Promise<{ status: number; headers: Record<string, unknown>; body: unknown; code: string | undefined }>((resolve, reject) => {
    const req = request(
      { host: ADDRESS, port: 443, method, path: `${path}${path.includes('?') ? '&' : '?'}api-version=2021-04-12`, headers: { authorization: token, 'content-type': 'application/json', ...headers } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          const code = res.headers['iothub-errorcode'];
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === '' ? undefined : (JSON.parse(text) as unknown), code: typeof code === 'string' ? code : undefined });
        });
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** As Microsoft's e2e builds them; the SDK fills in schemaVersion when it is missing. */
function deviceConfig(id: string, extra: Partial<Configuration> = {}): Configuration {
  return { id, content: { deviceContent: { 'properties.desired': { prop1: 'foo' } } }, targetCondition: '', priority: 20, ...extra } as Configuration;
}

async function rejectsWith(p: Promise<unknown>, name: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof Error);
    assert.equal(err.constructor.name, name, `expected ${name}, got ${err.constructor.name}: ${err.message}`);
    return true;
  });
}

before(async () => {
  hub = await startHubProcess({ address: ADDRESS });
  registry = Registry.fromConnectionString(hub.connectionString);
});

after(async () => {
  await hub?.stop();
  if (hub !== undefined) removeDir(hub.dataDir);
});

describe('configurations through the azure-iothub Registry', () => {
  for (const entity of ['device', 'module'] as const) {
    it(`${entity} configuration: add, get, list, update, force-update, delete (Microsoft's e2e scenarios)`, async () => {
      const id = `sdk_${entity}_config`;
      const content = { [`${entity}Content`]: { 'properties.desired': { prop1: 'foo' } } };
      const config = { id, content, targetCondition: '', priority: 20 } as unknown as Configuration;
      await registry.addConfiguration({ ...config });

      const found = (await registry.getConfiguration(id)).responseBody;
      assert.equal(found.id, id);
      assert.deepEqual(found.content, content);
      assert.equal(found.schemaVersion, '1.0');
      assert.equal(found.priority, 20);
      assert.ok(typeof found.etag === 'string' && found.etag.length > 0);
      assert.ok(!Number.isNaN(Date.parse(String(found.createdTimeUtc))));
      assert.deepEqual(found.systemMetrics?.results, { targetedCount: 0, appliedCount: 0 });

      const listed = (await registry.getConfigurations()).responseBody;
      assert.deepEqual(listed.find((c) => c.id === id)?.content, content);

      found.priority = 99;
      await registry.updateConfiguration(found);
      const updated = (await registry.getConfiguration(id)).responseBody;
      assert.equal(updated.priority, 99);
      assert.notEqual(updated.etag, found.etag, 'an update moves the etag');
      assert.equal(updated.createdTimeUtc, found.createdTimeUtc);

      // The stale etag is refused; force (If-Match: *) is not.
      found.priority = 7;
      await rejectsWith(registry.updateConfiguration(found), 'InvalidEtagError');
      await registry.updateConfiguration({ ...config, priority: 42 }, true);
      assert.equal((await registry.getConfiguration(id)).responseBody.priority, 42);

      await registry.removeConfiguration(id);
      await assert.rejects(registry.getConfiguration(id));
      const gone = await raw('GET', `/configurations/${id}`);
      assert.equal(gone.status, 404);
      assert.equal(gone.code, 'ConfigurationNotFound');
    });
  }

  it('refuses a second configuration with the same id (409), and a change of content (400)', async () => {
    await registry.addConfiguration(deviceConfig('dup'));
    await rejectsWith(registry.addConfiguration(deviceConfig('dup')), 'DeviceAlreadyExistsError');
    const r = await raw('PUT', '/configurations/dup', deviceConfig('dup'));
    assert.equal(r.status, 409);
    assert.equal(r.code, 'ConfigurationAlreadyExists');
    const changed = deviceConfig('dup', { content: { deviceContent: { 'properties.desired.other': 1 } } });
    await rejectsWith(registry.updateConfiguration(changed, true), 'ArgumentError');
    await registry.removeConfiguration('dup');
  });

  it('checks ids, content, priorities, labels and queries (400 ArgumentInvalid, naming the problem)', async () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ['Upper', deviceConfig('Upper'), /configuration id/],
      ['c1', { id: 'c1', content: {}, priority: 1 }, /exactly one of deviceContent/],
      ['c1', { id: 'c1', content: { deviceContent: { 'properties.reported.x': 1 } } }, /properties\.desired/],
      ['c1', { id: 'c1', content: { deviceContent: { 'properties.desired': { prop1: 'a' } }, moduleContent: { 'properties.desired': { prop1: 'a' } } } }, /exactly one/],
      ['c1', deviceConfig('c1', { priority: -1 }), /priority/],
      ['c1', deviceConfig('c1', { targetCondition: "tags.x = 'unterminated" }), /targetCondition/],
      ['c1', deviceConfig('c1', { labels: { $reserved: 'x' } }), /label/],
      ['c1', deviceConfig('c1', { metrics: { queries: { bad: 'SELECT deviceId FROM nowhere' } } }), /metric query 'bad'/],
      ['c2', deviceConfig('c1'), /differs from the id in the path/],
    ];
    for (const [id, body, message] of cases) {
      const r = await raw('PUT', `/configurations/${id}`, body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.status}`);
      assert.equal(r.code, 'ArgumentInvalid');
      assert.match(JSON.stringify(r.body), message);
    }
  });

  it('testQueries names the invalid queries and passes the valid ones', async () => {
    const r = await raw('POST', '/configurations/testQueries', {
      targetCondition: "tags.building = 43 AND tags.environment = 'test'",
      customMetricQueries: { ok: "SELECT deviceId FROM devices WHERE configurations.[[c-1]].status = 'Applied'", broken: 'SELECT FROM devices' },
    });
    assert.equal(r.status, 200);
    const body = r.body as { targetConditionError: string; customMetricQueryErrors: Record<string, string> };
    assert.equal(body.targetConditionError, '');
    assert.equal(body.customMetricQueryErrors.ok, '');
    assert.match(body.customMetricQueryErrors.broken ?? '', /Syntax error/);
    const bad = (await raw('POST', '/configurations/testQueries', { targetCondition: 'tags.x ==' })).body as { targetConditionError: string };
    assert.match(bad.targetConditionError, /Syntax error/);
  });

  it('holds at most 100 configurations, and lists them all', async () => {
    const before = (await registry.getConfigurations()).responseBody.length;
    for (let i = before; i < 100; i++) {
      const r = await raw('PUT', `/configurations/limit-${i}`, deviceConfig(`limit-${i}`));
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    const over = await raw('PUT', '/configurations/limit-over', deviceConfig('limit-over'));
    assert.equal(over.status, 403);
    assert.equal(over.code, 'IotHubQuotaExceeded');
    assert.equal((await registry.getConfigurations()).responseBody.length, 100);
    for (let i = before; i < 100; i++) await registry.removeConfiguration(`limit-${i}`);
    assert.equal((await registry.getConfigurations()).responseBody.length, before);
  });
});



type TwinDoc = { tags?: Record<string, unknown>; properties: { desired: Record<string, unknown>; reported: Record<string, unknown> }; configurations?: Record<string, { status: string }> };

async function twinOf(deviceId: string, moduleId?: string): Promise<TwinDoc> {
  const r = await raw('GET', moduleId === undefined ? `/twins/${deviceId}` : `/twins/${deviceId}/modules/${moduleId}`);
  assert.equal(r.status, 200);
  return r.body as TwinDoc;
}

/** Polls until `check` passes (the engine applies configurations asynchronously, as Azure does). */
async function eventually<T>(what: string, read: () => Promise<T>, check: (v: T) => boolean, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  let last: T = await read();
  while (!check(last)) {
    if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms; last seen ${JSON.stringify(last)}`);
    await sleep(200);
    last = await read();
  }
  return last;
}

const settingsOf = (t: TwinDoc) => t.properties.desired.settings as { rate?: number; mode?: string } | undefined;

async function metricsOf(id: string): Promise<{ system: Record<string, number>; custom: Record<string, number> }> {
  const c = (await registry.getConfiguration(id)).responseBody;
  return { system: c.systemMetrics?.results ?? {}, custom: c.metrics?.results ?? {} };
}

describe('what configurations do to twins', () => {
  it('the highest-priority matching configuration sets the desired properties, reaches the device, and is counted', async () => {
    for (const [id, tags] of [['fleet-1', { env: 'prod' }], ['fleet-2', { env: 'prod', ring: 'canary' }], ['fleet-3', { env: 'dev' }]] as const) {
      await registry.create({ deviceId: id });
      await registry.updateTwin(id, { tags }, '*');
    }
    const key = String((await registry.get('fleet-1')).responseBody.authentication?.symmetricKey?.primaryKey);
    const client = Client.fromConnectionString(`HostName=${ADDRESS};DeviceId=fleet-1;SharedAccessKey=${key}`, deviceMqtt.Mqtt);
    try {
      await client.open();
      const twin = await client.getTwin();
      const pushed: Array<Record<string, unknown>> = [];
      twin.on('properties.desired', (p: Record<string, unknown>) => pushed.push(p));

      await registry.addConfiguration({
        id: 'cfg-prod',
        content: { deviceContent: { 'properties.desired.settings': { rate: 5, mode: 'eco' } } },
        targetCondition: "tags.env = 'prod'",
        priority: 10,
        labels: { owner: 'ops' },
        metrics: { queries: { reportedRate5: "SELECT deviceId FROM devices WHERE configurations.[[cfg-prod]].status = 'Applied' AND properties.reported.rate = 5" } },
      } as unknown as Configuration);
      await registry.addConfiguration({
        id: 'cfg-canary',
        content: { deviceContent: { 'properties.desired.settings.rate': 9 } },
        targetCondition: "tags.ring = 'canary'",
        priority: 20,
      } as unknown as Configuration);

      const t1 = await eventually('fleet-1 gets cfg-prod', () => twinOf('fleet-1'), (t) => settingsOf(t)?.rate === 5);
      assert.deepEqual(t1.properties.desired.settings, { rate: 5, mode: 'eco' });
      assert.deepEqual(t1.configurations, { 'cfg-prod': { status: 'Applied' } });
      // The higher priority wins where both target the twin; the other is only "Targeted".
      const t2 = await eventually('fleet-2 gets cfg-canary', () => twinOf('fleet-2'), (t) => settingsOf(t)?.rate === 9);
      assert.deepEqual(t2.configurations, { 'cfg-canary': { status: 'Applied' }, 'cfg-prod': { status: 'Targeted' } });
      const t3 = await twinOf('fleet-3');
      assert.equal(t3.properties.desired.settings, undefined, 'a twin no configuration targets is left alone');
      assert.equal(t3.configurations, undefined);

      // The connected device was told, as for any desired change.
      await eventually('the desired patch reaches the device', async () => pushed, (p) => p.some((x) => (x.settings as { rate?: number } | undefined)?.rate === 5));

      await eventually('system metrics', () => metricsOf('cfg-prod'), (m) => m.system.targetedCount === 2 && m.system.appliedCount === 1);
      assert.deepEqual((await metricsOf('cfg-canary')).system, { targetedCount: 1, appliedCount: 1 });

      // A custom metric counts what devices report; it is evaluated with the next pass (a change of the configuration brings one on).
      await new Promise<void>((res, rej) => twin.properties.reported.update({ rate: 5 }, (err?: Error) => (err ? rej(err) : res())));
      const cfg = (await registry.getConfiguration('cfg-prod')).responseBody;
      cfg.labels = { owner: 'ops', checked: 'yes' };
      await registry.updateConfiguration(cfg);
      await eventually('custom metric', () => metricsOf('cfg-prod'), (m) => m.custom.reportedRate5 === 1);
    } finally {
      await client.close();
    }
  });

  it('re-evaluates a twin when its tags change, and hands a twin to the next configuration when one is deleted', async () => {
    // fleet-3 comes into scope when it is tagged prod.
    await registry.updateTwin('fleet-3', { tags: { env: 'prod' } }, '*');
    const t3 = await eventually('fleet-3 gets cfg-prod after its tag changed', () => twinOf('fleet-3'), (t) => settingsOf(t)?.rate === 5);
    assert.deepEqual(t3.configurations, { 'cfg-prod': { status: 'Applied' } });

    // Deleting the canary configuration: fleet-2 falls back to cfg-prod.
    await registry.removeConfiguration('cfg-canary');
    const t2 = await eventually('fleet-2 falls back to cfg-prod', () => twinOf('fleet-2'), (t) => settingsOf(t)?.rate === 5);
    assert.deepEqual(t2.configurations, { 'cfg-prod': { status: 'Applied' } });

    // Leaving the target condition: the entry goes, the values given stay.
    await registry.updateTwin('fleet-1', { tags: { env: 'retired' } }, '*');
    const t1 = await eventually('fleet-1 leaves cfg-prod', () => twinOf('fleet-1'), (t) => t.configurations === undefined);
    assert.equal(settingsOf(t1)?.rate, 5);
    // Metrics are counted by the passes (after a configuration change, and every 5 minutes): a forced update brings one on.
    await registry.updateConfiguration((await registry.getConfiguration('cfg-prod')).responseBody, true);
    await eventually('targeted count after a pass', () => metricsOf('cfg-prod'), (m) => m.system.targetedCount === 2 && m.system.appliedCount === 2);
    await registry.removeConfiguration('cfg-prod');
  });

  it('a module configuration sets module twins that match, not device twins', async () => {
    await registry.addModule({ deviceId: 'fleet-2', moduleId: 'sensor' });
    await registry.addModule({ deviceId: 'fleet-2', moduleId: 'other' });
    await raw('PATCH', '/twins/fleet-2/modules/sensor', { tags: { role: 'sensor' } });
    await registry.addConfiguration({
      id: 'cfg-modules',
      content: { moduleContent: { 'properties.desired.sampling': { everySeconds: 30 } } },
      targetCondition: "FROM devices.modules WHERE tags.role = 'sensor'",
      priority: 1,
    } as unknown as Configuration);
    const m = await eventually('the sensor module gets it', () => twinOf('fleet-2', 'sensor'), (t) => t.properties.desired.sampling !== undefined);
    assert.deepEqual(m.properties.desired.sampling, { everySeconds: 30 });
    assert.deepEqual(m.configurations, { 'cfg-modules': { status: 'Applied' } });
    assert.equal((await twinOf('fleet-2', 'other')).properties.desired.sampling, undefined);
    assert.equal((await twinOf('fleet-2')).properties.desired.sampling, undefined);
    await eventually('module metrics', () => metricsOf('cfg-modules'), (x) => x.system.targetedCount === 1 && x.system.appliedCount === 1);
    const c = (await registry.getConfiguration('cfg-modules')).responseBody;
    assert.equal(c.systemMetrics?.queries?.targetedCount, "SELECT deviceId, moduleId FROM devices.modules WHERE tags.role = 'sensor'");
    await registry.removeConfiguration('cfg-modules');
  });
});

describe('gatehouse configuration (az iot hub configuration)', () => {
  const gh = (...args: string[]) => {
    const r = cli(['configuration', ...args, '--data-dir', hub.dataDir]);
    return { ...r, json: r.status === 0 && /^[[{]/.test(r.stdout.trim()) ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined };
  };

  it('creates, shows, lists, updates, shows a metric of and deletes a configuration', async () => {
    await registry.create({ deviceId: 'cli-dev' });
    await registry.updateTwin('cli-dev', { tags: { site: 'north' } }, '*');
    const created = gh('create', '-c', 'cli-cfg', '--content', '{"content": {"deviceContent": {"properties.desired.fan": {"speed": 2}}}}', '--target-condition', "tags.site = 'north'", '--priority', '3', '--labels', '{"team": "ops"}', '--metrics', '{"queries": {"all": "SELECT deviceId FROM devices"}}');
    assert.equal(created.status, 0, created.stderr);
    assert.equal(created.json?.id, 'cli-cfg');
    assert.deepEqual(created.json?.content, { deviceContent: { 'properties.desired.fan': { speed: 2 } } });

    await eventually('the CLI-made configuration applies', () => twinOf('cli-dev'), (t) => (t.properties.desired.fan as { speed?: number } | undefined)?.speed === 2);
    await eventually('and is counted', async () => gh('show', '-c', 'cli-cfg').json, (d) => (d?.systemMetrics as { results: Record<string, number> }).results.appliedCount === 1);

    const listed = gh('list', '-o', 'table');
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, /cli-cfg\s+3\s+tags\.site = 'north'\s+1\s+1/);

    const updated = gh('update', '-c', 'cli-cfg', '--priority', '8', '--labels', '{"team": "ops", "wave": "2"}');
    assert.equal(updated.status, 0, updated.stderr);
    assert.equal(updated.json?.priority, 8);
    assert.deepEqual(updated.json?.labels, { team: 'ops', wave: '2' });
    const stale = gh('update', '-c', 'cli-cfg', '--priority', '9', '--etag', 'not-the-etag');
    assert.notEqual(stale.status, 0);
    assert.match(stale.stderr, /PreconditionFailed|etag/);

    const metric = gh('show-metric', '-c', 'cli-cfg', '--metric-id', 'appliedCount', '--metric-type', 'system');
    assert.equal(metric.status, 0, metric.stderr);
    assert.deepEqual(metric.json?.result, [{ deviceId: 'cli-dev' }]);

    assert.equal(gh('delete', '-c', 'cli-cfg').status, 0);
    const gone = gh('show', '-c', 'cli-cfg');
    assert.notEqual(gone.status, 0);
    assert.match(gone.stderr, /ConfigurationNotFound/);
  });
});
