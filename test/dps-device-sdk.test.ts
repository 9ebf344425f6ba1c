/**
 * Zero-touch provisioning with the unmodified azure-iot-provisioning-device SDK over MQTT, HTTPS,
 * AMQP and AMQP over WebSocket: a device that knows only the ID scope and its own key registers, is assigned to the hub,
 * and connects there with the identity provisioning created. Enrollments are made with the
 * unmodified azure-iot-provisioning-service client.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import provDevice from 'azure-iot-provisioning-device';
import provMqtt from 'azure-iot-provisioning-device-mqtt';
import provHttp from 'azure-iot-provisioning-device-http';
import provAmqp from 'azure-iot-provisioning-device-amqp';
import symmetricKey from 'azure-iot-security-symmetric-key';
import provService from 'azure-iot-provisioning-service';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { connectAndCheck } from './support/provisioned-device.js';
import { request } from 'node:https';
import { generateSasToken } from '../src/auth/sas.js';
import rhea from 'rhea';
import { remoteAttach } from '../src/protocol/amqp/rhea-link.js';

const { Registry } = iothub;
const { ProvisioningDeviceClient } = provDevice;
const { SymmetricKeySecurityClient } = symmetricKey;
const { ProvisioningServiceClient } = provService;

const HOST = '127.0.31.1';
let hub: HubProcess;
let ca: string;
let idScope: string;
let service: InstanceType<typeof ProvisioningServiceClient>;
let registry: InstanceType<typeof Registry>;

type Transport = 'mqtt' | 'http' | 'amqp' | 'amqp-ws';

function transport(kind: Transport) {
  if (kind === 'amqp') return new provAmqp.Amqp();
  if (kind === 'amqp-ws') return new provAmqp.AmqpWs();
  return kind === 'mqtt' ? new provMqtt.Mqtt() : new provHttp.Http();
}

async function register(kind: Transport, registrationId: string, key: string, payload?: unknown): Promise<{ registrationState: unknown }> {
  // The SDK packages carry their own nested copies of each other's types; the runtime object is the one it expects.
  const client = ProvisioningDeviceClient.create(HOST, idScope, transport(kind), new SymmetricKeySecurityClient(registrationId, key) as never);
  if (payload !== undefined) client.setProvisioningPayload(payload as never);
  // register() resolves with the registration state itself (wire doc Appendix D.5).
  return { registrationState: (await client.register()) as unknown };
}

/**
 * How the SDK reports a refusal: HTTP as UnauthorizedError (401); MQTT as the mqtt.js CONNACK 4
 * error ("Connection refused: Bad username or password"), untyped in this SDK version; AMQP as
 * rhea's error from the connection's close, `amqp:unauthorized-access`, which the provisioning
 * transport passes on untranslated.
 */
function refused(err: Error): boolean {
  if ((err as { condition?: unknown }).condition === 'amqp:unauthorized-access') return true;
  return err.constructor.name === 'UnauthorizedError' || /Bad username or password|401|Unauthorized/i.test(err.message);
}

/** An individual symmetric-key enrollment (DPS generates the keys), with any other fields given; its primary key. */
async function enrollSymmetricKey(registrationId: string, fields: Record<string, unknown> = {}): Promise<string> {
  const { responseBody: e } = await service.createOrUpdateIndividualEnrollment({
    registrationId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } },
    ...fields,
  } as never);
  return String((e as { attestation: { symmetricKey: { primaryKey: string } } }).attestation.symmetricKey.primaryKey);
}

