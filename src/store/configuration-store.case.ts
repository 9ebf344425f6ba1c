/**
 * The configuration store contract (configuration-ports.ts), run on every backend: insert refuses
 * a taken id and a full hub (also when writers race for the last place), replace and delete go by
 * the etag, results change without moving it; a twin keeps its `configurations` section. Imported
 * only by tests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HubError } from '../core/errors.js';
import type { ConfigurationRecord } from './configuration-ports.js';
import { makeDevice, makeTwin, runWith, type StoreHarness } from './store.case.js';

function config(id: string, etag = `e-${id}`): ConfigurationRecord {
  return {
    id,
    schemaVersion: '1.0',
    labels: { team: 'a' },
    content: { deviceContent: { 'properties.desired.x': 1 } },
    contentType: null,
    targetCondition: "tags.env = 'prod'",
    priority: 5,
    metricQueries: { m: 'SELECT deviceId FROM devices' },
    createdTimeUtc: '2026-01-01T00:00:00.000Z',
    lastUpdatedTimeUtc: '2026-01-01T00:00:00.000Z',
    etag,
  };
}

const code = (c: string) => (err: unknown) => err instanceof HubError && err.code === c;

export function configurationStoreConformance(name: string, open: () => Promise<StoreHarness>): void {
  describe(`configuration store conformance: ${name}`, () => {
    const withStore = (fn: (h: StoreHarness) => Promise<void>) => runWith(open, fn);

    it(
      'inserts, reads back, lists by id; refuses a taken id',
      withStore(async ({ store }) => {
        const s = store.configurations;
        await s.insert(config('b'), 100);
        await s.insert(config('a'), 100);
        assert.deepEqual((await s.get('b'))?.record, config('b'));
        assert.equal((await s.get('b'))?.results, null);
        assert.deepEqual((await s.list()).map((c) => c.record.id), ['a', 'b']);
        await assert.rejects(s.insert(config('a'), 100), code('ConfigurationAlreadyExists'));
        assert.equal(await s.get('zzz'), undefined);
      }),
    );

    it(
      'replaces and deletes only under the current etag (or *); results leave the etag alone',
      withStore(async ({ store }) => {
        const s = store.configurations;
        await s.insert(config('c'), 100);
        await assert.rejects(s.replace({ ...config('c', 'e2'), priority: 9 }, 'stale'), code('PreconditionFailed'));
        await s.replace({ ...config('c', 'e2'), priority: 9 }, 'e-c');
        assert.equal((await s.get('c'))?.record.priority, 9);
        await s.replace({ ...config('c', 'e3'), priority: 10 }, '*');
        assert.ok(await s.putResults('c', { system: { targetedCount: 3, appliedCount: 2 }, custom: { m: 1 } }, 1234));
        const got = await s.get('c');
        assert.equal(got?.record.etag, 'e3');
        assert.deepEqual(got?.results, { system: { targetedCount: 3, appliedCount: 2 }, custom: { m: 1 } });
        assert.equal(got?.resultsAt, 1234);
        await assert.rejects(s.delete('c', 'e2'), code('PreconditionFailed'));
        await s.delete('c', 'e3');
        await assert.rejects(s.delete('c', '*'), code('ConfigurationNotFound'));
        await assert.rejects(s.replace(config('c'), '*'), code('ConfigurationNotFound'));
        assert.equal(await s.putResults('c', { system: {}, custom: {} }, 1), false);
      }),
    );

    it(
      'never holds more than the limit, even when writers race for the last places',
      withStore(async ({ store }) => {
        const s = store.configurations;
        for (let i = 0; i < 3; i++) await s.insert(config(`l${i}`), 5);
        const outcomes = await Promise.allSettled([0, 1, 2, 3, 4, 5].map((i) => s.insert(config(`race${i}`), 5)));
        assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 2);
        for (const o of outcomes) if (o.status === 'rejected') assert.ok(code('IotHubQuotaExceeded')(o.reason), String(o.reason));
        assert.equal((await s.list()).length, 5);
      }),
    );

    it(
      "keeps a twin's configurations section through replaceTwin, and reads none for a twin without",
      withStore(async ({ store }) => {
        await store.createDevice(makeDevice('cfg-dev'), makeTwin('cfg-dev'));
        const twin = await store.getTwin('cfg-dev', null);
        assert.ok(twin);
        assert.equal(twin.configurations, undefined);
        await store.replaceTwin({ ...twin, etag: 't2', configurations: { a: { status: 'Applied' } } }, twin.etag);
        assert.deepEqual((await store.getTwin('cfg-dev', null))?.configurations, { a: { status: 'Applied' } });
        const [scanned] = await store.scanTwins({ kind: 'devices', limit: 10 });
        assert.deepEqual(scanned?.twin.configurations, { a: { status: 'Applied' } });
      }),
    );
  });
}
