/**
 * The AlertStore contract (alert-ports.ts), one suite for every backend. Imported only by tests.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type { AlertRecord, AlertRuleRecord } from './alert-ports.js';
import type { Store } from './ports.js';
import { rejectsWith, runWith } from './store.case.js';

/** Same factory shape as storeConformance's harness; `rawContent` shows what is at rest. */
export interface AlertStoreHarness {
  store: Store;
  rawContent(): Promise<string>;
  close(): Promise<void>;
}

const T0 = '2030-01-01T00:00:00.000Z';

function rule(name: string, over: Partial<AlertRuleRecord> = {}): AlertRuleRecord {
  return {
    name,
    kind: 'authFailures',
    enabled: true,
    scope: 'hub',
    reasons: null,
    threshold: 10,
    windowSeconds: 600,
    days: null,
    log: true,
    webhookUrl: null,
    webhookSecret: null,
    created: T0,
    updated: T0,
    ...over,
  };
}

function alert(ruleName: string, over: Partial<AlertRecord> = {}): AlertRecord {
  return {
    id: randomUUID(),
    rule: ruleName,
    kind: 'authFailures',
    key: 'hub',
    state: 'fired',
    value: 11,
    threshold: 10,
    windowSeconds: 600,
    firedAt: T0,
    resolvedAt: null,
    summary: '11 failed authentications in 600 s',
    details: { reasons: { bad_credentials: 11 } },
    deliveries: 0,
    lastDelivery: null,
    ...over,
  };
}

