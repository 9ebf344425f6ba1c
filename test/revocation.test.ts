/**
 * Revocation of certificates Gatehouse issued (issue "Device PKI"): end to end against a hub
 * process. Two devices connect with certificates from a hub-held CA; revoking one by serial drops
 * its live MQTT session within a second while the other keeps working, the revoked certificate
 * is refused at reconnect (CONNACK 4), and the CA's CRL lists it (checked with @peculiar/x509 and,
 * when present, `openssl verify -crl_check`). Then `gatehouse cert revoke --device`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { KeyObject, X509Certificate, type webcrypto } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import iothub from 'azure-iothub';
import { parseConnectionString } from '../src/cli/connection.js';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { connectPacket, connectRaw, type RawMqtt } from './support/raw-mqtt.js';
import { restClient, type RestResult } from './support/rest.js';

x509.cryptoProvider.set(globalThis.crypto);

const HOST = '127.0.46.1';

async function makeCsr(cn: string): Promise<{ pem: string; keyPem: string }> {
  const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: new x509.Name([{ CN: [cn] }]),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
  });
  return { pem: csr.toString('pem'), keyPem: KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString() };
}

function hasOpenssl(): boolean {
  return spawnSync('openssl', ['version'], { encoding: 'utf8' }).status === 0;
}

/** Twin GET over a connected raw client; true when the hub answers 200. */
async function twinAnswered(client: RawMqtt, rid: string): Promise<boolean> {
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] });
  client.send({ cmd: 'publish', topic: `$iothub/twin/GET/?$rid=${rid}`, payload: Buffer.alloc(0), qos: 0, retain: false, dup: false });
  for (let i = 0; i < 5; i++) {
    const p = await client.next(5000);
    if (p === undefined) return false;
    if (p.cmd === 'publish' && p.topic.startsWith('$iothub/twin/res/200/') && p.topic.includes(`$rid=${rid}`)) return true;
  }
  return false;
}

