/**
 * The same hub on PostgreSQL (--database-url, its own schema): the SDK works, and a restart finds
 * everything, keys sealed in the database.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, it } from 'node:test';
import pg from 'pg';
import iothub from 'azure-iothub';
import { removeDir, startHubProcess } from './support/hub-process.js';

const { Registry } = iothub;
const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `gh_hub_${randomBytes(5).toString('hex')}`;

after(async () => {
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.end();
});

it('runs on PostgreSQL and keeps devices, twins and keys across a restart', async () => {
  const url = new URL(DATABASE_URL);
  url.searchParams.set('schema', schema);
  const address = '127.0.24.1';
  const first = await startHubProcess({ address, extraArgs: ['--database-url', url.toString()] });
  let dataDir = first.dataDir;
  try {
    const registry = Registry.fromConnectionString(first.connectionString);
    const { responseBody: d } = await registry.create({ deviceId: 'pg-dev' });
    await registry.updateTwin('pg-dev', { tags: { db: 'postgres' } }, '*');
    assert.equal(await first.stop(), 0);

    const second = await startHubProcess({ address, dataDir, extraArgs: ['--database-url', url.toString()] });
    dataDir = second.dataDir;
    try {
      const r2 = Registry.fromConnectionString(second.connectionString);
      const { responseBody: again } = await r2.get('pg-dev');
      assert.equal(again.authentication?.symmetricKey?.primaryKey, d.authentication?.symmetricKey?.primaryKey);
      assert.equal((await r2.getTwin('pg-dev')).responseBody.tags.db, 'postgres');
      const { result } = await r2.createQuery("SELECT COUNT() AS n FROM devices WHERE tags.db = 'postgres'").next();
      assert.deepEqual(result, [{ n: 1 }]);

      const admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
      const rows = await admin.query(`SELECT primary_key FROM "${schema}".devices WHERE device_id = 'pg-dev'`);
      await admin.end();
      const stored = String(rows.rows[0]?.primary_key);
      assert.match(stored, /^v1\./, 'the key is sealed');
      assert.ok(!stored.includes(String(d.authentication?.symmetricKey?.primaryKey)));
    } finally {
      assert.equal(await second.stop(), 0);
    }
  } finally {
    removeDir(dataDir);
  }
});
