/**
 * The connect path's identity cache and connection-state batches, in process (the cluster side is
 * identity-cache-cluster.test.ts): what a cache must never do (keep a changed identity, keep a
 * read that raced a change, remember unknown ids, grow without bound) and what the batches must
 * keep (the last word per identity, one transaction per turn).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SUBJECTS } from '../src/bus/subjects.js';
import type { DeviceRecord, ModuleRecord } from '../src/core/types.js';
import { IdentityCache, type IdentitySource } from '../src/hub/identity-cache.js';
import { ConnectionStateWriter } from '../src/hub/connection-state-writer.js';
import type { ConnectionStateChange } from '../src/store/ports.js';
import { makeDevice } from '../src/store/store.case.js';
import { testBus } from './support/test-bus.js';

const tick = () => new Promise((r) => setImmediate(r));

function device(id: string, status: 'enabled' | 'disabled' = 'enabled', key = 'k1'): DeviceRecord {
  return makeDevice(id, { status, auth: { type: 'sas', primaryKey: key, secondaryKey: key, primaryThumbprint: null, secondaryThumbprint: null } });
}

/** A store of devices that counts its reads, and can hold a read until told. */
function source() {
  const devices = new Map<string, DeviceRecord>();
  const modules = new Map<string, ModuleRecord>();
  let reads = 0;
  let hold: Promise<void> | undefined;
  const src: IdentitySource = {
    async findDevice(id) {
      reads++;
      const d = devices.get(id);
      if (hold !== undefined) await hold;
      return d;
    },
    async findModule(id, m) {
      reads++;
      return modules.get(`${id}/${m}`);
    },
    async findPolicy() {
      return undefined;
    },
  };
  return {
    src,
    devices,
    modules,
    reads: () => reads,
    holdReads(): () => void {
      let release!: () => void;
      hold = new Promise((r) => (release = r));
      return () => {
        hold = undefined;
        release();
      };
    },
  };
}

const clock = (start = 1_000_000) => {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
};

