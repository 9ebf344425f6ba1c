/**
 * The EnrollmentStore contract (enrollment-ports.ts), one suite for every backend. Imported only
 * by tests.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { runWith, rejectsWith } from './store.case.js';
import type { DeviceRegistrationState, EnrollmentGroup, IndividualEnrollment } from '../core/enrollments.js';
import type { Store } from './ports.js';
import type { StoreHarness } from './store.case.js';

const T0 = '2030-01-01T00:00:00.000Z';
const T1 = '2030-01-02T00:00:00.000Z';

const key = () => randomBytes(64).toString('base64');

function individual(id: string, over: Partial<IndividualEnrollment> = {}): IndividualEnrollment {
  return {
    registrationId: id,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key(), secondaryKey: key() } },
    provisioningStatus: 'enabled',
    allocationPolicy: 'hashed',
    iotHubs: ['hub.example'],
    initialTwin: { tags: { site: 'a' }, properties: { desired: { interval: 30 } } },
    etag: `e-${id}-${randomBytes(3).toString('hex')}`,
    createdDateTimeUtc: T0,
    lastUpdatedDateTimeUtc: T0,
    ...over,
  };
}

function group(id: string, over: Partial<EnrollmentGroup> = {}): EnrollmentGroup {
  const { registrationId: _r, ...rest } = individual(id);
  void _r;
  return { enrollmentGroupId: id, ...rest, ...over };
}

function state(id: string, over: Partial<DeviceRegistrationState> = {}): DeviceRegistrationState {
  return { registrationId: id, status: 'assigned', assignedHub: 'hub.example', deviceId: id, etag: `s-${id}`, createdDateTimeUtc: T0, lastUpdatedDateTimeUtc: T0, ...over };
}

export function enrollmentStoreConformance(name: string, open: () => Promise<StoreHarness>): void {
  describe(`enrollment store conformance: ${name}`, () => {
    const withStore = (fn: (store: Store, h: StoreHarness) => Promise<void>) => runWith(open, (h) => fn(h.store, h));

    it('keeps every field of an individual enrollment, case-insensitively, keys sealed', withStore(async (store, h) => {
      const e = individual('Dev-One', { deviceId: 'dev-1', capabilities: { iotEdge: true } });
      await store.enrollments.createIndividual(e);
      assert.deepEqual(await store.enrollments.getIndividual('dev-one'), e);
      assert.deepEqual(await store.enrollments.getIndividual('DEV-ONE'), e);
      await rejectsWith(store.enrollments.createIndividual(individual('DEV-one')), 'DeviceAlreadyExists');
      const raw = await h.rawContent();
      assert.ok(!raw.includes(e.attestation.symmetricKey?.primaryKey ?? 'x'), 'the primary key must not be stored in clear');
    }));

    it('replaces and deletes under the etag; the first id case and created time stay', withStore(async (store) => {
      const e = individual('Mixed.Case');
      await store.enrollments.createIndividual(e);
      const next = individual('mixed.case', { etag: 'e2', createdDateTimeUtc: T1, lastUpdatedDateTimeUtc: T1, provisioningStatus: 'disabled' });
      await rejectsWith(store.enrollments.replaceIndividual(next, 'stale'), 'PreconditionFailed');
      await store.enrollments.replaceIndividual(next, e.etag ?? '');
      const got = await store.enrollments.getIndividual('MIXED.CASE');
      assert.equal(got?.registrationId, 'Mixed.Case');
      assert.equal(got?.createdDateTimeUtc, T0);
      assert.equal(got?.lastUpdatedDateTimeUtc, T1);
      assert.equal(got?.provisioningStatus, 'disabled');
      assert.equal(got?.attestation.symmetricKey?.primaryKey, next.attestation.symmetricKey?.primaryKey);
      await store.enrollments.replaceIndividual(individual('mixed.case', { etag: 'e3' }), '*');
      await rejectsWith(store.enrollments.replaceIndividual(individual('nobody'), '*'), 'EnrollmentNotFound');
      await rejectsWith(store.enrollments.deleteIndividual('mixed.case', 'e2'), 'PreconditionFailed');
      await store.enrollments.deleteIndividual('MIXED.case', 'e3');
      assert.equal(await store.enrollments.getIndividual('mixed.case'), undefined);
      await rejectsWith(store.enrollments.deleteIndividual('mixed.case', '*'), 'EnrollmentNotFound');
    }));

    it('keeps x509 and tpm attestations without key columns', withStore(async (store) => {
      const x = individual('x1', { attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: 'PEM' } } } } });
      const t = individual('t1', { attestation: { type: 'tpm', tpm: { endorsementKey: 'AAAA' } } });
      await store.enrollments.createIndividual(x);
      await store.enrollments.createIndividual(t);
      assert.deepEqual(await store.enrollments.getIndividual('x1'), x);
      assert.deepEqual(await store.enrollments.getIndividual('t1'), t);
    }));

    it('pages individuals and groups by lower-cased cursor', withStore(async (store) => {
      for (const id of ['c', 'A', 'b', 'D', 'e']) {
        await store.enrollments.createIndividual(individual(id));
        await store.enrollments.createGroup(group(`g${id}`));
      }
      const first = await store.enrollments.listIndividuals({ limit: 2 });
      assert.deepEqual(first.map((e) => e.registrationId), ['A', 'b']);
      const second = await store.enrollments.listIndividuals({ after: 'b', limit: 2 });
      assert.deepEqual(second.map((e) => e.registrationId), ['c', 'D']);
      assert.deepEqual((await store.enrollments.listIndividuals({ after: 'd', limit: 10 })).map((e) => e.registrationId), ['e']);
      assert.deepEqual((await store.enrollments.listGroupsPage({ after: 'gb', limit: 2 })).map((g) => g.enrollmentGroupId), ['gc', 'gD']);
      const all = await store.enrollments.listGroups();
      assert.equal(all.length, 5);
      assert.ok(all.every((g) => (g.attestation.symmetricKey?.primaryKey.length ?? 0) > 0), 'listGroups returns keys');
    }));

    it('groups: create, replace under etag, delete', withStore(async (store) => {
      const g = group('Group-1');
      await store.enrollments.createGroup(g);
      assert.deepEqual(await store.enrollments.getGroup('group-1'), g);
      await rejectsWith(store.enrollments.createGroup(group('GROUP-1')), 'DeviceAlreadyExists');
      await rejectsWith(store.enrollments.replaceGroup(group('group-1', { etag: 'n' }), 'stale'), 'PreconditionFailed');
      await store.enrollments.replaceGroup(group('group-1', { etag: 'n' }), g.etag ?? '');
      assert.equal((await store.enrollments.getGroup('GROUP-1'))?.enrollmentGroupId, 'Group-1');
      await store.enrollments.deleteGroup('group-1', 'n');
      assert.equal(await store.enrollments.getGroup('group-1'), undefined);
      await rejectsWith(store.enrollments.deleteGroup('group-1', '*'), 'EnrollmentNotFound');
    }));

    it('registration states: create, replace, list by group, delete', withStore(async (store) => {
      await store.enrollments.createRegistration(state('R1', { symmetricKey: { enrollmentGroupId: 'G' } }), 'G');
      await store.enrollments.createRegistration(state('r2'), 'g');
      await store.enrollments.createRegistration(state('r3'), undefined);
      await rejectsWith(store.enrollments.createRegistration(state('r1'), undefined), 'DeviceAlreadyExists');
      const got = await store.enrollments.getRegistration('r1');
      assert.deepEqual(got, { state: state('R1', { symmetricKey: { enrollmentGroupId: 'G' } }), enrollmentGroupId: 'G' });
      assert.equal((await store.enrollments.getRegistration('R3'))?.enrollmentGroupId, undefined);
      assert.deepEqual((await store.enrollments.listRegistrations({ enrollmentGroupId: 'G', limit: 10 })).map((s) => s.registrationId), ['R1', 'r2']);
      assert.deepEqual((await store.enrollments.listRegistrations({ enrollmentGroupId: 'g', after: 'r1', limit: 10 })).map((s) => s.registrationId), ['r2']);
      await rejectsWith(store.enrollments.replaceRegistration(state('r1', { etag: 'x' }), 'G', 'stale'), 'PreconditionFailed');
      await store.enrollments.replaceRegistration(state('r1', { etag: 'x', status: 'disabled', lastUpdatedDateTimeUtc: T1 }), 'G', 's-R1');
      const replaced = await store.enrollments.getRegistration('r1');
      assert.equal(replaced?.state.status, 'disabled');
      assert.equal(replaced?.state.registrationId, 'R1');
      assert.equal(replaced?.state.lastUpdatedDateTimeUtc, T1);
      await rejectsWith(store.enrollments.deleteRegistration('r1', 'stale'), 'PreconditionFailed');
      await store.enrollments.deleteRegistration('R1', 'x');
      await rejectsWith(store.enrollments.deleteRegistration('r1', '*'), 'RegistrationNotFound');
      await rejectsWith(store.enrollments.replaceRegistration(state('zz'), undefined, '*'), 'RegistrationNotFound');
    }));

    it('deleting an individual enrollment deletes its own registration state, not a group one', withStore(async (store) => {
      await store.enrollments.createIndividual(individual('own'));
      await store.enrollments.createIndividual(individual('via-group'));
      await store.enrollments.createRegistration(state('own'), undefined);
      await store.enrollments.createRegistration(state('via-group'), 'g1');
      await store.enrollments.deleteIndividual('OWN', '*');
      await store.enrollments.deleteIndividual('via-group', '*');
      assert.equal(await store.enrollments.getRegistration('own'), undefined);
      assert.ok((await store.enrollments.getRegistration('via-group')) !== undefined);
    }));
  });
}