function derive(groupKey: string, registrationId: string): string {
  return createHmac('sha256', Buffer.from(groupKey, 'base64')).update(registrationId).digest('base64');
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  const info = JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { idScope: string; dpsConnectionString: string };
  idScope = info.idScope;
  assert.match(idScope, /^0ne[0-9A-F]{8}$/);
  service = ProvisioningServiceClient.fromConnectionString(info.dpsConnectionString);
  registry = Registry.fromConnectionString(hub.connectionString);
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('individual symmetric-key enrollment', () => {
  for (const kind of ['mqtt', 'http', 'amqp', 'amqp-ws'] as const) {
    it(`registers over ${kind}, gets its initial twin, and connects to the assigned hub`, async () => {
      const registrationId = `ind-${kind}`;
      const key = await enrollSymmetricKey(registrationId, {
        deviceId: `dev-${kind}`,
        initialTwin: { tags: { site: 'plant-7' }, properties: { desired: { interval: 30 } } },
      });
      assert.equal(Buffer.from(key, 'base64').length, 64, 'DPS generates 64-byte keys');

      const result = await register(kind, registrationId, key, { model: 'gate-1' });
      const state = result.registrationState as { assignedHub: string; deviceId: string; status: string; substatus: string; payload?: unknown };
      assert.equal(state.assignedHub, HOST);
      assert.equal(state.deviceId, `dev-${kind}`);
      assert.equal(state.status, 'assigned');
      assert.equal(state.substatus, 'initialAssignment');

      const { responseBody: twin } = await registry.getTwin(`dev-${kind}`);
      assert.equal(twin.tags.site, 'plant-7');
      assert.equal(twin.properties.desired.interval, 30);

      await connectAndCheck({ state, ca, dataDir: hub.dataDir, credential: { key }, expectDesired: { interval: 30 } });

      const { responseBody: recorded } = await service.getDeviceRegistrationState(registrationId);
      assert.equal((recorded as { deviceId?: string }).deviceId, `dev-${kind}`);
      assert.equal((recorded as { status?: string }).status, 'assigned');
    });
  }

  it('a wrong key and a disabled enrollment are refused alike; re-registration migrates', async () => {
    const registrationId = 'ind-guarded';
    const key = await enrollSymmetricKey(registrationId);
    const wrong = Buffer.alloc(64, 7).toString('base64');
    for (const kind of ['mqtt', 'http', 'amqp', 'amqp-ws'] as const) {
      await assert.rejects(register(kind, registrationId, wrong), refused);
      await assert.rejects(register(kind, 'no-such-enrollment', wrong), refused);
    }
    const first = await register('mqtt', registrationId, key);
    assert.equal((first.registrationState as { substatus: string }).substatus, 'initialAssignment');
    const again = await register('http', registrationId, key);
    assert.equal((again.registrationState as { substatus: string }).substatus, 'deviceDataMigrated');

    const { responseBody: current } = await service.getIndividualEnrollment(registrationId);
    await service.createOrUpdateIndividualEnrollment({ ...(current as object), provisioningStatus: 'disabled' } as never);
    await assert.rejects(register('mqtt', registrationId, key), refused);
  });
});

describe('symmetric-key enrollment group', () => {
  it('devices register with the derived key; the group key itself is refused', async () => {
    const { responseBody: g } = await service.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'line-1',
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } },
      initialTwin: { tags: { line: 1 }, properties: { desired: { mode: 'line' } } },
    } as never);
    const groupKey = String((g as { attestation: { symmetricKey: { primaryKey: string } } }).attestation.symmetricKey.primaryKey);
    for (const [kind, id] of [
      ['mqtt', 'sn-0001'],
      ['http', 'sn-0002'],
      ['amqp', 'sn-0007'],
      ['amqp-ws', 'sn-0008'],
      // The longest registration id: its SASL PLAIN frame (name and token) still fits AMQP's 512 bytes.
      ['amqp', `sn-${'9'.repeat(125)}`],
    ] as const) {
      const derived = derive(groupKey, id);
      const r = await register(kind, id, derived);
      const state = r.registrationState as { deviceId: string; assignedHub: string; symmetricKey?: { enrollmentGroupId?: string } };
      assert.equal(state.assignedHub, HOST);
      assert.equal(state.deviceId, id);
      assert.equal(state.symmetricKey?.enrollmentGroupId, 'line-1');
      const { responseBody: d } = await registry.get(id);
      assert.equal(d.authentication?.symmetricKey?.primaryKey, derived, 'the hub identity uses the derived key');
      assert.equal((await registry.getTwin(id)).responseBody.tags.line, 1);
      await connectAndCheck({ state, ca, dataDir: hub.dataDir, credential: { key: derived }, expectDesired: { mode: 'line' } });
    }
    await assert.rejects(register('mqtt', 'sn-0003', groupKey), refused);
    // A key derived from another group key, or for another registration id, is refused alike.
    await assert.rejects(register('http', 'sn-0004', derive(Buffer.alloc(64, 3).toString('base64'), 'sn-0004')), refused);
    await assert.rejects(register('mqtt', 'sn-0004', derive(groupKey, 'sn-0005')), refused);
    await assert.rejects(register('amqp', 'sn-0004', derive(groupKey, 'sn-0005')), refused);
    // A disabled group refuses its members.
    const { responseBody: current } = await service.getEnrollmentGroup('line-1');
    await service.createOrUpdateEnrollmentGroup({ ...(current as object), provisioningStatus: 'disabled' } as never);
    await assert.rejects(register('mqtt', 'sn-0006', derive(groupKey, 'sn-0006')), refused);
  });
});

