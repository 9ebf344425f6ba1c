/**
 * X.509 device identities, with certificates made at test time: self-signed by thumbprint
 * (SHA-1 primary, SHA-256 secondary) through the unmodified SDK over Mqtt and MqttWs, and the
 * refusals a raw client meets (wrong thumbprint, expired certificate, a SAS device presenting a
 * certificate).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import deviceHttp from 'azure-iot-device-http';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { chainPem, makeIntermediate, makeLeaf, makeRoot, makeSelfSigned, makeVerificationCert, thumbprints, type TestCert } from './support/pki.js';
import { connectPacket, connectRaw } from './support/raw-mqtt.js';

const { Registry } = iothub;
const { Client } = deviceSdk;
const { Mqtt, MqttWs } = deviceMqtt;
const { Http } = deviceHttp;

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

describe('X.509 CA-signed (chain to a registered, verified CA)', () => {
  it('root -> intermediate -> device: proof of possession, then the SDK connects over Mqtt and Http; strangers are refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-x509ca-'));
    const root = await makeRoot('Gatehouse Test Factory Root');
    const intermediate = await makeIntermediate(root, 'Gatehouse Test Factory Line 1');
    const leaf = await makeLeaf(intermediate, 'ca-dev');
    writeFileSync(join(dir, 'root.pem'), root.certPem);

    // Register the root and prove possession of its key, the Azure way (wire doc §7.2).
    const run = (args: string[]) => {
      const r = cli([...args, '--data-dir', hub.dataDir]);
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
      return r.stdout.trim() === '' ? {} : (JSON.parse(r.stdout) as Record<string, unknown>);
    };
    run(['ca', 'add', '--name', 'factory-root', '--cert', join(dir, 'root.pem')]);
    const codeOut = run(['ca', 'verification-code', '--name', 'factory-root']);
    const code = String((codeOut.properties as { verificationCode?: string } | undefined)?.verificationCode ?? codeOut.verificationCode);
    const proof = await makeVerificationCert(root, code);
    writeFileSync(join(dir, 'proof.pem'), proof.certPem);
    run(['ca', 'verify', '--name', 'factory-root', '--cert', join(dir, 'proof.pem')]);

    await registry.create({ deviceId: 'ca-dev', authentication: { type: 'certificateAuthority' } });
    for (const [name, transport] of [
      ['Mqtt', Mqtt],
      ['Http', Http],
    ] as const) {
      const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=ca-dev;x509=true`, transport);
      // Http answers setOptions only when a receive policy is given (azure-iot-device-http 1.14.4).
      await client.setOptions({ ca, cert: chainPem(leaf, intermediate), key: leaf.keyPem, ...(name === 'Http' ? { http: { receivePolicy: { interval: 1 } } } : {}) });
      await client.open();
      try {
        await client.sendEvent(new deviceSdk.Message(`hello over ${name}`));
      } finally {
        await client.close();
      }
    }

    // A device certificate for another id, one from an unregistered CA, one without its
    // intermediate, and a fake root with the same name: all refused.
    const otherCn = await makeLeaf(intermediate, 'someone-else');
    const rogueRoot = await makeRoot('Gatehouse Test Factory Root');
    const rogueLeaf = await makeLeaf(rogueRoot, 'ca-dev');
    const cases: Array<[string, string, string, number]> = [
      ['wrong CN', chainPem(otherCn, intermediate), otherCn.keyPem, 4],
      ['unregistered CA (same subject, other key)', chainPem(rogueLeaf), rogueLeaf.keyPem, 4],
      ['missing intermediate', chainPem(leaf), leaf.keyPem, 4],
    ];
    for (const [name, cert, key, expected] of cases) {
      const r = await connectRaw(HOST, ca, connectPacket(HOST, 'ca-dev', undefined), { cert, key });
      assert.equal(r.code, expected, name);
      await r.client.closed;
    }
    rmSync(dir, { recursive: true, force: true });
  });
});
