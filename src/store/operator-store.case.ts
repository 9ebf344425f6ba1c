/**
 * The operator store contract (operator-ports.ts), run on every backend: rows with etags, ids
 * unique in any case, an operator's assignments going with it, and concurrent writers of one row
 * where exactly one wins. Imported only by tests.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { newEtag } from '../core/ids.js';
import type { OperatorRecord, RoleAssignmentRecord } from './operator-ports.js';
import { rejectsWith, runWith, type StoreHarness } from './store.case.js';

function op(id: string, over: Partial<OperatorRecord> = {}): OperatorRecord {
  return { id, displayName: id, enabled: true, createdAt: '2026-01-01T00:00:00.000Z', tokensValidAfter: 0, etag: newEtag(), ...over };
}

function assignment(principalId: string, role: string, over: Partial<RoleAssignmentRecord> = {}): RoleAssignmentRecord {
  return { id: randomUUID(), principalId, roleDefinitionName: role, scope: '/', createdAt: '2026-01-01T00:00:00.000Z', createdBy: 'test', etag: newEtag(), ...over };
}

export function operatorStoreConformance(name: string, open: () => Promise<StoreHarness>): void {
  describe(`operator store conformance: ${name}`, () => {
    const withStore = (fn: (h: StoreHarness) => Promise<void>) => runWith(open, fn);

    it(
      'keeps operators as rows, one per id in any case, spelled as created',
      withStore(async ({ store }) => {
        const s = store.operators;
        assert.deepEqual(await s.listOperators(), []);
        const alice = op('Alice', { displayName: 'Alice A.', tokensValidAfter: 1_767_225_600_000 });
        await s.createOperator(alice);
        await s.createOperator(op('bob', { enabled: false }));
        assert.deepEqual(await s.getOperator('alice'), alice);
        assert.deepEqual(await s.getOperator('ALICE'), alice);
        assert.equal(await s.getOperator('carol'), undefined);
        await rejectsWith(s.createOperator(op('aLiCe')), 'OperatorAlreadyExists');
        const list = await s.listOperators();
        assert.deepEqual(list.map((o) => [o.id, o.enabled]), [['Alice', true], ['bob', false]]);
      }),
    );

    it(
      'replaces and deletes an operator only under its current etag',
      withStore(async ({ store }) => {
        const s = store.operators;
        const first = op('dana');
        await s.createOperator(first);
        const next = { ...first, enabled: false, tokensValidAfter: 42_000, etag: newEtag() };
        await s.replaceOperator(next, first.etag);
        assert.deepEqual(await s.getOperator('dana'), next);
        // A write made on the first read is refused, not applied over the change.
        await rejectsWith(s.replaceOperator({ ...first, displayName: 'stale', etag: newEtag() }, first.etag), 'PreconditionFailed');
        assert.equal((await s.getOperator('dana'))?.displayName, 'dana');
        await rejectsWith(s.deleteOperator('dana', first.etag), 'PreconditionFailed');
        await rejectsWith(s.replaceOperator(op('nobody'), '*'), 'OperatorNotFound');
        await s.replaceOperator({ ...next, displayName: 'Dana', etag: newEtag() }, '*');
        assert.equal((await s.getOperator('DANA'))?.displayName, 'Dana');
        await s.deleteOperator('DANA', '*');
        assert.equal(await s.getOperator('dana'), undefined);
        await rejectsWith(s.deleteOperator('dana', '*'), 'OperatorNotFound');
      }),
    );

    it(
      'keeps role assignments as rows: one per operator, role and scope; they go with the operator',
      withStore(async ({ store }) => {
        const s = store.operators;
        await s.createOperator(op('Erin'));
        await s.createOperator(op('frank'));
        const owner = await s.createAssignment(assignment('erin', 'Owner'));
        assert.equal(owner.principalId, 'Erin', 'spelled as the operator row');
        const again = await s.createAssignment(assignment('ERIN', 'Owner'));
        assert.deepEqual(again, owner, 'assigning twice is one assignment');
        const reader = await s.createAssignment(assignment('erin', 'IoT Hub Data Reader'));
        const frank = await s.createAssignment(assignment('frank', 'Owner'));
        await rejectsWith(s.createAssignment(assignment('ghost', 'Owner')), 'OperatorNotFound');
        assert.deepEqual((await s.listAssignments()).map((a) => a.id), [reader.id, owner.id, frank.id], 'ordered by operator, then role');
        assert.deepEqual((await s.assignmentsOf('ERIN')).map((a) => a.roleDefinitionName).sort(), ['IoT Hub Data Reader', 'Owner']);

        await rejectsWith(s.deleteAssignment(reader.id, 'stale-etag'), 'PreconditionFailed');
        await s.deleteAssignment(reader.id, reader.etag);
        await rejectsWith(s.deleteAssignment(reader.id, '*'), 'RoleAssignmentNotFound');
        // Deleting the operator takes its assignments; the other operator's stay.
        await s.deleteOperator('erin', '*');
        assert.deepEqual((await s.listAssignments()).map((a) => a.id), [frank.id]);
        // A new operator of the same id starts with no roles.
        await s.createOperator(op('erin'));
        assert.deepEqual(await s.assignmentsOf('erin'), []);
      }),
    );

    it(
      'lets exactly one of concurrent writers of one row win',
      withStore(async ({ store }) => {
        const s = store.operators;
        const creates = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => s.createOperator(op(i % 2 === 0 ? 'race' : 'RACE'))));
        assert.equal(creates.filter((r) => r.status === 'fulfilled').length, 1);
        const read = await s.getOperator('race');
        assert.ok(read !== undefined);
        const replaces = await Promise.allSettled(
          Array.from({ length: 6 }, (_, i) => s.replaceOperator({ ...read, displayName: `writer ${i}`, etag: newEtag() }, read.etag)),
        );
        const won = replaces.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
        assert.equal(won.length, 1);
        for (const r of replaces) if (r.status === 'rejected') assert.equal((r.reason as { code?: string }).code, 'PreconditionFailed');
        assert.equal((await s.getOperator('race'))?.displayName, `writer ${won[0]}`);
        const assigned = await Promise.all(Array.from({ length: 6 }, () => s.createAssignment(assignment('race', 'Owner'))));
        assert.equal(new Set(assigned.map((a) => a.id)).size, 1);
        assert.equal((await s.assignmentsOf('race')).length, 1);
      }),
    );
  });
}
