/**
 * Device takeover through the provisioning service and EST (issue 14, items 3 and 4), against a
 * hub process with the unmodified SDKs:
 *
 * - a symmetric-key group member may not re-key a device an operator created, nor one another
 *   enrollment provisioned, nor turn it into an X.509 device; registration ids are case-insensitive,
 *   so `DEV-LA-9` is the registration (and the device) `dev-la-9` already is;
 * - an EST factory credential enrolls only the registration ids its scope allows, and never one
 *   that names a device of another enrollment or an operator's device;
 * - a certificateAuthority device provisioned through a group that names CA X connects only with a
 *   chain to X, not to any other verified CA.
 *
 * Every refusal leaves an audit row (registrations, EST requests and device logins are audited).
 */
import assert from 'node:assert/strict';
import { createHmac, KeyObject, randomBytes, type webcrypto } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import provDevice from 'azure-iot-provisioning-device';
import provMqtt from 'azure-iot-provisioning-device-mqtt';
import provHttp from 'azure-iot-provisioning-device-http';
import symmetricKey from 'azure-iot-security-symmetric-key';
import x509Security from 'azure-iot-security-x509';
import provService from 'azure-iot-provisioning-service';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { connectPacket, connectRaw } from './support/raw-mqtt.js';
import { policyKey, restClient, type Rest } from './support/rest.js';
import { chainPem, makeLeaf, makeRoot, type TestCert } from './support/pki.js';

x509.cryptoProvider.set(globalThis.crypto);

const HOST = '127.0.68.1';
let hub: HubProcess;
let ca: string;
let idScope: string;
let service: InstanceType<typeof provService.ProvisioningServiceClient>;
let registry: InstanceType<typeof iothub.Registry>;
let rest: Rest;
let dpsRest: Rest;
let dir: string;

type State = { status?: string; deviceId: string; assignedHub: string; substatus?: string };

function derive(groupKey: string, registrationId: string): string {
  return createHmac('sha256', Buffer.from(groupKey, 'base64')).update(registrationId).digest('base64');
}

async function registerKey(kind: 'mqtt' | 'http', registrationId: string, key: string): Promise<State> {
  const transport = kind === 'mqtt' ? new provMqtt.Mqtt() : new provHttp.Http();
  const client = provDevice.ProvisioningDeviceClient.create(HOST, idScope, transport, new symmetricKey.SymmetricKeySecurityClient(registrationId, key) as never);
  return (await client.register()) as unknown as State;
}

async function registerCert(registrationId: string, certPem: string, keyPem: string): Promise<State> {
  const client = provDevice.ProvisioningDeviceClient.create(HOST, idScope, new provMqtt.Mqtt(), new x509Security.X509Security(registrationId, { cert: certPem, key: keyPem }) as never);
  return (await client.register()) as unknown as State;
}

/** A registration the service could not assign: status failed, and nothing said about why. */
function notAssigned(err: Error & { result?: { registrationState?: { errorCode?: number; errorMessage?: string } } }): boolean {
  assert.equal(err.constructor.name, 'DeviceRegistrationFailedError', `${err.constructor.name}: ${err.message}`);
  assert.equal(err.result?.registrationState?.errorCode, 401002);
  assert.equal(err.result?.registrationState?.errorMessage, 'Unauthorized', 'the refusal names no device and no enrollment');
  return true;
}

async function symmetricGroup(id: string): Promise<string> {
  const { responseBody: g } = await service.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: id,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } },
  } as never);
  return String((g as { attestation: { symmetricKey: { primaryKey: string } } }).attestation.symmetricKey.primaryKey);
}

async function connectsWithKey(deviceId: string, key: string): Promise<void> {
  const client = deviceSdk.Client.fromConnectionString(`HostName=${HOST};DeviceId=${deviceId};SharedAccessKey=${key}`, deviceMqtt.Mqtt);
  await client.setOptions({ ca });
  await client.open();
  await client.close();
}

interface AuditEntry {
  subject?: string;
  identity?: string;
  outcome?: string;
  reason?: string | null;
  protocol?: string | null;
}

