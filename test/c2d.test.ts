/**
 * Cloud-to-device queues: C2dService on a real SQLite store with a hand-moved clock, then the
 * service REST routes and the CLI against a real `gatehouse start` process.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSasToken } from '../src/auth/sas.js';
import { HubError } from '../src/core/errors.js';
import { SecretBox } from '../src/core/secret-box.js';
import { C2dService, DEFAULT_C2D_LIMITS } from '../src/hub/c2d/c2d-service.js';
import { openHubStore } from '../src/hub.js';
import type { Store } from '../src/store/ports.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { makeDevice, makeTwin } from '../src/store/store.case.js';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { testBus } from './support/test-bus.js';
import { SUBJECTS } from '../src/bus/subjects.js';

const T0 = Date.parse('2030-06-01T12:00:00.000Z');
const HOUR = 3_600_000;

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof HubError && err.code === code);
}

describe('C2dService', () => {
  const key = randomBytes(32);
  let dir: string;
  let store: Store;
  const clock = { t: T0, now() { return this.t; } };
  let c2d: C2dService;
  const bus = testBus();
  const body = (s: string) => ({ body: Buffer.from(s) });
  const reopen = async () => {
    store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(key));
    c2d = new C2dService(store, clock, bus);
  };

  before(async () => {
    dir = tempDir('c2d');
    await reopen();
  });
  after(async () => {
    await store.close();
    removeDir(dir);
  });
  const fresh = async (ack?: 'none' | 'positive' | 'negative' | 'full') => {
    const id = `dev-${randomUUID().slice(0, 8)}`;
    await store.createDevice(makeDevice(id), makeTwin(id));
    return { id, send: (text = 'x') => c2d.send(id, { ...body(text), ...(ack === undefined ? {} : { ack }) }) };
  };
  const feedbackFor = async (ids: string[]) => (await c2d.readFeedback(0, 1000)).filter((f) => ids.includes(f.originalMessageId));

  it('queues FIFO with generated ids, the devicebound path and a 1 hour default TTL', async () => {
    clock.t = T0;
    const { id, send } = await fresh();
    const sent = [await send('a'), await send('b'), await c2d.send(id, { ...body('c'), messageId: 'm-c', properties: { k: 'v' } })];
    assert.match(sent[0]?.messageId ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(sent[0]?.to, `/devices/${id}/messages/devicebound`);
    assert.equal(sent[0]?.expiryTime, new Date(T0 + HOUR).toISOString());
    const got = await c2d.lockNext(id, 10);
    assert.deepEqual(got.map((m) => m.body.toString()), ['a', 'b', 'c']);
    assert.deepEqual(got[2]?.properties, { k: 'v' });
    assert.equal(got[2]?.messageId, 'm-c');
    assert.equal(await c2d.pendingCount(id), 3);
  });

  it('refuses unknown devices, bad input, and the 51st pending message', async () => {
    await rejectsWith(c2d.send('nobody', body('x')), 'DeviceNotFound');
    const { id, send } = await fresh();
    await rejectsWith(c2d.send(id, { ...body('x'), properties: { 'a b': '1' } }), 'ArgumentInvalid');
    await rejectsWith(c2d.send(id, { ...body('x'), properties: { a: 'x y' } }), 'ArgumentInvalid');
    await rejectsWith(c2d.send(id, { ...body('x'), messageId: 'a/b' }), 'ArgumentInvalid');
    await rejectsWith(c2d.send(id, { body: Buffer.alloc(64 * 1024 + 1) }), 'MessageTooLarge');
    await rejectsWith(c2d.send(id, { ...body('x'), expiryTime: new Date(clock.t + 2 * 24 * HOUR + 1000).toISOString() }), 'ArgumentInvalid');
    await rejectsWith(c2d.send(id, { ...body('x'), expiryTime: new Date(clock.t - 1).toISOString() }), 'ArgumentInvalid');
    await rejectsWith(c2d.send(id, { ...body('x'), expiryTime: 'tomorrow' }), 'ArgumentInvalid');
    for (let i = 0; i < DEFAULT_C2D_LIMITS.maxDepth; i++) await send(String(i));
    await rejectsWith(send('51'), 'DeviceMaximumQueueDepthExceeded');
    const [m] = await c2d.lockNext(id, 1);
    await c2d.complete(id, m?.lockToken ?? '');
    await send('room again');
    assert.equal(await c2d.pendingCount(id), 50);
  });

  it('expires messages past their TTL with Expired feedback', async () => {
    clock.t = T0;
    const { id, send } = await fresh('full');
    const a = await send();
    const b = await c2d.send(id, { ...body('short'), ack: 'full', expiryTime: new Date(T0 + 10_000).toISOString() });
    clock.t = T0 + 10_000;
    assert.equal((await c2d.sweep()).expired, 1);
    assert.equal(await c2d.pendingCount(id), 1);
    clock.t = T0 + HOUR;
    assert.deepEqual(await c2d.lockNext(id, 5), [], 'lockNext expires too');
    assert.deepEqual((await feedbackFor([a.messageId, b.messageId])).map((f) => [f.originalMessageId, f.statusCode, f.description]), [
      [b.messageId, 'Expired', 'Message expired'],
      [a.messageId, 'Expired', 'Message expired'],
    ]);
  });

  it('dead-letters after the 10th failed delivery attempt', async () => {
    clock.t = T0;
    const { id, send } = await fresh('negative');
    const a = await send('abandoned');
    for (let i = 1; i <= 10; i++) {
      const [m] = await c2d.lockNext(id, 1);
      assert.equal(m?.deliveryCount, i);
      await c2d.abandon(id, m?.lockToken ?? '');
    }
    const b = await send('lapsed');
    for (let i = 1; i <= 10; i++) {
      assert.equal((await c2d.lockNext(id, 1))[0]?.messageId, b.messageId);
      clock.t += DEFAULT_C2D_LIMITS.lockMs;
    }
    assert.equal((await c2d.sweep()).deadLettered, 1);
    assert.equal(await c2d.pendingCount(id), 0);
    const fb = await feedbackFor([a.messageId, b.messageId]);
    assert.deepEqual(fb.map((f) => f.statusCode), ['DeliveryCountExceeded', 'DeliveryCountExceeded']);
    assert.equal(fb[0]?.deviceId, id);
    assert.equal(fb[0]?.deviceGenerationId, (await store.getDevice(id))?.generationId);
  });

  it('redelivers when a lock lapses; the old lock is lost', async () => {
    clock.t = T0;
    const { id, send } = await fresh('full');
    await send();
    const [first] = await c2d.lockNext(id, 1);
    assert.deepEqual(await c2d.lockNext(id, 1), [], 'locked');
    clock.t += DEFAULT_C2D_LIMITS.lockMs;
    const [again] = await c2d.lockNext(id, 1);
    assert.equal(again?.seq, first?.seq);
    assert.equal(again?.deliveryCount, 2);
    await rejectsWith(c2d.complete(id, first?.lockToken ?? ''), 'DeviceMessageLockLost');
    await rejectsWith(c2d.reject(id, randomUUID()), 'DeviceMessageLockLost');
    await rejectsWith(c2d.abandon(id, randomUUID()), 'DeviceMessageLockLost');
    assert.equal(new HubError('DeviceMessageLockLost', 'x').status, 412);
    await c2d.complete(id, again?.lockToken ?? '');
    assert.equal(await c2d.pendingCount(id), 0);
  });

  it('complete, reject, abandon; feedback as the ack mode asks; c2d.enqueued on the bus informs', async () => {
    clock.t = T0;
    const told: string[] = [];
    bus.subscribe(SUBJECTS.c2dEnqueued, (m) => void told.push(m.deviceId));
    const outcomes: string[] = [];
    for (const ack of ['none', 'positive', 'negative', 'full'] as const) {
      const { id, send } = await fresh(ack);
      const ok = await send('ok');
      const no = await send('no');
      const [m1, m2] = await c2d.lockNext(id, 2);
      await c2d.abandon(id, m2?.lockToken ?? '');
      const [m2b] = await c2d.lockNext(id, 1);
      assert.equal(m2b?.messageId, no.messageId, 'abandoned message comes back');
      await c2d.complete(id, m1?.lockToken ?? '');
      await c2d.reject(id, m2b?.lockToken ?? '');
      for (const f of await feedbackFor([ok.messageId, no.messageId])) outcomes.push(`${ack}:${f.statusCode}`);
      assert.deepEqual(told.splice(0), [id, id, id], 'two sends and one abandon');
    }
    assert.deepEqual(outcomes, ['positive:Success', 'negative:Rejected', 'full:Success', 'full:Rejected']);
  });

  it('purge: Purged feedback for ack full/negative, DeviceNotFound for unknown devices', async () => {
    const { id } = await fresh();
    const full = await c2d.send(id, { ...body('1'), ack: 'full' });
    await c2d.send(id, { ...body('2'), ack: 'positive' });
    assert.equal(await c2d.purge(id), 2);
    assert.deepEqual((await feedbackFor([full.messageId])).map((f) => f.statusCode), ['Purged']);
    await rejectsWith(c2d.purge('nobody'), 'DeviceNotFound');
  });

  it('survives closing and reopening the store', async () => {
    clock.t = T0;
    const { id, send } = await fresh('full');
    const a = await send('locked');
    const b = await send('waiting');
    const [la] = await c2d.lockNext(id, 1);
    await store.close();
    await reopen();
    assert.equal(await c2d.pendingCount(id), 2);
    assert.deepEqual((await c2d.lockNext(id, 5)).map((m) => m.messageId), [b.messageId], 'the lock held across the restart');
    await c2d.complete(id, la?.lockToken ?? '');
    assert.deepEqual((await feedbackFor([a.messageId])).map((f) => f.statusCode), ['Success']);
  });
});

describe('C2D over the service REST API and the CLI', () => {
  const ADDRESS = '127.0.41.1';
  let hub: HubProcess;
  const keyOf = (policy: string) => {
    const r = cli(['policy', 'list', '--show-keys', '--data-dir', hub.dataDir]);
    const p = (JSON.parse(r.stdout) as Array<{ keyName: string; primaryKey: string }>).find((x) => x.keyName === policy);
    assert.ok(p, r.stdout);
    return p.primaryKey;
  };
  const token = (policy = 'iothubowner') => generateSasToken({ resource: ADDRESS, key: keyOf(policy), keyName: policy, expiry: Math.floor(Date.now() / 1000) + 600 });
  let owner: string;

  function call(method: string, path: string, opts: { body?: Buffer | string; headers?: Record<string, string>; token?: string } = {}) {
    return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
      const sep = path.includes('?') ? '&' : '?';
      const req = request({ host: ADDRESS, port: 443, method, path: `${path}${sep}api-version=2021-04-12`, headers: { authorization: opts.token ?? owner, ...opts.headers } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      });
      req.on('error', reject);
      req.end(opts.body);
    });
  }
  const send = (id: string, text: string, headers: Record<string, string> = {}) => call('POST', `/devices/${id}/messages/deviceBound`, { body: text, headers });

  before(async () => {
    hub = await startHubProcess({ address: ADDRESS });
    owner = token();
    for (const id of ['rest-1', 'rest-full', 'cli-1']) {
      const r = await call('PUT', `/devices/${id}`, { body: JSON.stringify({ deviceId: id }), headers: { 'content-type': 'application/json' } });
      assert.equal(r.status, 200, r.body);
    }
  });
  after(async () => {
    await hub.stop();
    removeDir(hub.dataDir);
  });

  it('sends with properties; 404, 401, 400, 413 refusals', async () => {
    const r = await send('rest-1', 'hello', {
      'iothub-messageid': 'mid-1', 'iothub-correlationid': 'cid-1', 'iothub-ack': 'full', 'content-type': 'text/plain',
      'iothub-contentencoding': 'utf-8', 'iothub-app-Color': 'red', 'iothub-app-n': '1',
      'iothub-expiry': new Date(Date.now() + 10 * 60_000).toISOString(),
    });
    assert.equal(r.status, 204, r.body);
    assert.equal(r.headers['iothub-messageid'], 'mid-1');
    const generated = await send('rest-1', '');
    assert.equal(generated.status, 204, generated.body);
    assert.match(String(generated.headers['iothub-messageid']), /^[0-9a-f-]{36}$/);

    const missing = await send('nobody', 'x');
    assert.equal(missing.status, 404);
    assert.match(missing.body, /ErrorCode:DeviceNotFound/);
    const reader = await send('rest-1', 'x', { authorization: token('registryRead') });
    assert.equal(reader.status, 401);
    assert.equal((await send('rest-1', 'x', { 'iothub-app-a': 'has space' })).status, 400);
    assert.equal((await send('rest-1', 'x', { 'iothub-ack': 'sometimes' })).status, 400);
    const big = await call('POST', '/devices/rest-1/messages/deviceBound', { body: Buffer.alloc(64 * 1024 + 1) });
    assert.equal(big.status, 413);
    assert.match(big.body, /ErrorCode:MessageTooLarge/);
  });

  it('the 51st pending message is refused with 403 DeviceMaximumQueueDepthExceeded', async () => {
    for (let i = 0; i < 50; i++) assert.equal((await send('rest-full', String(i))).status, 204);
    const r = await send('rest-full', '51');
    assert.equal(r.status, 403);
    assert.equal(r.headers['iothub-errorcode'], 'DeviceMaximumQueueDepthExceeded');
    assert.match(r.body, /^\{"Message":"ErrorCode:DeviceMaximumQueueDepthExceeded;/);
    assert.equal((JSON.parse(r.body) as { errorCode: number }).errorCode, 403004);
  });

  it('feedback starts empty; purge reports how many; the CLI sends, purges and reads feedback', async () => {
    const fb = await call('GET', '/messages/serviceBound/feedback');
    assert.equal(fb.status, 200, fb.body);
    assert.deepEqual(JSON.parse(fb.body), []);
    assert.equal((await call('GET', '/messages/serviceBound/feedback?top=0')).status, 400);
    assert.equal((await call('GET', '/messages/serviceBound/feedback', { token: token('registryRead') })).status, 401);

    const gh = (args: string[]) => {
      const r = cli([...args, '--data-dir', hub.dataDir]);
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as unknown;
    };
    const sent = gh(['device', 'c2d-send', '-d', 'cli-1', '--data', 'from cli', '--props', 'a=1;b=2', '--ack', 'full', '--mid', 'cli-m1', '--cid', 'c1', '--ct', 'text/plain', '--ce', 'utf-8', '--expiry', String(Date.now() + 60_000)]);
    assert.deepEqual(sent, { deviceId: 'cli-1', messageId: 'cli-m1' });
    assert.deepEqual(gh(['c2d', 'feedback', '--after', '0', '--top', '10']), []);
    const bad = cli(['device', 'c2d-send', '-d', 'nobody', '--data', 'x', '--data-dir', hub.dataDir]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^error: DeviceNotFound: /);

    const { store } = await openHubStore(hub.dataDir, undefined);
    try {
      const [m] = await new C2dService(store, { now: () => Date.now() }, testBus()).lockNext('cli-1', 5);
      assert.equal(m?.body.toString(), 'from cli');
      assert.deepEqual(m?.properties, { a: '1', b: '2' });
      assert.deepEqual([m?.ack, m?.correlationId, m?.contentType, m?.contentEncoding], ['full', 'c1', 'text/plain', 'utf-8']);
      const [r1] = await new C2dService(store, { now: () => Date.now() }, testBus()).lockNext('rest-1', 1);
      assert.deepEqual(r1?.properties, { Color: 'red', n: '1' });
      assert.deepEqual([r1?.messageId, r1?.correlationId, r1?.contentType, r1?.ack], ['mid-1', 'cid-1', 'text/plain', 'full']);
    } finally {
      await store.close();
    }
    assert.deepEqual(gh(['device', 'c2d-purge', '-d', 'rest-full']), { totalMessagesPurged: 50, deviceId: 'rest-full' });
    const purgeMissing = await call('DELETE', '/devices/nobody/commands');
    assert.equal(purgeMissing.status, 404);
  });

  it('an accepted send survives SIGKILL', async () => {
    assert.equal((await send('rest-full', 'durable')).status, 204);
    hub.proc.kill('SIGKILL');
    await hub.stop();
    const { store } = await openHubStore(hub.dataDir, undefined);
    try {
      assert.equal(await store.c2d.countPending('rest-full', Date.now()), 1);
    } finally {
      await store.close();
    }
  });
});
