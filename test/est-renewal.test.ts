/**
 * EST renewal against the clock (issue "Device PKI", step 5), in process with a clock the test
 * moves: a certificate renews before expiry and, for a device that was offline, after expiry only
 * within the grace period; a certificate that is not yet valid, or expired beyond the grace, is
 * refused with the date in the message. Factory credentials expire too. The TLS proof of the old
 * key is exercised end to end in est.test.ts; here the chain is handed over as the TLS layer would.
 */
import assert from 'node:assert/strict';
import { randomBytes, X509Certificate, type webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { HubError } from '../src/core/errors.js';
import { SecretBox } from '../src/core/secret-box.js';
import { CertificateAuthority } from '../src/pki/authority.js';
import { CaCertificates } from '../src/pki/ca-certificates.js';
import { EstService, type EstGroup } from '../src/dps/est.js';
import type { Store } from '../src/store/ports.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { testBus } from './support/test-bus.js';

x509.cryptoProvider.set(globalThis.crypto);

const DAY = 86_400_000;

async function csr(cn: string): Promise<string> {
  const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const req = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${cn}`, keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams });
  return req.toString('pem');
}

async function refusedWith(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof HubError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

describe('EST renewal and the grace period (in process, moving clock)', () => {
  let dir: string;
  let store: Store;
  let est: EstService;
  let now = Date.parse('2026-11-21T12:00:00Z');
  const clock = { now: () => now };
  const basic = (id: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${id}:${password}`).toString('base64')}` });
  let password = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-est-renewal-'));
    store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
    const cas = new CaCertificates(store.certificates, clock);
    const authority = new CertificateAuthority(store, cas, clock, testBus());
    await authority.createCa({ name: 'root' });
    await authority.createCa({ name: 'fleet', parent: 'root' });
    const group: EstGroup = { enrollmentGroupId: 'line', attestation: { type: 'x509', x509: { caReferences: { primary: 'fleet' } } } };
    est = new EstService({
      authority,
      store: store.authority,
      group: async (id) => {
        if (id !== 'line') throw new HubError('EnrollmentNotFound', 'no such group');
        return group;
      },
      cas,
      isRevoked: async () => false,
      ownership: { registration: async () => undefined, device: (id) => store.getDevice(id), hub: () => 'localhost' },
      clock,
      policy: () => ({ validityDays: 10, renewalGraceDays: 5 }),
      log: () => undefined,
    });
    password = (await est.createCredential('line', { id: 'station', validityDays: 365, registrationIds: ['dev-*'] })).password ?? '';
  });

  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const chainOf = (pem: string) => [new X509Certificate(pem)];

  it('renews before expiry, within the grace period after it, and not beyond', async () => {
    const first = await est.enroll('line', basic('station', password), await csr('dev-1'));
    assert.ok(Math.abs(Date.parse(first.notAfter) - (now + 10 * DAY)) < 1000, 'validity from policy');

    now += 8 * DAY; // two days left
    const second = await est.reenroll('line', { peerChain: chainOf(first.certificatePem) }, await csr('dev-1'));
    assert.ok(Date.parse(second.notAfter) > Date.parse(first.notAfter));

    now += 13 * DAY; // second expired 3 days ago: offline device, within the 5-day grace
    const third = await est.reenroll('line', { peerChain: chainOf(second.certificatePem) }, await csr('dev-1'));
    assert.ok(Date.parse(third.notAfter) > now);

    now += 16 * DAY; // third expired 6 days ago: beyond the grace
    await refusedWith(
      est.reenroll('line', { peerChain: chainOf(third.certificatePem) }, await csr('dev-1')),
      'CertificateNotAccepted',
      /expired on .* beyond the renewal grace period of 5 days/,
    );
  });

  it('a certificate not yet valid is refused, with its start date', async () => {
    const issued = await est.enroll('line', basic('station', password), await csr('dev-2'));
    now -= 2 * DAY; // the device's certificate starts in the future from here
    try {
      await refusedWith(est.reenroll('line', { peerChain: chainOf(issued.certificatePem) }, await csr('dev-2')), 'CertificateNotAccepted', /is not valid before/);
    } finally {
      now += 2 * DAY;
    }
  });

  it('a factory credential stops at its expiry; the refusal is the one 401', async () => {
    const created = await est.createCredential('line', { id: 'short', validityDays: 1, registrationIds: ['dev-*'] });
    await est.enroll('line', basic('short', created.password ?? ''), await csr('dev-3'));
    now += 2 * DAY;
    await refusedWith(est.enroll('line', basic('short', created.password ?? ''), await csr('dev-4')), 'IotHubUnauthorizedAccess', /^Unauthorized$/);
    await refusedWith(est.enroll('line', basic('station', 'not-the-password'), await csr('dev-4')), 'IotHubUnauthorizedAccess', /^Unauthorized$/);
    await refusedWith(est.enroll('line', {}, await csr('dev-4')), 'IotHubUnauthorizedAccess', /^Unauthorized$/);
  });
});