describe('revocation of Gatehouse-issued certificates (hub process)', () => {
  let hub: HubProcess;
  let ca: string;
  let files: string;
  let ownerKey = '';

  before(async () => {
    hub = await startHubProcess({ address: HOST });
    ca = readFileSync(hub.caFile, 'utf8');
    files = tempDir('revocation');
    const r = cli(['connection-string', '--data-dir', hub.dataDir, '--policy', 'iothubowner']);
    assert.equal(r.status, 0, r.stderr);
    ownerKey = parseConnectionString(r.stdout.trim()).get('SharedAccessKey') ?? '';
  });

  after(async () => {
    assert.equal(await hub.stop(), 0);
    removeDir(hub.dataDir);
    removeDir(files);
  });

  function call(method: string, path: string, body?: unknown, auth = true): Promise<RestResult> {
    return restClient(HOST, ca, ownerKey)(method, path, body, { auth });
  }

  async function issue(deviceId: string, caName: string): Promise<{ serial: string; certificate: string; chain: string; keyPem: string }> {
    const csr = await makeCsr(deviceId);
    const signed = await call('POST', `/certificateAuthorities/${caName}/sign`, { csr: csr.pem, deviceId });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const out = signed.body as { serial: string; certificate: string; chain: string };
    return { ...out, keyPem: csr.keyPem };
  }

  it('revoking by serial drops that session within 1 s, refuses reconnects, and the CRL lists it', async () => {
    const created = await call('POST', '/certificateAuthorities', { name: 'rev-ca' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const rootPem = (created.body as { properties: { certificate?: string } }).properties.certificate;

    const registry = iothub.Registry.fromConnectionString(hub.connectionString);
    await registry.create({ deviceId: 'rev-a', authentication: { type: 'certificateAuthority' } });
    await registry.create({ deviceId: 'rev-b', authentication: { type: 'certificateAuthority' } });
    const a = await issue('rev-a', 'rev-ca');
    const b = await issue('rev-b', 'rev-ca');

    const ca1 = await connectRaw(HOST, ca, connectPacket(HOST, 'rev-a', undefined), { cert: a.chain, key: a.keyPem });
    assert.equal(ca1.code, 0);
    const cb = await connectRaw(HOST, ca, connectPacket(HOST, 'rev-b', undefined), { cert: b.chain, key: b.keyPem });
    assert.equal(cb.code, 0);

    // Validation first: unknown reason, both or neither selector, someone else's CA.
    assert.equal((await call('POST', '/certificateAuthorities/rev-ca/revoke', { serial: a.serial, reason: 'bored' })).status, 400);
    assert.equal((await call('POST', '/certificateAuthorities/rev-ca/revoke', { reason: 'keyCompromise' })).status, 400);
    assert.equal((await call('POST', '/certificateAuthorities/rev-ca/revoke', { serial: 'abcdef', reason: 'keyCompromise' })).status, 404);

    const started = Date.now();
    const revoked = await call('POST', '/certificateAuthorities/rev-ca/revoke', { serial: a.serial.toUpperCase(), reason: 'keyCompromise' });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    const rows = (revoked.body as { value: Array<{ serial: string; revokedAt: string | null; revocationReason: string }> }).value;
    assert.deepEqual(rows.map((r) => [r.serial, r.revocationReason]), [[a.serial, 'keyCompromise']]);
    assert.ok(rows[0]?.revokedAt !== null);

    await Promise.race([ca1.client.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('revoked session still open after 1 s')), 1000))]);
    assert.ok(Date.now() - started < 1500);
    assert.equal(cb.client.isClosed(), false);
    assert.ok(await twinAnswered(cb.client, 'r1'), 'the other device is still served');

    const again = await connectRaw(HOST, ca, connectPacket(HOST, 'rev-a', undefined), { cert: a.chain, key: a.keyPem });
    assert.equal(again.code, 4);
    again.client.end();

    // A second revocation keeps the first one.
    const twice = await call('POST', '/certificateAuthorities/rev-ca/revoke', { serial: a.serial, reason: 'superseded' });
    assert.equal((twice.body as { value: Array<{ revocationReason: string }> }).value[0]?.revocationReason, 'keyCompromise');

    // The CRL: public, DER, signed by the CA key, listing exactly the revoked serial.
    const crlRes = await call('GET', '/crl/rev-ca.crl', undefined, false);
    assert.equal(crlRes.status, 200);
    assert.equal(crlRes.headers['content-type'], 'application/pkix-crl');
    const crl = new x509.X509Crl(crlRes.raw);
    const caCert = new x509.X509Certificate(rootPem ?? new X509Certificate(a.chain.split(/(?<=-----END CERTIFICATE-----)/)[1]!.trim()).toString());
    assert.ok(await crl.verify({ publicKey: await caCert.publicKey.export() }), 'the CRL verifies with the CA key');
    assert.equal(crl.issuer, caCert.subject);
    assert.ok(crl.nextUpdate !== undefined && crl.nextUpdate.getTime() > crl.thisUpdate.getTime());
    assert.ok(crl.extensions.some((e) => e.type === '2.5.29.20'), 'CRL number');
    assert.ok(crl.extensions.some((e) => e.type === '2.5.29.35'), 'authority key identifier');
    assert.equal(crl.entries.length, 1);
    assert.equal(crl.entries[0]?.serialNumber.toLowerCase(), a.serial);
    assert.equal(crl.entries[0]?.reason, x509.X509CrlReason.keyCompromise);
    assert.equal((await call('GET', '/crl/nope.crl', undefined, false)).status, 404);

    if (hasOpenssl()) {
      const rootFile = join(files, 'root.pem');
      const crlDer = join(files, 'crl.der');
      const crlPem = join(files, 'crl.pem');
      writeFileSync(rootFile, caCert.toString('pem') + '\n');
      writeFileSync(crlDer, crlRes.raw);
      const conv = spawnSync('openssl', ['crl', '-inform', 'DER', '-in', crlDer, '-out', crlPem], { encoding: 'utf8' });
      assert.equal(conv.status, 0, conv.stderr);
      const verify = (leafPem: string, name: string) => {
        const f = join(files, name);
        writeFileSync(f, leafPem);
        return spawnSync('openssl', ['verify', '-crl_check', '-CAfile', rootFile, '-CRLfile', crlPem, f], { encoding: 'utf8' });
      };
      const va = verify(a.certificate, 'a.pem');
      assert.notEqual(va.status, 0);
      assert.match(va.stdout + va.stderr, /certificate revoked/);
      const vb = verify(b.certificate, 'b.pem');
      assert.equal(vb.status, 0, vb.stdout + vb.stderr);
      assert.match(vb.stdout, /: OK/);
    }

    cb.client.end();
    await cb.client.closed;
  });

  it('gatehouse cert revoke --device revokes all of a device\'s certificates and drops its session', async () => {
    const registry = iothub.Registry.fromConnectionString(hub.connectionString);
    await registry.create({ deviceId: 'rev-c', authentication: { type: 'certificateAuthority' } });
    const c1 = await issue('rev-c', 'rev-ca');
    const c2 = await issue('rev-c', 'rev-ca');
    const conn = await connectRaw(HOST, ca, connectPacket(HOST, 'rev-c', undefined), { cert: c2.chain, key: c2.keyPem });
    assert.equal(conn.code, 0);

    const r = cli(['cert', 'revoke', '--device', 'rev-c', '--reason', 'cessationOfOperation', '--data-dir', hub.dataDir]);
    assert.equal(r.status, 0, r.stderr);
    const rows = JSON.parse(r.stdout) as Array<{ serial: string; revocationReason: string }>;
    assert.deepEqual(rows.map((x) => x.serial).sort(), [c1.serial, c2.serial].sort());
    assert.ok(rows.every((x) => x.revocationReason === 'cessationOfOperation'));
    await Promise.race([conn.client.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('session still open after 1 s')), 1000))]);

    const crl = new x509.X509Crl((await call('GET', '/crl/rev-ca.crl', undefined, false)).raw);
    assert.equal(crl.entries.length, 3, 'the CRL was reissued after the change');

    const bad = cli(['cert', 'revoke', '--serial', 'abcdef', '--data-dir', hub.dataDir]);
    assert.equal(bad.status, 1);
  });
});