describe('identity cache', () => {
  it('serves a known device from memory, and reads it again once the bus says it changed (any node)', async () => {
    const s = source();
    const bus = testBus();
    const cache = new IdentityCache(s.src, bus, clock());
    s.devices.set('d1', device('d1'));
    assert.equal((await cache.findDevice('d1'))?.status, 'enabled');
    assert.equal((await cache.findDevice('d1'))?.status, 'enabled');
    assert.equal(s.reads(), 1);
    s.devices.set('d1', device('d1', 'disabled'));
    bus.publish(SUBJECTS.identityChanged, { kind: 'device-updated', deviceId: 'd1', credentialsOrStatus: true });
    await tick();
    assert.equal((await cache.findDevice('d1'))?.status, 'disabled');
    s.devices.delete('d1');
    bus.publish(SUBJECTS.identityChanged, { kind: 'device-deleted', deviceId: 'd1' });
    await tick();
    assert.equal(await cache.findDevice('d1'), undefined);
  });

  it('keeps only what authentication reads (no connection state, no etag)', async () => {
    const s = source();
    const cache = new IdentityCache(s.src, testBus(), clock());
    s.devices.set('d1', device('d1'));
    const got = (await cache.findDevice('d1')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(got).sort(), ['auth', 'deviceId', 'generationId', 'origin', 'status']);
  });

  it('does not keep a read that a change overtook', async () => {
    const s = source();
    const bus = testBus();
    const cache = new IdentityCache(s.src, bus, clock());
    s.devices.set('d1', device('d1'));
    const release = s.holdReads();
    const racing = cache.findDevice('d1');
    // The read saw the old record; the change lands before it returns.
    s.devices.set('d1', device('d1', 'disabled'));
    bus.publish(SUBJECTS.identityChanged, { kind: 'device-updated', deviceId: 'd1', credentialsOrStatus: true });
    await tick();
    release();
    assert.equal((await racing)?.status, 'enabled');
    assert.equal((await cache.findDevice('d1'))?.status, 'disabled', 'the next connect reads the store again');
  });

  it('answers an unknown id as it answers a known one (from memory the second time: no timing tells them apart), within the same bound, until a create is announced', async () => {
    const s = source();
    const bus = testBus();
    const cache = new IdentityCache(s.src, bus, clock(), { maxEntries: 100, ttlMs: 60_000 });
    s.devices.set('known', device('known'));
    for (const id of ['known', 'nobody']) await cache.findDevice(id);
    const reads = s.reads();
    assert.equal((await cache.findDevice('known'))?.status, 'enabled');
    assert.equal(await cache.findDevice('nobody'), undefined);
    assert.equal(s.reads(), reads, 'neither second lookup reads the store');
    for (let i = 0; i < 1000; i++) assert.equal(await cache.findDevice(`nobody-${i}`), undefined);
    assert.equal(cache.size, 100, 'a flood of names is held to maxEntries');
    // Created (here or on another node): the next connect finds it.
    s.devices.set('nobody-999', device('nobody-999'));
    bus.publish(SUBJECTS.identityChanged, { kind: 'device-updated', deviceId: 'nobody-999', credentialsOrStatus: false });
    await tick();
    assert.equal((await cache.findDevice('nobody-999'))?.status, 'enabled');
  });

  it('holds at most maxEntries, and an entry no longer than ttlMs', async () => {
    const s = source();
    const c = clock();
    const cache = new IdentityCache(s.src, testBus(), c, { maxEntries: 50, ttlMs: 1000 });
    for (let i = 0; i < 200; i++) {
      s.devices.set(`d${i}`, device(`d${i}`));
      await cache.findDevice(`d${i}`);
    }
    assert.equal(cache.size, 50);
    const before = s.reads();
    await cache.findDevice('d199');
    assert.equal(s.reads(), before, 'the newest is kept');
    c.advance(1001);
    await cache.findDevice('d199');
    assert.equal(s.reads(), before + 1, 'an expired entry is read again');
  });

  it('lets go of expired entries (an idle fleet keeps no keys in memory past ttlMs)', async () => {
    const s = source();
    const c = clock();
    const cache = new IdentityCache(s.src, testBus(), c, { maxEntries: 1000, ttlMs: 1000 });
    for (let i = 0; i < 10; i++) {
      s.devices.set(`old${i}`, device(`old${i}`));
      await cache.findDevice(`old${i}`);
    }
    s.modules.set('old0/m1', { deviceId: 'old0', moduleId: 'm1', generationId: 'g', auth: { type: 'sas', primaryKey: 'a', secondaryKey: 'b', primaryThumbprint: null, secondaryThumbprint: null } } as ModuleRecord);
    await cache.findModule('old0', 'm1');
    c.advance(600);
    s.devices.set('fresh', device('fresh'));
    await cache.findDevice('fresh');
    await cache.findDevice('old3'); // a hit: does not make it fresh
    assert.equal(cache.size, 12);
    assert.equal(cache.purgeExpired(), 0, 'nothing is older than ttlMs yet');
    c.advance(500);
    assert.equal(cache.purgeExpired(), 11, 'the ten old devices and the module');
    assert.equal(cache.size, 1);
    const before = s.reads();
    await cache.findDevice('fresh');
    assert.equal(s.reads(), before, 'the fresh one is still served from memory');
    await cache.findDevice('old3');
    assert.equal(s.reads(), before + 1, 'a purged one is read again');
  });

  it('drops a device with its modules, and empties itself when the bus may have lost changes', async () => {
    const s = source();
    const bus = testBus();
    const cache = new IdentityCache(s.src, bus, clock());
    s.devices.set('d1', device('d1'));
    s.modules.set('d1/m1', { deviceId: 'd1', moduleId: 'm1', generationId: 'g', auth: { type: 'sas', primaryKey: 'a', secondaryKey: 'b', primaryThumbprint: null, secondaryThumbprint: null } } as ModuleRecord);
    await cache.findDevice('d1');
    await cache.findModule('d1', 'm1');
    assert.equal(cache.size, 2);
    bus.publish(SUBJECTS.identityChanged, { kind: 'device-deleted', deviceId: 'd1' });
    await tick();
    assert.equal(cache.size, 0);
    await cache.findDevice('d1');
    await cache.findModule('d1', 'm1');
    bus.publish(SUBJECTS.busResync, { reason: 'reconnected' });
    await tick();
    assert.equal(cache.size, 0);
  });
});