/** Polls the audit log until an auth failure of this subject and identity is there. */
async function auditFailure(subject: string, identity: string, reason: RegExp): Promise<AuditEntry> {
  let entries: AuditEntry[] = [];
  for (let i = 0; i < 50; i++) {
    const r = await rest('GET', `/auditLog?type=auth&outcome=failure&identity=${encodeURIComponent(identity)}`);
    assert.equal(r.status, 200, r.raw.toString());
    entries = (r.body as { entries: AuditEntry[] }).entries;
    const hit = entries.find((e) => e.subject === subject && reason.test(e.reason ?? ''));
    if (hit !== undefined) return hit;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.fail(`no ${subject} failure for ${identity} matching ${String(reason)} in the audit log: ${JSON.stringify(entries)}`);
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  dir = tempDir('takeover');
  const info = JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { idScope: string; dpsConnectionString: string };
  idScope = info.idScope;
  service = provService.ProvisioningServiceClient.fromConnectionString(info.dpsConnectionString);
  registry = iothub.Registry.fromConnectionString(hub.connectionString);
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  dpsRest = restClient(HOST, ca, policyKey(hub.dataDir, 'provisioningserviceowner'), 'provisioningserviceowner');
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
  removeDir(dir);
});

describe('a DPS registration does not take over a device it does not own', () => {
  let keyA = '';
  let keyB = '';

  before(async () => {
    keyA = await symmetricGroup('grp-a');
    keyB = await symmetricGroup('grp-b');
  });

  it("an operator's device: a group member registering its id is refused, and its own key still connects", async () => {
    const own = randomBytes(32).toString('base64');
    await registry.create({ deviceId: 'pump-1', authentication: { symmetricKey: { primaryKey: own, secondaryKey: randomBytes(32).toString('base64') } } } as never);
    for (const kind of ['mqtt', 'http'] as const) await assert.rejects(registerKey(kind, 'pump-1', derive(keyA, 'pump-1')), notAssigned);
    const { responseBody: d } = await registry.get('pump-1');
    assert.equal(d.authentication?.symmetricKey?.primaryKey, own, 'the operator key is still the device key');
    await connectsWithKey('pump-1', own);
    await assert.rejects(connectsWithKey('pump-1', derive(keyA, 'pump-1')));
    const row = await auditFailure('registration', 'pump-1', /pump-1.*grp-a|grp-a.*pump-1/);
    assert.match(row.protocol ?? '', /^dps-(mqtt|https)$/);
  });

  it('a device of group A: a registration through group B, or an X.509 group, is refused; group A re-registers it', async () => {
    const first = await registerKey('mqtt', 'shared-1', derive(keyA, 'shared-1'));
    assert.equal(first.deviceId, 'shared-1');
    await assert.rejects(registerKey('http', 'shared-1', derive(keyB, 'shared-1')), notAssigned);

    // Nor may an X.509 group turn it into a certificate device.
    const root = await makeRoot('Camera Root');
    await service.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'cams',
      attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: root.certPem } } } },
    } as never);
    const leaf = await makeLeaf(root, 'shared-1');
    await assert.rejects(registerCert('shared-1', chainPem(leaf, root), leaf.keyPem), notAssigned);

    const { responseBody: d } = await registry.get('shared-1');
    assert.equal((d.authentication as { type?: string } | undefined)?.type, 'sas');
    assert.equal(d.authentication?.symmetricKey?.primaryKey, derive(keyA, 'shared-1'), 'still the key group A derived');
    const { responseBody: record } = await service.getDeviceRegistrationState('shared-1');
    assert.equal((record as { symmetricKey?: { enrollmentGroupId?: string } }).symmetricKey?.enrollmentGroupId, 'grp-a');
    await connectsWithKey('shared-1', derive(keyA, 'shared-1'));
    // Its own enrollment may provision it again (Azure's reprovisioning, within the enrollment).
    const again = await registerKey('mqtt', 'shared-1', derive(keyA, 'shared-1'));
    assert.equal(again.status, 'assigned');
    await auditFailure('registration', 'shared-1', /grp-b/);
  });

  it('registration ids are case-insensitive: DEV-LA-9 after dev-la-9 is the same registration and the same device', async () => {
    const first = await registerKey('mqtt', 'dev-la-9', derive(keyA, 'dev-la-9'));
    assert.equal(first.deviceId, 'dev-la-9');
    const second = await registerKey('http', 'DEV-LA-9', derive(keyA, 'DEV-LA-9'));
    assert.equal(second.status, 'assigned');
    assert.equal(second.deviceId, 'dev-la-9', 'the device the registration already has');
    await assert.rejects(registry.get('DEV-LA-9'), 'no second device beside dev-la-9');
    const { responseBody: record } = await service.getDeviceRegistrationState('dev-la-9');
    assert.equal((record as { deviceId?: string }).deviceId, 'dev-la-9');
    await connectsWithKey('dev-la-9', derive(keyA, 'DEV-LA-9'));
    // Through another group, in whatever case, it is still group A's device.
    await assert.rejects(registerKey('mqtt', 'Dev-La-9', derive(keyB, 'Dev-La-9')), notAssigned);
  });
});

