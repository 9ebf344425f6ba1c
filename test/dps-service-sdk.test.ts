/**
 * The DPS service REST API driven by Microsoft's unmodified azure-iot-provisioning-service
 * ProvisioningServiceClient against a real `gatehouse start` process: every call of wire doc §6.9,
 * with the typed errors of the negative cases.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import provisioningService from 'azure-iot-provisioning-service';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { makeRoot, makeSelfSigned, thumbprints } from './support/pki.js';

const { ProvisioningServiceClient } = provisioningService;
type Client = InstanceType<typeof ProvisioningServiceClient>;
type Enrollment = Parameters<Client['createOrUpdateIndividualEnrollment']>[0];
type Group = Parameters<Client['createOrUpdateEnrollmentGroup']>[0];

const ADDRESS = '127.0.43.1';

let hub: HubProcess;
let client: Client;
let info: { idScope: string; dpsConnectionString: string };

type BulkOp = Parameters<Client['runBulkEnrollmentOperation']>[0];
type BulkResult = { isSuccessful: boolean; errors: Array<{ registrationId: string; errorCode: number; errorStatus: string }> };

/**
 * runBulkEnrollmentOperation's promise form never settles in SDK 1.11.2 (it calls back only when
 * given a callback), so the test uses the callback form.
 */
function bulk(op: BulkOp): Promise<BulkResult> {
  return new Promise((resolve, reject) => {
    client.runBulkEnrollmentOperation(op, (err, result) => (err ? reject(err) : resolve(result as unknown as BulkResult)));
  });
}

// Query.next() without an argument restarts at the first page (SDK 1.11.2 overwrites its stored
// continuation token with the missing argument); paging passes the token explicitly.

function keyBytes(k: string | undefined): number {
  return Buffer.from(k ?? '', 'base64').length;
}

async function rejectsWithStatus(p: Promise<unknown>, status: number, name?: string): Promise<Error & { responseBody?: string }> {
  let caught: (Error & { responseBody?: string }) | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof Error);
    assert.equal((err as { response?: { statusCode?: number } }).response?.statusCode, status, `${err.constructor.name}: ${err.message}`);
    if (name !== undefined) assert.equal(err.constructor.name, name);
    caught = err;
    return true;
  });
  assert.ok(caught);
  return caught;
}

before(async () => {
  hub = await startHubProcess({ address: ADDRESS });
  const out = cli(['info', '--data-dir', hub.dataDir, '--json']);
  assert.equal(out.status, 0, out.stderr);
  info = JSON.parse(out.stdout) as typeof info;
  client = ProvisioningServiceClient.fromConnectionString(info.dpsConnectionString);
});

after(async () => {
  const code = await hub.stop();
  assert.equal(code, 0, `SIGTERM should stop the hub cleanly:\n${hub.output()}`);
  removeDir(hub.dataDir);
});

describe('gatehouse info', () => {
  it('reports the ID scope and the provisioningserviceowner connection string', () => {
    assert.match(info.idScope, /^0ne[0-9A-F]{8}$/);
    assert.match(info.dpsConnectionString, new RegExp(`^HostName=${ADDRESS};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=.+`));
    const cs = cli(['connection-string', '--data-dir', hub.dataDir, '--policy', 'provisioningserviceowner']);
    assert.equal(cs.stdout.trim(), info.dpsConnectionString);
  });
});

