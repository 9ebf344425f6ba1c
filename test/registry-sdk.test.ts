/**
 * The service REST API driven by Microsoft's unmodified azure-iothub Registry against a real
 * `gatehouse start` process (own data dir, own loopback address, port 443, TLS trusted through
 * NODE_EXTRA_CA_CERTS). Every Registry call of wire doc §6.2 except jobs, configurations and blob
 * import/export, with the typed errors of the negative cases.
 */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';

const { Registry } = iothub;
type Registry = InstanceType<typeof Registry>;
import { generateSasToken } from '../src/auth/sas.js';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';

const ADDRESS = '127.0.21.1';

let hub: HubProcess;
let registry: Registry;

/** The SDK's Authentication type has no `type` field, the wire body does. */
function authType(d: { authentication?: unknown }): unknown {
  return (d.authentication as { type?: unknown } | undefined)?.type;
}

function csFor(policy: string, key: string): string {
  return `HostName=${ADDRESS};SharedAccessKeyName=${policy};SharedAccessKey=${key}`;
}

function ownerKey(): string {
  const m = /SharedAccessKey=([^;]+)/.exec(hub.connectionString);
  assert.ok(m?.[1]);
  return m[1];
}

/** A raw HTTPS call, for what the SDK cannot send (malformed JSON, expired tokens). */
function raw(method: string, path: string, opts: { body?: string; token?: string; headers?: Record<string, string> } = {}) {
  const token = opts.token ?? generateSasToken({ resource: ADDRESS, key: ownerKey(), keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 600 });
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const req = request(
      { host: ADDRESS, port: 443, method, path: `${path}?api-version=2021-04-12`, headers: { authorization: token, 'content-type': 'application/json', ...opts.headers } },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

async function rejectsWithName(p: Promise<unknown>, name: string, status?: number): Promise<Error> {
  let caught: Error | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof Error);
    assert.equal(err.constructor.name, name, `expected ${name}, got ${err.constructor.name}: ${err.message}`);
    if (status !== undefined) assert.equal((err as { response?: { statusCode?: number } }).response?.statusCode, status);
    caught = err;
    return true;
  });
  assert.ok(caught);
  return caught;
}

before(async () => {
  hub = await startHubProcess({ address: ADDRESS });
  registry = Registry.fromConnectionString(hub.connectionString);
});

after(async () => {
  const code = await hub.stop();
  assert.equal(code, 0, `SIGTERM should stop the hub cleanly:\n${hub.output()}`);
  removeDir(hub.dataDir);
});

