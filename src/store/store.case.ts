/**
 * The store contract, one suite for every backend (SQLite, PostgreSQL). A backend is done when
 * this passes unchanged. Imported only by tests.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { HubError } from '../core/errors.js';
import { NEVER, newEtag, newGenerationId } from '../core/ids.js';
import type { Authentication, DeviceRecord, ModuleRecord, SharedAccessPolicy, TwinState } from '../core/types.js';
import { emptyTwin } from '../core/twin-state.js';
import type { Store } from './ports.js';

export interface StoreHarness {
  store: Store;
  /** Every byte the backend keeps for this store, as text: to prove secrets are not in clear. */
  rawContent(): Promise<string>;
  close(): Promise<void>;
}

function sasAuth(): Authentication {
  return {
    type: 'sas',
    primaryKey: randomBytes(32).toString('base64'),
    secondaryKey: randomBytes(32).toString('base64'),
    primaryThumbprint: null,
    secondaryThumbprint: null,
  };
}

export function makeDevice(deviceId: string, over: Partial<DeviceRecord> = {}): DeviceRecord {
  return {
    deviceId,
    generationId: newGenerationId(),
    etag: newEtag(),
    status: 'enabled',
    statusReason: null,
    statusUpdatedTime: NEVER,
    auth: sasAuth(),
    iotEdge: false,
    deviceScope: null,
    parentScopes: [],
    connectionState: 'Disconnected',
    connectionStateUpdatedTime: NEVER,
    lastActivityTime: NEVER,
    cloudToDeviceMessageCount: 0,
    origin: { kind: 'registry' },
    ...over,
  };
}

export function makeModule(deviceId: string, moduleId: string): ModuleRecord {
  return {
    deviceId,
    moduleId,
    generationId: newGenerationId(),
    etag: newEtag(),
    managedBy: null,
    auth: sasAuth(),
    connectionState: 'Disconnected',
    connectionStateUpdatedTime: NEVER,
    lastActivityTime: NEVER,
    cloudToDeviceMessageCount: 0,
  };
}

export function makeTwin(deviceId: string, moduleId: string | null = null): TwinState {
  return emptyTwin(deviceId, moduleId, new Date().toISOString());
}

/** The promise fails with a HubError of this code. Shared by every *.case.ts. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof HubError, `expected HubError ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

/** A test body run against a fresh harness, closed afterwards whatever happens. */
export function runWith<H extends { close(): Promise<void> }>(open: () => Promise<H>, fn: (h: H) => Promise<void>): () => Promise<void> {
  return async () => {
    const h = await open();
    try {
      await fn(h);
    } finally {
      await h.close();
    }
  };
}