describe('connection-state batches', () => {
  function store() {
    const batches: ConnectionStateChange[][] = [];
    return { batches, setConnectionStates: async (c: readonly ConnectionStateChange[]) => void batches.push([...c]) };
  }

  it('writes the changes of one turn in one batch, the last word per identity', async () => {
    const s = store();
    const w = new ConnectionStateWriter(s);
    w.set({ deviceId: 'a', moduleId: null, state: 'Connected', at: '1' });
    w.set({ deviceId: 'b', moduleId: null, state: 'Connected', at: '1' });
    w.set({ deviceId: 'a', moduleId: null, state: 'Disconnected', at: '2' });
    w.set({ deviceId: 'a', moduleId: null, state: 'Connected', at: '3' });
    w.set({ deviceId: 'a', moduleId: 'm', state: 'Connected', at: '3' });
    await tick();
    await w.flush();
    assert.equal(s.batches.length, 1);
    assert.deepEqual(
      s.batches[0]?.map((c) => `${c.deviceId}/${c.moduleId ?? ''}=${c.state}@${c.at}`).sort(),
      ['a/=Connected@3', 'a/m=Connected@3', 'b/=Connected@1'],
    );
  });

  it('queues behind a batch in flight and writes it after, in order', async () => {
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const w = new ConnectionStateWriter({
      async setConnectionStates(c) {
        order.push(c.map((x) => x.state).join(','));
        if (order.length === 1) await gate;
      },
    });
    w.set({ deviceId: 'a', moduleId: null, state: 'Connected', at: '1' });
    await tick();
    w.set({ deviceId: 'a', moduleId: null, state: 'Disconnected', at: '2' });
    await tick();
    assert.deepEqual(order, ['Connected'], 'nothing overtakes the batch in flight');
    release();
    await w.flush();
    assert.deepEqual(order, ['Connected', 'Disconnected']);
    assert.equal(w.pending, 0);
  });

  it('a failed batch is reported and does not stop the next', async () => {
    const errors: number[] = [];
    let fail = true;
    const written: string[] = [];
    const w = new ConnectionStateWriter(
      {
        async setConnectionStates(c) {
          if (fail) throw new Error('store away');
          written.push(...c.map((x) => x.deviceId));
        },
      },
      (_err, n) => errors.push(n),
    );
    w.set({ deviceId: 'a', moduleId: null, state: 'Connected', at: '1' });
    await w.flush();
    fail = false;
    w.set({ deviceId: 'b', moduleId: null, state: 'Connected', at: '1' });
    await w.flush();
    assert.deepEqual(errors, [1]);
    assert.deepEqual(written, ['b']);
  });
});

describe('revocation check cache', () => {
  it('reads the store once for a certificate not revoked, and refuses it from the moment a revocation is announced', async () => {
    const { RevocationCheck } = await import('../src/pki/revocation-check.js');
    const { makeSelfSigned } = await import('./support/pki.js');
    const leaf = (await makeSelfSigned('rc-dev')).cert;
    const bus = testBus();
    let reads = 0;
    const check = new RevocationCheck(
      {
        async getIssued() {
          reads++;
          return undefined;
        },
      },
      bus,
    );
    assert.equal(await check.isRevoked(leaf), false);
    assert.equal(await check.isRevoked(leaf), false);
    assert.equal(reads, 1);
    const thumbprintSha256 = leaf.fingerprint256.replace(/:/g, '').toUpperCase();
    bus.publish(SUBJECTS.certificatesRevoked, { certificates: [{ serial: leaf.serialNumber, thumbprintSha256, caName: 'none' }] });
    await tick();
    assert.equal(await check.isRevoked(leaf), true);
  });
});