describe('devices', () => {
  it('create with empty keys gets two generated 32-byte keys', async () => {
    const { responseBody: d } = await registry.create({ deviceId: 'sdk-sas' });
    assert.equal(d.deviceId, 'sdk-sas');
    assert.equal(authType(d), 'sas');
    const keys = [d.authentication?.symmetricKey?.primaryKey, d.authentication?.symmetricKey?.secondaryKey];
    for (const k of keys) assert.equal(Buffer.from(String(k), 'base64').length, 32);
    assert.notEqual(keys[0], keys[1]);
    assert.equal(d.status, 'enabled');
    assert.ok(d.etag);
    assert.ok(d.generationId);
  });

  it('create selfSigned and certificateAuthority devices', async () => {
    const tp1 = 'AA'.repeat(20);
    const tp2 = 'bb:'.repeat(31) + 'bb';
    const { responseBody: x } = await registry.create({
      deviceId: 'sdk-x509',
      authentication: { x509Thumbprint: { primaryThumbprint: tp1, secondaryThumbprint: tp2 } },
    });
    assert.equal(authType(x), 'selfSigned');
    assert.equal(x.authentication?.x509Thumbprint?.primaryThumbprint, tp1);
    assert.equal(x.authentication?.x509Thumbprint?.secondaryThumbprint, 'BB'.repeat(32));
    assert.equal(x.authentication?.symmetricKey?.primaryKey ?? null, null);
    const { responseBody: ca } = await registry.create({ deviceId: 'sdk-ca', authentication: { type: 'certificateAuthority' } });
    assert.equal(authType(ca), 'certificateAuthority');
    // Azure accepts the same certificate in both slots (DPS itself copies the primary over).
    const { responseBody: same } = await registry.create({
      deviceId: 'same-thumbprints',
      authentication: { x509Thumbprint: { primaryThumbprint: tp1, secondaryThumbprint: tp1 } },
    });
    assert.equal(same.authentication?.x509Thumbprint?.primaryThumbprint, tp1);
    assert.equal(same.authentication?.x509Thumbprint?.secondaryThumbprint, tp1);
  });

  it('get, list, update (disable) and delete', async () => {
    const { responseBody: got } = await registry.get('sdk-sas');
    assert.equal(got.deviceId, 'sdk-sas');
    const { responseBody: list } = await registry.list();
    assert.deepEqual(
      list.map((d) => d.deviceId).filter((id) => id.startsWith('sdk-')),
      ['sdk-ca', 'sdk-sas', 'sdk-x509'],
    );
    const { responseBody: upd } = await registry.update({ deviceId: 'sdk-sas', status: 'disabled', statusReason: 'lost' });
    assert.equal(upd.status, 'disabled');
    assert.equal(upd.statusReason, 'lost');
    assert.equal(upd.authentication?.symmetricKey?.primaryKey, got.authentication?.symmetricKey?.primaryKey, 'update without keys keeps them');
    assert.notEqual(upd.etag, got.etag);
    await registry.delete('sdk-ca');
    await rejectsWithName(registry.get('sdk-ca'), 'DeviceNotFoundError', 404);
  });

  it('typed errors: 404, 409, 400 for a bad id, 401 for a bad key', async () => {
    await rejectsWithName(registry.get('nope'), 'DeviceNotFoundError', 404);
    await rejectsWithName(registry.delete('nope'), 'DeviceNotFoundError', 404);
    await rejectsWithName(registry.create({ deviceId: 'sdk-x509' }), 'DeviceAlreadyExistsError', 409);
    const bad = await rejectsWithName(registry.create({ deviceId: 'bad id with spaces' }), 'ArgumentError', 400);
    assert.match(bad.message, /contains a character outside/);
    await rejectsWithName(registry.create({ deviceId: 'x'.repeat(129) }), 'ArgumentError', 400);
    const wrongKey = Registry.fromConnectionString(csFor('iothubowner', Buffer.alloc(32, 9).toString('base64')));
    await rejectsWithName(wrongKey.get('sdk-x509'), 'UnauthorizedError', 401);
  });
});

/** The service SDK's Device type has no scopes: the wire fields as Azure returns them. */
interface Scoped {
  deviceId: string;
  generationId: string;
  deviceScope?: string;
  parentScopes?: string[];
  status?: string;
}
const createScoped = async (d: Record<string, unknown>): Promise<Scoped> => (await registry.create(d as never)).responseBody as unknown as Scoped;
const updateScoped = async (d: Record<string, unknown>): Promise<Scoped> => (await registry.update(d as never)).responseBody as unknown as Scoped;