export function storeConformance(name: string, open: () => Promise<StoreHarness>): void {
  describe(`store conformance: ${name}`, () => {
    const withStore = (fn: (h: StoreHarness) => Promise<void>) => runWith(open, fn);

    it(
      'creates a device with its twin and reads both back',
      withStore(async ({ store }) => {
        const d = makeDevice('dev-1', { parentScopes: ['scope-a'], deviceScope: 'ds', iotEdge: true });
        await store.createDevice(d, makeTwin('dev-1'));
        assert.deepEqual(await store.getDevice('dev-1'), d);
        assert.deepEqual(await store.findDevice('dev-1'), d);
        const twin = await store.getTwin('dev-1', null);
        assert.equal(twin?.deviceId, 'dev-1');
        assert.equal(twin?.moduleId, null);
        assert.equal(await store.getDevice('DEV-1'), undefined, 'device ids are case-sensitive');
      }),
    );

    it(
      'refuses a second device with the same id and keeps the first',
      withStore(async ({ store }) => {
        const d = makeDevice('dup');
        await store.createDevice(d, makeTwin('dup'));
        await rejectsWith(store.createDevice(makeDevice('dup'), makeTwin('dup')), 'DeviceAlreadyExists');
        assert.deepEqual((await store.getDevice('dup'))?.auth, d.auth);
      }),
    );

    it(
      "keeps each device's origin: the registry, an individual enrollment, a group, or unknown",
      withStore(async ({ store }) => {
        const origins = [
          { kind: 'registry' },
          { kind: 'individual', registrationId: 'Reg:01.a' },
          { kind: 'group', enrollmentGroupId: 'Line-A' },
          { kind: 'unknown' },
        ] as const;
        for (const [i, origin] of origins.entries()) await store.createDevice(makeDevice(`o-${i}`, { origin }), makeTwin(`o-${i}`));
        for (const [i, origin] of origins.entries()) assert.deepEqual((await store.getDevice(`o-${i}`))?.origin, origin);
        assert.deepEqual((await store.listDevices({ limit: 10 })).map((d) => d.origin), [...origins]);
        const scanned = await store.scanTwins({ kind: 'devices', limit: 10 });
        assert.deepEqual(scanned.map((e) => e.device.origin), [...origins]);
        // An unknown origin is recorded when the provisioning service finds it; a replace keeps what it is given.
        const unknown = await store.getDevice('o-3');
        assert.ok(unknown !== undefined);
        await store.replaceDevice({ ...unknown, origin: { kind: 'group', enrollmentGroupId: 'line-b' }, etag: newEtag() }, unknown.etag);
        assert.deepEqual((await store.getDevice('o-3'))?.origin, { kind: 'group', enrollmentGroupId: 'line-b' });
      }),
    );

    it(
      'replaces a device only under the current etag',
      withStore(async ({ store }) => {
        const d = makeDevice('e1');
        await store.createDevice(d, makeTwin('e1'));
        const next = { ...d, status: 'disabled' as const, etag: newEtag() };
        await rejectsWith(store.replaceDevice(next, 'stale'), 'PreconditionFailed');
        await store.replaceDevice(next, d.etag);
        assert.equal((await store.getDevice('e1'))?.status, 'disabled');
        await store.replaceDevice({ ...next, status: 'enabled', etag: newEtag() }, '*');
        assert.equal((await store.getDevice('e1'))?.status, 'enabled');
        await rejectsWith(store.replaceDevice(makeDevice('nobody'), '*'), 'DeviceNotFound');
      }),
    );

    it(
      'deletes a device with its modules and twins, under the etag',
      withStore(async ({ store }) => {
        const d = makeDevice('del');
        await store.createDevice(d, makeTwin('del'));
        await store.createModule(makeModule('del', 'm1'), makeTwin('del', 'm1'));
        await rejectsWith(store.deleteDevice('del', 'stale'), 'PreconditionFailed');
        await store.deleteDevice('del', d.etag);
        assert.equal(await store.getDevice('del'), undefined);
        assert.equal(await store.getModule('del', 'm1'), undefined);
        assert.equal(await store.getTwin('del', null), undefined);
        assert.equal(await store.getTwin('del', 'm1'), undefined);
        await rejectsWith(store.deleteDevice('del', '*'), 'DeviceNotFound');
        // The id is free again.
        await store.createDevice(makeDevice('del'), makeTwin('del'));
      }),
    );

    it(
      'lists devices in id order, page by page',
      withStore(async ({ store }) => {
        const ids = ['b', 'a', 'C', 'c-2', 'A_1', 'z'];
        for (const id of ids) await store.createDevice(makeDevice(id), makeTwin(id));
        const first = await store.listDevices({ limit: 4 });
        const rest = await store.listDevices({ after: first.at(-1)?.deviceId ?? '', limit: 4 });
        const sorted = [...ids].sort();
        assert.deepEqual(
          [...first, ...rest].map((d) => d.deviceId),
          sorted,
        );
        assert.equal(rest.length, 2);
      }),
    );

    it(
      'counts enabled and disabled devices',
      withStore(async ({ store }) => {
        assert.deepEqual(await store.deviceStatistics(), { total: 0, enabled: 0, disabled: 0 });
        await store.createDevice(makeDevice('s1'), makeTwin('s1'));
        await store.createDevice(makeDevice('s2', { status: 'disabled' }), makeTwin('s2'));
        await store.createDevice(makeDevice('s3'), makeTwin('s3'));
        assert.deepEqual(await store.deviceStatistics(), { total: 3, enabled: 2, disabled: 1 });
      }),
    );

    it(
      'records connection state without moving the etag',
      withStore(async ({ store }) => {
        const d = makeDevice('cs');
        await store.createDevice(d, makeTwin('cs'));
        await store.createModule(makeModule('cs', 'm'), makeTwin('cs', 'm'));
        await store.setConnectionState('cs', null, 'Connected', '2026-01-02T03:04:05.000Z');
        await store.setConnectionState('cs', 'm', 'Connected', '2026-01-02T03:04:06.000Z');
        await store.setConnectionState('ghost', null, 'Connected', '2026-01-02T03:04:05.000Z');
        const after = await store.getDevice('cs');
        assert.equal(after?.connectionState, 'Connected');
        assert.equal(after?.lastActivityTime, '2026-01-02T03:04:05.000Z');
        assert.equal(after?.etag, d.etag);
        assert.equal((await store.getModule('cs', 'm'))?.connectionState, 'Connected');
        // Devices only: a connected module does not count its device as connected.
        await store.createDevice(makeDevice('cs2'), makeTwin('cs2'));
        await store.createModule(makeModule('cs2', 'm'), makeTwin('cs2', 'm'));
        await store.setConnectionState('cs2', 'm', 'Connected', '2026-01-02T03:04:07.000Z');
        assert.equal(await store.connectedDeviceCount(), 1);
        await store.setConnectionState('cs', null, 'Disconnected', '2026-01-02T03:04:08.000Z');
        assert.equal(await store.connectedDeviceCount(), 0);
        // What a restart after a crash finds: states nobody ended. All go, last activity kept.
        await store.setConnectionState('cs', null, 'Connected', '2026-01-02T03:04:09.000Z');
        assert.equal(await store.resetConnectionStates('2026-01-02T03:05:00.000Z'), 3);
        const reset = await store.getDevice('cs');
        assert.equal(reset?.connectionState, 'Disconnected');
        assert.equal(reset?.connectionStateUpdatedTime, '2026-01-02T03:05:00.000Z');
        assert.equal(reset?.lastActivityTime, '2026-01-02T03:04:09.000Z');
        assert.equal((await store.getModule('cs2', 'm'))?.connectionState, 'Disconnected');
        assert.equal(await store.resetConnectionStates('2026-01-02T03:06:00.000Z'), 0);
      }),
    );

    it(
      'writes a batch of connection states in order, an unknown identity in it changing nothing',
      withStore(async ({ store }) => {
        const d = makeDevice('bs');
        await store.createDevice(d, makeTwin('bs'));
        await store.createModule(makeModule('bs', 'm'), makeTwin('bs', 'm'));
        await store.setConnectionStates([
          { deviceId: 'bs', moduleId: null, state: 'Connected', at: '2026-01-02T03:04:05.000Z' },
          { deviceId: 'ghost', moduleId: null, state: 'Connected', at: '2026-01-02T03:04:05.000Z' },
          { deviceId: 'bs', moduleId: 'm', state: 'Connected', at: '2026-01-02T03:04:06.000Z' },
          { deviceId: 'bs', moduleId: null, state: 'Disconnected', at: '2026-01-02T03:04:07.000Z' },
          { deviceId: 'bs', moduleId: null, state: 'Connected', at: '2026-01-02T03:04:08.000Z' },
        ]);
        const after = await store.getDevice('bs');
        assert.equal(after?.connectionState, 'Connected');
        assert.equal(after?.connectionStateUpdatedTime, '2026-01-02T03:04:08.000Z');
        assert.equal(after?.etag, d.etag);
        assert.equal((await store.getModule('bs', 'm'))?.connectionState, 'Connected');
        assert.equal(await store.getDevice('ghost'), undefined);
        assert.equal(await store.connectedDeviceCount(), 1);
      }),
    );

    it(
      'writes a batch larger than one statement takes (a reconnect storm)',
      withStore(async ({ store }) => {
        const ids = Array.from({ length: 1_100 }, (_, i) => `storm-${String(i).padStart(4, '0')}`);
        for (const id of ids) await store.createDevice(makeDevice(id), makeTwin(id));
        await store.setConnectionStates(ids.map((deviceId) => ({ deviceId, moduleId: null, state: 'Connected' as const, at: '2026-01-02T03:04:05.000Z' })));
        assert.equal(await store.connectedDeviceCount(), 1_100);
        const odd = ids.filter((_, i) => i % 2 === 1);
        await store.setConnectionStates(odd.map((deviceId) => ({ deviceId, moduleId: null, state: 'Disconnected' as const, at: '2026-01-02T03:04:06.000Z' })));
        assert.equal(await store.connectedDeviceCount(), 550);
        const last = await store.getDevice('storm-1099');
        assert.equal(last?.connectionState, 'Disconnected');
        assert.equal(last?.lastActivityTime, '2026-01-02T03:04:06.000Z');
        assert.equal((await store.getDevice('storm-1098'))?.connectionState, 'Connected');
      }),
    );

    it(
      'keeps modules per device with their own etags and twins',
      withStore(async ({ store }) => {
        await rejectsWith(store.createModule(makeModule('ghost', 'm'), makeTwin('ghost', 'm')), 'DeviceNotFound');
        await store.createDevice(makeDevice('host'), makeTwin('host'));
        const m1 = makeModule('host', 'm1');
        await store.createModule(m1, makeTwin('host', 'm1'));
        await store.createModule(makeModule('host', 'm0'), makeTwin('host', 'm0'));
        await rejectsWith(store.createModule(makeModule('host', 'm1'), makeTwin('host', 'm1')), 'ModuleAlreadyExistsOnDevice');
        assert.deepEqual(await store.getModule('host', 'm1'), m1);
        assert.deepEqual(
          (await store.listModules('host')).map((m) => m.moduleId),
          ['m0', 'm1'],
        );
        assert.equal(await store.countModules('host'), 2);
        await rejectsWith(store.replaceModule({ ...m1, managedBy: 'x' }, 'stale'), 'PreconditionFailed');
        await store.replaceModule({ ...m1, managedBy: 'x', etag: newEtag() }, m1.etag);
        assert.equal((await store.getModule('host', 'm1'))?.managedBy, 'x');
        await store.deleteModule('host', 'm1', '*');
        assert.equal(await store.getModule('host', 'm1'), undefined);
        assert.equal(await store.getTwin('host', 'm1'), undefined);
        await rejectsWith(store.deleteModule('host', 'm1', '*'), 'ModuleNotFound');
        assert.ok(await store.getTwin('host', null), 'the device twin stays');
      }),
    );

    it(
      'swaps a twin only under the etag it was read with',
      withStore(async ({ store }) => {
        await store.createDevice(makeDevice('tw'), makeTwin('tw'));
        const t = await store.getTwin('tw', null);
        assert.ok(t);
        const next: TwinState = { ...t, etag: newEtag(), version: t.version + 1, tags: { room: 'a', n: { x: 1 } } };
        await store.replaceTwin(next, t.etag);
        await rejectsWith(store.replaceTwin({ ...next, etag: newEtag() }, t.etag), 'PreconditionFailed');
        assert.deepEqual((await store.getTwin('tw', null))?.tags, { room: 'a', n: { x: 1 } });
        await rejectsWith(store.replaceTwin({ ...makeTwin('none'), etag: 'x' }, 'y'), 'DeviceNotFound');
      }),
    );

    it(
      "reads a batch's device twins at once and writes their service sections under each one's etag",
      withStore(async ({ store }) => {
        for (const id of ['b1', 'b2', 'b3']) await store.createDevice(makeDevice(id), makeTwin(id));
        await store.createModule(makeModule('b1', 'm'), makeTwin('b1', 'm'));
        const twins = await store.getDeviceTwins(['b3', 'b1', 'none', 'b2']);
        assert.deepEqual(twins.map((t) => [t.deviceId, t.moduleId]).sort(), [['b1', null], ['b2', null], ['b3', null]]);
        const b2 = await store.getTwin('b2', null);
        assert.ok(b2);
        await store.replaceTwin({ ...b2, etag: newEtag(), reported: { moved: true } }, b2.etag);
        const writes = twins.map((t) => ({ twin: { ...t, etag: newEtag(), version: t.version + 1, tags: { wave: 1 }, desired: { fw: 2 }, desiredVersion: t.desiredVersion + 1, reported: { ignored: true } }, expectedEtag: t.etag }));
        const made = await store.writeServiceSections(writes);
        assert.deepEqual(new Map(writes.map((w, i) => [w.twin.deviceId, made[i]])), new Map([['b1', true], ['b2', false], ['b3', true]]), 'b2 moved since it was read');
        const b1 = await store.getTwin('b1', null);
        assert.deepEqual([b1?.tags, b1?.desired, b1?.reported, b1?.version], [{ wave: 1 }, { fw: 2 }, {}, makeTwin('b1').version + 1], 'reported stays as stored');
        assert.deepEqual((await store.getTwin('b2', null))?.tags, {});
        assert.deepEqual((await store.getTwin('b1', 'm'))?.tags, {}, 'a module twin is not a device twin');
      }),
    );

    it(
      'scans device and module twins in key order with a cursor',
      withStore(async ({ store }) => {
        for (const id of ['d3', 'd1', 'd2']) await store.createDevice(makeDevice(id), makeTwin(id));
        await store.createModule(makeModule('d1', 'mb'), makeTwin('d1', 'mb'));
        await store.createModule(makeModule('d1', 'ma'), makeTwin('d1', 'ma'));
        await store.createModule(makeModule('d3', 'm'), makeTwin('d3', 'm'));
        const page1 = await store.scanTwins({ kind: 'devices', limit: 2 });
        assert.deepEqual(
          page1.map((e) => e.twin.deviceId),
          ['d1', 'd2'],
        );
        assert.equal(page1[0]?.device.deviceId, 'd1');
        const page2 = await store.scanTwins({ kind: 'devices', after: { deviceId: 'd2', moduleId: '' }, limit: 2 });
        assert.deepEqual(
          page2.map((e) => e.twin.deviceId),
          ['d3'],
        );
        const mods = await store.scanTwins({ kind: 'modules', limit: 2 });
        assert.deepEqual(
          mods.map((e) => `${e.twin.deviceId}/${e.module?.moduleId ?? ''}`),
          ['d1/ma', 'd1/mb'],
        );
        const mods2 = await store.scanTwins({ kind: 'modules', after: { deviceId: 'd1', moduleId: 'mb' }, limit: 5 });
        assert.deepEqual(
          mods2.map((e) => `${e.twin.deviceId}/${e.twin.moduleId ?? ''}`),
          ['d3/m'],
        );
      }),
    );

    it(
      'stores shared access policies with etags',
      withStore(async ({ store }) => {
        const p: SharedAccessPolicy = {
          name: 'service',
          primaryKey: randomBytes(32).toString('base64'),
          secondaryKey: randomBytes(32).toString('base64'),
          rights: ['ServiceConnect'],
          etag: newEtag(),
        };
        await store.putPolicy(p);
        assert.deepEqual(await store.getPolicy('service'), p);
        assert.deepEqual(await store.findPolicy('service'), p);
        await assert.rejects(store.putPolicy(p));
        const next = { ...p, rights: ['ServiceConnect', 'RegistryRead'] as SharedAccessPolicy['rights'], etag: newEtag() };
        await rejectsWith(store.putPolicy(next, 'stale'), 'PreconditionFailed');
        await store.putPolicy(next, p.etag);
        await rejectsWith(store.deletePolicy(next.name, 'stale'), 'PreconditionFailed');
        await store.deletePolicy(next.name, next.etag);
        assert.equal(await store.getPolicy(next.name), undefined);
        await rejectsWith(store.deletePolicy(next.name, '*'), 'PolicyNotFound');
        await store.putPolicy(next);
        assert.deepEqual((await store.listPolicies()).map((x) => x.rights), [['ServiceConnect', 'RegistryRead']]);
        assert.equal(await store.getPolicy('nope'), undefined);
      }),
    );

    it(
      'keeps meta values, secret ones sealed',
      withStore(async ({ store }) => {
        assert.equal(await store.getMeta('k'), undefined);
        await store.setMeta('k', 'v1');
        await store.setMeta('k', 'v2');
        assert.equal(await store.getMeta('k'), 'v2');
        await store.setSecretMeta('ca-key', 'TOP-SECRET-VALUE-123');
        assert.equal(await store.getSecretMeta('ca-key'), 'TOP-SECRET-VALUE-123');
      }),
    );

    it(
      'keeps the first of concurrent insert-if-absent meta writes, and every writer reads that one back',
      withStore(async ({ store }) => {
        const plain = await Promise.all(Array.from({ length: 8 }, (_, i) => store.insertMetaIfAbsent('hub.id', `id-${i}`)));
        assert.equal(new Set(plain).size, 1, 'all writers got the same value');
        assert.equal(await store.getMeta('hub.id'), plain[0]);
        const secret = await Promise.all(Array.from({ length: 8 }, (_, i) => store.insertSecretMetaIfAbsent('signing-key', `key-${i}`)));
        assert.equal(new Set(secret).size, 1);
        assert.match(secret[0] ?? '', /^key-\d$/);
        assert.equal(await store.getSecretMeta('signing-key'), secret[0]);
        // An existing value is never replaced.
        assert.equal(await store.insertMetaIfAbsent('hub.id', 'later'), plain[0]);
        await store.setMeta('other', 'set');
        assert.equal(await store.insertMetaIfAbsent('other', 'later'), 'set');
      }),
    );

    it(
      'compare-and-set of a meta value lets exactly one of the writers of one version win',
      withStore(async ({ store }) => {
        const first = await Promise.all(Array.from({ length: 6 }, (_, i) => store.compareAndSetMeta('doc', undefined, `v1-${i}`)));
        assert.equal(first.filter(Boolean).length, 1, 'one creates it');
        const v1 = await store.getMeta('doc');
        assert.ok(v1 !== undefined);
        const second = await Promise.all(Array.from({ length: 6 }, (_, i) => store.compareAndSetMeta('doc', v1, `v2-${i}`)));
        assert.equal(second.filter(Boolean).length, 1, 'one replaces that version');
        assert.equal(await store.getMeta('doc'), `v2-${second.indexOf(true)}`);
        assert.equal(await store.compareAndSetMeta('doc', v1, 'stale'), false, 'a write on an old version is refused');
        assert.equal(await store.compareAndSetMeta('doc', undefined, 'again'), false);
      }),
    );

    it(
      'never keeps a key in clear text',
      withStore(async (h) => {
        const d = makeDevice('secretive');
        await h.store.createDevice(d, makeTwin('secretive'));
        const m = makeModule('secretive', 'mod');
        await h.store.createModule(m, makeTwin('secretive', 'mod'));
        const policyKey = randomBytes(32).toString('base64');
        await h.store.putPolicy({ name: 'p', primaryKey: policyKey, secondaryKey: policyKey, rights: ['RegistryRead'], etag: 'e' });
        await h.store.setSecretMeta('x', 'PLAINTEXT-MARKER-9f8e7d');
        const raw = await h.rawContent();
        assert.ok(raw.includes('secretive'), 'the raw dump sees the data');
        for (const secret of [d.auth.primaryKey, d.auth.secondaryKey, m.auth.primaryKey, policyKey, 'PLAINTEXT-MARKER-9f8e7d']) {
          assert.ok(secret);
          assert.ok(!raw.includes(secret), 'a secret is stored in clear text');
          assert.ok(!raw.includes(Buffer.from(secret, 'base64').toString('hex')), 'a secret is stored as hex');
        }
      }),
    );

    it(
      'lets only one of two concurrent creates of the same device win',
      withStore(async ({ store }) => {
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, () => store.createDevice(makeDevice('race'), makeTwin('race'))),
        );
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        for (const r of results) {
          if (r.status === 'rejected') assert.equal((r.reason as HubError).code, 'DeviceAlreadyExists');
        }
      }),
    );
  });
}
