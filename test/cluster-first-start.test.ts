/**
 * Three hubs started at the same moment on one empty PostgreSQL schema (issue 16): every one comes
 * up, what a first start creates (default policies, the hub identity, the DPS ID scope, the
 * operators' signing key, the audit chain key) exists once and is the one each node uses (the audit
 * chain, written by all three, verifies), and a
 * device created through one node is seen by the others and connects to each of them with the
 * unmodified SDKs. Then, on the same three nodes: bad logins from one address spread over them
 * lock that address out on every node at the count one node would (the lockout counts in the store).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, it } from 'node:test';
import pg from 'pg';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { DEFAULT_POLICIES } from '../src/auth/policies.js';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { restClient } from './support/rest.js';
import { parseConnectionString } from '../src/cli/connection.js';

const { Registry } = iothub;
const { Client, Message } = deviceSdk;
const { Mqtt } = deviceMqtt;

const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `gh_first_${randomBytes(5).toString('hex')}`;
const ADDRESSES = ['127.0.16.1', '127.0.16.2', '127.0.16.3'];
const hubs: HubProcess[] = [];
let env: NodeJS.ProcessEnv = {};

after(async () => {
  await Promise.all(hubs.map((h) => h.stop()));
  for (const h of hubs) removeDir(h.dataDir);
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.end();
});

/** The owner policy's key as a node's CLI reads it from the shared database. */
function ownerKey(dataDir: string, env: NodeJS.ProcessEnv): string {
  const r = cli(['connection-string', '--data-dir', dataDir, '--policy', 'iothubowner'], env);
  assert.equal(r.status, 0, r.stderr);
  return parseConnectionString(r.stdout.trim()).get('SharedAccessKey') ?? '';
}

async function rows(sql: string): Promise<Array<Record<string, unknown>>> {
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  try {
    return (await admin.query(sql)).rows as Array<Record<string, unknown>>;
  } finally {
    await admin.end();
  }
}

it('three hubs started at once on an empty schema come up with one set of first-start records', async () => {
  const url = new URL(DATABASE_URL);
  url.searchParams.set('schema', schema);
  // One master key for the cluster: every node opens what the others sealed.
  env = { GATEHOUSE_MASTER_KEY: randomBytes(32).toString('base64') };
  const started = await Promise.allSettled(ADDRESSES.map((address) => startHubProcess({ address, env, extraArgs: ['--database-url', url.toString()] })));
  for (const s of started) if (s.status === 'fulfilled') hubs.push(s.value);
  const failures = started.flatMap((s) => (s.status === 'rejected' ? [String((s.reason as Error).message)] : []));
  assert.deepEqual(failures, [], 'every node starts');
  for (const h of hubs) assert.doesNotMatch(h.output(), /"level":(50|60)/, `no error logged by ${h.address}`);

  // One set of default policies, the one every node authenticates with.
  const policies = await rows(`SELECT name FROM "${schema}".policies ORDER BY name`);
  assert.deepEqual(policies.map((r) => r.name), DEFAULT_POLICIES.map((d) => d.name).sort());
  const migrations = await rows(`SELECT version, COUNT(*) AS n FROM "${schema}".schema_migrations GROUP BY version HAVING COUNT(*) > 1`);
  assert.deepEqual(migrations, [], 'each migration applied once');
  const ownerKeys = new Set(hubs.map((h) => ownerKey(h.dataDir, env)));
  assert.equal(ownerKeys.size, 1);
  const scopes = new Set(hubs.map((h) => (JSON.parse(cli(['info', '--data-dir', h.dataDir, '--json'], env).stdout) as { idScope: string }).idScope));
  assert.equal(scopes.size, 1, 'one DPS ID scope');

  // A device made through the first node: every node finds it and lets it in.
  const [first] = hubs;
  assert.ok(first !== undefined);
  const { responseBody: created } = await Registry.fromConnectionString(first.connectionString).create({ deviceId: 'first-start-dev' });
  const key = created.authentication?.symmetricKey?.primaryKey;
  assert.ok(typeof key === 'string' && key.length > 0);
  for (const h of hubs) {
    const { responseBody: seen } = await Registry.fromConnectionString(h.connectionString).get('first-start-dev');
    assert.equal(seen.authentication?.symmetricKey?.primaryKey, key, `${h.address} sees the device`);
    const client = Client.fromConnectionString(`HostName=${h.address};DeviceId=first-start-dev;SharedAccessKey=${key}`, Mqtt);
    await client.setOptions({ ca: readFileSync(h.caFile, 'utf8') });
    await client.open();
    try {
      await client.sendEvent(new Message(JSON.stringify({ via: h.address })));
    } finally {
      await client.close();
    }
  }

  // Every node writes audit entries under the chain key it holds: one key, so the chain verifies.
  for (const [i, h] of hubs.entries()) await Registry.fromConnectionString(h.connectionString).create({ deviceId: `audit-probe-${i}` });
  const rest = restClient(first.address, readFileSync(first.caFile, 'utf8'), ownerKey(first.dataDir, env));
  const until = Date.now() + 10_000;
  let recorded: Array<Record<string, unknown>> = [];
  while (recorded.length < hubs.length && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 200));
    recorded = await rows(`SELECT seq FROM "${schema}".audit_log WHERE action = 'device.create' AND target LIKE 'devices/audit-probe-%'`);
  }
  assert.equal(recorded.length, hubs.length, 'each node recorded its change');
  const verify = (await rest('GET', '/auditLog/verify')).body as { ok?: boolean };
  assert.equal(verify.ok, true, JSON.stringify(verify));
});

it('bad logins from one address spread over the three nodes lock it out on each, at the count of one node', async () => {
  assert.equal(hubs.length, 3, 'the nodes of the first test are up');
  const guesser = '127.0.16.66';
  const key = ownerKey(hubs[0]!.dataDir, env);
  const wrong = randomBytes(32).toString('base64');
  const call = (h: HubProcess, k: string, from: string) => restClient(h.address, readFileSync(h.caFile, 'utf8'), k)('GET', '/devices', undefined, { localAddress: from });
  // maxFailures (10 by default) for one identity from one address: 3 or 4 on each node.
  for (let i = 0; i < 10; i++) assert.equal((await call(hubs[i % 3]!, wrong, guesser)).status, 401);
  // Each node hears of the lock within its sync interval (a second).
  await new Promise((r) => setTimeout(r, 1500));
  for (const h of hubs) {
    assert.equal((await call(h, key, guesser)).status, 401, `${h.address} refuses the guessing address even with the right key`);
    assert.equal((await call(h, key, '127.0.16.67')).status, 200, `${h.address} lets the holder in from another address`);
  }
  assert.equal(hubs.filter((h) => /"event":"auth.lockout"/.test(h.output())).length, 1, 'one node set the lock, once');
});
