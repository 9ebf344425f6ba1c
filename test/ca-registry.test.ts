/**
 * CaCertificates on a real SQLite store with a PKI generated here (STYLE.md principle 11): upload
 * checks and quota, proof of possession, and device chain validation with good and bad chains,
 * including a fake root with the same name and another key.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HubError } from '../src/core/errors.js';
import { SecretBox } from '../src/core/secret-box.js';
import { ANCHOR_TTL_MS, CaCertificates, MAX_CA_CERTIFICATES } from '../src/pki/ca-certificates.js';
import type { Store } from '../src/store/ports.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import {
  chainPem,
  makeIntermediate,
  makeLeaf,
  makeRoot,
  makeSelfSigned,
  makeVerificationCert,
  thumbprints,
  type TestCert,
} from './support/pki.js';

const DAY = 86_400_000;

interface Pki {
  root: TestCert;
  int: TestCert;
  leaf: TestCert;
  fakeRoot: TestCert;
  fakeInt: TestCert;
  fakeLeaf: TestCert;
}
let pki: Pki;

before(async () => {
  const root = await makeRoot('Gatehouse Test Root');
  const int = await makeIntermediate(root, 'Gatehouse Test Intermediate');
  // Same subject names as the real hierarchy, other keys.
  const fakeRoot = await makeRoot('Gatehouse Test Root');
  const fakeInt = await makeIntermediate(fakeRoot, 'Gatehouse Test Intermediate');
  pki = {
    root,
    int,
    leaf: await makeLeaf(int, 'device-1'),
    fakeRoot,
    fakeInt,
    fakeLeaf: await makeLeaf(fakeInt, 'device-1'),
  };
});

/** A registry over a fresh SQLite store; `clock.offset` moves time. */
async function withRegistry(fn: (cas: CaCertificates, ctx: { store: Store; clock: { offset: number } }) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-ca-'));
  const store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
  const clock = { offset: 0 };
  try {
    await fn(new CaCertificates(store.certificates, { now: () => Date.now() + clock.offset }), { store, clock });
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof HubError, `expected HubError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message !== undefined) assert.match(err.message, message);
    return true;
  });
}

async function refused(cas: CaCertificates, certs: TestCert[], reason: RegExp): Promise<void> {
  const r = await cas.verifyDeviceChain(certs.map((c) => c.cert));
  assert.ok('error' in r, `expected a refusal, got ${JSON.stringify(r)}`);
  assert.match(r.error, reason);
}

describe('CaCertificates management', () => {
  it('adds, lists, shows and deletes under the etag', () =>
    withRegistry(async (cas) => {
      const added = await cas.add('root', pki.root.certPem);
      const t = thumbprints(pki.root.certPem);
      assert.equal(added.subject, 'CN=Gatehouse Test Root');
      assert.equal(added.thumbprint, t.sha1);
      assert.equal(added.thumbprintSha256, t.sha256);
      assert.equal(added.isVerified, false, 'unverified until proof of possession');
      assert.equal(added.verificationCode, null);
      assert.equal(added.expiry, new Date(pki.root.cert.validTo).toISOString());
      assert.deepEqual(await cas.list(), [added]);
      assert.deepEqual(await cas.get('root'), added);

      const der = pki.int.cert.raw.toString('base64');
      const byDer = await cas.add('int', der, { verified: true });
      assert.equal(byDer.isVerified, true, 'operator chose verified on upload');
      assert.equal(byDer.certificatePem.trim(), pki.int.certPem.trim(), 'base64 DER stored as PEM');

      const b64Pem = await cas.add('b64-pem', Buffer.from(pki.fakeRoot.certPem).toString('base64'));
      assert.equal(b64Pem.thumbprintSha256, thumbprints(pki.fakeRoot.certPem).sha256, 'base64 of a PEM file accepted');
      await cas.delete('b64-pem', '*');
      await rejectsWith(cas.add('root', pki.fakeRoot.certPem), 'InvalidOperation', /already exists/);
      await rejectsWith(cas.add('root-again', pki.root.certPem), 'InvalidOperation', /already registered as 'root'/);
      await rejectsWith(cas.add('bad name!', pki.fakeRoot.certPem), 'ArgumentInvalid', /1-64 characters/);
      await rejectsWith(cas.add('x'.repeat(65), pki.fakeRoot.certPem), 'ArgumentInvalid');
      await rejectsWith(cas.delete('root', 'stale'), 'PreconditionFailed');
      await cas.delete('root', added.etag);
      await rejectsWith(cas.get('root'), 'ResourceNotFound');
      await rejectsWith(cas.delete('root', '*'), 'ResourceNotFound');
      assert.deepEqual((await cas.list()).map((r) => r.name), ['int']);
    }));

  it('refuses a non-CA, an expired CA, a private key, garbage and bundles', () =>
    withRegistry(async (cas) => {
      await rejectsWith(cas.add('leaf', pki.leaf.certPem), 'ArgumentInvalid', /not a CA/);
      await rejectsWith(cas.add('self', (await makeSelfSigned('device-x')).certPem), 'ArgumentInvalid', /not a CA/);
      const expired = await makeRoot('Old Root', { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
      await rejectsWith(cas.add('old', expired.certPem), 'ArgumentInvalid', /expired/);
      await rejectsWith(cas.add('keyed', pki.root.certPem + pki.root.keyPem), 'ArgumentInvalid', /private key/);
      await rejectsWith(cas.add('keyonly', pki.root.keyPem), 'ArgumentInvalid', /private key/);
      await rejectsWith(cas.add('junk', 'hello world'), 'ArgumentInvalid', /neither a PEM certificate nor base64 DER/);
      await rejectsWith(cas.add('junk64', 'aGVsbG8gd29ybGQ='), 'ArgumentInvalid', /neither a PEM certificate nor base64 DER/);
      await rejectsWith(cas.add('bad-der', Buffer.from([0x30, 3, 1, 2, 3]).toString('base64')), 'ArgumentInvalid', /cannot be parsed as X.509/);
      await rejectsWith(cas.add('two', chainPem(pki.int, pki.root)), 'ArgumentInvalid', /exactly one/);
      assert.deepEqual(await cas.list(), []);
    }));

  it(`holds at most ${MAX_CA_CERTIFICATES} CAs`, () =>
    withRegistry(async (cas) => {
      const roots = await Promise.all(Array.from({ length: MAX_CA_CERTIFICATES + 1 }, (_, i) => makeRoot(`Quota Root ${i}`)));
      for (const [i, r] of roots.slice(0, MAX_CA_CERTIFICATES).entries()) await cas.add(`ca-${i}`, r.certPem);
      await rejectsWith(cas.add('one-too-many', roots[MAX_CA_CERTIFICATES]!.certPem), 'IotHubQuotaExceeded', /25/);
      await cas.delete('ca-0', '*');
      await cas.add('one-too-many', roots[MAX_CA_CERTIFICATES]!.certPem);
    }));
});

describe('CaCertificates proof of possession', () => {
  it('verifies with the pending code signed by the CA key, and spends the code', () =>
    withRegistry(async (cas) => {
      await cas.add('root', pki.root.certPem);
      const { verificationCode, etag } = await cas.generateVerificationCode('root');
      assert.match(verificationCode, /^[0-9A-F]{32}$/);
      assert.equal((await cas.get('root')).etag, etag);
      assert.equal((await cas.get('root')).verificationCode, verificationCode);
      const proof = await makeVerificationCert(pki.root, verificationCode);
      const verified = await cas.verify('root', proof.certPem);
      assert.equal(verified.isVerified, true);
      assert.equal(verified.verificationCode, null);
      assert.deepEqual(await cas.get('root'), verified);
      await rejectsWith(cas.verify('root', proof.certPem), 'InvalidOperation', /no verification code is pending/i);
    }));

  it('refuses a wrong CN, another key, a stale code and a stale etag', () =>
    withRegistry(async (cas) => {
      await cas.add('root', pki.root.certPem);
      await rejectsWith(cas.verify('root', (await makeVerificationCert(pki.root, 'X')).certPem), 'InvalidOperation', /generate one first/);
      const first = await cas.generateVerificationCode('root');
      await rejectsWith(
        cas.verify('root', (await makeVerificationCert(pki.root, 'NOT-THE-CODE')).certPem),
        'ArgumentInvalid',
        /^the verification certificate's CN is not the pending verification code$/,
      );
      // Right code, but signed by the fake root: same subject name, other key.
      await rejectsWith(
        cas.verify('root', (await makeVerificationCert(pki.fakeRoot, first.verificationCode)).certPem),
        'ArgumentInvalid',
        /^the verification certificate is not signed by CA root$/,
      );
      const second = await cas.generateVerificationCode('root');
      assert.notEqual(second.verificationCode, first.verificationCode);
      await rejectsWith(
        cas.verify('root', (await makeVerificationCert(pki.root, first.verificationCode)).certPem),
        'ArgumentInvalid',
        /CN is not the pending verification code/,
      );
      await rejectsWith(cas.generateVerificationCode('root', first.etag), 'PreconditionFailed');
      await rejectsWith(cas.verify('root', 'garbage'), 'ArgumentInvalid', /verification certificate is neither/);
      assert.equal((await cas.get('root')).isVerified, false);
      const ok = await cas.verify('root', (await makeVerificationCert(pki.root, second.verificationCode)).certPem, second.etag);
      assert.equal(ok.isVerified, true);
      await rejectsWith(cas.generateVerificationCode('nobody'), 'ResourceNotFound');
    }));
});

describe('CaCertificates.verifyDeviceChain', () => {
  it('accepts leaf -> intermediate -> verified root, with or without the root in the chain', () =>
    withRegistry(async (cas) => {
      await cas.add('root', pki.root.certPem, { verified: true });
      assert.deepEqual(await cas.verifyDeviceChain([pki.leaf.cert, pki.int.cert]), { commonName: 'device-1', caName: 'root' });
      assert.deepEqual(await cas.verifyDeviceChain([pki.leaf.cert, pki.int.cert, pki.root.cert]), { commonName: 'device-1', caName: 'root' });
      const noEku = await makeLeaf(pki.int, 'device-2', { eku: 'none' });
      assert.deepEqual(await cas.verifyDeviceChain([noEku.cert, pki.int.cert]), { commonName: 'device-2', caName: 'root' }, 'no EKU = any use');
      const rsaRoot = await makeRoot('RSA Root', { alg: 'rsa' });
      await cas.add('rsa', rsaRoot.certPem, { verified: true });
      const rsaLeaf = await makeLeaf(rsaRoot, 'device-rsa');
      assert.deepEqual(await cas.verifyDeviceChain([rsaLeaf.cert]), { commonName: 'device-rsa', caName: 'rsa' });
    }));

  it('refuses an unverified root and a fake root with the same subject and another key', () =>
    withRegistry(async (cas) => {
      await cas.add('root', pki.root.certPem);
      await refused(cas, [pki.leaf, pki.int, pki.root], /does not lead to a verified CA/);
      const { verificationCode } = await cas.generateVerificationCode('root');
      await cas.verify('root', (await makeVerificationCert(pki.root, verificationCode)).certPem);
      assert.ok('commonName' in (await cas.verifyDeviceChain([pki.leaf.cert, pki.int.cert])), 'verified now');
      await refused(cas, [pki.fakeLeaf, pki.fakeInt, pki.fakeRoot], /does not lead to a verified CA/);
      await refused(cas, [pki.fakeLeaf, pki.fakeInt], /does not lead to a verified CA/);
      // A real intermediate's name on a certificate the fake root signed, under the real root's name.
      await refused(cas, [pki.leaf, pki.fakeInt], /not issued by certificate 1/);
    }));

  it('refuses bad leaves: expired, not yet valid, serverAuth only, a CA, no CN', () =>
    withRegistry(async (cas) => {
      await cas.add('root', pki.root.certPem, { verified: true });
      const now = Date.now();
      const expired = await makeLeaf(pki.int, 'device-1', { notBefore: new Date(now - 3 * DAY), notAfter: new Date(now - DAY) });
      await refused(cas, [expired, pki.int], /leaf certificate expired/);
      const future = await makeLeaf(pki.int, 'device-1', { notBefore: new Date(now + DAY), notAfter: new Date(now + 3 * DAY) });
      await refused(cas, [future, pki.int], /leaf certificate is not valid before/);
      const server = await makeLeaf(pki.int, 'device-1', { eku: 'serverAuth' });
      await refused(cas, [server, pki.int], /clientAuth/);
      const caLeaf = await makeLeaf(pki.int, 'device-1', { isCa: true });
      await refused(cas, [caLeaf, pki.int], /leaf certificate is a CA/);
      await refused(cas, [], /no client certificate/);
    }));

  it('refuses broken chains, expired intermediates and exceeded path lengths', () =>
    withRegistry(async (cas) => {
      await cas.add('root', pki.root.certPem, { verified: true });
      await refused(cas, [pki.leaf], /does not lead to a verified CA/);
      await refused(cas, [pki.leaf, pki.root], /not issued by certificate 1/);
      const other = await makeIntermediate(pki.root, 'Other Intermediate');
      await refused(cas, [pki.leaf, other], /not issued by certificate 1/);
      const now = Date.now();
      const oldInt = await makeIntermediate(pki.root, 'Old Intermediate', { notBefore: new Date(now - 3 * DAY), notAfter: new Date(now - DAY) });
      await refused(cas, [await makeLeaf(oldInt, 'device-1'), oldInt], /intermediate "CN=Old Intermediate" expired/);
      // An intermediate with pathLen 0 cannot have another intermediate below it (RFC 5280 §4.2.1.9).
      const strict = await makeIntermediate(pki.root, 'Strict Intermediate', { pathLen: 0 });
      const sub = await makeIntermediate(strict, 'Sub Intermediate');
      await refused(cas, [await makeLeaf(sub, 'device-1'), sub, strict], /allows 0 intermediates below it, the chain has 1/);
      assert.ok('commonName' in (await cas.verifyDeviceChain([(await makeLeaf(strict, 'device-1')).cert, strict.cert])));
      // The anchor's own pathLen counts too.
      const tight = await makeRoot('Tight Root', { pathLen: 0 });
      await cas.add('tight', tight.certPem, { verified: true });
      const tightInt = await makeIntermediate(tight, 'Tight Intermediate');
      await refused(cas, [await makeLeaf(tightInt, 'device-1'), tightInt], /registered CA tight allows 0/);
      const long = Array.from({ length: 9 }, () => pki.leaf);
      await refused(cas, long, /at most 8/);
    }));

  it('anchors at a registered verified intermediate; the nearest registered CA wins', () =>
    withRegistry(async (cas) => {
      await cas.add('int', pki.int.certPem, { verified: true });
      assert.deepEqual(await cas.verifyDeviceChain([pki.leaf.cert]), { commonName: 'device-1', caName: 'int' });
      assert.deepEqual(await cas.verifyDeviceChain([pki.leaf.cert, pki.int.cert, pki.root.cert]), { commonName: 'device-1', caName: 'int' });
      await cas.add('root', pki.root.certPem, { verified: true });
      assert.deepEqual(await cas.verifyDeviceChain([pki.leaf.cert, pki.int.cert]), { commonName: 'device-1', caName: 'int' });
      await cas.delete('int', '*');
      assert.deepEqual(await cas.verifyDeviceChain([pki.leaf.cert, pki.int.cert]), { commonName: 'device-1', caName: 'root' });
      await refused(cas, [pki.leaf], /does not lead/);
    }));

  it('caches the verified CAs: changes made here apply at once, changes behind its back after the TTL', () =>
    withRegistry(async (cas, { store, clock }) => {
      const added = await cas.add('root', pki.root.certPem, { verified: true });
      assert.ok('commonName' in (await cas.verifyDeviceChain([pki.leaf.cert, pki.int.cert])));
      // Another hub on the same database deletes it: this one notices once the cache expires.
      await store.certificates.delete('root', added.etag);
      assert.ok('commonName' in (await cas.verifyDeviceChain([pki.leaf.cert, pki.int.cert])), 'still cached');
      clock.offset = ANCHOR_TTL_MS + 1;
      await refused(cas, [pki.leaf, pki.int], /does not lead/);
      // Through the registry: effective immediately.
      await cas.add('root', pki.root.certPem, { verified: true });
      assert.ok('commonName' in (await cas.verifyDeviceChain([pki.leaf.cert, pki.int.cert])));
      await cas.delete('root', '*');
      await refused(cas, [pki.leaf, pki.int], /does not lead/);
    }));
});
