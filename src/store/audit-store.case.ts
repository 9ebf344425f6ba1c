/**
 * The AuditStore contract, one suite for every backend. The chain is the service's business
 * (test/audit-log-unit.test.ts): here hashes are opaque strings the store must keep byte for byte.
 * Imported only by tests.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { runWith, rejectsWith } from './store.case.js';
import type { AuditRow } from './audit-ports.js';
import type { StoreHarness } from './store.case.js';

const T0 = Date.UTC(2026, 0, 1);

export function makeAuditRow(seq: number, over: Partial<AuditRow> = {}): AuditRow {
  return {
    seq,
    at: T0 + seq * 1000,
    type: 'auth',
    subject: 'device',
    identity: `dev-${seq % 3}`,
    outcome: seq % 2 === 0 ? 'success' : 'failure',
    reason: seq % 2 === 0 ? null : 'SAS signature mismatch',
    reasonCode: seq % 2 === 0 ? null : 'bad_credentials',
    remote: '127.0.0.1',
    protocol: 'mqtt',
    method: 'sas',
    tls: 'TLSv1.3',
    actor: null,
    action: null,
    target: null,
    beforeJson: null,
    afterJson: null,
    prevHash: randomBytes(32).toString('hex'),
    hash: randomBytes(32).toString('hex'),
    ...over,
  };
}

function change(seq: number, actor: string, over: Partial<AuditRow> = {}): AuditRow {
  return makeAuditRow(seq, {
    type: 'change',
    subject: null,
    identity: null,
    outcome: null,
    reason: null,
    reasonCode: null,
    protocol: null,
    method: null,
    tls: null,
    actor,
    action: 'device.update',
    target: 'devices/d1',
    beforeJson: '{"status":"enabled"}',
    afterJson: '{"status":"disabled"}',
    ...over,
  });
}

const seqs = (rows: readonly AuditRow[]) => rows.map((r) => r.seq);

export function auditStoreConformance(name: string, open: () => Promise<StoreHarness>): void {
  describe(`audit store conformance: ${name}`, () => {
    const withStore = (fn: (h: StoreHarness) => Promise<void>) => runWith(open, fn);

    it(
      'keeps rows field for field, 64-bit seqs and times included; head is the last row',
      withStore(async (h) => {
        const a = h.store.audit;
        assert.equal(await a.head(), undefined);
        assert.deepEqual(await a.page(0, 10), []);
        const big = 2 ** 40;
        const rows = [
          makeAuditRow(big, { reason: 'ünïcødé ✓ "quoted" \\ back', identity: 'd'.repeat(260) }),
          change(big + 1, 'policy:iothubowner', { remote: '::ffff:10.0.0.1', beforeJson: null, afterJson: '{"a":[1,2,{"b":null}]}' }),
          makeAuditRow(big + 2, { at: 8_640_000_000_000, subject: 'policy', outcome: 'success', method: null, tls: null }),
        ];
        await a.append(rows);
        assert.deepEqual(await a.page(0, 10), rows);
        assert.deepEqual(await a.head(), { seq: big + 2, hash: rows[2]?.hash });
        assert.deepEqual(seqs(await a.page(big, 10)), [big + 1, big + 2]);
        assert.deepEqual(seqs(await a.page(0, 2)), [big, big + 1]);
        await a.append([]);
        assert.equal((await a.page(0, 10)).length, 3);
      }),
    );

    it(
      'an append whose first seq is not above the last is refused whole; racing writers: one wins',
      withStore(async (h) => {
        const a = h.store.audit;
        await a.append([makeAuditRow(1), makeAuditRow(2)]);
        await rejectsWith(a.append([makeAuditRow(2), makeAuditRow(3)]), 'PreconditionFailed');
        await rejectsWith(a.append([makeAuditRow(1)]), 'PreconditionFailed');
        assert.deepEqual(seqs(await a.page(0, 10)), [1, 2]);
        // A batch that collides inside (a duplicate seq) leaves nothing behind either.
        await rejectsWith(a.append([makeAuditRow(3), makeAuditRow(3)]), 'PreconditionFailed');
        assert.deepEqual(seqs(await a.page(0, 10)), [1, 2]);
        const results = await Promise.allSettled([
          a.append([makeAuditRow(3, { reason: 'writer A' }), makeAuditRow(4)]),
          a.append([makeAuditRow(3, { reason: 'writer B' }), makeAuditRow(4)]),
        ]);
        assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
        const rows = await a.page(0, 10);
        assert.deepEqual(seqs(rows), [1, 2, 3, 4]);
      }),
    );

    it(
      'queries newest first by time, identity, outcome, type and actor, with a seq cursor and a limit',
      withStore(async (h) => {
        const a = h.store.audit;
        const rows: AuditRow[] = [];
        for (let s = 1; s <= 12; s++) rows.push(makeAuditRow(s));
        rows.push(change(13, 'policy:iothubowner'), change(14, 'cli:root'), change(15, 'policy:iothubowner'));
        await a.append(rows);
        assert.deepEqual(seqs(await a.query({ limit: 4 })), [15, 14, 13, 12]);
        assert.deepEqual(seqs(await a.query({ limit: 4, before: 13 })), [12, 11, 10, 9]);
        assert.deepEqual(seqs(await a.query({ limit: 100, identity: 'dev-1' })), [10, 7, 4, 1]);
        assert.deepEqual(seqs(await a.query({ limit: 100, identity: 'dev-1', outcome: 'failure' })), [7, 1]);
        assert.deepEqual(seqs(await a.query({ limit: 100, type: 'change' })), [15, 14, 13]);
        assert.deepEqual(seqs(await a.query({ limit: 100, actor: 'policy:iothubowner' })), [15, 13]);
        assert.deepEqual(seqs(await a.query({ limit: 100, type: 'auth', outcome: 'success', before: 9 })), [8, 6, 4, 2]);
        // from inclusive, to exclusive.
        assert.deepEqual(seqs(await a.query({ limit: 100, from: T0 + 3000, to: T0 + 6000 })), [5, 4, 3]);
        assert.deepEqual(seqs(await a.query({ limit: 100, identity: 'nobody' })), []);
      }),
    );

    it(
      'retention cuts a prefix by seq, even when a later seq carries an earlier time, and keeps the newest row',
      withStore(async (h) => {
        const a = h.store.audit;
        assert.equal(await a.retentionBoundary(T0), undefined);
        // seq 5 happened (by its clock) before seq 4.
        await a.append([1, 2, 3, 4, 5, 6].map((s) => makeAuditRow(s, { at: s === 5 ? T0 + 3500 : T0 + s * 1000 })));
        const boundary = await a.retentionBoundary(T0 + 4000);
        const row4 = (await a.page(3, 1))[0];
        assert.deepEqual(boundary, { seq: 4, prevHash: row4?.prevHash });
        assert.equal(await a.deleteBefore(4), 3);
        assert.deepEqual(seqs(await a.page(0, 10)), [4, 5, 6]);
        // Everything older than the cutoff: the newest row stays.
        const last = await a.retentionBoundary(T0 + 1_000_000);
        assert.equal(last?.seq, 6);
        assert.equal(await a.deleteBefore(6), 2);
        assert.deepEqual(seqs(await a.page(0, 10)), [6]);
        assert.equal(await a.deleteBefore(6), 0);
        // Appending continues above the head.
        await a.append([makeAuditRow(7)]);
        assert.deepEqual((await a.head())?.seq, 7);
      }),
    );
  });
}
