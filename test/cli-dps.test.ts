/**
 * The provisioning service from the command line, with az's names (issue 15, item 15): what the
 * CLI enrolls lets the unmodified azure-iot-provisioning-device SDK register, with a group key
 * from `compute-device-key`, an individual key, a client certificate from `--certificate-path`,
 * and the factory line's certificates through a group made with `--ca-name`.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import provDevice from 'azure-iot-provisioning-device';
import provMqtt from 'azure-iot-provisioning-device-mqtt';
import symmetricKey from 'azure-iot-security-symmetric-key';
import x509Security from 'azure-iot-security-x509';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { makeSelfSigned } from './support/pki.js';

const { ProvisioningDeviceClient } = provDevice;

const HOST = '127.0.86.1';
let hub: HubProcess;
let idScope: string;
let dpsConnectionString: string;
let files: string;

function gh(args: string[], env: NodeJS.ProcessEnv = {}) {
  return cli([...args, '--data-dir', hub.dataDir], env);
}

function ok<T = Record<string, unknown>>(args: string[]): T {
  const r = gh(args);
  assert.equal(r.status, 0, `gatehouse ${args.join(' ')}: ${r.stderr}`);
  return (r.stdout.trim() === '' ? undefined : JSON.parse(r.stdout)) as T;
}

function fails(args: string[], status: number, line: RegExp): void {
  const r = gh(args);
  assert.equal(r.status, status, `gatehouse ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, line);
  assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
}

async function registerWithKey(registrationId: string, key: string): Promise<{ status?: string; deviceId?: string; assignedHub?: string }> {
  const client = ProvisioningDeviceClient.create(HOST, idScope, new provMqtt.Mqtt(), new symmetricKey.SymmetricKeySecurityClient(registrationId, key) as never);
  return (await client.register()) as unknown as { status?: string; deviceId?: string; assignedHub?: string };
}

async function registerWithCert(registrationId: string, cert: string, key: string): Promise<{ status?: string; deviceId?: string }> {
  const client = ProvisioningDeviceClient.create(HOST, idScope, new provMqtt.Mqtt(), new x509Security.X509Security(registrationId, { cert, key }) as never);
  return (await client.register()) as unknown as { status?: string; deviceId?: string };
}

function refused(err: unknown): boolean {
  return err instanceof Error && (err.constructor.name === 'UnauthorizedError' || /Bad username or password|401|Unauthorized/i.test(err.message));
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  const info = JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { idScope: string; dpsConnectionString: string };
  idScope = info.idScope;
  dpsConnectionString = info.dpsConnectionString;
  files = tempDir('cli-dps');
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
  removeDir(files);
});

describe('gatehouse dps enrollment-group (symmetric key)', () => {
  it('create + compute-device-key: the SDK registers with the derived key, and the initial twin applies', async () => {
    const group = ok(['dps', 'enrollment-group', 'create', '--gid', 'kiosks', '--tags', '{"fleet":"kiosk"}', '--props', '{"interval":15}', '--rp', 'reprovisionandresetdata']);
    assert.equal(group.enrollmentGroupId, 'kiosks');
    const attestation = group.attestation as { type: string; symmetricKey: { primaryKey: string } };
    assert.equal(attestation.type, 'symmetricKey');
    assert.equal(Buffer.from(attestation.symmetricKey.primaryKey, 'base64').length, 64, 'the service generated the group key');
    assert.deepEqual(group.reprovisionPolicy, { updateHubAssignment: true, migrateDeviceData: false });

    const deviceKey = ok<string>(['dps', 'enrollment-group', 'compute-device-key', '--gid', 'kiosks', '--rid', 'kiosk-001']);
    // Offline, from the group key alone, the same key (az's --symmetric-key / --key).
    assert.equal(ok<string>(['dps', 'enrollment-group', 'compute-device-key', '--key', attestation.symmetricKey.primaryKey, '--registration-id', 'kiosk-001']), deviceKey);
    const table = gh(['dps', 'compute-device-key', '--eid', 'kiosks', '--rid', 'kiosk-001', '-o', 'table']);
    assert.equal(table.stdout, `${deviceKey}\n`);

    const state = await registerWithKey('kiosk-001', deviceKey);
    assert.equal(state.status, 'assigned');
    assert.equal(state.deviceId, 'kiosk-001');
    assert.equal(state.assignedHub, HOST);
    const twin = ok<{ tags: Record<string, unknown>; properties: { desired: Record<string, unknown> } }>(['twin', 'show', '-d', 'kiosk-001']);
    assert.equal(twin.tags.fleet, 'kiosk');
    assert.equal(twin.properties.desired.interval, 15);
    // The group key itself is refused.
    await assert.rejects(registerWithKey('kiosk-002', attestation.symmetricKey.primaryKey), refused);
  });

  it('show hides the keys unless --show-keys; list; update changes only what is given', () => {
    const shown = ok(['dps', 'enrollment-group', 'show', '--gid', 'kiosks']);
    assert.deepEqual((shown.attestation as { symmetricKey: unknown }).symmetricKey, { primaryKey: null, secondaryKey: null });
    const keys = ok(['dps', 'enrollment-group', 'show', '--enrollment-id', 'kiosks', '--show-keys']);
    assert.match(String((keys.attestation as { symmetricKey: { primaryKey: string } }).symmetricKey.primaryKey), /^[A-Za-z0-9+/]{86}==$/);
    const list = ok<Array<Record<string, unknown>>>(['dps', 'enrollment-group', 'list']);
    assert.deepEqual(list.map((g) => g.enrollmentGroupId), ['kiosks']);
    assert.equal(JSON.stringify(list).includes((keys.attestation as { symmetricKey: { primaryKey: string } }).symmetricKey.primaryKey), false);

    const updated = ok(['dps', 'enrollment-group', 'update', '--gid', 'kiosks', '--ps', 'disabled', '--props', '{"interval":60}']);
    assert.equal(updated.provisioningStatus, 'disabled');
    assert.deepEqual(updated.initialTwin, { tags: { fleet: 'kiosk' }, properties: { desired: { interval: 60 } } }, 'the tags stay');
    assert.equal((updated.attestation as { symmetricKey: { primaryKey: string } }).symmetricKey.primaryKey, (keys.attestation as { symmetricKey: { primaryKey: string } }).symmetricKey.primaryKey, 'the keys stay');
    const table = gh(['dps', 'enrollment-group', 'list', '-o', 'table']);
    assert.match(table.stdout.split('\n')[2] ?? '', /^kiosks\s+symmetricKey\s+disabled\s+hashed\s+/);

    fails(['dps', 'enrollment-group', 'update', '--gid', 'kiosks', '--ps', 'enabled', '--etag', 'stale'], 1, /^error: PreconditionFailed: /);
    fails(['dps', 'enrollment-group', 'create', '--gid', 'kiosks'], 1, /^error: EnrollmentAlreadyExists: an enrollment group kiosks already exists/);
    ok(['dps', 'enrollment-group', 'update', '--gid', 'kiosks', '--ps', 'enabled']);
  });

  it('registration list, show and delete (also under enrollment-group registration)', () => {
    const list = ok<Array<Record<string, unknown>>>(['dps', 'registration', 'list', '--gid', 'kiosks']);
    assert.deepEqual(list.map((r) => [r.registrationId, r.status]), [['kiosk-001', 'assigned']]);
    const shown = ok(['dps', 'enrollment-group', 'registration', 'show', '--rid', 'kiosk-001']);
    assert.equal(shown.deviceId, 'kiosk-001');
    assert.equal(shown.assignedHub, HOST);
    ok(['dps', 'registration', 'delete', '--rid', 'kiosk-001']);
    fails(['dps', 'registration', 'show', '--registration-id', 'kiosk-001'], 1, /^error: RegistrationNotFound: /);
    assert.deepEqual(ok(['dps', 'enrollment-group', 'registration', 'list', '--gid', 'kiosks']), []);
  });
});

describe('gatehouse dps enrollment (individual)', () => {
  it('symmetric key: --pk given, disabled until update --ps enabled; --device-id names the hub device', async () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    const created = ok(['dps', 'enrollment', 'create', '--eid', 'meter-7', '--at', 'symmetrickey', '--pk', key, '--ps', 'disabled', '-d', 'meter-seven', '--ap', 'static', '--ih', HOST]);
    assert.equal(created.registrationId, 'meter-7');
    assert.equal(created.deviceId, 'meter-seven');
    assert.equal(created.allocationPolicy, 'static');
    assert.deepEqual(created.iotHubs, [HOST]);
    await assert.rejects(registerWithKey('meter-7', key), refused, 'a disabled enrollment refuses');
    ok(['dps', 'enrollment', 'update', '--enrollment-id', 'meter-7', '--provisioning-status', 'enabled']);
    const state = await registerWithKey('meter-7', key);
    assert.equal(state.status, 'assigned');
    assert.equal(state.deviceId, 'meter-seven');
    const reg = ok(['dps', 'enrollment', 'registration', 'show', '--eid', 'meter-7']);
    assert.equal(reg.status, 'assigned');
  });

  it('x509 with --certificate-path: the SDK registers with that certificate', async () => {
    const cert = await makeSelfSigned('cam-1');
    const file = join(files, 'cam-1.pem');
    writeFileSync(file, cert.certPem);
    const created = ok(['dps', 'enrollment', 'create', '--eid', 'cam-1', '--attestation-type', 'x509', '--certificate-path', file]);
    const x509 = (created.attestation as { x509: { clientCertificates: { primary: { info: { subjectName: string } } } } }).x509;
    assert.match(x509.clientCertificates.primary.info.subjectName, /CN=cam-1/);
    const state = await registerWithCert('cam-1', cert.certPem, cert.keyPem);
    assert.equal(state.status, 'assigned');
    const other = await makeSelfSigned('cam-1');
    await assert.rejects(registerWithCert('cam-1', other.certPem, other.keyPem), refused, 'another certificate with the same name is refused');
  });

  it('list, show, delete; az checks on the flags are usage errors (exit 2), the service refusals exit 1', () => {
    const list = ok<Array<Record<string, unknown>>>(['dps', 'enrollment', 'list', '--top', '1']);
    assert.equal(list.length, 1);
    const all = ok<Array<Record<string, unknown>>>(['dps', 'enrollment', 'list', '--login', dpsConnectionString]);
    assert.deepEqual(all.map((e) => e.registrationId).sort(), ['cam-1', 'meter-7']);
    assert.deepEqual((all.find((e) => e.registrationId === 'meter-7')?.attestation as { symmetricKey: unknown }).symmetricKey, { primaryKey: null, secondaryKey: null });

    fails(['dps', 'enrollment', 'create', '--eid', 'x', '--at', 'x509'], 2, /^error: ArgumentMissing: an x509 enrollment needs --certificate-path/);
    fails(['dps', 'enrollment', 'create', '--eid', 'x', '--at', 'symmetricKey', '--ap', 'static', '--ih', 'a', 'b'], 2, /^error: ArgumentInvalid: the static allocation policy takes exactly one hub/);
    fails(['dps', 'enrollment', 'create', '--eid', 'x', '--at', 'symmetricKey', '--ih', HOST], 2, /^error: ArgumentMissing: --iot-hubs needs --allocation-policy/);
    fails(['dps', 'enrollment', 'create', '--eid', 'x', '--at', 'magic'], 2, /^error: ArgumentInvalid: --attestation-type must be one of symmetricKey, x509, tpm/);
    fails(['dps', 'enrollment', 'create', '--eid', 'x', '--at', 'x509', '--cp', join(files, 'missing.pem')], 2, /^error: FileUnreadable: --certificate-path .*missing\.pem: ENOENT/);
    fails(['dps', 'enrollment', 'update', '--eid', 'cam-1', '--pk', Buffer.alloc(32).toString('base64')], 2, /^error: ArgumentInvalid: --primary-key and --secondary-key cannot be given: the enrollment uses x509/);
    fails(['dps', 'enrollment', 'create', '--eid', 'bad id!', '--at', 'symmetricKey'], 1, /^error: ArgumentInvalid: The registration id 'bad id!' is invalid/);

    ok(['dps', 'enrollment', 'delete', '--eid', 'cam-1']);
    fails(['dps', 'enrollment', 'show', '--eid', 'cam-1'], 1, /^error: EnrollmentNotFound: /);
    // The hub's iothubowner policy has no enrollment rights: the DPS commands use provisioningserviceowner.
    const hubCs = cli(['connection-string', '--data-dir', hub.dataDir]).stdout.trim();
    const denied = cli(['dps', 'enrollment', 'list', '--connection-string', hubCs]);
    assert.equal(denied.status, 1);
    assert.match(denied.stderr, /^error: IotHubUnauthorizedAccess: /);
  });
});

describe('the factory path from the README, all from the command line', () => {
  it('ca create, enrollment-group create --ca-name, est credential, factory run: a bundle registers', async () => {
    assert.equal(gh(['ca', 'create', '-n', 'line-root']).status, 0);
    const group = ok(['dps', 'enrollment-group', 'create', '--gid', 'line-a', '--ca-name', 'line-root', '--props', '{"madeOn":"line-a"}']);
    assert.deepEqual((group.attestation as { x509: unknown }).x509, { caReferences: { primary: 'line-root' } });
    const credential = ok<{ password: string }>(['est', 'credential', 'create', '--group', 'line-a', '--id', 'station-a', '--registration-ids', 'line-a-*']);
    const out = join(files, 'line');
    const run = cli(['factory', 'run', '--group', 'line-a', '--count', '2', '--out', out, '--host', HOST, '--id-scope', idScope, '--ca-file', hub.caFile, '--credential', 'station-a', '--json'], {
      GATEHOUSE_EST_PASSWORD: credential.password,
    });
    assert.equal(run.status, 0, run.stderr);
    const [first] = readdirSync(join(out, 'devices')).sort();
    const dir = join(out, 'devices', first ?? '');
    const bundle = JSON.parse(readFileSync(join(dir, 'bundle.json'), 'utf8')) as { registrationId: string; key: string; chain: string };
    const state = await registerWithCert(bundle.registrationId, readFileSync(join(dir, bundle.chain), 'utf8'), readFileSync(join(dir, bundle.key), 'utf8'));
    assert.equal(state.status, 'assigned');
    const twin = ok<{ properties: { desired: Record<string, unknown> } }>(['twin', 'show', '-d', String(state.deviceId)]);
    assert.equal(twin.properties.desired.madeOn, 'line-a');
  });
});
