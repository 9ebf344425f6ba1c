/**
 * The ownership rules without a hub (src/dps/device-ownership.ts, the EST scope in src/dps/est.ts),
 * for the cases the hub-process tests cannot reach cheaply: devices made before schema 13 (origin
 * unknown), linked hubs judged by the registration record and the device generation, and the
 * upgrade itself (old rows read as unknown origin, old factory credentials enroll nothing).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SecretBox } from '../src/core/secret-box.js';
import type { DeviceOrigin, EnrollmentRef } from '../src/core/types.js';
import { estRefusal, localOwnership, remoteOwnership, type RegistrationRecord } from '../src/dps/device-ownership.js';
import { inScope } from '../src/dps/est.js';
import { sqliteMigrations } from '../src/store/migrations/sqlite.js';
import { migrate } from '../src/store/sql/migrate.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { SqliteDriver } from '../src/store/sqlite/sqlite-driver.js';
import { makeDevice } from '../src/store/store.case.js';

const HUB = 'hub-a.example';
const groupA: EnrollmentRef = { kind: 'group', enrollmentGroupId: 'line-a' };

function record(over: Partial<RegistrationRecord['state']> & { group?: string | undefined } = {}): RegistrationRecord {
  const { group, ...state } = over;
  // `group: undefined` given: an individual enrollment's record.
  return { state: { registrationId: 'dev-1', deviceId: 'dev-1', assignedHub: HUB, status: 'assigned', generationId: 'g1', ...state }, enrollmentGroupId: 'group' in over ? group : 'line-a' };
}

const device = (origin: DeviceOrigin, generationId = 'g1') => makeDevice('dev-1', { origin, generationId });

describe('a device on this hub', () => {
  it('belongs to the enrollment that made it (ids in any case), never to another or to an operator', () => {
    assert.deepEqual(localOwnership(device({ kind: 'group', enrollmentGroupId: 'LINE-A' }), groupA, undefined, HUB), { owned: true, claim: false });
    for (const origin of [{ kind: 'registry' }, { kind: 'group', enrollmentGroupId: 'line-b' }, { kind: 'individual', registrationId: 'line-a' }] as const) {
      const r = localOwnership(device(origin), groupA, record(), HUB);
      assert.equal(r.owned, false, JSON.stringify(origin));
    }
  });

  it('made before origins were recorded: the registration record for this hub and generation decides, and is written on the device', () => {
    const unknown = device({ kind: 'unknown' });
    assert.deepEqual(localOwnership(unknown, groupA, record(), HUB), { owned: true, claim: true });
    assert.deepEqual(localOwnership(unknown, groupA, record({ generationId: undefined }), HUB), { owned: true, claim: true }, 'a record without a generation');
    for (const [why, r] of [
      ['no record', undefined],
      ['another group', record({ group: 'line-b' })],
      ['an individual enrollment', record({ group: undefined })],
      ['another hub', record({ assignedHub: 'hub-b.example' })],
      ['another generation (made again since)', record({ generationId: 'g0' })],
      ['another device id', record({ deviceId: 'DEV-1' })],
      ['a failed registration', record({ status: 'failed' })],
    ] as const) {
      assert.equal(localOwnership(unknown, groupA, r, HUB).owned, false, why);
    }
  });
});

describe('a device on a linked hub', () => {
  it("is the enrollment's when its record says so, at the recorded generation when the record is about that hub", () => {
    assert.equal(remoteOwnership('dev-1', 'g1', groupA, record(), HUB).owned, true);
    assert.equal(remoteOwnership('dev-1', 'g2', groupA, record(), HUB).owned, false, 'deleted and made again there');
    assert.equal(remoteOwnership('dev-1', 'g2', groupA, record({ generationId: undefined }), HUB).owned, true, 'a record from before generations were kept');
    assert.equal(remoteOwnership('dev-1', 'g9', groupA, record({ assignedHub: 'hub-b.example' }), HUB).owned, true, 'going back to a hub it used before');
    assert.equal(remoteOwnership('dev-1', 'g1', groupA, undefined, HUB).owned, false, 'no record: someone else made it');
    assert.equal(remoteOwnership('dev-1', 'g1', groupA, record({ group: 'line-b' }), HUB).owned, false);
  });
});

describe('EST', () => {
  it('a scope matches ids case-insensitively, * as any run, everything else literally', () => {
    assert.ok(inScope(['line-a-*'], 'LINE-A-0001'));
    assert.ok(inScope(['line-a-*'], 'line-a-'));
    assert.ok(!inScope(['line-a-*'], 'line-ab-0001'));
    assert.ok(inScope(['unit.1', 'x*y'], 'UNIT.1') && inScope(['x*y'], 'x-1-y'));
    assert.ok(!inScope(['unit.1'], 'unitX1'), 'a dot is a dot');
    assert.ok(!inScope([], 'anything'), 'an empty scope allows nothing');
  });

  it("refuses another enrollment's registration (any case), an operator's device, and a SAS device of its own group", async () => {
    const devices = new Map([
      ['op-1', makeDevice('op-1', { origin: { kind: 'registry' } })],
      ['sym-1', makeDevice('sym-1', { origin: groupA })],
      ['own-1', makeDevice('own-1', { origin: groupA, auth: { type: 'certificateAuthority', primaryKey: null, secondaryKey: null, primaryThumbprint: null, secondaryThumbprint: null } })],
    ]);
    const records = new Map([['b-1', { state: { registrationId: 'b-1', deviceId: 'b-1', status: 'assigned', assignedHub: 'hub-b.example' }, enrollmentGroupId: 'line-b' }]]);
    const lookups = { registration: async (id: string) => records.get(id.toLowerCase()), device: async (id: string) => devices.get(id), hub: () => HUB };
    assert.match((await estRefusal('B-1', 'line-a', lookups)) ?? '', /belongs to enrollment group line-b/);
    assert.match((await estRefusal('op-1', 'line-a', lookups)) ?? '', /made by the registry API/);
    assert.match((await estRefusal('sym-1', 'line-a', lookups)) ?? '', /authenticates with sas/);
    assert.equal(await estRefusal('own-1', 'LINE-A', lookups), undefined);
    assert.equal(await estRefusal('new-1', 'line-a', lookups), undefined);
  });
});

describe('the upgrade to schema 13', () => {
  it('devices made before read as unknown origin; factory credentials made before enroll nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-origin-'));
    try {
      const file = join(dir, 'hub.db');
      const old = new SqliteDriver(file);
      await migrate(old, sqliteMigrations.filter((m) => m.version <= 12), async (_tx, sql) => old.exec(sql));
      await old.run(
        `INSERT INTO devices (device_id, generation_id, etag, status, status_updated_time, auth_type, connection_state, connection_state_updated_time, last_activity_time)
         VALUES ('old-1', 'g', 'e', 'enabled', 't', 'none', 'Disconnected', 't', 't')`,
      );
      await old.run(`INSERT INTO est_credentials (id, enrollment_group_id, secret_hash, client_thumbprint, expires_at, created) VALUES ('old-station', 'line-a', NULL, NULL, 't', 't')`);
      await old.close();
      const store = await openSqliteStore(file, new SecretBox(randomBytes(32)));
      try {
        assert.deepEqual((await store.getDevice('old-1'))?.origin, { kind: 'unknown' });
        assert.deepEqual((await store.authority.getEstCredential('old-station'))?.registrationIds, []);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
