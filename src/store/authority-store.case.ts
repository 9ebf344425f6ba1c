/**
 * The AuthorityStore contract (device CA keys and issued certificates), one suite for every
 * backend. Records are opaque to the store, so the PEMs here are placeholders; the CA's own tests
 * (test/authority.test.ts) use real ones. Imported only by tests.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { runWith, rejectsWith } from './store.case.js';
import type { IssuedCertificateRecord } from './authority-ports.js';
import type { StoreHarness } from './store.case.js';

function makeIssued(serial: string, over: Partial<IssuedCertificateRecord> = {}): IssuedCertificateRecord {
  return {
    serial,
    caName: 'fleet',
    deviceId: 'dev-1',
    registrationId: null,
    enrollmentGroupId: null,
    thumbprintSha1: randomBytes(20).toString('hex').toUpperCase(),
    thumbprintSha256: randomBytes(32).toString('hex').toUpperCase(),
    notBefore: '2026-01-01T00:00:00.000Z',
    notAfter: '2027-01-01T00:00:00.000Z',
    certificatePem: `-----BEGIN CERTIFICATE-----\n${randomBytes(48).toString('base64')}\n-----END CERTIFICATE-----\n`,
    revokedAt: null,
    revocationReason: null,
    created: new Date().toISOString(),
    ...over,
  };
}

export function authorityStoreConformance(name: string, open: () => Promise<StoreHarness>): void {
  describe(`authority store conformance: ${name}`, () => {
    const withStore = (fn: (h: StoreHarness) => Promise<void>) => runWith(open, fn);

    it(
      'seals CA keys: round trip, never in clear, one key per CA, delete',
      withStore(async (h) => {
        const a = h.store.authority;
        // A real key made now; its base64 body must not appear in what the backend stores.
        const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
        const marker = keyPem.split('\n')[1] ?? '';
        assert.ok(marker.length > 40);
        assert.equal(await a.getCaKey('fleet'), undefined);
        assert.equal(await a.hasCaKey('fleet'), false);
        await a.putCaKey('fleet', keyPem);
        assert.equal(await a.getCaKey('fleet'), keyPem);
        assert.equal(await a.hasCaKey('fleet'), true);
        await rejectsWith(a.putCaKey('fleet', keyPem), 'InvalidOperation');
        assert.ok(!(await h.rawContent()).includes(marker), 'the CA key is stored in clear');
        assert.equal(await a.deleteCaKey('fleet'), true);
        assert.equal(await a.deleteCaKey('fleet'), false);
        assert.equal(await a.getCaKey('fleet'), undefined);
        assert.equal(await a.hasCaKey('fleet'), false);
      }),
    );

    it(
      'records issued certificates field for field; a serial is recorded once',
      withStore(async (h) => {
        const a = h.store.authority;
        const r = makeIssued('0a01', { registrationId: 'reg-1', enrollmentGroupId: 'group-1' });
        await a.recordIssued(r);
        assert.deepEqual(await a.getIssued('0a01'), r);
        assert.equal(await a.getIssued('0a02'), undefined);
        await rejectsWith(a.recordIssued(makeIssued('0a01')), 'InvalidOperation');
      }),
    );

    it(
      'lists by CA and by device in serial order, with keyset paging',
      withStore(async (h) => {
        const a = h.store.authority;
        await a.recordIssued(makeIssued('03', { caName: 'fleet', deviceId: 'dev-1' }));
        await a.recordIssued(makeIssued('01', { caName: 'fleet', deviceId: 'dev-2' }));
        await a.recordIssued(makeIssued('02', { caName: 'other', deviceId: 'dev-1' }));
        await a.recordIssued(makeIssued('04', { caName: 'fleet', deviceId: 'dev-1' }));
        const serials = (rs: IssuedCertificateRecord[]) => rs.map((r) => r.serial);
        assert.deepEqual(serials(await a.listIssued({ limit: 10 })), ['01', '02', '03', '04']);
        assert.deepEqual(serials(await a.listIssued({ caName: 'fleet', limit: 10 })), ['01', '03', '04']);
        assert.deepEqual(serials(await a.listIssued({ deviceId: 'dev-1', limit: 10 })), ['02', '03', '04']);
        assert.deepEqual(serials(await a.listIssued({ caName: 'fleet', deviceId: 'dev-1', limit: 10 })), ['03', '04']);
        assert.deepEqual(serials(await a.listIssued({ limit: 2 })), ['01', '02']);
        assert.deepEqual(serials(await a.listIssued({ limit: 2, after: '02' })), ['03', '04']);
        assert.deepEqual(serials(await a.listIssued({ caName: 'nobody', limit: 10 })), []);
      }),
    );

    it(
      'revokes once; the first revocation stays; unknown serial is ResourceNotFound',
      withStore(async (h) => {
        const a = h.store.authority;
        await a.recordIssued(makeIssued('05'));
        assert.equal(await a.revoke('05', 'keyCompromise', '2026-06-01T00:00:00.000Z'), true);
        assert.equal(await a.revoke('05', 'superseded', '2026-07-01T00:00:00.000Z'), false);
        const r = await a.getIssued('05');
        assert.equal(r?.revokedAt, '2026-06-01T00:00:00.000Z');
        assert.equal(r?.revocationReason, 'keyCompromise');
        await rejectsWith(a.revoke('ff', 'keyCompromise', '2026-06-01T00:00:00.000Z'), 'ResourceNotFound');
      }),
    );
  
    it(
      'keeps EST credentials: hash and thumbprint only, one per id, listed by group, deleted',
      withStore(async (h) => {
        const a = h.store.authority;
        const base = { secretHash: 'ab'.repeat(32), clientThumbprint: null, expiresAt: '2027-01-01T00:00:00.000Z', created: '2026-11-21T00:00:00.000Z', registrationIds: ['line-1-*'] };
        await a.putEstCredential({ id: 'station-b', enrollmentGroupId: 'line-1', ...base });
        await a.putEstCredential({ id: 'station-a', enrollmentGroupId: 'line-1', ...base, secretHash: null, clientThumbprint: 'CD'.repeat(32) });
        await a.putEstCredential({ id: 'station-c', enrollmentGroupId: 'line-2', ...base, registrationIds: ['Unit-0001', 'unit-1*', 'x'.repeat(128)] });
        assert.deepEqual((await a.getEstCredential('station-c'))?.registrationIds, ['Unit-0001', 'unit-1*', 'x'.repeat(128)]);
        await rejectsWith(a.putEstCredential({ id: 'station-a', enrollmentGroupId: 'line-2', ...base }), 'InvalidOperation');
        assert.deepEqual(await a.getEstCredential('station-a'), {
          id: 'station-a',
          enrollmentGroupId: 'line-1',
          ...base,
          secretHash: null,
          clientThumbprint: 'CD'.repeat(32),
        });
        assert.deepEqual((await a.getEstCredential('station-b'))?.registrationIds, ['line-1-*'], 'the registration-id scope comes back as it was given');
        assert.equal(await a.getEstCredential('nobody'), undefined);
        assert.deepEqual((await a.listEstCredentials('line-1')).map((c) => c.id), ['station-a', 'station-b']);
        assert.deepEqual((await a.listEstCredentials()).map((c) => c.id), ['station-a', 'station-b', 'station-c']);
        assert.equal(await a.deleteEstCredential('station-b'), true);
        assert.equal(await a.deleteEstCredential('station-b'), false);
        assert.deepEqual((await a.listEstCredentials('line-1')).map((c) => c.id), ['station-a']);
      }),
    );
  });
}