describe('IoT Edge scopes', () => {
  it('an edge device gets a generated scope; a leaf with it gets parentScopes; a made-up scope is refused', async () => {
    const edge = await createScoped({ deviceId: 'edge-gw', capabilities: { iotEdge: true } });
    assert.equal(edge.deviceScope, `ms-azure-iot-edge://edge-gw-${edge.generationId}`);
    const leaf = await createScoped({ deviceId: 'edge-leaf', deviceScope: edge.deviceScope });
    assert.equal(leaf.deviceScope, edge.deviceScope);
    assert.deepEqual(leaf.parentScopes, [edge.deviceScope]);
    // Updating the leaf with a scope no edge device owns fails, and leaves it as it was.
    await rejectsWithName(updateScoped({ ...leaf, deviceScope: 'ms-azure-iot-edge://nobody-1' }), 'ArgumentError', 400);
    await rejectsWithName(createScoped({ deviceId: 'edge-orphan', deviceScope: 'not-a-scope' }), 'ArgumentError', 400);
    assert.equal(((await registry.get('edge-leaf')).responseBody as unknown as Scoped).deviceScope, edge.deviceScope);
    // The SDK sends the whole record back on update: the edge device keeps its own scope.
    const same = await updateScoped({ ...edge, status: 'enabled' });
    assert.equal(same.deviceScope, edge.deviceScope);
  });

  it('nested edge devices: a child edge keeps its own scope and lists its parent', async () => {
    const root = await createScoped({ deviceId: 'edge-root', capabilities: { iotEdge: true } });
    const child = await createScoped({ deviceId: 'edge-child', capabilities: { iotEdge: true }, parentScopes: [root.deviceScope] });
    assert.equal(child.deviceScope, `ms-azure-iot-edge://edge-child-${child.generationId}`);
    assert.deepEqual(child.parentScopes, [root.deviceScope]);
    const leaf = await createScoped({ deviceId: 'edge-child-leaf', deviceScope: child.deviceScope, parentScopes: [child.deviceScope] });
    assert.deepEqual([leaf.deviceScope, leaf.parentScopes], [child.deviceScope, [child.deviceScope]]);
    // A scope of a device that is not an edge device does not make it a parent.
    await rejectsWithName(createScoped({ deviceId: 'edge-bad-parent', capabilities: { iotEdge: true }, parentScopes: [String(leaf.deviceScope).replace('edge-child', 'edge-child-leaf')] }), 'ArgumentError', 400);
  });
});

describe('access control', () => {
  it('a registryRead token reads but cannot write, and nothing is written', async () => {
    const keyRes = await raw('GET', '/devices/sdk-x509');
    assert.equal(keyRes.status, 200);
    const info = hub.connectionString;
    assert.ok(info);
    const { stdout } = await import('./support/hub-process.js').then((m) =>
      m.cli(['connection-string', '--data-dir', hub.dataDir, '--policy', 'registryRead']),
    );
    const reader = Registry.fromConnectionString(stdout.trim());
    const { responseBody } = await reader.get('sdk-x509');
    assert.equal(responseBody.deviceId, 'sdk-x509');
    await rejectsWithName(reader.create({ deviceId: 'sdk-written-by-reader' }), 'UnauthorizedError', 401);
    await rejectsWithName(reader.delete('sdk-x509'), 'UnauthorizedError', 401);
    await rejectsWithName(reader.updateTwin('sdk-x509', { tags: { a: 1 } }, '*'), 'UnauthorizedError', 401);
    await rejectsWithName(registry.get('sdk-written-by-reader'), 'DeviceNotFoundError', 404);
    assert.deepEqual((await registry.getTwin('sdk-x509')).responseBody.tags, {});
  });

  it('unknown policy and wrong key give the same 401; expired and other-host tokens are refused', async () => {
    const exp = Math.floor(Date.now() / 1000) + 600;
    const unknown = await raw('GET', '/devices/sdk-x509', { token: generateSasToken({ resource: ADDRESS, key: ownerKey(), keyName: 'ghost', expiry: exp }) });
    const wrong = await raw('GET', '/devices/sdk-x509', {
      token: generateSasToken({ resource: ADDRESS, key: Buffer.alloc(32, 3).toString('base64'), keyName: 'iothubowner', expiry: exp }),
    });
    const expired = await raw('GET', '/devices/sdk-x509', {
      token: generateSasToken({ resource: ADDRESS, key: ownerKey(), keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) - 1 }),
    });
    const otherHost = await raw('GET', '/devices/sdk-x509', { token: generateSasToken({ resource: 'other.example.com', key: ownerKey(), keyName: 'iothubowner', expiry: exp }) });
    const none = await raw('GET', '/devices/sdk-x509', { token: '' });
    for (const r of [unknown, wrong, expired, otherHost, none]) {
      assert.equal(r.status, 401);
      assert.match(JSON.parse(r.body).Message, /^ErrorCode:IotHubUnauthorizedAccess;Unauthorized$/);
    }
    const scoped = await raw('GET', '/devices/sdk-x509', {
      token: generateSasToken({ resource: `${ADDRESS}/devices/sdk-x509`, key: ownerKey(), keyName: 'iothubowner', expiry: exp }),
    });
    assert.equal(scoped.status, 200, 'a token scoped to the device path covers it');
    const outOfScope = await raw('GET', '/devices/sdk-sas', {
      token: generateSasToken({ resource: `${ADDRESS}/devices/sdk-x509`, key: ownerKey(), keyName: 'iothubowner', expiry: exp }),
    });
    assert.equal(outOfScope.status, 401);
  });

  it('malformed JSON is a 400 with a precise message and JSON content type', async () => {
    const r = await raw('PUT', '/devices/json-bad', { body: '{"deviceId": ' });
    assert.equal(r.status, 400);
    assert.match(String(r.headers['content-type']), /application\/json/);
    assert.match(JSON.parse(r.body).Message, /^ErrorCode:IotHubFormatError;The request body is not valid JSON/);
    assert.equal(r.headers['iothub-errorcode'], 'IotHubFormatError');
  });
});

