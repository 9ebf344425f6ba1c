/**
 * Hub settings enforced everywhere, at run time, with the unmodified SDKs and raw clients:
 * disableDeviceSAS (an SDK device with a key is refused, an X.509 device connects, the live SAS
 * session is dropped), disableLocalAuth (azure-iothub with a policy connection string is refused,
 * an operator bearer token works), the IP filter (first matching rule wins), minTlsVersion 1.3
 * (a TLS 1.2 client is refused), roles (a Data Reader cannot create devices), the dry run, the
 * lock-out guard rails, and the brute-force lockout.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { makeSelfSigned, thumbprints, type TestCert } from './support/pki.js';
import { connectPacket, connectRaw, deviceToken } from './support/raw-mqtt.js';
import { errorCode, policyKey, restClient, type Rest } from './support/rest.js';
import { generateSasToken } from '../src/auth/sas.js';

const { Registry } = iothub;
const { Client } = deviceSdk;
const { Mqtt } = deviceMqtt;

const HOST = '127.0.52.1';
let hub: HubProcess;
let ca: string;
let rest: Rest;
let sasKey: string;
let x509: TestCert;

async function waitFor(check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The hub's log reaches the test through a pipe, after the answer the client already has. */
async function logged(pattern: RegExp): Promise<void> {
  const until = Date.now() + 5000;
  while (!pattern.test(hub.output())) {
    if (Date.now() > until) assert.match(hub.output(), pattern);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** REST with an operator bearer token. */
function bearer(token: string): Rest {
  const r = restClient(HOST, ca, 'unused', 'unused');
  return (method, path, body, opts = {}) => r(method, path, body, { ...opts, auth: false, headers: { ...opts.headers, authorization: `Bearer ${token}` } });
}

async function patchSettings(client: Rest, patch: unknown, query = ''): Promise<{ status: number; body: any; code: string | undefined }> {
  const r = await client('PATCH', `/settings${query}`, patch);
  return { status: r.status, body: r.body, code: errorCode(r) };
}

async function token(operator: string): Promise<string> {
  const r = await rest('POST', `/operators/${operator}/tokens`, { expiresInSeconds: 600 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return (r.body as { token: string }).token;
}

function sdkOpen(cs: string, opts: Record<string, unknown> = {}): Promise<InstanceType<typeof Client>> {
  const client = Client.fromConnectionString(cs, Mqtt);
  return (async () => {
    await client.setOptions({ ca, ...opts });
    await client.open();
    return client;
  })();
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  const d = await rest('PUT', '/devices/sas-dev', { deviceId: 'sas-dev' });
  assert.equal(d.status, 200);
  sasKey = (d.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
  x509 = await makeSelfSigned('x509-dev');
  const x = await rest('PUT', '/devices/x509-dev', {
    deviceId: 'x509-dev',
    authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: thumbprints(x509.certPem).sha256 } },
  });
  assert.equal(x.status, 200);
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('settings resource', () => {
  it('reads defaults, validates a patch with precise errors, and refuses a stale etag', async () => {
    const r = await rest('GET', '/settings');
    assert.equal(r.status, 200);
    const s = r.body as { minTlsVersion: string; disableLocalAuth: boolean; ipFilter: { defaultAction: string }; etag: string };
    assert.equal(s.minTlsVersion, '1.2');
    assert.equal(s.disableLocalAuth, false);
    assert.equal(s.ipFilter.defaultAction, 'Accept');

    const bad = await patchSettings(rest, { minTlsVersion: '2.0', ipFilter: { defaultAction: 'Accept', rules: [{ filterName: 'x', action: 'Accept', ipMask: '10.0.0.0/33' }] } });
    assert.equal(bad.status, 400);
    assert.equal(bad.code, 'ArgumentInvalid');
    assert.match(JSON.stringify(bad.body), /minTlsVersion/);
    assert.match(JSON.stringify(bad.body), /ipMask/);

    const legacy = await patchSettings(rest, { minTlsVersion: '1.0' });
    assert.equal(legacy.status, 400, 'TLS 1.0 needs allowLegacyTls');
    assert.match(JSON.stringify(legacy.body), /allowLegacyTls/);

    const stale = await rest('PATCH', '/settings', { c2d: { maxDeliveryCount: 5 } }, { headers: { 'if-match': '"not-the-etag"' } });
    assert.equal(stale.status, 412);
    const ok = await rest('PATCH', '/settings', { c2d: { maxDeliveryCount: 5 } }, { headers: { 'if-match': `"${s.etag}"` } });
    assert.equal(ok.status, 200);
    assert.equal((ok.body as { settings: { c2d: { maxDeliveryCount: number }; version: number } }).settings.c2d.maxDeliveryCount, 5);
  });

  it('a policy without every hub right cannot read or change settings', async () => {
    const service = restClient(HOST, ca, policyKey(hub.dataDir, 'service'), 'service');
    assert.equal((await service('GET', '/settings')).status, 401);
    assert.equal((await service('PATCH', '/settings', { disableDeviceSAS: true })).status, 401);
  });
});

describe('disableDeviceSAS', () => {
  it('the dry run lists the live SAS session; applying drops it, refuses SAS devices and lets X.509 devices in', async () => {
    const sas = await sdkOpen(`HostName=${HOST};DeviceId=sas-dev;SharedAccessKey=${sasKey}`);
    try {
      const dry = await patchSettings(rest, { disableDeviceSAS: true }, '?dryRun=true');
      assert.equal(dry.status, 200);
      assert.equal(dry.body.dryRun, true);
      assert.deepEqual(
        dry.body.impact.sessions.map((s: { deviceId: string }) => s.deviceId),
        ['sas-dev'],
      );
      assert.match(dry.body.impact.sessions[0].reason, /disableDeviceSAS/);
      // The dry run changed nothing.
      assert.equal(((await rest('GET', '/settings')).body as { disableDeviceSAS: boolean }).disableDeviceSAS, false);
      assert.equal(((await rest('GET', '/devices/sas-dev')).body as { connectionState: string }).connectionState, 'Connected');

      const applied = await patchSettings(rest, { disableDeviceSAS: true });
      assert.equal(applied.status, 200);
      assert.equal(applied.body.applied.sessionsClosed, 1);
      await waitFor(async () => ((await rest('GET', '/devices/sas-dev')).body as { connectionState: string }).connectionState === 'Disconnected');
    } finally {
      await Promise.race([sas.close().catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
    }

    await assert.rejects(sdkOpen(`HostName=${HOST};DeviceId=sas-dev;SharedAccessKey=${sasKey}`), /nauthorized|not authorized|refused/i);
    const x = await sdkOpen(`HostName=${HOST};DeviceId=x509-dev;x509=true`, { cert: x509.certPem, key: x509.keyPem });
    await x.sendEvent(new deviceSdk.Message('x509 still works'));
    await x.close();
    await logged(/device SAS keys are disabled by hub settings/);

    assert.equal((await patchSettings(rest, { disableDeviceSAS: false })).status, 200);
    const back = await sdkOpen(`HostName=${HOST};DeviceId=sas-dev;SharedAccessKey=${sasKey}`);
    await back.close();
  });
});

describe('operators, roles and disableLocalAuth', () => {
  it('refuses to turn local auth off while no operator holds Owner', async () => {
    const r = await patchSettings(rest, { disableLocalAuth: true });
    assert.equal(r.status, 409);
    assert.equal(r.code, 'SettingsLockout');
  });

  it('a Data Reader reads the registry but cannot create devices', async () => {
    assert.equal((await rest('PUT', '/operators/reader', { displayName: 'Read only' })).status, 201);
    assert.equal((await rest('POST', '/roleAssignments', { assignee: 'reader', role: 'IoT Hub Data Reader' })).status, 201);
    const reader = bearer(await token('reader'));
    const list = await reader('GET', '/devices');
    assert.equal(list.status, 200);
    assert.ok((list.body as Array<{ deviceId: string }>).some((d) => d.deviceId === 'sas-dev'));
    const create = await reader('PUT', '/devices/by-reader', { deviceId: 'by-reader' });
    assert.equal(create.status, 401);
    assert.equal(errorCode(create), 'IotHubUnauthorizedAccess');
    assert.equal((await rest('GET', '/devices/by-reader')).status, 404);
    assert.equal((await reader('GET', '/settings')).status, 401, 'a reader cannot read hub settings');
    await logged(/operator reader has no role allowing devices\/write/);
  });

  it('with disableLocalAuth the SDK with a policy connection string is refused and an operator token works', async () => {
    assert.equal((await rest('PUT', '/operators/alice', {})).status, 201);
    assert.equal((await rest('POST', '/roleAssignments', { assignee: 'alice', role: 'Owner' })).status, 201);
    const aliceToken = await token('alice');
    const alice = bearer(aliceToken);
    assert.equal((await patchSettings(rest, { disableLocalAuth: true })).status, 200);

    const byPolicy = Registry.fromConnectionString(hub.connectionString);
    await assert.rejects(byPolicy.get('sas-dev'), (err: Error & { responseBody?: string }) => /Unauthorized/i.test(`${err.name} ${err.message}`));
    // Policy-signed device tokens are local auth too.
    const policySigned = generateSasToken({ resource: `${HOST}/devices/sas-dev`, key: policyKey(hub.dataDir, 'device'), keyName: 'device', expiry: Math.floor(Date.now() / 1000) + 600 });
    const viaPolicy = await connectRaw(HOST, ca, connectPacket(HOST, 'sas-dev', policySigned));
    assert.equal(viaPolicy.code, 4);
    await viaPolicy.client.closed;

    const byToken = Registry.fromTokenCredential(HOST, {
      getToken: async () => ({ token: aliceToken, expiresOnTimestamp: Date.now() + 600_000 }),
    });
    const got = await byToken.get('sas-dev');
    assert.equal(got.responseBody.deviceId, 'sas-dev');
    await byToken.create({ deviceId: 'by-operator' });

    // The CLI takes the token too.
    const show = cli(['settings', 'show', '--data-dir', hub.dataDir, '--token', aliceToken]);
    assert.equal(show.status, 0, show.stderr);
    assert.equal(JSON.parse(show.stdout).disableLocalAuth, true);
    const refused = cli(['settings', 'show', '--data-dir', hub.dataDir]);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /IotHubUnauthorizedAccess/);

    // Revoking the operator's tokens bites at once.
    assert.equal((await patchSettings(alice, { disableLocalAuth: false })).status, 200);
    assert.equal((await rest('PATCH', '/operators/alice', { revokeTokens: true })).status, 200);
    assert.equal((await alice('GET', '/devices/sas-dev')).status, 401);
  });
});

describe('operators and role assignments are rows with etags', () => {
  it('PATCH and DELETE take If-Match; a stale etag is 412 PreconditionFailed and changes nothing', async () => {
    const created = await rest('PUT', '/operators/carol', { displayName: 'Carol' });
    assert.equal(created.status, 201);
    const e1 = String(created.headers.etag);
    assert.equal(e1, `"${(created.body as { etag: string }).etag}"`);
    const disabled = await rest('PATCH', '/operators/carol', { enabled: false }, { headers: { 'if-match': e1 } });
    assert.equal(disabled.status, 200);
    const e2 = String(disabled.headers.etag);
    assert.notEqual(e2, e1);

    const stale = await rest('PATCH', '/operators/carol', { enabled: true }, { headers: { 'if-match': e1 } });
    assert.equal(stale.status, 412);
    assert.equal(errorCode(stale), 'PreconditionFailed');
    const now = await rest('GET', '/operators/carol');
    assert.equal((now.body as { enabled: boolean }).enabled, false, 'the stale write changed nothing');
    assert.equal(String(now.headers.etag), e2);
    assert.equal((await rest('DELETE', '/operators/carol', undefined, { headers: { 'if-match': e1 } })).status, 412);

    const assigned = await rest('POST', '/roleAssignments', { assignee: 'carol', role: 'IoT Hub Data Reader' });
    assert.equal(assigned.status, 201);
    const id = (assigned.body as { id: string }).id;
    const wrong = await rest('DELETE', `/roleAssignments/${id}`, undefined, { headers: { 'if-match': '"not-its-etag"' } });
    assert.equal(wrong.status, 412);
    assert.equal(errorCode(wrong), 'PreconditionFailed');
    assert.equal((await rest('DELETE', `/roleAssignments/${id}`, undefined, { headers: { 'if-match': String(assigned.headers.etag) } })).status, 200);
    assert.equal((await rest('DELETE', '/operators/carol', undefined, { headers: { 'if-match': e2 } })).status, 204);
    assert.equal((await rest('GET', '/operators/carol')).status, 404);
  });
});

describe('IP filter', () => {
  const allowed = '127.0.52.3';
  const blocked = '127.0.52.2';
  const connectFrom = async (local: string) => {
    try {
      const r = await connectRaw(HOST, ca, connectPacket(HOST, 'sas-dev', deviceToken(HOST, 'sas-dev', sasKey)), undefined, local);
      return r;
    } catch {
      return undefined;
    }
  };

  it('rejects one loopback address while another connects; the first matching rule decides', async () => {
    const before = await connectFrom(blocked);
    assert.equal(before?.code, 0, 'connects before the filter');
    const rules = [
      { filterName: 'block-one', action: 'Reject', ipMask: `${blocked}/32` },
      { filterName: 'loopback', action: 'Accept', ipMask: '127.0.0.0/8' },
    ];
    const applied = await patchSettings(rest, { ipFilter: { defaultAction: 'Reject', rules } });
    assert.equal(applied.status, 200, JSON.stringify(applied.body));
    // The live session from the now-rejected address was closed.
    await before?.client.closed;
    assert.equal(await connectFrom(blocked), undefined, 'refused before TLS');
    const ok = await connectFrom(allowed);
    assert.equal(ok?.code, 0);
    ok?.client.end();
    await logged(new RegExp(`address ${blocked.replace(/\./g, '\\.')} rejected by the IP filter \\(rule block-one\\)`));

    // Same rules, other order: the broad Accept now comes first and wins.
    assert.equal((await patchSettings(rest, { ipFilter: { defaultAction: 'Reject', rules: [rules[1], rules[0]] } })).status, 200);
    const now = await connectFrom(blocked);
    assert.equal(now?.code, 0);
    now?.client.end();
  });

  it('refuses a filter that would reject the caller itself, and resets to Accept', async () => {
    const r = await patchSettings(rest, { ipFilter: { defaultAction: 'Reject', rules: [{ filterName: 'only-one', action: 'Accept', ipMask: '127.0.52.250/32' }] } });
    assert.equal(r.status, 409);
    assert.equal(r.code, 'SettingsLockout');
    assert.equal((await patchSettings(rest, { ipFilter: { defaultAction: 'Accept', rules: [] } })).status, 200);
  });
});

describe('minTlsVersion', () => {
  const handshake = (maxVersion: 'TLSv1.2' | 'TLSv1.3', port: number) =>
    new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: HOST, port, ca, maxVersion }, () => {
        const v = s.getProtocol() ?? '';
        s.destroy();
        resolve(v);
      });
      s.once('error', reject);
    });

  it('1.3 refuses a TLS 1.2 client on MQTT and HTTPS at once, and closes the live TLS 1.2 session', async () => {
    assert.equal(await handshake('TLSv1.2', 8883), 'TLSv1.2');
    const client = await connectRaw(HOST, ca, connectPacket(HOST, 'sas-dev', deviceToken(HOST, 'sas-dev', sasKey)));
    assert.equal(client.code, 0);
    const tls12 = await new Promise<{ closed: Promise<void> }>((resolve, reject) => {
      // A TLS 1.2 socket that has not sent CONNECT yet: closed by the change too.
      const s = tlsConnect({ host: HOST, port: 8883, ca, maxVersion: 'TLSv1.2' }, () => {
        resolve({ closed: new Promise<void>((r) => s.once('close', () => r())) });
      });
      s.once('error', reject);
    });

    assert.equal((await patchSettings(rest, { minTlsVersion: '1.3' })).status, 200);
    await tls12.closed;
    await assert.rejects(handshake('TLSv1.2', 8883), /version|alert|handshake/i);
    await assert.rejects(handshake('TLSv1.2', 443), /version|alert|handshake/i);
    assert.equal(await handshake('TLSv1.3', 8883), 'TLSv1.3');
    assert.equal(await handshake('TLSv1.3', 443), 'TLSv1.3');
    client.client.end();
    assert.equal((await patchSettings(rest, { minTlsVersion: '1.2' })).status, 200);
    assert.equal(await handshake('TLSv1.2', 8883), 'TLSv1.2');
  });
});

describe('brute-force lockout', () => {
  it('locks an identity after repeated failures: the right key then gets the same answer as a wrong one', async () => {
    const d = await rest('PUT', '/devices/target', { deviceId: 'target' });
    const key = (d.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
    const wrong = Buffer.alloc(32, 1).toString('base64');
    for (let i = 0; i < 10; i += 1) {
      const r = await connectRaw(HOST, ca, connectPacket(HOST, 'target', deviceToken(HOST, 'target', wrong, Math.floor(Date.now() / 1000) + 600 + i)));
      assert.equal(r.code, 4);
      await r.client.closed;
    }
    const right = await connectRaw(HOST, ca, connectPacket(HOST, 'target', deviceToken(HOST, 'target', key)));
    assert.equal(right.code, 4, 'locked out: refused like a bad credential');
    await right.client.closed;
    await logged(/locked out after repeated failures/);
    // Another device from the same address is not locked (the address limit is far higher).
    const other = await connectRaw(HOST, ca, connectPacket(HOST, 'sas-dev', deviceToken(HOST, 'sas-dev', sasKey)));
    assert.equal(other.code, 0);
    other.client.end();
    // Turning lockout off lifts it.
    assert.equal((await patchSettings(rest, { lockout: { enabled: false } })).status, 200);
    const after = await connectRaw(HOST, ca, connectPacket(HOST, 'target', deviceToken(HOST, 'target', key)));
    assert.equal(after.code, 0);
    after.client.end();
    assert.equal((await patchSettings(rest, { lockout: { enabled: true } })).status, 200);
  });
});

describe('audit log of changes and decisions', () => {
  type Entry = { type: string; actor?: string; action?: string; target?: string; before?: any; after?: any; identity?: string; outcome?: string; reason?: string; remote?: string; protocol?: string; tls?: string };
  const entries = async (query: string): Promise<Entry[]> => {
    // The appender commits within 100 ms.
    await new Promise((r) => setTimeout(r, 300));
    const r = await rest('GET', `/auditLog?${query}&limit=1000`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return (r.body as { entries: Entry[] }).entries;
  };

  it('records a device update with who, before and after, and no key', async () => {
    await rest('PUT', '/devices/audited', { deviceId: 'audited' });
    const got = await rest('GET', '/devices/audited');
    await rest('PUT', '/devices/audited', { ...(got.body as object), status: 'disabled' }, { headers: { 'if-match': '*' } });
    const changes = (await entries('type=change')).filter((e) => e.target === 'devices/audited');
    const create = changes.find((e) => e.action === 'device.create');
    const update = changes.find((e) => e.action === 'device.update');
    assert.equal(create?.actor, 'policy:iothubowner');
    assert.equal(update?.actor, 'policy:iothubowner');
    assert.equal(update?.before.status, 'enabled');
    assert.equal(update?.after.status, 'disabled');
    assert.equal(update?.after.auth.primaryKey, '<redacted>');
    const key = ((got.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey);
    assert.ok(!JSON.stringify(changes).includes(key), 'no key in the audit log');
  });

  it('records settings changes, operator denials and failed device logins with reason, address, protocol and TLS version', async () => {
    const all = await entries('');
    const settings = all.find((e) => e.action === 'settings.update');
    assert.ok(settings !== undefined);
    assert.ok(settings.before !== undefined && settings.after !== undefined);
    const denials = all.filter((e) => e.type === 'auth' && e.identity === 'reader' && e.outcome === 'failure').map((e) => e.reason);
    assert.ok(denials.some((r) => /no role allowing devices\/write/.test(r ?? '')), JSON.stringify(denials));
    const login = all.find((e) => e.type === 'auth' && e.identity === 'target' && e.outcome === 'failure');
    assert.equal(login?.protocol, 'mqtt');
    assert.match(login?.remote ?? '', /127\.0\.0\.1/);
    assert.match(login?.tls ?? '', /TLSv1\.[23]/);
    const filtered = all.find((e) => e.type === 'auth' && /IP filter/.test(e.reason ?? ''));
    assert.ok(filtered !== undefined, 'the IP-filtered connection is recorded');
  });
});

describe('shared access policies', () => {
  it('create, use, renew a key (the old one stops at once, with its device sessions), at most 16, delete', async () => {
    const created = cli(['policy', 'create', 'ops', '--rights', 'RegistryRead,ServiceConnect', '--data-dir', hub.dataDir]);
    assert.equal(created.status, 0, created.stderr);
    const ops = JSON.parse(created.stdout) as { keyName: string; rights: string; primaryKey: string };
    assert.equal(ops.rights, 'RegistryRead, ServiceConnect');
    const asOps = restClient(HOST, ca, ops.primaryKey, 'ops');
    assert.equal((await asOps('GET', '/devices/sas-dev')).status, 200);
    assert.equal((await asOps('PUT', '/devices/by-ops', { deviceId: 'by-ops' })).status, 401, 'no RegistryWrite');

    const renewed = cli(['policy', 'renew-key', 'ops', '--key', 'primary', '--data-dir', hub.dataDir]);
    assert.equal(renewed.status, 0, renewed.stderr);
    assert.notEqual(JSON.parse(renewed.stdout).primaryKey, ops.primaryKey);
    assert.equal((await asOps('GET', '/devices/sas-dev')).status, 401, 'the old key stops at once');

    // A device on a token signed by the `device` policy loses its session when that key is renewed.
    const signed = generateSasToken({ resource: `${HOST}/devices/sas-dev`, key: policyKey(hub.dataDir, 'device'), keyName: 'device', expiry: Math.floor(Date.now() / 1000) + 600 });
    const session = await connectRaw(HOST, ca, connectPacket(HOST, 'sas-dev', signed));
    assert.equal(session.code, 0);
    assert.equal(cli(['policy', 'renew-key', 'device', '--key', 'primary', '--data-dir', hub.dataDir]).status, 0);
    await session.client.closed;

    const count = ((await rest('GET', '/policies')).body as { value: unknown[] }).value.length;
    for (let i = count; i < 16; i += 1) assert.equal((await rest('PUT', `/policies/extra-${i}`, { rights: 'RegistryRead' })).status, 201);
    const over = await rest('PUT', '/policies/one-too-many', { rights: 'RegistryRead' });
    assert.equal(over.status, 400);
    assert.equal(errorCode(over), 'PolicyLimitExceeded');
    const bad = await rest('PUT', '/policies/bad-rights', { rights: 'RegistryRead,Everything' });
    assert.equal(errorCode(bad), 'ArgumentInvalid');

    assert.equal(cli(['policy', 'delete', 'ops', '--data-dir', hub.dataDir]).status, 0);
    assert.equal((await rest('GET', '/policies/ops')).status, 404);
    const listed = cli(['policy', 'list', '--data-dir', hub.dataDir]);
    assert.ok(!listed.stdout.includes('"ops"'));
  });
});