describe('individual enrollments', () => {
  it('symmetric key with empty keys gets generated 64-byte keys; get, update under etag, stale etag, delete', async () => {
    const created = (await client.createOrUpdateIndividualEnrollment({
      registrationId: 'Sym-Dev-1',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } },
      initialTwin: { tags: { site: 'lab' }, properties: { desired: { interval: 30 } } },
    } as unknown as Enrollment)).responseBody;
    assert.equal(created.registrationId, 'Sym-Dev-1');
    assert.equal(keyBytes(created.attestation.symmetricKey?.primaryKey), 64);
    assert.equal(keyBytes(created.attestation.symmetricKey?.secondaryKey), 64);
    assert.equal(created.provisioningStatus, 'enabled');
    assert.equal(created.allocationPolicy, 'hashed');
    assert.deepEqual(created.iotHubs, [ADDRESS]);
    assert.ok(created.etag !== undefined && created.createdDateTimeUtc !== undefined);

    const got = (await client.getIndividualEnrollment('sym-dev-1')).responseBody;
    assert.equal(got.registrationId, 'Sym-Dev-1', 'ids are case-insensitive and keep their first case');
    assert.equal(got.attestation.symmetricKey?.primaryKey, created.attestation.symmetricKey?.primaryKey);

    const updated = (await client.createOrUpdateIndividualEnrollment({ ...got, provisioningStatus: 'disabled' })).responseBody;
    assert.equal(updated.provisioningStatus, 'disabled');
    assert.notEqual(updated.etag, got.etag);
    assert.equal(updated.createdDateTimeUtc, got.createdDateTimeUtc);
    await rejectsWithStatus(client.createOrUpdateIndividualEnrollment({ ...got, provisioningStatus: 'enabled' }), 412, 'InvalidEtagError');
    await rejectsWithStatus(client.deleteIndividualEnrollment('Sym-Dev-1', got.etag ?? ''), 412, 'InvalidEtagError');

    const mech = (await client.getIndividualEnrollmentAttestationMechanism('SYM-DEV-1')).responseBody;
    assert.equal(mech.type, 'symmetricKey');
    assert.equal(mech.symmetricKey?.primaryKey, created.attestation.symmetricKey?.primaryKey);

    await client.deleteIndividualEnrollment(updated);
    await rejectsWithStatus(client.getIndividualEnrollment('Sym-Dev-1'), 404);
  });

  it('X.509 with a client certificate gets its info filled', async () => {
    const leaf = await makeSelfSigned('x509-dev-1');
    const created = (await client.createOrUpdateIndividualEnrollment({
      registrationId: 'x509-dev-1',
      attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: leaf.certPem } } } },
    } as unknown as Enrollment)).responseBody;
    const info = created.attestation.x509?.clientCertificates?.primary?.info;
    assert.equal(info?.sha256Thumbprint, thumbprints(leaf.certPem).sha256);
    assert.equal(info?.sha1Thumbprint, thumbprints(leaf.certPem).sha1);
    assert.match(info?.subjectName ?? '', /CN=x509-dev-1/);
    await client.deleteIndividualEnrollment('x509-dev-1');
  });

  it('TPM keeps its endorsement key', async () => {
    const ek = Buffer.alloc(256, 7).toString('base64');
    await client.createOrUpdateIndividualEnrollment({ registrationId: 'tpm-dev-1', attestation: { type: 'tpm', tpm: { endorsementKey: ek } } } as unknown as Enrollment);
    const mech = (await client.getIndividualEnrollmentAttestationMechanism('tpm-dev-1')).responseBody;
    assert.equal(mech.type, 'tpm');
    assert.equal(mech.tpm?.endorsementKey, ek);
    await client.deleteIndividualEnrollment('tpm-dev-1');
  });

  it('rejects a key shorter than 16 bytes and a bad registration id (ArgumentError)', async () => {
    const short = Buffer.alloc(8, 1).toString('base64');
    await rejectsWithStatus(client.createOrUpdateIndividualEnrollment({ registrationId: 'short-key', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: short, secondaryKey: short } } } as unknown as Enrollment), 400, 'ArgumentError');
    await rejectsWithStatus(client.createOrUpdateIndividualEnrollment({ registrationId: 'bad.', attestation: { type: 'symmetricKey' } } as unknown as Enrollment), 400, 'ArgumentError');
  });

  it('bulk create, paged query with continuation, bulk delete', async () => {
    const ids = ['bulk-a', 'bulk-b', 'bulk-c', 'bulk-d', 'bulk-e'];
    const enrollments = ids.map((registrationId) => ({ registrationId, attestation: { type: 'symmetricKey' } }) as unknown as Enrollment);
    const created = await bulk({ mode: 'create', enrollments });
    assert.deepEqual(created, { isSuccessful: true, errors: [] });
    const again = await bulk({ mode: 'create', enrollments: enrollments.slice(0, 1) });
    assert.equal(again.isSuccessful, false);
    assert.equal(again.errors[0]?.registrationId, 'bulk-a');
    assert.equal(again.errors[0]?.errorCode, 409001);

    const query = client.createIndividualEnrollmentQuery({ query: '*' }, 2);
    const seen: string[] = [];
    let pages = 0;
    while (query.hasMoreResults) {
      const page = (await query.next(query.continuationToken)).responseBody as unknown as Enrollment[];
      assert.ok(page.length <= 2);
      seen.push(...page.map((e) => e.registrationId));
      pages++;
    }
    assert.deepEqual(seen, ids);
    assert.equal(pages, 3);

    const deleted = await bulk({ mode: 'delete', enrollments });
    assert.equal(deleted.isSuccessful, true);
    const empty = await client.createIndividualEnrollmentQuery({ query: '*' }).next();
    assert.deepEqual(empty.responseBody, []);
  });
});