describe('bulk', () => {
  it('addDevices, updateDevices, removeDevices', async () => {
    const ids = Array.from({ length: 5 }, (_, i) => `bulk-${i}`);
    const { responseBody: created } = await registry.addDevices(ids.map((deviceId) => ({ deviceId })));
    assert.equal(created.isSuccessful, true);
    const { responseBody: got } = await registry.get('bulk-3');
    assert.equal(Buffer.from(String(got.authentication?.symmetricKey?.primaryKey), 'base64').length, 32);
    const { responseBody: updated } = await registry.updateDevices(ids.map((deviceId) => ({ deviceId, status: 'disabled' })), true);
    assert.equal(updated.isSuccessful, true);
    assert.equal((await registry.get('bulk-0')).responseBody.status, 'disabled');
    const err = await rejectsWithName(registry.addDevices([{ deviceId: 'bulk-0' }, { deviceId: 'bulk-new' }]), 'ArgumentError', 400);
    const result = JSON.parse(String((err as { responseBody?: string }).responseBody)) as { isSuccessful: boolean; errors: Array<{ deviceId: string; errorCode: string }> };
    assert.equal(result.isSuccessful, false);
    assert.deepEqual(result.errors.map((e) => [e.deviceId, e.errorCode]), [['bulk-0', 'DeviceAlreadyExists']]);
    assert.equal((await registry.get('bulk-new')).responseBody.deviceId, 'bulk-new', 'the other entry was applied');
    const { responseBody: removed } = await registry.removeDevices([...ids, 'bulk-new'].map((deviceId) => ({ deviceId })), true);
    assert.equal(removed.isSuccessful, true);
    await rejectsWithName(registry.get('bulk-2'), 'DeviceNotFoundError', 404);
  });
});

