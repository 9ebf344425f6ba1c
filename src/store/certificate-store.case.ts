/**
 * The CertificateStore contract (X.509 CA records), one suite for every backend. Records are
 * opaque to the store, so the certificates here are placeholders; CaCertificates's own tests use real
 * ones. Imported only by tests.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { runWith, rejectsWith } from './store.case.js';
import { newEtag } from '../core/ids.js';
import type { CaCertificateRecord } from './certificate-ports.js';
import type { Store } from './ports.js';

/** Same factory shape as storeConformance's harness; only `store` and `close` are used. */
export interface CertificateStoreHarness {
  store: Store;
  close(): Promise<void>;
}

function makeRecord(name: string, over: Partial<CaCertificateRecord> = {}): CaCertificateRecord {
  const now = new Date().toISOString();
  return {
    name,
    certificatePem: `-----BEGIN CERTIFICATE-----\n${randomBytes(48).toString('base64')}\n-----END CERTIFICATE-----\n`,
    subject: `CN=${name}, O=Test`,
    thumbprint: randomBytes(20).toString('hex').toUpperCase(),
    thumbprintSha256: randomBytes(32).toString('hex').toUpperCase(),
    expiry: '2036-01-01T00:00:00.000Z',
    isVerified: false,
    verificationCode: null,
    created: now,
    updated: now,
    etag: newEtag(),
    ...over,
  };
}

export function certificateStoreConformance(name: string, open: () => Promise<CertificateStoreHarness>): void {
  describe(`certificate store conformance: ${name}`, () => {
    const withStore = (fn: (store: Store['certificates']) => Promise<void>) => runWith(open, (h) => fn(h.store.certificates));

    it(
      'creates a record and reads it back field for field',
      withStore(async (certs) => {
        const r = makeRecord('root-1', { isVerified: true, verificationCode: 'ABCDEF0123' });
        await certs.create(r);
        assert.deepEqual(await certs.get('root-1'), r);
        assert.deepEqual(await certs.list(), [r]);
        assert.equal(await certs.get('ROOT-1'), undefined, 'names are case-sensitive');
        assert.equal(await certs.get('nobody'), undefined);
      }),
    );

    it(
      'refuses a second record with the same name and keeps the first',
      withStore(async (certs) => {
        const first = makeRecord('dup');
        await certs.create(first);
        await rejectsWith(certs.create(makeRecord('dup')), 'InvalidOperation');
        assert.deepEqual(await certs.get('dup'), first);
      }),
    );

    it(
      'lists in byte order of the name',
      withStore(async (certs) => {
        for (const n of ['b', 'B', 'a.1', 'A_2', 'a-0']) await certs.create(makeRecord(n));
        assert.deepEqual((await certs.list()).map((r) => r.name), ['A_2', 'B', 'a-0', 'a.1', 'b']);
      }),
    );

    it(
      'replaces only under the current etag',
      withStore(async (certs) => {
        const r = makeRecord('ca');
        await certs.create(r);
        const next = { ...r, verificationCode: 'C0DE', etag: newEtag(), updated: new Date().toISOString() };
        await rejectsWith(certs.replace(next, 'stale'), 'PreconditionFailed');
        assert.deepEqual(await certs.get('ca'), r, 'unchanged after a refused replace');
        await certs.replace(next, r.etag);
        assert.deepEqual(await certs.get('ca'), next);
        const verified = { ...next, isVerified: true, verificationCode: null, etag: newEtag() };
        await certs.replace(verified, '*');
        assert.deepEqual(await certs.get('ca'), verified);
        await rejectsWith(certs.replace(makeRecord('nobody'), '*'), 'ResourceNotFound');
      }),
    );

    it(
      'deletes only under the current etag',
      withStore(async (certs) => {
        const r = makeRecord('gone');
        await certs.create(r);
        await rejectsWith(certs.delete('gone', 'stale'), 'PreconditionFailed');
        await certs.delete('gone', r.etag);
        assert.equal(await certs.get('gone'), undefined);
        await rejectsWith(certs.delete('gone', '*'), 'ResourceNotFound');
        await certs.create(makeRecord('gone'));
        await certs.delete('gone', '*');
        assert.deepEqual(await certs.list(), []);
      }),
    );

    it(
      'hot-path lookups see verified records only',
      withStore(async (certs) => {
        const verified = makeRecord('v', { isVerified: true });
        const pending = makeRecord('p');
        const other = makeRecord('a-verified', { isVerified: true });
        for (const r of [verified, pending, other]) await certs.create(r);
        assert.deepEqual(await certs.findVerifiedByThumbprintSha256(verified.thumbprintSha256), verified);
        assert.equal(await certs.findVerifiedByThumbprintSha256(pending.thumbprintSha256), undefined, 'unverified');
        assert.equal(await certs.findVerifiedByThumbprintSha256('00'.repeat(32)), undefined, 'unknown');
        assert.deepEqual(await certs.listVerified(), [other, verified]);
        await certs.replace({ ...pending, isVerified: true, etag: newEtag() }, pending.etag);
        assert.deepEqual((await certs.listVerified()).map((r) => r.name), ['a-verified', 'p', 'v']);
        await certs.delete('v', '*');
        assert.equal(await certs.findVerifiedByThumbprintSha256(verified.thumbprintSha256), undefined, 'deleted');
      }),
    );
  });
}