describe('enrollment groups', () => {
  it('symmetric key: create, get, update under etag, stale etag, attestation mechanism, delete', async () => {
    const created = (await client.createOrUpdateEnrollmentGroup({ enrollmentGroupId: 'Group-Sym', attestation: { type: 'symmetricKey' } } as unknown as Group)).responseBody;
    assert.equal(keyBytes(created.attestation.symmetricKey?.primaryKey), 64);
    const got = (await client.getEnrollmentGroup('group-sym')).responseBody;
    assert.equal(got.enrollmentGroupId, 'Group-Sym');
    const updated = (await client.createOrUpdateEnrollmentGroup({ ...got, iotHubs: ['other.example'] })).responseBody;
    assert.deepEqual(updated.iotHubs, ['other.example']);
    await rejectsWithStatus(client.createOrUpdateEnrollmentGroup({ ...got }), 412, 'InvalidEtagError');
    const mech = (await client.getEnrollmentGroupAttestationMechanism('Group-Sym')).responseBody;
    assert.equal(mech.symmetricKey?.primaryKey, created.attestation.symmetricKey?.primaryKey);
    await rejectsWithStatus(client.deleteEnrollmentGroup(got), 412, 'InvalidEtagError');
    await client.deleteEnrollmentGroup(updated);
    await rejectsWithStatus(client.getEnrollmentGroup('group-sym'), 404);
  });

  it('X.509 with signing certificates; paged group query; registration query on the group', async () => {
    const root = await makeRoot('gatehouse dps test root');
    const created = (await client.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'group-x509',
      attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: root.certPem } } } },
    } as unknown as Group)).responseBody;
    assert.equal(created.attestation.x509?.signingCertificates?.primary?.info?.sha256Thumbprint, thumbprints(root.certPem).sha256);
    for (const id of ['group-p1', 'group-p2']) {
      await client.createOrUpdateEnrollmentGroup({ enrollmentGroupId: id, attestation: { type: 'symmetricKey' } } as unknown as Group);
    }
    const query = client.createEnrollmentGroupQuery({ query: '*' }, 2);
    const seen: string[] = [];
    while (query.hasMoreResults) seen.push(...((await query.next(query.continuationToken)).responseBody as unknown as Group[]).map((g) => g.enrollmentGroupId));
    assert.deepEqual(seen, ['group-p1', 'group-p2', 'group-x509']);
    const regs = await client.createEnrollmentGroupDeviceRegistrationStateQuery({ query: '*' }, 'group-x509', 2).next();
    assert.deepEqual(regs.responseBody, []);
    for (const id of seen) await client.deleteEnrollmentGroup(id);
  });
});

describe('registration states and rights', () => {
  it('a missing registration state is a 404 with RegistrationNotFound', async () => {
    const err = await rejectsWithStatus(client.getDeviceRegistrationState('never-registered'), 404);
    assert.match(String(err.responseBody), /ErrorCode:RegistrationNotFound/);
    await rejectsWithStatus(client.deleteDeviceRegistrationState('never-registered'), 404);
  });

  it('a registryRead token gets 401 on enrollments', async () => {
    const cs = cli(['connection-string', '--data-dir', hub.dataDir, '--policy', 'registryRead']);
    assert.equal(cs.status, 0, cs.stderr);
    const reader = ProvisioningServiceClient.fromConnectionString(cs.stdout.trim());
    await rejectsWithStatus(reader.getIndividualEnrollment('anything'), 401, 'UnauthorizedError');
    await rejectsWithStatus(reader.createIndividualEnrollmentQuery({ query: '*' }).next(), 401, 'UnauthorizedError');
  });
});