describe('twins', () => {
  it('getTwin, updateTwin with etag, versions and metadata, stale etag refused', async () => {
    await registry.create({ deviceId: 'tw-1' });
    const { responseBody: t0 } = await registry.getTwin('tw-1');
    assert.equal(t0.deviceId, 'tw-1');
    const v0 = t0.properties.desired.$version as number;
    const { responseBody: t1 } = await registry.updateTwin('tw-1', { tags: { site: 'north' }, properties: { desired: { interval: 30, cfg: { a: 1, b: 2 } } } }, t0.etag);
    assert.equal(t1.tags.site, 'north');
    assert.equal(t1.properties.desired.interval, 30);
    assert.equal(t1.properties.desired.$version, v0 + 1);
    assert.ok((t1.properties.desired.$metadata as { interval?: { $lastUpdated?: string } }).interval?.$lastUpdated);
    assert.notEqual(t1.etag, t0.etag);
    const { responseBody: t2 } = await registry.updateTwin('tw-1', { properties: { desired: { cfg: { a: null, c: 3 } } } }, t1.etag);
    assert.deepEqual(t2.properties.desired.cfg, { b: 2, c: 3 });
    assert.equal(t2.properties.desired.$version, v0 + 2);
    await rejectsWithName(registry.updateTwin('tw-1', { tags: { x: 1 } }, t0.etag), 'InvalidEtagError', 412);
    assert.equal((await registry.getTwin('tw-1')).responseBody.tags.x, undefined, 'the refused patch left nothing');
    await rejectsWithName(registry.getTwin('nope'), 'DeviceNotFoundError', 404);
  });

  it('twin.update() through the Twin object', async () => {
    const { responseBody: twin } = await registry.getTwin('tw-1');
    const { result: updated } = await twin.update({ tags: { floor: 3 } });
    assert.equal(updated.tags.floor, 3);
    assert.equal(updated.tags.site, 'north');
  });

  it('refuses an over-limit twin and reported properties from the service', async () => {
    const huge: Record<string, string> = {};
    for (let i = 0; i < 10; i++) huge[`k${i}`] = 'v'.repeat(1000);
    const err = await rejectsWithName(registry.updateTwin('tw-1', { tags: huge }, '*'), 'ArgumentError', 400);
    assert.match(err.message, /tags would be \d+ bytes, over the limit of 8192/);
    await rejectsWithName(registry.updateTwin('tw-1', { properties: { reported: { a: 1 } } }, '*'), 'ArgumentError', 400);
    await rejectsWithName(registry.updateTwin('tw-1', { tags: { 'bad.key': 1 } }, '*'), 'ArgumentError', 400);
  });
});

describe('modules', () => {
  it('addModule, getModulesOnDevice, getModule, updateModule, module twin, removeModule', async () => {
    await registry.create({ deviceId: 'mod-host' });
    const { responseBody: m } = await registry.addModule({ deviceId: 'mod-host', moduleId: 'm1' });
    assert.equal(m.moduleId, 'm1');
    assert.equal(Buffer.from(String(m.authentication?.symmetricKey?.primaryKey), 'base64').length, 32);
    await registry.addModule({ deviceId: 'mod-host', moduleId: 'm2' });
    await rejectsWithName(registry.addModule({ deviceId: 'mod-host', moduleId: 'm1' }), 'DeviceAlreadyExistsError', 409);
    await rejectsWithName(registry.addModule({ deviceId: 'no-host', moduleId: 'm1' }), 'DeviceNotFoundError', 404);
    const { responseBody: mods } = await registry.getModulesOnDevice('mod-host');
    assert.deepEqual(mods.map((x) => x.moduleId), ['m1', 'm2']);
    const { responseBody: got } = await registry.getModule('mod-host', 'm1');
    assert.equal(got.etag, m.etag);
    const { responseBody: upd } = await registry.updateModule({ ...got, managedBy: 'ops' }, true);
    assert.equal(upd.managedBy, 'ops');
    const { responseBody: mt } = await registry.getModuleTwin('mod-host', 'm1');
    assert.equal(mt.moduleId, 'm1');
    const { responseBody: mt2 } = await registry.updateModuleTwin('mod-host', 'm1', { properties: { desired: { rate: 5 } } }, mt.etag);
    assert.equal(mt2.properties.desired.rate, 5);
    await registry.removeModule('mod-host', 'm2');
    await rejectsWithName(registry.getModule('mod-host', 'm2'), 'Error', 404);
    assert.equal((await registry.getTwin('mod-host')).responseBody.deviceId, 'mod-host', 'the device twin stays');
  });
});

