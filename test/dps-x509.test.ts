/**
 * X.509 attestation with the unmodified provisioning SDKs (X509Security over MQTT and HTTPS):
 * an individual enrollment by client certificate, a group by an uploaded signing certificate, a
 * group referencing a CA registered on the hub; the device then connects to the hub with the
 * same certificate. Strangers are refused alike.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import provDevice from 'azure-iot-provisioning-device';
import provMqtt from 'azure-iot-provisioning-device-mqtt';
import provHttp from 'azure-iot-provisioning-device-http';
import provAmqp from 'azure-iot-provisioning-device-amqp';
import x509Security from 'azure-iot-security-x509';
import provService from 'azure-iot-provisioning-service';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { connectAndCheck } from './support/provisioned-device.js';
import { chainPem, makeIntermediate, makeLeaf, makeRoot, makeSelfSigned, type TestCert } from './support/pki.js';

const { ProvisioningDeviceClient } = provDevice;
const { X509Security } = x509Security;
const { ProvisioningServiceClient } = provService;

const HOST = '127.0.39.1';
let hub: HubProcess;
let ca: string;
let idScope: string;
let service: InstanceType<typeof ProvisioningServiceClient>;

type Kind = 'mqtt' | 'http' | 'amqp' | 'amqp-ws';
const TRANSPORTS = { mqtt: () => new provMqtt.Mqtt(), http: () => new provHttp.Http(), amqp: () => new provAmqp.Amqp(), 'amqp-ws': () => new provAmqp.AmqpWs() };

async function register(kind: Kind, registrationId: string, certPem: string, keyPem: string): Promise<Record<string, unknown>> {
  const transport = TRANSPORTS[kind]();
  const client = ProvisioningDeviceClient.create(HOST, idScope, transport, new X509Security(registrationId, { cert: certPem, key: keyPem }) as never);
  return (await client.register()) as unknown as Record<string, unknown>;
}

/** HTTPS: UnauthorizedError; MQTT: CONNACK 4; AMQP: rhea's error for the connection's close, untranslated by the transport. */
function refused(err: Error): boolean {
  if ((err as { condition?: unknown }).condition === 'amqp:unauthorized-access') return true;
  return err.constructor.name === 'UnauthorizedError' || /Bad username or password|401|Unauthorized/i.test(err.message);
}

async function connectToHub(state: Record<string, unknown>, certPem: string, keyPem: string): Promise<void> {
  await connectAndCheck({
    state: { assignedHub: String(state.assignedHub), deviceId: String(state.deviceId) },
    ca,
    dataDir: hub.dataDir,
    credential: { cert: certPem, privateKey: keyPem },
    expectDesired: { provisionedBy: 'x509' },
  });
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  const info = JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { idScope: string; dpsConnectionString: string };
  idScope = info.idScope;
  service = ProvisioningServiceClient.fromConnectionString(info.dpsConnectionString);
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('X.509 individual enrollment', () => {
  it('the enrolled client certificate registers over MQTT, HTTPS, AMQP and AMQP over WebSocket and connects; another certificate is refused', async () => {
    const cert = await makeSelfSigned('x509-ind');
    await service.createOrUpdateIndividualEnrollment({
      registrationId: 'x509-ind',
      attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: cert.certPem } } } },
      initialTwin: { properties: { desired: { provisionedBy: 'x509' } } },
    } as never);
    for (const kind of ['mqtt', 'http', 'amqp', 'amqp-ws'] as const) {
      const state = await register(kind, 'x509-ind', cert.certPem, cert.keyPem);
      assert.equal(state.status, 'assigned', kind);
      assert.equal(state.deviceId, 'x509-ind');
      await connectToHub(state, cert.certPem, cert.keyPem);
    }
    const impostor = await makeSelfSigned('x509-ind');
    await assert.rejects(register('mqtt', 'x509-ind', impostor.certPem, impostor.keyPem), refused);
    await assert.rejects(register('http', 'x509-ind', impostor.certPem, impostor.keyPem), refused);
    await assert.rejects(register('amqp', 'x509-ind', impostor.certPem, impostor.keyPem), refused);
  });
});

describe('X.509 enrollment groups', () => {
  let root: TestCert;
  let intermediate: TestCert;

  before(async () => {
    root = await makeRoot('Factory Root');
    intermediate = await makeIntermediate(root, 'Factory Line');
  });

  it('a group with an uploaded signing certificate: members through an intermediate register and connect', async () => {
    await service.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'factory',
      attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: root.certPem } } } },
      initialTwin: { properties: { desired: { provisionedBy: 'x509' } } },
    } as never);
    for (const [kind, id] of [
      ['mqtt', 'unit-001'],
      ['http', 'unit-002'],
      ['amqp', 'unit-003'],
      ['amqp-ws', 'unit-004'],
    ] as const) {
      const leaf = await makeLeaf(intermediate, id);
      const state = await register(kind, id, chainPem(leaf, intermediate), leaf.keyPem);
      assert.equal(state.deviceId, id);
      assert.equal((state.x509 as { enrollmentGroupId?: string } | undefined)?.enrollmentGroupId, 'factory');
      await connectToHub(state, chainPem(leaf, intermediate), leaf.keyPem);
    }
  });

  it('a group referencing a CA registered on the hub gives CA-signed identities', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-dpsca-'));
    const otherRoot = await makeRoot('Partner Root');
    writeFileSync(join(dir, 'root.pem'), otherRoot.certPem);
    const add = cli(['ca', 'add', '--name', 'partner', '--cert', join(dir, 'root.pem'), '--verified', '--data-dir', hub.dataDir]);
    assert.equal(add.status, 0, add.stderr);
    rmSync(dir, { recursive: true, force: true });
    await service.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'partner-devices',
      attestation: { type: 'x509', x509: { caReferences: { primary: 'partner' } } },
      initialTwin: { properties: { desired: { provisionedBy: 'x509' } } },
    } as never);
    const leaf = await makeLeaf(otherRoot, 'partner-001');
    const state = await register('mqtt', 'partner-001', leaf.certPem, leaf.keyPem);
    assert.equal(state.deviceId, 'partner-001');
    await connectToHub(state, leaf.certPem, leaf.keyPem);
  });

  it('strangers are refused alike: unknown root, wrong CN, a disabled group', async () => {
    const rogueRoot = await makeRoot('Factory Root');
    const rogue = await makeLeaf(rogueRoot, 'unit-009');
    await assert.rejects(register('mqtt', 'unit-009', rogue.certPem, rogue.keyPem), refused);
    await assert.rejects(register('amqp', 'unit-009', rogue.certPem, rogue.keyPem), refused);
    const mislabeled = await makeLeaf(intermediate, 'someone-else');
    await assert.rejects(register('http', 'unit-010', chainPem(mislabeled, intermediate), mislabeled.keyPem), refused);
    const { responseBody: g } = await service.getEnrollmentGroup('factory');
    await service.createOrUpdateEnrollmentGroup({ ...(g as object), provisioningStatus: 'disabled' } as never);
    const member = await makeLeaf(intermediate, 'unit-011');
    await assert.rejects(register('mqtt', 'unit-011', chainPem(member, intermediate), member.keyPem), refused);
  });
});
