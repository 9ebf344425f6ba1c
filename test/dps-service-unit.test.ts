/**
 * EnrollmentService rules without HTTP: id and key validation, defaults, the group quota, and the
 * runtime API the registration engine uses.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HubError } from '../src/core/errors.js';
import { SecretBox } from '../src/core/secret-box.js';
import { EnrollmentService, MAX_GROUPS_PER_ATTESTATION } from '../src/dps/enrollment-service.js';
import { ensureIdScope } from '../src/dps/id-scope.js';
import type { Store } from '../src/store/ports.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';

let dir: string;
let store: Store;
let svc: EnrollmentService;
let now = Date.parse('2030-01-01T00:00:00.000Z');
const clock = { now: () => now };

const sym = (primaryKey = '', secondaryKey = '') => ({ attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } } });

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof HubError && err.code === code && (message === undefined || message.test(err.message)));
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-dps-unit-'));
  store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
  svc = new EnrollmentService(store, clock, () => 'hub.example');
});

after(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('enrollment validation', () => {
  it('rejects bad registration ids', async () => {
    for (const id of ['ends-with-dot.', 'has space', 'slash/x', 'a'.repeat(129), '', 'under_']) {
      await rejectsWith(svc.putIndividual(id, sym()), 'ArgumentInvalid');
    }
    for (const id of ['ok-1', 'A.b_c:d-', 'x'.repeat(128)]) await svc.putIndividual(id, sym());
  });

  it('accepts user keys of 16-64 bytes only', async () => {
    const k = (n: number) => randomBytes(n).toString('base64');
    await rejectsWith(svc.putIndividual('short', sym(k(15), k(32))), 'ArgumentInvalid', /16 to 64 bytes/);
    await rejectsWith(svc.putIndividual('long', sym(k(32), k(65))), 'ArgumentInvalid', /16 to 64 bytes/);
    await rejectsWith(svc.putIndividual('not-b64', sym('!!!!', k(32))), 'ArgumentInvalid', /base64/);
    const e = await svc.putIndividual('edges', sym(k(16), k(64)));
    assert.equal(Buffer.from(e.attestation.symmetricKey?.primaryKey ?? '', 'base64').length, 16);
  });

  it('fills defaults and keeps the created time across updates', async () => {
    const e = await svc.putIndividual('Defaults-1', sym());
    assert.equal(e.provisioningStatus, 'enabled');
    assert.equal(e.allocationPolicy, 'hashed');
    assert.deepEqual(e.iotHubs, ['hub.example']);
    now += 60_000;
    const u = await svc.putIndividual('defaults-1', { ...sym(), provisioningStatus: 'disabled' }, e.etag);
    assert.equal(u.registrationId, 'Defaults-1');
    assert.equal(u.createdDateTimeUtc, e.createdDateTimeUtc);
    assert.notEqual(u.lastUpdatedDateTimeUtc, e.lastUpdatedDateTimeUtc);
    await rejectsWith(svc.putIndividual('defaults-1', sym(), e.etag), 'PreconditionFailed');
    await rejectsWith(svc.putIndividual('d2', { ...sym(), allocationPolicy: 'custom' }), 'ArgumentInvalid');
    await rejectsWith(svc.putIndividual('d3', { attestation: { type: 'none' } }), 'ArgumentInvalid');
    await rejectsWith(svc.putGroup('g-tpm', { attestation: { type: 'tpm', tpm: { endorsementKey: 'AAAA' } } }), 'ArgumentInvalid');
    await rejectsWith(svc.putIndividual('d4', { attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: 'nope' } } } } }), 'ArgumentInvalid');
  });

  it(`refuses the ${MAX_GROUPS_PER_ATTESTATION + 1}st symmetric-key group, not an update of one`, async () => {
    for (let i = 0; i < MAX_GROUPS_PER_ATTESTATION; i++) await svc.putGroup(`quota-${i}`, sym());
    await rejectsWith(svc.putGroup('quota-overflow', sym()), 'IotHubQuotaExceeded');
    await svc.putGroup('quota-7', { ...sym(), provisioningStatus: 'disabled' });
    await svc.deleteGroup('quota-0');
    await svc.putGroup('quota-overflow', sym());
    assert.equal((await svc.listGroups()).length, MAX_GROUPS_PER_ATTESTATION);
    for (const g of await svc.listGroups()) await svc.deleteGroup(g.enrollmentGroupId);
  });
});

describe('runtime API', () => {
  it('finds individuals case-insensitively and lists groups with keys', async () => {
    const e = await svc.putIndividual('Runtime-Dev', sym());
    const found = await svc.findIndividual('RUNTIME-dev');
    assert.equal(found?.attestation.symmetricKey?.primaryKey, e.attestation.symmetricKey?.primaryKey);
    assert.equal(await svc.findIndividual('nobody'), undefined);
    const g = await svc.putGroup('rt-group', sym());
    const groups = await svc.listGroups();
    assert.equal(groups.find((x) => x.enrollmentGroupId === 'rt-group')?.attestation.symmetricKey?.primaryKey, g.attestation.symmetricKey?.primaryKey);
  });

  it('putRegistrationState creates, then replaces keeping createdDateTimeUtc', async () => {
    const first = await svc.putRegistrationState({ registrationId: 'Reg-1', status: 'assigned', assignedHub: 'hub.example', deviceId: 'Reg-1', enrollmentGroupId: 'rt-group' });
    assert.ok(first.etag !== undefined && first.createdDateTimeUtc !== undefined);
    now += 1000;
    const second = await svc.putRegistrationState({ registrationId: 'reg-1', status: 'assigned', substatus: 'initialAssignment', enrollmentGroupId: 'rt-group' });
    assert.equal(second.createdDateTimeUtc, first.createdDateTimeUtc);
    assert.notEqual(second.etag, first.etag);
    assert.equal(second.registrationId, 'Reg-1');
    assert.equal((await svc.getRegistrationState('REG-1'))?.substatus, 'initialAssignment');
    const page = await svc.queryGroupRegistrations('RT-GROUP');
    assert.deepEqual(page.items.map((s) => s.registrationId), ['Reg-1']);
    await rejectsWith(svc.deleteRegistrationState('reg-1', first.etag), 'PreconditionFailed');
    await svc.deleteRegistrationState('reg-1', second.etag);
    assert.equal(await svc.getRegistrationState('reg-1'), undefined);
  });

  it('deleting an individual enrollment deletes its registration state', async () => {
    await svc.putIndividual('gone-dev', sym());
    await svc.putRegistrationState({ registrationId: 'gone-dev', status: 'assigned' });
    assert.equal((await svc.getIndividual('gone-dev')).registrationState?.status, 'assigned');
    await svc.deleteIndividual('GONE-DEV');
    assert.equal(await svc.getRegistrationState('gone-dev'), undefined);
  });

  it('ensureIdScope makes one 0ne scope and keeps it', async () => {
    const a = await ensureIdScope(store);
    assert.match(a, /^0ne[0-9A-F]{8}$/);
    assert.equal(await ensureIdScope(store), a);
  });
});