describe('query and statistics', () => {
  it('pages with x-ms-continuation only while more pages exist', async () => {
    await registry.addDevices(Array.from({ length: 7 }, (_, i) => ({ deviceId: `q-${i}` })));
    for (let i = 0; i < 7; i++) await registry.updateTwin(`q-${i}`, { tags: { group: i % 2 === 0 ? 'even' : 'odd', n: i } }, '*');
    const query = registry.createQuery("SELECT * FROM devices WHERE tags.group = 'even'", 2);
    const seen: string[] = [];
    let pages = 0;
    while (query.hasMoreResults) {
      const { result } = await query.nextAsTwin();
      pages++;
      for (const t of result) seen.push(t.deviceId);
      assert.ok(pages < 10);
    }
    assert.deepEqual(seen, ['q-0', 'q-2', 'q-4', 'q-6']);
    assert.equal(pages, 2);

    const exact = registry.createQuery("SELECT * FROM devices WHERE tags.group = 'odd' AND tags.n > 1", 2);
    const first = await exact.next();
    assert.deepEqual((first.result as Array<{ deviceId: string }>).map((t) => t.deviceId), ['q-3', 'q-5']);
    assert.equal(exact.hasMoreResults, false, 'no continuation after the last full page');
  });

  it('COUNT() AS n, NOT, IS_DEFINED, and a syntax error as ArgumentError', async () => {
    const { result } = await registry.createQuery("SELECT COUNT() AS n FROM devices WHERE tags.group = 'even' OR tags.group = 'odd'").next();
    assert.deepEqual(result, [{ n: 7 }]);
    const { result: notEven } = await registry.createQuery("SELECT * FROM devices WHERE IS_DEFINED(tags.group) AND NOT tags.group = 'even'").next();
    assert.deepEqual((notEven as Array<{ deviceId: string }>).map((t) => t.deviceId), ['q-1', 'q-3', 'q-5']);
    await rejectsWithName(registry.createQuery('SELECT * FROM devices WHERE').next(), 'ArgumentError', 400);
  });

  it('getRegistryStatistics counts enabled and disabled devices', async () => {
    const { responseBody: before } = await registry.getRegistryStatistics();
    await registry.create({ deviceId: 'stat-off', status: 'disabled' });
    const { responseBody: afterStats } = await registry.getRegistryStatistics();
    assert.equal(afterStats.totalDeviceCount, before.totalDeviceCount + 1);
    assert.equal(afterStats.disabledDeviceCount, before.disabledDeviceCount + 1);
    assert.equal(afterStats.enabledDeviceCount, before.enabledDeviceCount);
  });
});