describe('a certificateAuthority device chains to the CA its enrollment names', () => {
  it('a chain to another verified CA with the same CN is refused; the enrollment CA connects', async () => {
    const x = await makeRoot('Line X Root');
    const y = await makeRoot('Line Y Root');
    for (const [name, cert] of [
      ['ca-x', x],
      ['ca-y', y],
    ] as const) {
      writeFileSync(join(dir, `${name}.pem`), cert.certPem);
      const r = cli(['ca', 'add', '--name', name, '--cert', join(dir, `${name}.pem`), '--verified', '--data-dir', hub.dataDir]);
      assert.equal(r.status, 0, r.stderr);
    }
    await service.createOrUpdateEnrollmentGroup({ enrollmentGroupId: 'cams-x', attestation: { type: 'x509', x509: { caReferences: { primary: 'ca-x' } } } } as never);
    const good = await makeLeaf(x, 'cam-1');
    const state = await registerCert('cam-1', good.certPem, good.keyPem);
    assert.equal(state.deviceId, 'cam-1');
    assert.equal(((await registry.get('cam-1')).responseBody.authentication as { type?: string } | undefined)?.type, 'certificateAuthority');

    const ok = await connectRaw(HOST, ca, connectPacket(HOST, 'cam-1', undefined), { cert: good.certPem, key: good.keyPem });
    assert.equal(ok.code, 0);
    ok.client.end();
    const forged: TestCert = await makeLeaf(y, 'cam-1');
    const refused = await connectRaw(HOST, ca, connectPacket(HOST, 'cam-1', undefined), { cert: forged.certPem, key: forged.keyPem });
    assert.equal(refused.code, 4, 'a chain to CA Y is not a chain to the CA of the enrollment');
    refused.client.end();
    await auditFailure('device', 'cam-1', /ca-x|enrollment/i);

    // An operator's certificateAuthority device (no enrollment) accepts any verified CA, as in Azure.
    await registry.create({ deviceId: 'cam-op', authentication: { type: 'certificateAuthority' } } as never);
    for (const root of [x, y]) {
      const leaf = await makeLeaf(root, 'cam-op');
      const c = await connectRaw(HOST, ca, connectPacket(HOST, 'cam-op', undefined), { cert: leaf.certPem, key: leaf.keyPem });
      assert.equal(c.code, 0);
      c.client.end();
    }
  });
});

