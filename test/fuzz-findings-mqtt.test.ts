/**
 * What the fuzz suite found in the MQTT broker, each as the input that showed it, on the
 * in-memory harness (support/protocol-harness.ts): a connection that sent something malformed is
 * closed with the reason in the log, a bad CONNECT gets a CONNACK, and nothing fails inside (no
 * error-level line such as "MQTT handler failed").
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateSasToken } from '../src/auth/sas.js';
import { connectPacket, deviceToken } from './support/raw-mqtt.js';
import { startProtocolHarness, type HarnessMqtt, type ProtocolHarness } from './support/protocol-harness.js';

let h: ProtocolHarness;
let HOST: string;
const keys = new Map<string, string>();

async function device(id: string): Promise<string> {
  const key = await h.device(id);
  keys.set(id, key);
  return key;
}

async function connected(id: string): Promise<HarnessMqtt> {
  const client = h.mqtt();
  assert.equal(await client.connect(connectPacket(HOST, id, deviceToken(HOST, id, keys.get(id) ?? (await device(id))))), 0);
  return client;
}

/** The first log line from `mark` on that `pred` holds for. */
const logged = (mark: number, pred: (l: Record<string, unknown>) => boolean) => h.log.since(mark).find(pred);

before(async () => {
  h = await startProtocolHarness();
  HOST = h.hostname;
});

after(async () => {
  await h.close();
});

describe('MQTT: malformed percent-encoding closes that connection with the reason', () => {
  const cases: Array<[string, (id: string) => { topic: string }]> = [
    ['a method response whose $rid is not percent-encoding', () => ({ topic: '$iothub/methods/res/200/?$rid=%E0%A4%A' })],
    ['a telemetry property bag', (id) => ({ topic: `devices/${id}/messages/events/a=%zz` })],
  ];
  for (const [name, make] of cases) {
    it(name, async () => {
      const id = `pct-${name.length}`;
      const client = await connected(id);
      const mark = h.log.mark();
      client.send({ cmd: 'publish', topic: make(id).topic, payload: Buffer.from('{}'), qos: 0, retain: false, dup: false });
      await client.closed;
      assert.ok(client.isClosed(), 'the hub closed the connection');
      const closedLine = logged(mark, (l) => /percent-encoding|property bag/.test(String(l.reason ?? l.msg)));
      assert.ok(closedLine !== undefined, `the close names the reason:\n${JSON.stringify(h.log.since(mark))}`);
      assert.deepEqual(h.log.errorsSince(mark), [], 'nothing failed inside the hub');
    });
  }

  it('a provisioning request whose $rid is not percent-encoding', async () => {
    const enrolled = await h.services.enrollments.putIndividual('reg-pct', { registrationId: 'reg-pct', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } } });
    const key = (enrolled as unknown as { attestation: { symmetricKey: { primaryKey: string } } }).attestation.symmetricKey.primaryKey;
    const scope = await h.services.dps.idScope();
    const client = h.mqtt();
    const code = await client.connect({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: 'reg-pct',
      keepalive: 60,
      username: `${scope}/registrations/reg-pct/api-version=2019-03-31`,
      password: Buffer.from(generateSasToken({ resource: `${scope}/registrations/reg-pct`, key, keyName: 'registration', expiry: Math.floor(Date.now() / 1000) + 600 })),
    });
    assert.equal(code, 0, 'the provisioning client is connected');
    const mark = h.log.mark();
    client.send({ cmd: 'publish', topic: '$dps/registrations/PUT/iotdps-register/?$rid=%E0%A4%A', payload: Buffer.from('{}'), qos: 0, retain: false, dup: false });
    await client.closed;
    assert.ok(client.isClosed(), 'the hub closed the connection');
    assert.ok(logged(mark, (l) => /percent-encoding/.test(String(l.reason))) !== undefined, JSON.stringify(h.log.since(mark)));
    assert.deepEqual(h.log.errorsSince(mark), []);
  });

  it('a username with broken percent-encoding is refused with a CONNACK, the process unharmed', async () => {
    const key = await device('pct-user');
    for (const username of [`${HOST}/pct-user/?api-version=%E0%A4%A`, `${HOST}/pct%zz-user/?api-version=2021-04-12`, '0ne0000000A/registrations/%E0%A4%A/api-version=2019-03-31']) {
      const mark = h.log.mark();
      const client = h.mqtt();
      const code = await client.connect({ ...connectPacket(HOST, 'pct-user', deviceToken(HOST, 'pct-user', key)), username });
      client.end();
      assert.notEqual(code, undefined, `${username}: a CONNACK`);
      assert.deepEqual(h.log.errorsSince(mark), [], username);
    }
  });
});

describe('MQTT: a SUBSCRIBE or UNSUBSCRIBE without topic filters is malformed [MQTT-3.8.3-3] [MQTT-3.10.3-2]', () => {
  for (const cmd of ['subscribe', 'unsubscribe'] as const) {
    it(`${cmd}`, async () => {
      const client = await connected(`empty-${cmd}`);
      const mark = h.log.mark();
      // mqtt-packet will not encode an empty list: the packet by hand (fixed header, packet id 1).
      client.sendRaw(Buffer.from([cmd === 'subscribe' ? 0x82 : 0xa2, 0x02, 0x00, 0x01]));
      await client.closed;
      assert.ok(client.isClosed(), 'the hub closed the connection');
      assert.ok(logged(mark, (l) => /without topic filters/.test(String(l.reason))) !== undefined, JSON.stringify(h.log.since(mark)));
      assert.deepEqual(h.log.errorsSince(mark), []);
    });
  }
});
