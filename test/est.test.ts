/**
 * EST (RFC 7030) end to end against a hub process, driven the way a third-party client drives it:
 * `openssl` makes the keys and CSRs, `curl` speaks EST, `openssl pkcs7|verify` reads and checks
 * the answers. Then what Gatehouse adds: enrollment idempotent per key, thumbprint rotation on
 * renewal without dropping the live session, and revoking an intermediate revoking what it signed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { connectPacket, connectRaw } from './support/raw-mqtt.js';
import { errorCode, errorMessage, policyKey, restClient, type Rest } from './support/rest.js';
import { makeSelfSigned } from './support/pki.js';

const HOST = '127.0.47.1';

function run(cmd: string, args: string[], input?: string | Buffer): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...(input === undefined ? {} : { input }) });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(cmd: string, args: string[], input?: string | Buffer): string {
  const r = run(cmd, args, input);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
}

describe('EST with curl and openssl (hub process)', () => {
  let hub: HubProcess;
  let ca: string;
  let rest: Rest;
  let dpsRest: Rest;
  let dir: string;
  let password = '';
  let rootPem = '';

  before(async () => {
    hub = await startHubProcess({ address: HOST });
    ca = readFileSync(hub.caFile, 'utf8');
    dir = tempDir('est');
    rest = restClient(HOST, ca, policyKey(hub.dataDir));
    dpsRest = restClient(HOST, ca, policyKey(hub.dataDir, 'provisioningserviceowner'), 'provisioningserviceowner');
    const root = await rest('POST', '/certificateAuthorities', { name: 'est-root' });
    assert.equal(root.status, 201, JSON.stringify(root.body));
    rootPem = (root.body as { properties: { certificate: string } }).properties.certificate;
    writeFileSync(join(dir, 'root.pem'), rootPem);
    assert.equal((await rest('POST', '/certificateAuthorities', { name: 'est-fleet', parent: 'est-root' })).status, 201);
    for (const group of ['line-a', 'line-b']) {
      const g = await dpsRest('PUT', `/enrollmentGroups/${group}`, {
        enrollmentGroupId: group,
        attestation: { type: 'x509', x509: { caReferences: { primary: 'est-fleet' } } },
      });
      assert.equal(g.status, 200, JSON.stringify(g.body));
    }
    const created = cli(['est', 'credential', 'create', '--data-dir', hub.dataDir, '--group', 'line-a', '--id', 'station-1', '--registration-ids', 'unit-*,rot-*']);
    assert.equal(created.status, 0, created.stderr);
    password = (JSON.parse(created.stdout) as { password: string }).password;
    assert.ok(password.length >= 40);
  });

  after(async () => {
    assert.equal(await hub.stop(), 0);
    removeDir(hub.dataDir);
    removeDir(dir);
  });

  const url = (label: string, op: string) => `https://${HOST}/.well-known/est/${label}/${op}`;
  const curl = (args: string[]) => run('curl', ['-sS', '--cacert', hub.caFile, ...args]);

  /** An openssl key and a base64 DER CSR for this CN. */
  function opensslCsr(name: string, cn: string, keyArgs = ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']): { key: string; csr: string } {
    const key = join(dir, `${name}.key`);
    const csr = join(dir, `${name}.b64`);
    ok('openssl', ['genpkey', ...keyArgs, '-out', key]);
    const der = spawnSync('openssl', ['req', '-new', '-key', key, '-subj', `/CN=${cn}`, '-outform', 'DER']).stdout;
    writeFileSync(csr, `${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n`);
    return { key, csr };
  }

  /** The certificates of a certs-only answer, as openssl prints them. */
  function certsOf(body: string): string[] {
    const der = Buffer.from(body.replace(/\s+/g, ''), 'base64');
    const pem = ok('openssl', ['pkcs7', '-inform', 'DER', '-print_certs'], der);
    return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];
  }

  it('cacerts, simpleenroll with the factory credential, simplereenroll with the device certificate, revocation and the CRL', async () => {
    // cacerts is public: the group's CA chain as certs-only CMS.
    const cacerts = curl(['-D', join(dir, 'h1'), url('line-a', 'cacerts')]);
    assert.equal(cacerts.status, 0, cacerts.stderr);
    assert.match(readFileSync(join(dir, 'h1'), 'utf8'), /content-type: application\/pkcs7-mime; smime-type=certs-only/i);
    const chain = certsOf(cacerts.stdout);
    assert.deepEqual(chain.map((p) => new X509Certificate(p).subject.split('\n').at(-1)), ['CN=est-fleet', 'CN=est-root']);
    writeFileSync(join(dir, 'fleet.pem'), chain[0]!);

    // simpleenroll: an openssl key and CSR, curl with HTTP basic.
    const dev = opensslCsr('unit-1', 'unit-0001');
    const enrolled = curl(['-u', `station-1:${password}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${dev.csr}`, '-w', '\n%{http_code}', url('line-a', 'simpleenroll')]);
    const [body1, code1] = [enrolled.stdout.slice(0, enrolled.stdout.lastIndexOf('\n')), enrolled.stdout.slice(enrolled.stdout.lastIndexOf('\n') + 1)];
    assert.equal(code1, '200', enrolled.stdout);
    const [certPem] = certsOf(body1);
    assert.ok(certPem !== undefined);
    const certFile = join(dir, 'unit-1.crt');
    writeFileSync(certFile, certPem);
    assert.match(ok('openssl', ['verify', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'fleet.pem'), certFile]), /: OK/);
    const text = ok('openssl', ['x509', '-in', certFile, '-noout', '-subject', '-ext', 'extendedKeyUsage,crlDistributionPoints']);
    assert.match(text, /subject=CN ?= ?unit-0001/);
    assert.match(text, /TLS Web Client Authentication/);
    assert.match(text, new RegExp(`URI:https://${HOST.replace(/\./g, '\\.')}/crl/est-fleet\\.crl`));
    // The certificate carries the device's own key: the station never had it.
    assert.ok(new X509Certificate(certPem).checkPrivateKey((await import('node:crypto')).createPrivateKey(readFileSync(dev.key))));

    // Refusals: a wrong password, a credential of another group, none at all: the same 401.
    const other = await rest('POST', '/est/credentials', { enrollmentGroupId: 'line-b', id: 'station-b', registrationIds: ['unit-b-*'] });
    assert.equal(other.status, 201, JSON.stringify(other.body));
    const otherPassword = (other.body as { password: string }).password;
    const bodies = new Set<string>();
    for (const auth of [['-u', `station-1:wrong`], ['-u', `station-b:${otherPassword}`], []]) {
      const r = curl([...auth, '-D', join(dir, 'h2'), '--data-binary', `@${dev.csr}`, url('line-a', 'simpleenroll')]);
      const headers = readFileSync(join(dir, 'h2'), 'utf8');
      assert.match(headers, /^HTTP\/1\.1 401/);
      assert.match(headers, /www-authenticate: Basic realm="gatehouse-est"/i);
      bodies.add(JSON.parse(r.stdout).Message as string);
    }
    assert.deepEqual([...bodies], ['ErrorCode:IotHubUnauthorizedAccess;Unauthorized']);
    // The other group's credential works for its own group.
    const devB = opensslCsr('unit-b', 'unit-b-0001');
    assert.equal(curl(['-u', `station-b:${otherPassword}`, '--data-binary', `@${devB.csr}`, '-o', '/dev/null', '-w', '%{http_code}', url('line-b', 'simpleenroll')]).stdout, '200');
    // A deleted credential stops at once.
    assert.equal(cli(['est', 'credential', 'delete', 'station-b', '--data-dir', hub.dataDir]).status, 0);
    const devB2 = opensslCsr('unit-b2', 'unit-b-0002');
    assert.equal(curl(['-u', `station-b:${otherPassword}`, '--data-binary', `@${devB2.csr}`, '-o', '/dev/null', '-w', '%{http_code}', url('line-b', 'simpleenroll')]).stdout, '401');

    // simplereenroll: the device proves its current key in the TLS handshake; a new key here.
    const next = opensslCsr('unit-1-next', 'unit-0001');
    const renewed = curl(['--cert', certFile, '--key', dev.key, '--data-binary', `@${next.csr}`, '-w', '\n%{http_code}', url('line-a', 'simplereenroll')]);
    assert.ok(renewed.stdout.endsWith('\n200'), renewed.stdout);
    const [renewedPem] = certsOf(renewed.stdout.slice(0, renewed.stdout.lastIndexOf('\n')));
    const renewedFile = join(dir, 'unit-1-next.crt');
    writeFileSync(renewedFile, renewedPem!);
    const renewedCert = new X509Certificate(renewedPem!);
    assert.notEqual(renewedCert.serialNumber, new X509Certificate(certPem).serialNumber);
    assert.match(renewedCert.subject, /CN=unit-0001/);
    // Without a client certificate simplereenroll is a 401; a CSR for another CN a precise 400.
    assert.equal(curl(['--data-binary', `@${next.csr}`, '-o', '/dev/null', '-w', '%{http_code}', url('line-a', 'simplereenroll')]).stdout, '401');
    const stranger = opensslCsr('unit-x', 'unit-9999');
    const wrongCn = curl(['--cert', renewedFile, '--key', next.key, '--data-binary', `@${stranger.csr}`, url('line-a', 'simplereenroll')]);
    assert.match(wrongCn.stdout, /ArgumentInvalid;the CSR's CN 'unit-9999' is not the certificate's subject 'unit-0001'/);

    // Revoke the renewed certificate: EST refuses it, and openssl agrees with the served CRL.
    const serial = renewedCert.serialNumber.toLowerCase();
    assert.equal((await rest('POST', '/certificateAuthorities/est-fleet/revoke', { serial, reason: 'keyCompromise' })).status, 200);
    const afterRevoke = curl(['--cert', renewedFile, '--key', next.key, '--data-binary', `@${next.csr}`, '-w', '\n%{http_code}', url('line-a', 'simplereenroll')]);
    assert.ok(afterRevoke.stdout.endsWith('\n403'), afterRevoke.stdout);
    assert.match(afterRevoke.stdout, /CertificateNotAccepted;certificate [0-9a-f]+ is revoked/);
    const crlDer = join(dir, 'fleet.crl');
    assert.equal(curl(['-o', crlDer, '-w', '%{http_code}', `https://${HOST}/crl/est-fleet.crl`]).stdout, '200');
    const crlPem = join(dir, 'fleet-crl.pem');
    ok('openssl', ['crl', '-inform', 'DER', '-in', crlDer, '-out', crlPem]);
    const rootCrl = join(dir, 'root-crl.pem');
    assert.equal(curl(['-o', join(dir, 'root.crl'), '-w', '%{http_code}', `https://${HOST}/crl/est-root.crl`]).stdout, '200');
    ok('openssl', ['crl', '-inform', 'DER', '-in', join(dir, 'root.crl'), '-out', rootCrl]);
    const crlArgs = ['verify', '-crl_check_all', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'fleet.pem'), '-CRLfile', crlPem, '-CRLfile', rootCrl];
    assert.match(ok('openssl', [...crlArgs, certFile]), /: OK/);
    const revokedCheck = run('openssl', [...crlArgs, renewedFile]);
    assert.notEqual(revokedCheck.status, 0);
    assert.match(revokedCheck.stdout + revokedCheck.stderr, /certificate revoked/);
  });

  it('enrollment is idempotent per key; another key for an id with an active certificate is refused', async () => {
    const basic = { authorization: `Basic ${Buffer.from(`station-1:${password}`).toString('base64')}` };
    const dev = opensslCsr('idem', 'unit-0002');
    const csrPem = `-----BEGIN CERTIFICATE REQUEST-----\n${readFileSync(dev.csr, 'utf8').trim()}\n-----END CERTIFICATE REQUEST-----\n`;
    const first = await rest('POST', '/est/line-a/enroll', { csr: csrPem }, { auth: false, headers: basic });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const again = await rest('POST', '/est/line-a/enroll', { csr: csrPem }, { auth: false, headers: basic });
    assert.equal(again.status, 200);
    assert.equal((again.body as { serial: string }).serial, (first.body as { serial: string }).serial);
    assert.match((first.body as { chain: string }).chain, /(-----BEGIN CERTIFICATE-----[\s\S]+){3}/);

    const otherKey = opensslCsr('idem-2', 'unit-0002');
    const conflict = await rest('POST', '/est/line-a/enroll', { csr: `-----BEGIN CERTIFICATE REQUEST-----\n${readFileSync(otherKey.csr, 'utf8').trim()}\n-----END CERTIFICATE REQUEST-----\n` }, { auth: false, headers: basic });
    assert.equal(conflict.status, 409);
    assert.equal(errorCode(conflict), 'CertificateConflict');

    const weak = opensslCsr('weak', 'unit-0003', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024']);
    const refused = await rest('POST', '/.well-known/est/line-a/simpleenroll', undefined, { auth: false, headers: basic, raw: readFileSync(weak.csr), apiVersion: false });
    assert.equal(refused.status, 400);
    assert.match(errorMessage(refused), /RSA keys below 2048 bits are refused \(the CSR key has 1024\)/);
    const badId = opensslCsr('bad-id', 'bad*id');
    const r = await rest('POST', '/.well-known/est/line-a/simpleenroll', undefined, { auth: false, headers: basic, raw: readFileSync(badId.csr), apiVersion: false });
    assert.equal(r.status, 400);
    assert.match(errorMessage(r), /is not a valid registration id/);
  });

  it('a station may authenticate with its TLS client certificate instead of a password', async () => {
    const station = await makeSelfSigned('station-tls');
    const created = await rest('POST', '/est/credentials', { enrollmentGroupId: 'line-a', id: 'station-tls', clientCertificate: station.certPem, password: false, registrationIds: ['unit-tls-*'] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal((created.body as { password?: unknown }).password, false, 'no password was made');
    const dev = opensslCsr('tls-station-dev', 'unit-tls-0001');
    const csrPem = `-----BEGIN CERTIFICATE REQUEST-----\n${readFileSync(dev.csr, 'utf8').trim()}\n-----END CERTIFICATE REQUEST-----\n`;
    const enrolled = await rest('POST', '/est/line-a/enroll', { csr: csrPem }, { auth: false, tlsCert: { cert: station.certPem, key: station.keyPem } });
    assert.equal(enrolled.status, 200, JSON.stringify(enrolled.body));
    const imposter = await makeSelfSigned('station-tls');
    const refused = await rest('POST', '/est/line-a/enroll', { csr: csrPem }, { auth: false, tlsCert: { cert: imposter.certPem, key: imposter.keyPem } });
    assert.equal(refused.status, 401);
    // The credential lists without secrets.
    const listed = cli(['est', 'credential', 'list', '--data-dir', hub.dataDir, '--group', 'line-a']);
    assert.equal(listed.status, 0, listed.stderr);
    const rows = JSON.parse(listed.stdout) as Array<{ id: string; password: boolean; clientCertificateThumbprint: string | null }>;
    assert.deepEqual(rows.map((r) => [r.id, r.password, r.clientCertificateThumbprint !== null]), [['station-1', true, false], ['station-tls', false, true]]);
    assert.ok(!listed.stdout.includes(password), 'no password in the listing');
  });

  it('renewal rotates a thumbprint device without dropping its session; the oldest certificate goes on the next renewal', async () => {
    const basic = { authorization: `Basic ${Buffer.from(`station-1:${password}`).toString('base64')}` };
    const csrOf = (f: string) => `-----BEGIN CERTIFICATE REQUEST-----\n${readFileSync(f, 'utf8').trim()}\n-----END CERTIFICATE REQUEST-----\n`;
    const a = opensslCsr('rot-a', 'rot-1');
    const certA = ((await rest('POST', '/est/line-a/enroll', { csr: csrOf(a.csr) }, { auth: false, headers: basic })).body as { certificate: string; thumbprint: string });
    const registry = iothub.Registry.fromConnectionString(hub.connectionString);
    await registry.create({ deviceId: 'rot-1', authentication: { x509Thumbprint: { primaryThumbprint: certA.thumbprint } } });
    const keyA = readFileSync(a.key, 'utf8');
    const sessionA = await connectRaw(HOST, ca, connectPacket(HOST, 'rot-1', undefined), { cert: certA.certificate, key: keyA });
    assert.equal(sessionA.code, 0);

    const b = opensslCsr('rot-b', 'rot-1');
    const renewB = await rest('POST', '/est/line-a/reenroll', { csr: csrOf(b.csr) }, { auth: false, tlsCert: { cert: certA.certificate, key: keyA } });
    assert.equal(renewB.status, 200, JSON.stringify(renewB.body));
    const certB = renewB.body as { certificate: string; thumbprint: string };
    const { responseBody: afterB } = await registry.get('rot-1');
    assert.deepEqual(afterB.authentication?.x509Thumbprint, { primaryThumbprint: certA.thumbprint, secondaryThumbprint: certB.thumbprint });
    // The session on the old certificate stays: its thumbprint is still registered.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sessionA.client.isClosed(), false, 'the rotation dropped a session whose certificate is still valid');
    sessionA.client.end();
    const keyB = readFileSync(b.key, 'utf8');
    const sessionB = await connectRaw(HOST, ca, connectPacket(HOST, 'rot-1', undefined), { cert: certB.certificate, key: keyB });
    assert.equal(sessionB.code, 0);

    // The next renewal replaces the oldest (A): B's session stays, A is refused.
    const c = opensslCsr('rot-c', 'rot-1');
    const renewC = await rest('POST', '/est/line-a/reenroll', { csr: csrOf(c.csr) }, { auth: false, tlsCert: { cert: certB.certificate, key: keyB } });
    assert.equal(renewC.status, 200, JSON.stringify(renewC.body));
    const { responseBody: afterC } = await registry.get('rot-1');
    assert.deepEqual(afterC.authentication?.x509Thumbprint, { primaryThumbprint: (renewC.body as { thumbprint: string }).thumbprint, secondaryThumbprint: certB.thumbprint });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sessionB.client.isClosed(), false);
    sessionB.client.end();
    const again = await connectRaw(HOST, ca, connectPacket(HOST, 'rot-1', undefined), { cert: certA.certificate, key: keyA });
    assert.equal(again.code, 4);
    again.client.end();
  });

  it('revoking an intermediate revokes every certificate it signed and drops their sessions', async () => {
    assert.equal((await rest('POST', '/certificateAuthorities', { name: 'est-temp', parent: 'est-root' })).status, 201);
    const dev = opensslCsr('temp', 'temp-1');
    const csrPem = `-----BEGIN CERTIFICATE REQUEST-----\n${readFileSync(dev.csr, 'utf8').trim()}\n-----END CERTIFICATE REQUEST-----\n`;
    const signed = await rest('POST', '/certificateAuthorities/est-temp/sign', { csr: csrPem, deviceId: 'temp-1' });
    assert.equal(signed.status, 200, JSON.stringify(signed.body));
    const issued = signed.body as { chain: string; serial: string };
    const registry = iothub.Registry.fromConnectionString(hub.connectionString);
    await registry.create({ deviceId: 'temp-1', authentication: { type: 'certificateAuthority' } });
    const key = readFileSync(dev.key, 'utf8');
    const session = await connectRaw(HOST, ca, connectPacket(HOST, 'temp-1', undefined), { cert: issued.chain, key });
    assert.equal(session.code, 0);

    const listed = await rest('GET', '/certificateAuthorities/est-root/issued');
    const record = (listed.body as { value: Array<{ serial: string; deviceId: string }> }).value.find((r) => r.deviceId === '$ca/est-temp');
    assert.ok(record !== undefined, 'the intermediate is recorded as issued by its root');
    const revoked = await rest('POST', '/certificateAuthorities/est-root/revoke', { serial: record.serial, reason: 'cACompromise' });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    await Promise.race([session.client.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('session under the revoked intermediate still open after 1 s')), 1000))]);

    const reconnect = await connectRaw(HOST, ca, connectPacket(HOST, 'temp-1', undefined), { cert: issued.chain, key });
    assert.equal(reconnect.code, 4);
    reconnect.client.end();
    const leaf = await rest('GET', '/certificateAuthorities/est-temp/issued');
    assert.equal((leaf.body as { value: Array<{ serial: string; revocationReason: string }> }).value.find((r) => r.serial === issued.serial)?.revocationReason, 'cACompromise');
    const refused = await rest('POST', '/certificateAuthorities/est-temp/sign', { csr: csrPem, deviceId: 'temp-1' });
    assert.equal(refused.status, 400);
    assert.match(errorMessage(refused), /CA 'est-temp' is revoked/);
  });
});
