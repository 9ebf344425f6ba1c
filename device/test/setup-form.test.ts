/**
 * The setup form's rules, as a person meets them: each problem names the field to fix and says
 * what is wrong in words, and the factory's private key is used when the factory's certificate
 * is chosen and no key is pasted.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, type webcrypto } from 'node:crypto';
import { describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { checkX509 } from '../src/credentials.js';
import { formToConfig, type FormValues } from '../src/setup-form.js';

x509.cryptoProvider.set(globalThis.crypto);

async function selfSigned(cn: string, days = 30): Promise<{ certPem: string; keyPem: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await crypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({ name: `CN=${cn}`, keys, signingAlgorithm: alg, notBefore: new Date(now - 86_400_000), notAfter: new Date(now + days * 86_400_000) });
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { certPem: cert.toString('pem'), keyPem: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }).toString() };
}

const base: FormValues = { ssid: 'lab', wifiPassword: '', mode: 'hub', hubKind: 'dps', provisioningHost: 'dps.example', idScope: '0ne0000ABCD', registrationId: 'dev-1', pulseMs: '1000', softResetMs: '5000', factoryResetMs: '20000' };
const fields = (r: ReturnType<typeof formToConfig>) => (r.ok ? [] : r.problems.map((p) => `${p.field}: ${p.message}`));

describe('the setup form', () => {
  it('an X.509 credential: the key must match, the registration id is the CN, an expired certificate is named', async () => {
    const a = await selfSigned('dev-1');
    const b = await selfSigned('dev-1');
    assert.deepEqual(fields(formToConfig({ ...base, attestation: 'x509', certPem: a.certPem, keyPem: b.keyPem }, undefined)), ['keyPem: the private key does not belong to the certificate']);
    assert.deepEqual(fields(formToConfig({ ...base, attestation: 'x509', certPem: a.certPem, keyPem: a.keyPem, registrationId: 'dev-2' }, undefined)), ["registrationId: the registration id must be the certificate's common name (dev-1)"]);
    const old = await selfSigned('dev-1', -1);
    assert.match(checkX509(old.certPem, old.keyPem, 'dev-1')[0]?.message ?? '', /^the certificate expired on 20/);
    assert.deepEqual(fields(formToConfig({ ...base, attestation: 'x509', certPem: 'hello', keyPem: '' }, undefined)), ['certPem: the certificate is not PEM', 'keyPem: the private key is not PEM']);

    const good = formToConfig({ ...base, attestation: 'x509', certPem: a.certPem, keyPem: a.keyPem, estGroup: 'line-a' }, undefined);
    assert.ok(good.ok, fields(good).join('; '));
    assert.deepEqual(good.config.hub?.kind === 'dps' ? good.config.hub.est : undefined, { url: 'https://dps.example', group: 'line-a' });
  });

  it("the factory certificate with no key pasted uses the factory's key; another certificate needs its own", async () => {
    const f = await selfSigned('dev-1');
    const bundle = { registrationId: 'dev-1', idScope: '0ne0000ABCD', provisioningHost: 'dps.example', enrollmentGroupId: 'line-a', chainPem: f.certPem, keyPem: f.keyPem };
    const r = formToConfig({ ...base, attestation: 'x509', certPem: f.certPem, keyPem: '' }, bundle);
    assert.ok(r.ok, fields(r).join('; '));
    assert.equal(r.config.hub?.kind === 'dps' && r.config.hub.attestation.type === 'x509' ? r.config.hub.attestation.keyPem.trim() : '', f.keyPem.trim());
    const other = await selfSigned('dev-1');
    assert.deepEqual(fields(formToConfig({ ...base, attestation: 'x509', certPem: other.certPem, keyPem: '' }, bundle)), ['keyPem: the private key is not PEM']);
  });

  it('every other problem, by field, in page order', () => {
    assert.deepEqual(fields(formToConfig({ pulseMs: '1000', softResetMs: '5000', factoryResetMs: '20000' }, undefined)), ['ssid: the network name is empty', 'mode: choose web server or hub mode']);
    assert.deepEqual(fields(formToConfig({ ...base, hubKind: 'connectionString', connectionString: 'HostName=h;DeviceId=d' }, undefined)), [
      'connectionString: the connection string has no SharedAccessKey= (for X.509, use DPS with the factory bundle)',
    ]);
    assert.deepEqual(fields(formToConfig({ ...base, hubKind: undefined }, undefined)), ['hubKind: choose DPS or a connection string']);
    assert.deepEqual(fields(formToConfig({ ...base, attestation: undefined }, undefined)), ['attestation: choose an X.509 certificate or a symmetric key']);
    assert.deepEqual(fields(formToConfig({ ...base, attestation: 'symmetricKey', symmetricKey: 'c2hvcnQ=', idScope: 'scope' }, undefined)), [
      'idScope: the ID scope looks like 0ne + 8 hex digits',
      'symmetricKey: the symmetric key is base64 of at least 16 bytes',
    ]);
    assert.deepEqual(fields(formToConfig({ ...base, mode: 'web', pulseMs: 'soon', softResetMs: '9000', factoryResetMs: '8000' }, undefined)), [
      'pulseMs: the relay pulse must be a number of milliseconds',
      'factoryResetMs: the factory-reset press must be longer than the soft-reset press',
    ]);
    const web = formToConfig({ ...base, mode: 'web', wifiPassword: 'p'.repeat(64) }, undefined);
    assert.deepEqual(fields(web), ['wifiPassword: a WPA2 passphrase is at most 63 characters']);
    const key = Buffer.alloc(32, 7).toString('base64');
    const cs = formToConfig({ ...base, hubKind: 'connectionString', connectionString: `HostName=h;DeviceId=d;SharedAccessKey=${key}` }, undefined);
    assert.ok(cs.ok);
    assert.equal(cs.config.hub?.kind, 'connectionString');
  });
});
