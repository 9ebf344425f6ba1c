/**
 * X.509 device identities, with certificates made at test time: self-signed by thumbprint
 * (SHA-1 primary, SHA-256 secondary) through the unmodified SDK over Mqtt and MqttWs, and the
 * refusals a raw client meets (wrong thumbprint, expired certificate, a SAS device presenting a
 * certificate).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { makeSelfSigned, thumbprints, type TestCert } from './support/pki.js';
import { connectPacket, connectRaw } from './support/raw-mqtt.js';

const { Registry } = iothub;
const { Client } = deviceSdk;
const { Mqtt, MqttWs } = deviceMqtt;

const HOST = '127.0.28.1';
let hub: HubProcess;
let ca: string;
let registry: InstanceType<typeof Registry>;
let primary: TestCert;
let secondary: TestCert;

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  registry = Registry.fromConnectionString(hub.connectionString);
  primary = await makeSelfSigned('x509-self');
  secondary = await makeSelfSigned('x509-self', { alg: 'rsa' });
  await registry.create({
    deviceId: 'x509-self',
    authentication: {
      x509Thumbprint: { primaryThumbprint: thumbprints(primary.certPem).sha1, secondaryThumbprint: thumbprints(secondary.certPem).sha256 },
    },
  });
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('X.509 self-signed (thumbprint)', () => {
  for (const [transportName, transport, cert] of [
    ['Mqtt, primary SHA-1', Mqtt, () => primary],
    ['MqttWs, secondary SHA-256 (RSA key)', MqttWs, () => secondary],
  ] as const) {
    it(`the SDK connects over ${transportName} and round-trips the twin`, async () => {
      const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=x509-self;x509=true`, transport);
      await client.setOptions({ ca, cert: cert().certPem, key: cert().keyPem });
      await client.open();
      try {
        const twin = await client.getTwin();
        await new Promise<void>((resolve, reject) => twin.properties.reported.update({ via: transportName }, (e?: Error) => (e ? reject(e) : resolve())));
        const { responseBody } = await registry.getTwin('x509-self');
        assert.equal(responseBody.properties.reported.via, transportName);
      } finally {
        await client.close();
      }
    });
  }

  it('refuses a certificate with another thumbprint, an expired one, and a certificate for a SAS device', async () => {
    const stranger = await makeSelfSigned('x509-self');
    const expired = await makeSelfSigned('x509-self', { notBefore: new Date(Date.now() - 3 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    await registry.create({
      deviceId: 'x509-expired',
      authentication: { x509Thumbprint: { primaryThumbprint: thumbprints(expired.certPem).sha256 } },
    });
    await registry.create({ deviceId: 'sas-only' });
    const cases: Array<[string, string, TestCert, number]> = [
      ['wrong thumbprint', 'x509-self', stranger, 4],
      ['expired certificate', 'x509-expired', expired, 4],
      ['SAS device with a certificate', 'sas-only', primary, 4],
    ];
    for (const [name, id, cert, code] of cases) {
      const r = await connectRaw(HOST, ca, connectPacket(HOST, id, undefined), { cert: cert.certPem, key: cert.keyPem });
      assert.equal(r.code, code, name);
      await r.client.closed;
    }
  });

  it('changing the thumbprints drops the live session', async () => {
    const r = await connectRaw(HOST, ca, connectPacket(HOST, 'x509-self', undefined), { cert: primary.certPem, key: primary.keyPem });
    assert.equal(r.code, 0);
    const replacement = await makeSelfSigned('x509-self');
    await registry.update({
      deviceId: 'x509-self',
      authentication: { x509Thumbprint: { primaryThumbprint: thumbprints(replacement.certPem).sha1, secondaryThumbprint: thumbprints(secondary.certPem).sha256 } },
    });
    await r.client.closed;
    const again = await connectRaw(HOST, ca, connectPacket(HOST, 'x509-self', undefined), { cert: primary.certPem, key: primary.keyPem });
    assert.equal(again.code, 4, 'the old certificate no longer works');
    await again.client.closed;
  });
});
