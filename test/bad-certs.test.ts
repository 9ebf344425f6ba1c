/**
 * Bad device certificates under Gatehouse's own CA (issue "Device PKI", done-when 1). The test
 * exports the key of a Gatehouse-held intermediate (`gatehouse ca export-key`, the explicit flag)
 * and forges what a careless or hostile factory could produce under a CA the hub trusts: expired,
 * not yet valid, the wrong EKU, an RSA-1024 key, a CN that is not the device id; plus a fake CA
 * with the same name and another key, and a genuine certificate that was revoked. Each is refused
 * at MQTT connect (CONNACK 4), at the provisioning service (401) and at EST, and the hub's log
 * names the precise reason for each.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import provDevice from 'azure-iot-provisioning-device';
import provHttp from 'azure-iot-provisioning-device-http';
import x509Security from 'azure-iot-security-x509';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { caFromPem, chainPem, makeLeaf, makeRoot, makeIntermediate, type TestCert } from './support/pki.js';
import { connectPacket, connectRaw } from './support/raw-mqtt.js';
import { errorCode, errorMessage, policyKey, restClient, type Rest } from './support/rest.js';

const HOST = '127.0.48.1';
const DAY = 86_400_000;

interface Case {
  name: string;
  deviceId: string;
  cert: TestCert;
  chain: string;
  /** What the hub log must say for MQTT and DPS. */
  reason: RegExp;
  /** What EST answers simplereenroll. */
  est: { status: number; message: RegExp };
}

