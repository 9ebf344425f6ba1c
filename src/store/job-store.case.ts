/**
 * The job store contract (job-ports.ts), run on every backend: ids and the unfinished-job limit,
 * one lease holder at a time (a lapsed lease can be taken over, a released one at once), device
 * rows added idempotently (a resumed expansion), outcomes recorded once, statistics, finishing
 * cancels what is pending, and the `devices.jobs` scan order. Imported only by tests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HubError } from '../core/errors.js';
import type { JobRecord } from './job-ports.js';
import { makeDevice, makeTwin, runWith, type StoreHarness } from './store.case.js';

function job(jobId: string, startTime = '2026-01-01T00:00:00.000Z'): JobRecord {
  return {
    jobId,
    type: 'scheduleUpdateTwin',
    queryCondition: '*',
    updateTwin: { tags: { a: 1 } },
    cloudToDeviceMethod: null,
    maxExecutionTimeInSeconds: 60,
    status: 'queued',
    createdTime: `2026-01-01T00:00:00.00${jobId.length % 10}Z`,
    startTime,
    endTime: null,
    failureReason: null,
    statusMessage: null,
    expanded: false,
  };
}

const code = (c: string) => (err: unknown) => err instanceof HubError && err.code === c;
const NOW = Date.parse('2026-01-01T00:01:00.000Z');

export function jobStoreConformance(name: string, open: () => Promise<StoreHarness>): void {
  describe(`job store conformance: ${name}`, () => {
    const withStore = (fn: (h: StoreHarness) => Promise<void>) => runWith(open, fn);

    it(
      'refuses a taken id and more unfinished jobs than the limit',
      withStore(async ({ store }) => {
        const s = store.jobs;
        await s.insert(job('a'), 2);
        await assert.rejects(s.insert(job('a'), 2), code('JobAlreadyExists'));
        await s.insert(job('bb'), 2);
        await assert.rejects(s.insert(job('ccc'), 2), code('JobQuotaExceeded'));
        assert.equal(await s.finish('a', 'cancelled', '2026-01-01T00:00:01.000Z', null), true);
        assert.equal(await s.finish('a', 'completed', '2026-01-01T00:00:02.000Z', null), false, 'a finished job stays finished');
        await s.insert(job('ccc'), 2);
        assert.deepEqual((await s.list({ limit: 10 })).map((j) => j.jobId), ['a', 'bb', 'ccc']);
        assert.deepEqual((await s.list({ status: 'queued', limit: 10 })).map((j) => j.jobId), ['bb', 'ccc']);
        assert.equal((await s.get('a'))?.status, 'cancelled');
      }),
    );

    it(
      'one lease holder at a time; a lapsed or released lease is taken over',
      withStore(async ({ store }) => {
        const s = store.jobs;
        await s.insert(job('j'), 10);
        await s.insert(job('later', '2026-01-01T01:00:00.000Z'), 10);
        assert.deepEqual((await s.due(NOW, 'n1', 10)).map((j) => j.jobId), ['j'], 'a job whose start is ahead is not due');
        const claims = await Promise.all(['n1', 'n2', 'n3'].map((n) => s.claim('j', n, NOW, NOW + 10_000)));
        assert.equal(claims.filter(Boolean).length, 1);
        const holder = ['n1', 'n2', 'n3'][claims.indexOf(true)] ?? '';
        const other = holder === 'n1' ? 'n2' : 'n1';
        assert.equal(await s.claim('j', holder, NOW + 1000, NOW + 11_000), true, 'the holder renews');
        assert.deepEqual(await s.due(NOW + 1000, other, 10), []);
        assert.equal(await s.claim('j', other, NOW + 12_000, NOW + 22_000), true, 'a lapsed lease is taken over');
        await s.release('j', other);
        assert.equal(await s.claim('j', holder, NOW + 12_001, NOW + 22_001), true, 'a released lease is free at once');
      }),
    );

    it(
      "a condition without WHERE: every registry device's row, page by page, idempotently",
      withStore(async ({ store }) => {
        for (const id of ['r3', 'r1', 'r2']) await store.createDevice(makeDevice(id), makeTwin(id));
        const s = store.jobs;
        const j = job('all');
        await s.insert(j, 10);
        const at = '2026-01-01T00:00:05.000Z';
        assert.equal(await s.addRegistryDevices(j, '', 2, at), 'r2');
        assert.equal(await s.addRegistryDevices(j, '', 2, at), 'r2', 'a resumed expansion adds nothing twice');
        assert.equal(await s.addRegistryDevices(j, 'r2', 2, at), 'r3');
        assert.equal(await s.addRegistryDevices(j, 'r3', 2, at), undefined);
        assert.deepEqual(await s.nextDevices('all', 10), ['r1', 'r2', 'r3']);
        assert.equal((await s.statistics('all')).pendingCount, 3);
      }),
    );

    it(
      'device rows: added once, done in batches, counted; finishing cancels the rest',
      withStore(async ({ store }) => {
        const s = store.jobs;
        const j = job('x');
        await s.insert(j, 10);
        const at = '2026-01-01T00:00:05.000Z';
        await s.addDevices(j, ['d3', 'd1', 'd2'], at, false);
        await s.addDevices(j, ['d1', 'd4'], at, true);
        assert.equal((await s.get('x'))?.expanded, true);
        assert.deepEqual(await s.nextDevices('x', 2), ['d1', 'd2']);
        await s.markRunning('x', ['d1', 'd2'], at);
        assert.equal((await s.statistics('x')).runningCount, 2);
        assert.deepEqual(await s.nextDevices('x', 2), ['d1', 'd2'], 'rows left running by a crash are done again');
        await s.recordResults(
          'x',
          [
            { deviceId: 'd1', status: 'completed', startTimeUtc: at, endTimeUtc: at, outcome: null, error: null },
            { deviceId: 'd2', status: 'failed', startTimeUtc: at, endTimeUtc: at, outcome: null, error: { code: 'DeviceNotFound', description: 'gone' } },
          ],
          at,
        );
        assert.deepEqual(await s.statistics('x'), { deviceCount: 4, failedCount: 1, succeededCount: 1, runningCount: 0, pendingCount: 2 });
        assert.deepEqual(await s.nextDevices('x', 10), ['d3', 'd4']);
        assert.deepEqual(await s.nextDevices('x', 10, 'd3'), ['d4'], 'after a cursor');
        assert.equal(await s.finish('x', 'cancelled', at, null), true);
        assert.deepEqual(await s.statistics('x'), { deviceCount: 4, failedCount: 1, succeededCount: 1, runningCount: 0, pendingCount: 0 });
        // A batch that was in flight when the job was cancelled is not recorded over the cancel.
        await s.recordResults('x', [{ deviceId: 'd3', status: 'completed', startTimeUtc: at, endTimeUtc: at, outcome: { deviceMethodResponse: { status: 200, payload: null } }, error: null }], at);
        const rows = await s.scanDeviceJobs({ limit: 10 });
        assert.deepEqual(rows.map((r) => [r.deviceId, r.status]), [['d1', 'completed'], ['d2', 'failed'], ['d3', 'canceled'], ['d4', 'canceled']]);
        assert.deepEqual(rows[1]?.error, { code: 'DeviceNotFound', description: 'gone' });
        assert.deepEqual((await s.scanDeviceJobs({ after: { deviceId: 'd2', jobId: 'x' }, limit: 1 })).map((r) => r.deviceId), ['d3']);
      }),
    );
  });
}
