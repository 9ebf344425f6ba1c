/**
 * The device CA (src/pki/authority.ts): CAs whose keys Gatehouse holds and signing device CSRs
 * under sign options. Unit tests on a real SQLite store with CSRs made at test time (good and
 * bad: wrong CN, RSA-1024, P-521, cA=true, tampered), then end to end: a hub process signs a
 * device's CSR over REST (and the CLI) and the device connects over MQTT with the result.
 */
import assert from 'node:assert/strict';
import { KeyObject, X509Certificate, createPrivateKey, randomBytes, type webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import iothub from 'azure-iothub';
import { generateSasToken } from '../src/auth/sas.js';
import { parseConnectionString } from '../src/cli/connection.js';
import { HubError } from '../src/core/errors.js';
import { SecretBox } from '../src/core/secret-box.js';
import { CertificateAuthority, type SignOptions } from '../src/pki/authority.js';
import { CaCertificates } from '../src/pki/ca-certificates.js';
import { certFields } from '../src/pki/cert-fields.js';
import type { Store } from '../src/store/ports.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { makeRoot } from './support/pki.js';
import { connectPacket, connectRaw } from './support/raw-mqtt.js';
import { testBus } from './support/test-bus.js';

x509.cryptoProvider.set(globalThis.crypto);

const DAY = 86_400_000;
const HOST = '127.0.45.1';

type CsrKey = 'p256' | 'p384' | 'p521' | 'rsa1024' | 'rsa2048';

interface Csr {
  pem: string;
  keyPem: string;
}

async function makeCsr(cn: string, alg: CsrKey = 'p256', opts: { isCa?: boolean; extraCn?: string } = {}): Promise<Csr> {
  let keys: webcrypto.CryptoKeyPair;
  let signingAlgorithm: webcrypto.Algorithm | webcrypto.EcdsaParams;
  if (alg.startsWith('rsa')) {
    const modulusLength = alg === 'rsa1024' ? 1024 : 2048;
    keys = await crypto.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', modulusLength, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify']);
    signingAlgorithm = { name: 'RSASSA-PKCS1-v1_5' };
  } else {
    const namedCurve = alg === 'p256' ? 'P-256' : alg === 'p384' ? 'P-384' : 'P-521';
    keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve }, true, ['sign', 'verify']);
    signingAlgorithm = { name: 'ECDSA', hash: alg === 'p521' ? 'SHA-512' : 'SHA-256' } as webcrypto.EcdsaParams;
  }
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: opts.extraCn === undefined ? new x509.Name([{ CN: [cn] }]) : new x509.Name([{ CN: [cn] }, { CN: [opts.extraCn] }]),
    keys,
    signingAlgorithm,
    extensions: opts.isCa === true ? [new x509.BasicConstraintsExtension(true, undefined, true)] : [],
  });
  return { pem: csr.toString('pem'), keyPem: KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** The same CSR with one byte of its subject changed: the signature no longer covers it. */
function tamper(csrPem: string, from: string, to: string): string {
  const der = Buffer.from(new x509.Pkcs10CertificateRequest(csrPem).rawData);
  const at = der.indexOf(Buffer.from(from));
  assert.ok(at > 0);
  Buffer.from(to).copy(der, at);
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

function certsOf(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

const hex = (fp: string): string => fp.replace(/:/g, '').toUpperCase();

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof HubError, `expected HubError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message !== undefined) assert.match(err.message, message);
    return true;
  });
}

describe('CertificateAuthority (SQLite store)', () => {
  let dir: string;
  let store: Store;
  let cas: CaCertificates;
  let ca: CertificateAuthority;
  const opts = (over: Partial<SignOptions> = {}): SignOptions => ({ caName: 'int-1', deviceId: 'dev-1', validityDays: 30, ...over });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-authority-'));
    store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
    const clock = { now: () => Date.now() };
    cas = new CaCertificates(store.certificates, clock);
    ca = new CertificateAuthority(store, cas, clock, testBus());
  });

  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a root (self-signed, pathLen 1) and an intermediate under it (pathLen 0), registered verified, keys sealed', async () => {
    const root = await ca.createCa({ name: 'root-1', validityDays: 100 });
    assert.equal(root.isVerified, true);
    const rootCert = new X509Certificate(root.certificatePem);
    assert.ok(rootCert.ca);
    assert.ok(rootCert.verify(rootCert.publicKey));
    assert.equal(certFields(rootCert).basicConstraints?.pathLen, 1);

    const int = await ca.createCa({ name: 'int-1', parent: 'root-1', alg: 'rsa2048', validityDays: 1000 });
    assert.equal(int.isVerified, true);
    const intCert = new X509Certificate(int.certificatePem);
    assert.ok(intCert.ca);
    assert.ok(intCert.checkIssued(rootCert));
    assert.ok(intCert.verify(rootCert.publicKey), 'the intermediate verifies with the root key');
    assert.equal(certFields(intCert).basicConstraints?.pathLen, 0);
    assert.equal(intCert.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
    // Capped at the parent's validity.
    assert.ok(Date.parse(intCert.validTo) <= Date.parse(rootCert.validTo));

    const keyPem = await store.authority.getCaKey('int-1');
    assert.ok(intCert.checkPrivateKey(createPrivateKey(keyPem ?? '')), 'the sealed key is the intermediate key');
    assert.equal((await cas.list()).map((r) => r.name).join(','), 'int-1,root-1');
  });

  it('deleting a CA it holds deletes its key too, and frees the name', async () => {
    await ca.createCa({ name: 'short-lived', validityDays: 10 });
    assert.ok(await store.authority.getCaKey('short-lived'));
    await ca.deleteCa('short-lived', '*');
    assert.equal(await store.authority.getCaKey('short-lived'), undefined, 'no orphaned key');
    const again = await ca.createCa({ name: 'short-lived', validityDays: 10 });
    assert.equal(again.name, 'short-lived');
    await ca.deleteCa('short-lived', '*');
  });

  it('respects pathLen and refuses parents it does not hold, names taken, bad options', async () => {
    await rejectsWith(ca.createCa({ name: 'int-2', parent: 'int-1' }), 'ArgumentInvalid', /pathLen 0/);
    await rejectsWith(ca.createCa({ name: 'int-3', parent: 'nowhere' }), 'ResourceNotFound');
    const uploaded = await makeRoot('Uploaded Root');
    await cas.add('uploaded', uploaded.certPem, { verified: true });
    await rejectsWith(ca.createCa({ name: 'int-4', parent: 'uploaded' }), 'ArgumentInvalid', /does not hold the key of CA 'uploaded'/);
    await rejectsWith(ca.createCa({ name: 'root-1' }), 'InvalidOperation');
    await rejectsWith(ca.createCa({ name: 'bad', alg: 'p521' as never }), 'ArgumentInvalid', /alg must be one of/);
    await rejectsWith(ca.createCa({ name: 'bad', validityDays: -1 }), 'ArgumentInvalid', /validityDays/);
    assert.equal(await store.authority.getCaKey('bad'), undefined);
  });

  it('signs a P-256 CSR: leaf + chain to the root, client auth, capped validity, recorded', async () => {
    const csr = await makeCsr('dev-1');
    const issued = await ca.sign(csr.pem, opts({ validityDays: 5000, subjectAltNames: ['dev-1.example.com', '10.0.0.7'], registrationId: 'dev-1' }));
    const chain = certsOf(issued.chainPem);
    assert.equal(chain.length, 3);
    const [leaf, int, root] = chain as [X509Certificate, X509Certificate, X509Certificate];
    assert.equal(leaf.toString().trim(), issued.certificatePem.trim());
    assert.ok(leaf.verify(int.publicKey), 'the leaf verifies with the intermediate key');
    assert.ok(int.verify(root.publicKey));
    assert.ok(root.verify(root.publicKey));
    assert.equal(leaf.ca, false);
    assert.equal(leaf.subject, 'CN=dev-1');
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2']);
    assert.equal(leaf.serialNumber.toLowerCase(), issued.serial);
    assert.ok(Date.parse(leaf.validTo) <= Date.parse(int.validTo), 'validity capped at the CA');
    assert.equal(issued.notAfter, new Date(Date.parse(leaf.validTo)).toISOString());
    assert.ok(leaf.checkHost('dev-1.example.com') !== undefined);
    assert.equal(leaf.checkIP('10.0.0.7'), '10.0.0.7');
    const parsed = new x509.X509Certificate(issued.certificatePem);
    assert.equal(parsed.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
    assert.equal(
      parsed.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId,
      new x509.X509Certificate(int.toString()).getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    );
    assert.ok(parsed.getExtension(x509.SubjectKeyIdentifierExtension) !== null);

    const record = await store.authority.getIssued(issued.serial);
    assert.equal(record?.thumbprintSha256, hex(leaf.fingerprint256));
    assert.equal(record?.thumbprintSha1, hex(leaf.fingerprint));
    assert.equal(issued.thumbprintSha256, hex(leaf.fingerprint256));
    assert.equal(record?.deviceId, 'dev-1');
    assert.equal(record?.caName, 'int-1');
    assert.equal(record?.registrationId, 'dev-1');
    assert.equal(record?.notAfter, issued.notAfter);
    assert.equal(record?.revokedAt, null);

    // The hub's own chain check accepts it, anchored at the nearest registered CA.
    assert.deepEqual(await cas.verifyDeviceChain(chain), { commonName: 'dev-1', caName: 'int-1' });
    assert.deepEqual((await ca.listIssued('int-1', { deviceId: 'dev-1' })).map((r) => r.serial), [issued.serial]);
  });

  it('signs an RSA-2048 CSR with an EC root (keyEncipherment added)', async () => {
    const csr = await makeCsr('dev-rsa', 'rsa2048');
    const issued = await ca.sign(csr.pem, opts({ caName: 'root-1', deviceId: 'dev-rsa' }));
    const chain = certsOf(issued.chainPem);
    assert.equal(chain.length, 2);
    assert.ok(chain[0]!.verify(chain[1]!.publicKey));
    const usages = new x509.X509Certificate(issued.certificatePem).getExtension(x509.KeyUsagesExtension)?.usages ?? 0;
    assert.equal(usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
    const days = (Date.parse(chain[0]!.validTo) - Date.now()) / DAY;
    assert.ok(days > 29.9 && days <= 30.01, `validity ${days}`);
  });

  it('refuses CSRs it must not sign, each with a precise reason', async () => {
    const good = await makeCsr('dev-1');
    await rejectsWith(ca.sign(good.pem, opts({ deviceId: 'dev-9' })), 'ArgumentInvalid', /the CSR's CN 'dev-1' is not the device id 'dev-9'/);
    await rejectsWith(ca.sign((await makeCsr('dev-1', 'p256', { extraCn: 'x' })).pem, opts()), 'ArgumentInvalid', /2 CNs/);
    await rejectsWith(ca.sign((await makeCsr('dev-1', 'rsa1024')).pem, opts()), 'ArgumentInvalid', /RSA keys below 2048 bits are refused/);
    await rejectsWith(ca.sign((await makeCsr('dev-1', 'p521')).pem, opts()), 'ArgumentInvalid', /curve secp521r1 are refused/);
    await rejectsWith(ca.sign((await makeCsr('dev-1', 'p256', { isCa: true })).pem, opts()), 'ArgumentInvalid', /cA=true/);
    await rejectsWith(ca.sign(tamper(good.pem, 'dev-1', 'dev-2'), opts({ deviceId: 'dev-2' })), 'ArgumentInvalid', /signature does not verify/);
    await rejectsWith(ca.sign('not a csr', opts()), 'ArgumentInvalid', /cannot be parsed/);
    await rejectsWith(ca.sign((await makeCsr('dev-1', 'p384')).pem, opts({ allowedKeys: ['p256'] })), 'ArgumentInvalid', /p384 keys are not allowed/);
    await rejectsWith(ca.sign(good.pem, opts({ caName: 'no-such-ca' })), 'ResourceNotFound');
    await rejectsWith(ca.sign(good.pem, opts({ caName: 'uploaded' })), 'ArgumentInvalid', /does not hold the key/);
    await rejectsWith(ca.sign(good.pem, opts({ validityDays: 0 })), 'ArgumentInvalid', /validityDays/);
    // Nothing was recorded for the refusals.
    assert.equal((await ca.listIssued('int-1', { deviceId: 'dev-2' })).length, 0);
    assert.equal((await ca.listIssued('int-1', { deviceId: 'dev-9' })).length, 0);
  });
});

describe('device CA end to end (hub process)', () => {
  let hub: HubProcess;
  let ca: string;
  let files: string;
  const policyKeys = new Map<string, string>();

  before(async () => {
    hub = await startHubProcess({ address: HOST });
    ca = readFileSync(hub.caFile, 'utf8');
    files = tempDir('authority');
  });

  after(async () => {
    assert.equal(await hub.stop(), 0);
    removeDir(hub.dataDir);
    removeDir(files);
  });

  function call(policy: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    let key = policyKeys.get(policy);
    if (key === undefined) {
      const r = cli(['connection-string', '--data-dir', hub.dataDir, '--policy', policy]);
      assert.equal(r.status, 0, r.stderr);
      key = parseConnectionString(r.stdout.trim()).get('SharedAccessKey') ?? '';
      policyKeys.set(policy, key);
    }
    const token = generateSasToken({ resource: HOST, key, keyName: policy, expiry: Date.now() / 1000 + 600 });
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: HOST,
          port: 443,
          method,
          path: `${path}${path.includes('?') ? '&' : '?'}api-version=2021-04-12`,
          ca,
          headers: { authorization: token, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : (JSON.parse(text) as unknown) });
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  it('a device with a certificate signed through POST /certificateAuthorities/:name/sign connects over MQTT', async () => {
    const created = await call('iothubowner', 'POST', '/certificateAuthorities', { name: 'fleet-ca', alg: 'p384' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal((created.body as { properties: { isVerified: boolean } }).properties.isVerified, true);

    const registry = iothub.Registry.fromConnectionString(hub.connectionString);
    await registry.create({ deviceId: 'ca-signed', authentication: { type: 'certificateAuthority' } });

    const csr = await makeCsr('ca-signed');
    // RegistryRead may list, not sign.
    const denied = await call('registryRead', 'POST', '/certificateAuthorities/fleet-ca/sign', { csr: csr.pem, deviceId: 'ca-signed' });
    assert.notEqual(denied.status, 200);
    const wrongCn = await call('iothubowner', 'POST', '/certificateAuthorities/fleet-ca/sign', { csr: csr.pem, deviceId: 'other' });
    assert.equal(wrongCn.status, 400);
    assert.match(JSON.stringify(wrongCn.body), /is not the device id 'other'/);

    const signed = await call('iothubowner', 'POST', '/certificateAuthorities/fleet-ca/sign', { csr: csr.pem, deviceId: 'ca-signed', validityDays: 365 });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const out = signed.body as { serial: string; certificate: string; chain: string; notAfter: string; thumbprint: string };
    assert.equal(certsOf(out.chain).length, 2);
    assert.equal(out.thumbprint, hex(new X509Certificate(out.certificate).fingerprint256));

    const r = await connectRaw(HOST, ca, connectPacket(HOST, 'ca-signed', undefined), { cert: out.chain, key: csr.keyPem });
    assert.equal(r.code, 0);
    r.client.end();
    await r.client.closed;

    const listed = await call('registryRead', 'GET', '/certificateAuthorities/fleet-ca/issued');
    assert.equal(listed.status, 200);
    assert.deepEqual((listed.body as { value: Array<{ serial: string; deviceId: string }> }).value.map((x) => [x.serial, x.deviceId]), [[out.serial, 'ca-signed']]);
  });

  it('gatehouse ca create, cert sign --out and cert list', async () => {
    const gh = (args: string[]) => {
      const r = cli([...args, '--data-dir', hub.dataDir]);
      assert.equal(r.status, 0, `gatehouse ${args.join(' ')} failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as unknown;
    };
    gh(['ca', 'create', '--name', 'cli-root', '--validity-days', '30']);
    const int = gh(['ca', 'create', '--name', 'cli-int', '--parent', 'cli-root', '--alg', 'rsa2048']) as { name: string; isVerified: boolean };
    assert.equal(int.name, 'cli-int');
    assert.equal(int.isVerified, true);

    const registry = iothub.Registry.fromConnectionString(hub.connectionString);
    await registry.create({ deviceId: 'cli-dev', authentication: { type: 'certificateAuthority' } });
    const csr = await makeCsr('cli-dev', 'rsa2048');
    const csrFile = join(files, 'cli-dev.csr');
    const chainFile = join(files, 'cli-dev.pem');
    writeFileSync(csrFile, csr.pem);
    const signed = gh(['cert', 'sign', '--ca', 'cli-int', '--csr', csrFile, '--device', 'cli-dev', '--validity-days', '10', '--out', chainFile]) as { serial: string };
    const chain = readFileSync(chainFile, 'utf8');
    assert.equal(certsOf(chain).length, 3);

    const r = await connectRaw(HOST, ca, connectPacket(HOST, 'cli-dev', undefined), { cert: chain, key: csr.keyPem });
    assert.equal(r.code, 0);
    r.client.end();
    await r.client.closed;

    const rows = gh(['cert', 'list', '--device', 'cli-dev']) as Array<{ serial: string; caName: string }>;
    assert.deepEqual(rows.map((x) => [x.serial, x.caName]), [[signed.serial, 'cli-int']]);
    const bad = cli(['cert', 'sign', '--ca', 'cli-int', '--csr', csrFile, '--device', 'someone-else', '--data-dir', hub.dataDir]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /ArgumentInvalid: .*is not the device id 'someone-else'/);
  });
});
