/**
 * Nobody without a credential can lock out someone with one (issue 14, item 2), on a real hub with
 * short lockout settings. A third party at one loopback address sends forged credentials naming
 * the administrators' policy (`skn=iothubowner`), a device, and an Owner operator (a JWT with
 * their `sub` and a bad signature); each time the real holder connects from another address, with
 * the unmodified SDKs where they fit. The guessing address stays locked for what it guessed at
 * (its next guess is refused unverified, with an audit row), a guess a second cannot keep anyone
 * else out, and a locked address still lets in a device that never failed there (NAT).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { connectPacket, connectRaw, deviceToken } from './support/raw-mqtt.js';
import { policyKey, restClient, type Rest } from './support/rest.js';

const { Registry } = iothub;
const { Client } = deviceSdk;
const { Mqtt } = deviceMqtt;

const HOST = '127.0.65.1';
/** Guessers, each at its own address; the real holders connect from 127.0.0.1 (the default) or B. */
const A = '127.0.65.20';
const B = '127.0.65.21';
const SPRAYER = '127.0.65.22';
const DRIPPER = '127.0.65.23';
const LOCKOUT = { maxFailures: 3, maxFailuresPerAddress: 8, windowSeconds: 10, lockoutSeconds: 2, maxLockoutSeconds: 4 };

let hub: HubProcess;
let ca: string;
let rest: Rest;
const keys = new Map<string, string>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Entry {
  type: string;
  identity?: string | null;
  outcome?: string | null;
  reason?: string | null;
  reasonCode?: string | null;
  remote?: string | null;
  action?: string | null;
  target?: string | null;
  after?: { until?: string; seconds?: number } | null;
}

async function audit(pred: (e: Entry) => boolean, what: string): Promise<Entry[]> {
  for (let i = 0; i < 50; i++) {
    const r = await rest('GET', '/auditLog?limit=1000');
    assert.equal(r.status, 200);
    const hits = (r.body as { entries: Entry[] }).entries.filter(pred);
    if (hits.length > 0) return hits;
    await sleep(100);
  }
  return assert.fail(`no audit row: ${what}`);
}

/** A SAS token that names a policy but is signed with a random key. */
function forgedPolicyToken(policy: string): string {
  const sig = encodeURIComponent(randomBytes(32).toString('base64'));
  return `SharedAccessSignature sr=${encodeURIComponent(HOST)}&sig=${sig}&se=${Math.floor(Date.now() / 1000) + 600}&skn=${policy}`;
}

/** A JWT that names an operator as `sub` with a signature nobody made. */
function forgedJwt(sub: string): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  return `${b64({ alg: 'ES256', typ: 'JWT' })}.${b64({ sub, iss: HOST, aud: HOST, iat: now, exp: now + 600 })}.${randomBytes(64).toString('base64url')}`;
}