describe('bad certificates under a Gatehouse CA are refused everywhere (hub process)', () => {
  let hub: HubProcess;
  let ca: string;
  let rest: Rest;
  let dir: string;
  let idScope = '';
  const cases: Case[] = [];

  before(async () => {
    hub = await startHubProcess({ address: HOST });
    ca = readFileSync(hub.caFile, 'utf8');
    dir = tempDir('bad-certs');
    rest = restClient(HOST, ca, policyKey(hub.dataDir));
    const dpsRest = restClient(HOST, ca, policyKey(hub.dataDir, 'provisioningserviceowner'), 'provisioningserviceowner');
    idScope = (JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { idScope: string }).idScope;
    assert.equal((await rest('POST', '/certificateAuthorities', { name: 'bad-root' })).status, 201);
    const fleet = await rest('POST', '/certificateAuthorities', { name: 'bad-fleet', parent: 'bad-root' });
    assert.equal(fleet.status, 201);
    const fleetPem = (fleet.body as { properties: { certificate: string } }).properties.certificate;
    const g = await dpsRest('PUT', '/enrollmentGroups/bad-line', { enrollmentGroupId: 'bad-line', attestation: { type: 'x509', x509: { caReferences: { primary: 'bad-fleet' } } } });
    assert.equal(g.status, 200, JSON.stringify(g.body));

    // The explicit flag is required; then the key comes out, mode 0600.
    const keyFile = join(dir, 'fleet.key');
    const refused = cli(['ca', 'export-key', '--data-dir', hub.dataDir, '-n', 'bad-fleet', '--out', keyFile]);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /yes-export-private-key/);
    const exported = cli(['ca', 'export-key', '--data-dir', hub.dataDir, '-n', 'bad-fleet', '--out', keyFile, '--yes-export-private-key']);
    assert.equal(exported.status, 0, exported.stderr);
    const fleetCa = await caFromPem(fleetPem, readFileSync(keyFile, 'utf8'));

    const now = Date.now();
    const forged = async (name: string, cn: string, opts: Parameters<typeof makeLeaf>[2], reason: RegExp): Promise<void> => {
      const cert = await makeLeaf(fleetCa, cn, opts);
      cases.push({ name, deviceId: `bad-${name}`, cert, chain: chainPem(cert, fleetCa), reason, est: { status: 403, message: /not issued by this hub/ } });
    };
    await forged('expired', 'bad-expired', { notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) }, /expired on/);
    await forged('not-yet-valid', 'bad-not-yet-valid', { notBefore: new Date(now + DAY), notAfter: new Date(now + 10 * DAY) }, /not valid before/);
    await forged('wrong-eku', 'bad-wrong-eku', { eku: 'serverAuth' }, /not for client authentication/);
    await forged('rsa1024', 'bad-rsa1024', { alg: 'rsa1024' }, /RSA key has 1024 bits/);
    await forged('cn-mismatch', 'someone-else', {}, /CN 'someone-else' is not bad-cn-mismatch|CN is not the registration id/);
    // Same subject as the real intermediate, another key.
    const fakeRoot = await makeRoot('bad-root', { subjectName: 'O=Gatehouse, CN=bad-root' });
    const fakeFleet = await makeIntermediate(fakeRoot, 'bad-fleet', { subjectName: 'O=Gatehouse, CN=bad-fleet' });
    const fake = await makeLeaf(fakeFleet, 'bad-fake-root');
    cases.push({ name: 'fake-root', deviceId: 'bad-fake-root', cert: fake, chain: chainPem(fake, fakeFleet, fakeRoot), reason: /does not lead to a verified CA/, est: { status: 403, message: /not issued by this hub/ } });

    // A genuine certificate, enrolled over EST, then revoked.
    const credential = await rest('POST', '/est/credentials', { enrollmentGroupId: 'bad-line', id: 'bad-station', registrationIds: ['bad-*'] });
    const password = (credential.body as { password: string }).password;
    const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const x509 = await import('@peculiar/x509');
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=bad-revoked', keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
    const enrolled = await rest('POST', '/est/bad-line/enroll', { csr: csr.toString('pem') }, { auth: false, headers: { authorization: `Basic ${Buffer.from(`bad-station:${password}`).toString('base64')}` } });
    assert.equal(enrolled.status, 200, JSON.stringify(enrolled.body));
    const issued = enrolled.body as { serial: string; certificate: string; chain: string };
    const { KeyObject, X509Certificate } = await import('node:crypto');
    const keyPem = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString();
    assert.equal((await rest('POST', '/certificateAuthorities/bad-fleet/revoke', { serial: issued.serial, reason: 'keyCompromise' })).status, 200);
    const revokedCert: TestCert = { certPem: issued.certificate, keyPem, cert: new X509Certificate(issued.certificate), signer: fleetCa.signer };
    cases.push({ name: 'revoked', deviceId: 'bad-revoked', cert: revokedCert, chain: issued.chain, reason: /is revoked/, est: { status: 403, message: /certificate [0-9a-f]+ is revoked/ } });

    const registry = iothub.Registry.fromConnectionString(hub.connectionString);
    for (const c of cases) await registry.create({ deviceId: c.deviceId, authentication: { type: 'certificateAuthority' } });
  });

  after(async () => {
    assert.equal(await hub.stop(), 0);
    removeDir(hub.dataDir);
    removeDir(dir);
  });

  /** The hub's log arrives through a pipe after the answers: wait (up to 5 s) for a line per case. */
  async function deniedLines(protocol: string, key: (c: (typeof cases)[number]) => string): Promise<string[]> {
    const until = Date.now() + 5000;
    for (;;) {
      const denied = hub.output().split('\n').filter((l) => l.includes('"auth.denied"') && l.includes(protocol));
      if (cases.every((c) => denied.some((l) => l.includes(key(c)))) || Date.now() > until) return denied;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('MQTT connect: CONNACK 4 for each, and the log says why', async () => {
    assert.equal(cases.length, 7);
    for (const c of cases) {
      const r = await connectRaw(HOST, ca, connectPacket(HOST, c.deviceId, undefined), { cert: c.chain, key: c.cert.keyPem });
      assert.equal(r.code, 4, `${c.name}: CONNACK ${String(r.code)}`);
      r.client.end();
    }
    const denied = await deniedLines(`"protocol":"mqtt"`, (c) => `"clientId":"${c.deviceId}"`);
    for (const c of cases) {
      const line = denied.find((l) => l.includes(`"clientId":"${c.deviceId}"`));
      assert.ok(line !== undefined, `${c.name}: no denial logged`);
      assert.match(line, c.reason, `${c.name}: ${line}`);
    }
  });

  it('provisioning service: each registration refused, with the reason in the log', async () => {
    for (const c of cases) {
      const client = provDevice.ProvisioningDeviceClient.create(HOST, idScope, new provHttp.Http(), new x509Security.X509Security(c.deviceId, { cert: c.chain, key: c.cert.keyPem }) as never);
      await assert.rejects(client.register() as unknown as Promise<unknown>, (err: Error) => /401|Unauthorized/i.test(`${err.constructor.name} ${err.message}`), c.name);
    }
    const denied = await deniedLines('"protocol":"dps-https"', (c) => `"registrationId":"${c.deviceId}"`);
    for (const c of cases) {
      const line = denied.find((l) => l.includes(`"registrationId":"${c.deviceId}"`));
      assert.ok(line !== undefined, `${c.name}: no provisioning denial logged`);
      assert.match(line, c.reason, `${c.name}: ${line}`);
    }
  });

  it('EST simplereenroll: each refused with a precise error', async () => {
    const x509 = await import('@peculiar/x509');
    for (const c of cases) {
      const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${c.deviceId}`, keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
      const r = await rest('POST', '/est/bad-line/reenroll', { csr: csr.toString('pem') }, { auth: false, tlsCert: { cert: c.chain, key: c.cert.keyPem }, headers: {} });
      assert.equal(r.status, c.est.status, `${c.name}: ${r.status} ${errorMessage(r)}`);
      assert.equal(errorCode(r), 'CertificateNotAccepted', c.name);
      assert.match(errorMessage(r), c.est.message, c.name);
    }
  });
});