describe('disableSymmetricKeyAttestation', () => {
  it('switched on while the hub runs, refuses the next symmetric-key registration; off again, allows it', async () => {
    const key = await enrollSymmetricKey('switch-test');
    const set = (v: string) => {
      const r = cli(['dps', 'settings', 'set', '--disable-symmetric-key-attestation', v, '--data-dir', hub.dataDir]);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { disableSymmetricKeyAttestation: v === 'true' });
    };
    set('true');
    try {
      await assert.rejects(register('http', 'switch-test', key), refused);
      await assert.rejects(register('mqtt', 'switch-test', key), refused);
    } finally {
      set('false');
    }
    const ok = await register('http', 'switch-test', key);
    assert.equal((ok.registrationState as { status: string }).status, 'assigned');
  });
});

describe('throttling', () => {
  it('the sixth status poll in ten seconds gets 429 with retry-after, over HTTPS and over MQTT', async () => {
    const registrationId = 'poller';
    const key = await enrollSymmetricKey(registrationId);
    const token = generateSasToken({ resource: `${idScope}/registrations/${registrationId}`, key, keyName: 'registration', expiry: Math.floor(Date.now() / 1000) + 600 });

    const https = (method: string, path: string, body?: string) =>
      new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
        const req = request({ host: HOST, port: 443, method, path: `${path}?api-version=2019-03-31`, headers: { authorization: token, 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        });
        req.on('error', reject);
        req.end(body);
      });
    const reg = await https('PUT', `/${idScope}/registrations/${registrationId}/register`, JSON.stringify({ registrationId }));
    assert.equal(reg.status, 200, reg.body);
    const opId = (JSON.parse(reg.body) as { operationId: string }).operationId;
    for (let i = 0; i < 5; i++) assert.equal((await https('GET', `/${idScope}/registrations/${registrationId}/operations/${opId}`)).status, 200);
    const limited = await https('GET', `/${idScope}/registrations/${registrationId}/operations/${opId}`);
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers['retry-after']) >= 1);

    // Over MQTT the same registration is still over its limit: the answer is a 429 topic with retry-after.
    const { rawMqtt } = await import('./support/raw-mqtt.js');
    const c = await rawMqtt(HOST, { ca });
    c.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: registrationId,
      keepalive: 60,
      username: `${idScope}/registrations/${registrationId}/api-version=2019-03-31`,
      password: Buffer.from(token),
    });
    assert.equal((await c.next())?.cmd, 'connack');
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$dps/registrations/res/#', qos: 1 }] });
    assert.equal((await c.next())?.cmd, 'suback');
    c.send({ cmd: 'publish', topic: `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=r1&operationId=${opId}`, payload: Buffer.from(' '), qos: 0, retain: false, dup: false });
    const p = await c.next();
    assert.match(p?.cmd === 'publish' ? p.topic : '', /^\$dps\/registrations\/res\/429\/\?\$rid=r1&retry-after=\d+$/);
    c.send({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['$dps/registrations/res/#'] });
    assert.equal((await c.next())?.cmd, 'unsuback');
    c.end();
  });
});

describe('provisioning links over AMQP', () => {
  it("answer each attach with the client's own source and target (a null one reads as refused)", async () => {
    // AMQP 1.0 2.6.3: a null source to a receiving client, or target to a sending one, says the link
    // was refused; proton-j clients (Azure's Java provisioning SDK) then wait for a detach.
    const registrationId = 'amqp-termini';
    const key = await enrollSymmetricKey(registrationId);
    const address = `${idScope}/registrations/${registrationId}`;
    const password = generateSasToken({ resource: address, key, keyName: 'registration', expiry: Math.floor(Date.now() / 1000) + 600 });
    const conn = rhea.create_container().connect({ host: HOST, port: 5671, transport: 'tls', ca, servername: HOST, username: address, password, reconnect: false } as never);
    conn.on('error', () => undefined);
    try {
      const answered = <L extends rhea.Sender | rhea.Receiver>(l: L, event: string) =>
        new Promise<L>((resolve, reject) => {
          l.once(event, () => resolve(l));
          conn.once('connection_close', () => reject(new Error('the hub closed the connection')));
        });
      const answers = await answered(conn.open_receiver({ source: { address }, target: { address: 'replies' } }), 'receiver_open');
      const requests = await answered(conn.open_sender({ target: { address }, source: { address: 'requests' } }), 'sender_open');
      assert.deepEqual([remoteAttach(answers)?.source?.address, remoteAttach(answers)?.target?.address], [address, 'replies']);
      assert.deepEqual([remoteAttach(requests)?.target?.address, remoteAttach(requests)?.source?.address], [address, 'requests']);
    } finally {
      conn.close();
    }
  });
});