async function createDevice(id: string): Promise<string> {
  const r = await rest('PUT', `/devices/${id}`, { deviceId: id });
  assert.equal(r.status, 200);
  const key = (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
  keys.set(id, key);
  return key;
}

async function mqttCode(deviceId: string, token: string, from?: string): Promise<number | undefined> {
  const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, deviceId, token), undefined, from);
  client.end();
  return code;
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  const r = await rest('PATCH', '/settings', { lockout: LOCKOUT });
  assert.equal(r.status, 200, JSON.stringify(r.body));
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('a third party with no credential', () => {
  it("cannot lock out the administrators: forged skn=iothubowner from A, the real iothubowner from elsewhere works", async () => {
    const guesser = restClient(HOST, ca, 'unused');
    for (let i = 0; i < LOCKOUT.maxFailures; i++) {
      const r = await guesser('GET', '/devices', undefined, { auth: false, localAddress: A, headers: { authorization: forgedPolicyToken('iothubowner') } });
      assert.equal(r.status, 401);
    }
    // The real iothubowner, with the unmodified service SDK (from 127.0.0.1) and raw from B.
    const registry = Registry.fromConnectionString(hub.connectionString);
    assert.ok(Array.isArray((await registry.list()).responseBody));
    assert.equal((await rest('GET', '/devices', undefined, { localAddress: B })).status, 200);

    // The guessing address is locked for that name: its next guess is refused unverified.
    const next = await guesser('GET', '/devices', undefined, { auth: false, localAddress: A, headers: { authorization: forgedPolicyToken('iothubowner') } });
    assert.equal(next.status, 401);
    await audit((e) => e.identity === 'iothubowner' && e.reasonCode === 'locked_out' && e.remote === A, 'the locked guess from A');
    const [lock] = await audit((e) => e.type === 'change' && e.action === 'lockout.start' && e.remote === A && /iothubowner/.test(e.target ?? ''), 'the lock of A for iothubowner');
    assert.ok((lock?.after?.seconds ?? 0) <= LOCKOUT.maxLockoutSeconds);
    // A holder of another real credential at A is not locked out by A's guesses at iothubowner.
    const reader = restClient(HOST, ca, policyKey(hub.dataDir, 'registryRead'), 'registryRead');
    assert.equal((await reader('GET', '/devices', undefined, { localAddress: A })).status, 200);
  });

  it('cannot lock out a device: forged tokens for d1 from A, d1 with its key connects from elsewhere', async () => {
    const key = await createDevice('d1');
    await createDevice('d2');
    const wrong = randomBytes(32).toString('base64');
    for (let i = 0; i < LOCKOUT.maxFailures + 2; i++) assert.equal(await mqttCode('d1', deviceToken(HOST, 'd1', wrong, Math.floor(Date.now() / 1000) + 600 + i), A), 4);
    // The real device, with the unmodified device SDK.
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=d1;SharedAccessKey=${key}`, Mqtt);
    await client.setOptions({ ca });
    await client.open();
    await client.close();
    assert.equal(await mqttCode('d1', deviceToken(HOST, 'd1', key), B), 0);
    // A itself stays locked for d1 (even the right key waits for the lock to end), not for d2.
    assert.equal(await mqttCode('d1', deviceToken(HOST, 'd1', key), A), 4);
    assert.equal(await mqttCode('d2', deviceToken(HOST, 'd2', keys.get('d2') ?? ''), A), 0);
    await audit((e) => e.identity === 'd1' && e.reasonCode === 'locked_out' && e.remote === A, 'the locked attempt at d1 from A');
  });

  it('cannot lock out an Owner operator: a JWT with their sub and a forged signature from A, their real token works elsewhere', async () => {
    assert.equal((await rest('PUT', '/operators/boss', {})).status, 201);
    assert.equal((await rest('POST', '/roleAssignments', { assignee: 'boss', role: 'Owner' })).status, 201);
    const t = await rest('POST', '/operators/boss/tokens', { expiresInSeconds: 600 });
    assert.equal(t.status, 200);
    const token = (t.body as { token: string }).token;
    const guesser = restClient(HOST, ca, 'unused');
    for (let i = 0; i < LOCKOUT.maxFailures + 2; i++) {
      const r = await guesser('GET', '/settings', undefined, { auth: false, localAddress: A, headers: { authorization: `Bearer ${forgedJwt('boss')}` } });
      assert.equal(r.status, 401);
    }
    const byToken = Registry.fromTokenCredential(HOST, { getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 600_000 }) });
    assert.ok(Array.isArray((await byToken.list()).responseBody));
    const r = await guesser('GET', '/settings', undefined, { auth: false, localAddress: B, headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200);
    await audit((e) => e.identity === 'boss' && e.reasonCode === 'locked_out' && e.remote === A, 'the locked guess at boss from A');
  });

  it('cannot keep anyone out with one guess a second: the holder gets in throughout, and the lock never grows past the maximum', async () => {
    const guesser = restClient(HOST, ca, 'unused');
    const registry = Registry.fromConnectionString(hub.connectionString);
    const key = keys.get('d1') ?? '';
    const end = Date.now() + (LOCKOUT.lockoutSeconds + LOCKOUT.maxLockoutSeconds + 2) * 1000;
    let rounds = 0;
    while (Date.now() < end) {
      const forged = await guesser('GET', '/devices', undefined, { auth: false, localAddress: DRIPPER, headers: { authorization: forgedPolicyToken('iothubowner') } });
      assert.equal(forged.status, 401);
      assert.equal(await mqttCode('d1', deviceToken(HOST, 'd1', randomBytes(32).toString('base64')), DRIPPER), 4);
      assert.ok(Array.isArray((await registry.list()).responseBody), `round ${rounds}: iothubowner gets in`);
      assert.equal(await mqttCode('d1', deviceToken(HOST, 'd1', key), B), 0, `round ${rounds}: d1 gets in`);
      rounds++;
      await sleep(1000);
    }
    const locks = await audit((e) => e.type === 'change' && e.action === 'lockout.start' && e.remote === DRIPPER, 'the dripper locked');
    for (const l of locks) assert.ok((l.after?.seconds ?? Infinity) <= LOCKOUT.maxLockoutSeconds, JSON.stringify(l));
  });
});

describe('a locked address', () => {
  it('refuses what it guessed at and lets in a device that never failed there', async () => {
    const names = Array.from({ length: LOCKOUT.maxFailuresPerAddress }, (_, i) => `spray-${i}`);
    for (const n of names) await createDevice(n);
    const neighbour = await createDevice('neighbour');
    for (const n of names) assert.equal(await mqttCode(n, deviceToken(HOST, n, randomBytes(32).toString('base64')), SPRAYER), 4);
    // Locked: the right key of a device it guessed at is refused unverified, until the lock ends.
    assert.equal(await mqttCode('spray-0', deviceToken(HOST, 'spray-0', keys.get('spray-0') ?? ''), SPRAYER), 4);
    await audit((e) => e.identity === 'spray-0' && e.reasonCode === 'locked_out' && e.remote === SPRAYER, 'the locked attempt from the sprayer');
    await audit((e) => e.type === 'change' && e.action === 'lockout.start' && e.remote === SPRAYER && e.target === `address:${SPRAYER}`, 'the address lock');
    // A device behind the same address (NAT) that never failed there connects.
    assert.equal(await mqttCode('neighbour', deviceToken(HOST, 'neighbour', neighbour), SPRAYER), 0);
    // After the lock, the device that was guessed at connects from there too.
    await sleep(LOCKOUT.lockoutSeconds * 1000 + 200);
    assert.equal(await mqttCode('spray-0', deviceToken(HOST, 'spray-0', keys.get('spray-0') ?? ''), SPRAYER), 0);
  });
});