describe('an EST factory credential enrolls only the registration ids it may', () => {
  const passwords = new Map<string, string>();

  /** A device key and its CSR (PEM) for this CN. */
  async function csrFor(cn: string): Promise<{ csr: string; key: webcrypto.CryptoKey }> {
    const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: new x509.Name([{ CN: [cn] }]), keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
    return { csr: csr.toString('pem'), key: keys.privateKey };
  }

  async function enroll(credential: string, label: string, cn: string): Promise<{ status: number; body: unknown }> {
    const { csr } = await csrFor(cn);
    const auth = { authorization: `Basic ${Buffer.from(`${credential}:${passwords.get(credential) ?? ''}`).toString('base64')}` };
    const r = await rest('POST', `/est/${label}/enroll`, { csr }, { auth: false, headers: auth });
    return { status: r.status, body: r.body };
  }

  /** What a refusal says, without its tracking id. */
  const answer = (body: unknown) => {
    const b = body as { Message?: string; errorCode?: number };
    return { message: b.Message, errorCode: b.errorCode };
  };

  async function credential(id: string, group: string, registrationIds: string[]): Promise<void> {
    const r = await rest('POST', '/est/credentials', { enrollmentGroupId: group, id, registrationIds });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    passwords.set(id, (r.body as { password: string }).password);
  }

  before(async () => {
    for (const line of ['line-a', 'line-b']) {
      assert.equal((await rest('POST', '/certificateAuthorities', { name: `${line}-ca` })).status, 201);
      const g = await dpsRest('PUT', `/enrollmentGroups/${line}`, { enrollmentGroupId: line, attestation: { type: 'x509', x509: { caReferences: { primary: `${line}-ca` } } } });
      assert.equal(g.status, 200, JSON.stringify(g.body));
    }
    await credential('station-a', 'line-a', ['line-a-*']);
    await credential('station-b', 'line-b', ['line-b-*']);
    // A careless scope: everything. Still not another enrollment's device or an operator's.
    await credential('station-wide', 'line-a', ['*']);
  });

  it('in scope: issued; outside the scope: refused', async () => {
    assert.equal((await enroll('station-a', 'line-a', 'line-a-0001')).status, 200);
    const outside = await enroll('station-a', 'line-a', 'stray-0001');
    assert.equal(outside.status, 403, JSON.stringify(outside.body));
    const other = await enroll('station-a', 'line-a', 'line-b-0002');
    assert.equal(other.status, 403);
    assert.deepEqual(answer(other.body), answer(outside.body), 'both refusals read alike');
    await auditFailure('est-credential', 'line-a', /stray-0001/);
  });

  it("a device line B provisioned, and an operator's SAS device, are refused even to a credential whose scope is '*'", async () => {
    // Line B makes and provisions its device.
    const { csr, key } = await csrFor('line-b-0001');
    const made = await rest('POST', '/est/line-b/enroll', { csr }, { auth: false, headers: { authorization: `Basic ${Buffer.from(`station-b:${passwords.get('station-b')}`).toString('base64')}` } });
    assert.equal(made.status, 200, JSON.stringify(made.body));
    const issued = made.body as { chain: string };
    const keyPem = KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }).toString();
    const state = await registerCert('line-b-0001', issued.chain, keyPem);
    assert.equal(state.deviceId, 'line-b-0001');

    await registry.create({ deviceId: 'meter-9', authentication: { symmetricKey: { primaryKey: randomBytes(32).toString('base64'), secondaryKey: randomBytes(32).toString('base64') } } } as never);
    const refusals = [];
    for (const cn of ['line-b-0001', 'LINE-B-0001', 'meter-9']) {
      const r = await enroll('station-wide', 'line-a', cn);
      assert.equal(r.status, 403, `${cn}: ${JSON.stringify(r.body)}`);
      refusals.push(JSON.stringify(answer(r.body)));
    }
    assert.equal(new Set(refusals).size, 1, 'one refusal for every reason');
    assert.equal((await enroll('station-wide', 'line-a', 'fresh-0001')).status, 200, 'a new id is within a * scope');

    // Nothing was issued under line A for those ids.
    const listed = await rest('GET', '/certificateAuthorities/line-a-ca/issued');
    const subjects = (listed.body as { value: Array<{ deviceId: string }> }).value.map((v) => v.deviceId.toLowerCase());
    assert.ok(!subjects.includes('line-b-0001') && !subjects.includes('meter-9'), subjects.join(','));
    await auditFailure('est-credential', 'line-a', /meter-9/);
  });

  it('a credential needs a registration-id scope', async () => {
    const r = await rest('POST', '/est/credentials', { enrollmentGroupId: 'line-a', id: 'station-none' });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    const c = cli(['est', 'credential', 'create', '--data-dir', hub.dataDir, '--group', 'line-a', '--id', 'station-cli', '--registration-ids', 'line-a-1*,line-a-2*']);
    assert.equal(c.status, 0, c.stderr);
    const listed = JSON.parse(cli(['est', 'credential', 'list', '--data-dir', hub.dataDir, '--group', 'line-a']).stdout) as Array<{ id: string; registrationIds: string[] }>;
    assert.deepEqual(listed.find((x) => x.id === 'station-cli')?.registrationIds, ['line-a-1*', 'line-a-2*']);
  });
});
