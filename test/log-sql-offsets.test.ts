/**
 * The SQL log's offsets are byte positions (decision 0005): a record advances its partition's
 * offset by its size, the bytes it counts for in size-based retention (body, device and module id,
 * encoded property maps; `encodeRecord`). SQLite computes the size in this process and PostgreSQL
 * in log_append (schema v19) from the text it stores, so the two must agree byte for byte, on
 * multi-byte text, module ids, endpoint sets and empty maps alike, and store the maps unchanged.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { SecretBox } from '../src/core/secret-box.js';
import { makeMessage } from '../src/log/log.case.js';
import { encodeRecord, type LogMessage, type LogRecord } from '../src/log/log-ports.js';
import type { SqlEventLog } from '../src/log/sql/sql-log.js';
import { openPostgresStore } from '../src/store/postgres/open-postgres-store.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import type { SqlStore } from '../src/store/sql/sql-store.js';
import { SqlLogNodes } from './support/log-harness.js';

const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** One partition, so every record's offset follows the one before it. */
function messages(): LogMessage[] {
  return [
    makeMessage('dev-a', 0),
    makeMessage('dev-a', 1, { moduleId: 'sensor-Ω', properties: { temperature: '21.5', 'ünïcødé': 'çafé ☕ 𝄞' } }),
    makeMessage('dev-b', 2, { properties: {}, endpoints: ['events', 'archive'] }),
    makeMessage('dev-c', 3, { body: Buffer.alloc(0), endpoints: [], properties: { quote: 'a "b" \\ c\n' } }),
    makeMessage('dév-d', 4, { body: randomBytes(300) }),
  ];
}

describe('SQL log offsets are byte positions, the same on SQLite and PostgreSQL', () => {
  const schema = `gh_logoff_${randomBytes(6).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'gh-logoff-'));
  const stores: SqlStore[] = [];
  const logs: SqlEventLog[] = [];
  let sqlite: SqlEventLog;
  let postgres: SqlEventLog;

  before(async () => {
    const box = new SecretBox(randomBytes(32));
    const url = new URL(DATABASE_URL);
    url.searchParams.set('schema', schema);
    const nodes = new SqlLogNodes();
    stores.push(await openSqliteStore(join(dir, 'hub.db'), box), await openPostgresStore(url.toString(), box));
    sqlite = await nodes.open((stores[0] as SqlStore).sqlDriver, { partitionCount: 1 });
    postgres = await nodes.open((stores[1] as SqlStore).sqlDriver, { partitionCount: 1 });
    logs.push(sqlite, postgres);
  });

  after(async () => {
    for (const l of logs) await l.close();
    for (const s of stores) await s.close();
    rmSync(dir, { recursive: true, force: true });
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  });

  it('advances each offset by the record size and stores the maps as given', async () => {
    const sent = messages();
    const sizes = sent.map((m) => encodeRecord(m).size);
    const expected = sizes.map((_, i) => String(sizes.slice(0, i).reduce((a, b) => a + b, 0)));
    const strip = (r: LogRecord) => ({ moduleId: r.moduleId, body: r.body.toString('hex'), properties: r.properties, systemProperties: r.systemProperties, endpoints: r.endpoints });
    for (const log of [sqlite, postgres]) {
      // Two appends: the second starts where the first ended.
      const placed = [...(await log.append(sent.slice(0, 2))), ...(await log.append(sent.slice(2)))];
      assert.deepEqual(placed.map((p) => p.offset), expected);
      const back = await log.read(0, 'earliest', 10);
      assert.deepEqual(back.map((r) => r.offset), expected);
      assert.deepEqual(back.map(strip), sent.map((m) => strip({ ...m, moduleId: m.moduleId, endpoints: m.endpoints } as LogRecord)));
      const props = await log.partitionProperties(0);
      assert.equal(props.lastEnqueuedOffset, expected.at(-1));
    }
  });
});