describe('ids and bad input', () => {
  it('ids keep their case and special characters; paths are case-insensitive', async () => {
    const odd = "Mixed.Case-Id_%#*?!(),=@$':;+";
    const { responseBody } = await registry.create({ deviceId: odd });
    assert.equal(responseBody.deviceId, odd);
    assert.equal((await registry.get(odd)).responseBody.deviceId, odd);
    await rejectsWithName(registry.get(odd.toLowerCase()), 'DeviceNotFoundError', 404);
    const upper = await raw('GET', `/DEVICES/${encodeURIComponent(odd)}`);
    assert.equal(upper.status, 200);
    assert.equal(JSON.parse(upper.body).deviceId, odd);
    await registry.delete(odd);
  });

  it('If-Match: a stale etag is 412 on update and delete, the record untouched', async () => {
    const { responseBody: d } = await registry.create({ deviceId: 'etag-dev' });
    const stale = await raw('PUT', '/devices/etag-dev', { body: JSON.stringify({ deviceId: 'etag-dev', status: 'disabled' }), headers: { 'if-match': '"nope"' } });
    assert.equal(stale.status, 412);
    assert.match(JSON.parse(stale.body).Message, /^ErrorCode:PreconditionFailed;/);
    const del = await raw('DELETE', '/devices/etag-dev', { headers: { 'if-match': '"nope"' } });
    assert.equal(del.status, 412);
    const cur = await registry.get('etag-dev');
    assert.equal(cur.responseBody.status, 'enabled');
    const good = await raw('PUT', '/devices/etag-dev', { body: JSON.stringify({ deviceId: 'etag-dev', status: 'disabled' }), headers: { 'if-match': `"${String(d.etag)}"` } });
    assert.equal(good.status, 200);
    assert.equal(JSON.parse(good.body).status, 'disabled');
    const ghost = await raw('PUT', '/devices/ghost-dev', { body: JSON.stringify({ deviceId: 'ghost-dev' }), headers: { 'if-match': '"*"' } });
    assert.equal(ghost.status, 404, 'an update never creates');
  });

  it('bulk limits, duplicates, empty and oversized bodies, unknown routes; the hub stays up', async () => {
    const tooMany = await raw('POST', '/devices', { body: JSON.stringify(Array.from({ length: 101 }, (_, i) => ({ id: `b${i}`, importMode: 'create' }))) });
    assert.equal(tooMany.status, 400);
    assert.match(JSON.parse(tooMany.body).Message, /1 to 100 devices, not 101/);
    const dup = await raw('POST', '/devices', { body: JSON.stringify([{ id: 'same', importMode: 'create' }, { id: 'same', importMode: 'delete' }]) });
    assert.equal(dup.status, 400);
    assert.match(JSON.parse(dup.body).Message, /^ErrorCode:DeviceDefinedMultipleTimes;/);
    await rejectsWithName(registry.get('same'), 'DeviceNotFoundError', 404);
    const badMode = await raw('POST', '/devices', { body: JSON.stringify([{ id: 'm', importMode: 'explode' }]) });
    assert.match(JSON.parse(badMode.body).Message, /unknown importMode 'explode'/);
    const empty = await raw('PUT', '/devices/empty-body');
    assert.equal(empty.status, 400);
    const notObject = await raw('PUT', '/devices/arr', { body: '[1,2]' });
    assert.equal(notObject.status, 400);
    const big = await raw('PUT', '/devices/big', { body: JSON.stringify({ deviceId: 'big', pad: 'x'.repeat(2 * 1024 * 1024) }) });
    assert.equal(big.status, 413);
    assert.match(JSON.parse(big.body).Message, /^ErrorCode:MessageTooLarge;/);
    const route = await raw('GET', '/no/such/route');
    assert.equal(route.status, 404);
    assert.match(JSON.parse(route.body).Message, /^ErrorCode:ResourceNotFound;/);
    const badAuthType = await raw('PUT', '/devices/at', { body: JSON.stringify({ deviceId: 'at', authentication: { type: 'password' } }) });
    assert.match(JSON.parse(badAuthType.body).Message, /authentication.type must be one of/);
    const shortKey = await raw('PUT', '/devices/sk', { body: JSON.stringify({ deviceId: 'sk', authentication: { type: 'sas', symmetricKey: { primaryKey: 'YWJj', secondaryKey: '' } } }) });
    assert.match(JSON.parse(shortKey.body).Message, /must decode to 16-64 bytes, not 3/);
    const mismatch = await raw('PUT', '/devices/one', { body: JSON.stringify({ deviceId: 'two' }) });
    assert.match(JSON.parse(mismatch.body).Message, /does not match the id in the path/);
    const health = await raw('GET', '/health', { token: '' });
    assert.equal(health.status, 200);
  });
});

describe('health', () => {
  it('GET /health answers without credentials', async () => {
    const r = await raw('GET', '/health', { token: '' });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).status, 'ok');
  });
});