export function alertStoreConformance(name: string, open: () => Promise<AlertStoreHarness>): void {
  describe(`alert store conformance: ${name}`, () => {
    it(
      'keeps rules field for field, ordered by name; put replaces but keeps created; delete',
      runWith(open, async ({ store }) => {
        const a = rule('b-hub');
        const b = rule('a-certs', { kind: 'certificateExpiry', scope: null, threshold: null, windowSeconds: null, days: 30, log: false, enabled: false });
        const c = rule('c-storm', { kind: 'disconnectStorm', scope: null, threshold: 100, windowSeconds: 60, webhookUrl: 'https://hooks.example/x' });
        for (const r of [a, b, c]) await store.alerts.putRule(r);
        assert.deepEqual(await store.alerts.listRules(), [b, a, c]);
        assert.deepEqual(await store.alerts.getRule('c-storm'), c);
        assert.equal(await store.alerts.getRule('C-STORM'), undefined, 'names are case-sensitive');

        const changed = { ...a, scope: 'device' as const, reasons: ['cross_device', 'tls_version'], threshold: 3, windowSeconds: 10_000_000, created: '2031-01-01T00:00:00.000Z', updated: '2031-01-01T00:00:00.000Z' };
        await store.alerts.putRule(changed);
        assert.deepEqual(await store.alerts.getRule('b-hub'), { ...changed, created: T0 }, 'created stays');

        assert.equal(await store.alerts.deleteRule('b-hub'), true);
        assert.equal(await store.alerts.deleteRule('b-hub'), false);
        assert.deepEqual((await store.alerts.listRules()).map((r) => r.name), ['a-certs', 'c-storm']);
      }),
    );

    it(
      'addRuleIfAbsent inserts once and never overwrites',
      runWith(open, async ({ store }) => {
        assert.equal(await store.alerts.addRuleIfAbsent(rule('r')), true);
        assert.equal(await store.alerts.addRuleIfAbsent(rule('r', { threshold: 99 })), false);
        assert.equal((await store.alerts.getRule('r'))?.threshold, 10);
      }),
    );

    it(
      'seals the webhook secret at rest and gives it back',
      runWith(open, async (h) => {
        const secret = `whsec-${randomUUID()}`;
        await h.store.alerts.putRule(rule('hooked', { webhookUrl: 'https://hooks.example/in', webhookSecret: secret }));
        assert.equal((await h.store.alerts.getRule('hooked'))?.webhookSecret, secret);
        assert.ok(!(await h.rawContent()).includes(secret), 'the secret is not stored in the clear');
        await h.store.alerts.putRule(rule('hooked', { webhookUrl: 'https://hooks.example/in', webhookSecret: null }));
        assert.equal((await h.store.alerts.getRule('hooked'))?.webhookSecret, null);
      }),
    );

    it(
      'keeps alerts field for field, newest first, filtered by state and rule',
      runWith(open, async ({ store }) => {
        const first = alert('r1', { details: { nested: { list: [1, 'two', null] } } });
        const second = alert('r2', { kind: 'certificateExpiry', key: 'ca:root', value: -3, threshold: 30, windowSeconds: null, firedAt: '2030-01-02T00:00:00.000Z' });
        const third = alert('r1', { key: 'device:d1', firedAt: '2030-01-03T00:00:00.000Z' });
        for (const a of [first, second, third]) await store.alerts.insertAlert(a);
        assert.deepEqual(await store.alerts.getAlert(first.id), first);
        assert.deepEqual(await store.alerts.getAlert(second.id), second);
        assert.equal(await store.alerts.getAlert('nope'), undefined);
        assert.deepEqual((await store.alerts.listAlerts({ limit: 10 })).map((a) => a.id), [third.id, second.id, first.id]);
        assert.deepEqual((await store.alerts.listAlerts({ limit: 2 })).map((a) => a.id), [third.id, second.id]);
        assert.deepEqual((await store.alerts.listAlerts({ rule: 'r1', limit: 10 })).map((a) => a.id), [third.id, first.id]);
        await rejectsWith(store.alerts.insertAlert(first), 'InvalidOperation');

        assert.equal(await store.alerts.resolveAlert(first.id, { value: 4, resolvedAt: '2030-01-04T00:00:00.000Z', summary: 'back to 4' }), true);
        assert.equal(await store.alerts.resolveAlert(first.id, { value: 0, resolvedAt: '2030-01-05T00:00:00.000Z', summary: 'again' }), false, 'resolves once');
        assert.equal(await store.alerts.resolveAlert('nope', { value: 0, resolvedAt: T0, summary: '' }), false);
        assert.deepEqual(await store.alerts.getAlert(first.id), { ...first, state: 'resolved', value: 4, resolvedAt: '2030-01-04T00:00:00.000Z', summary: 'back to 4' });
        assert.deepEqual((await store.alerts.listAlerts({ state: 'fired', limit: 10 })).map((a) => a.id), [third.id, second.id]);
        assert.deepEqual((await store.alerts.listAlerts({ state: 'resolved', limit: 10 })).map((a) => a.id), [first.id]);
        assert.deepEqual((await store.alerts.listAlerts({ state: 'resolved', rule: 'r2', limit: 10 })).map((a) => a.id), []);
      }),
    );

    it(
      'adds up delivery attempts and keeps the last result',
      runWith(open, async ({ store }) => {
        const a = alert('r1');
        await store.alerts.insertAlert(a);
        const failed = { at: T0, state: 'fired' as const, ok: false, attempts: 3, status: 500, error: 'HTTP 500' };
        await store.alerts.recordDelivery(a.id, 3, failed);
        assert.deepEqual((await store.alerts.getAlert(a.id))?.lastDelivery, failed);
        const ok = { at: '2030-01-01T00:10:00.000Z', state: 'resolved' as const, ok: true, attempts: 1, status: 204, error: null };
        await store.alerts.recordDelivery(a.id, 1, ok);
        const got = await store.alerts.getAlert(a.id);
        assert.equal(got?.deliveries, 4);
        assert.deepEqual(got?.lastDelivery, ok);
        await store.alerts.recordDelivery('nope', 1, ok); // unknown id: nothing to update, no error
      }),
    );

    it(
      'prunes only alerts resolved before the cut-off',
      runWith(open, async ({ store }) => {
        const old = alert('r');
        const recent = alert('r');
        const open_ = alert('r', { firedAt: '2020-01-01T00:00:00.000Z' });
        for (const a of [old, recent, open_]) await store.alerts.insertAlert(a);
        await store.alerts.resolveAlert(old.id, { value: 0, resolvedAt: '2030-01-01T01:00:00.000Z', summary: 'ok' });
        await store.alerts.resolveAlert(recent.id, { value: 0, resolvedAt: '2030-02-01T00:00:00.000Z', summary: 'ok' });
        assert.equal(await store.alerts.pruneResolved('2030-01-15T00:00:00.000Z'), 1);
        assert.deepEqual((await store.alerts.listAlerts({ limit: 10 })).map((a) => a.id).sort(), [recent.id, open_.id].sort());
      }),
    );
  });
}
