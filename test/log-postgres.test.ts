/**
 * The event log conformance suite on PostgreSQL: each test in its own schema, dropped afterwards;
 * the second instance is a second store (its own connection pool) on that schema, as a second
 * node would open it, so concurrent appends really race on the partition rows.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { SecretBox } from '../src/core/secret-box.js';
import { eventLogConformance, type LogHarness, type LogOpenOptions } from '../src/log/log.case.js';
import type { EventLog } from '../src/log/log-ports.js';
import { openPostgresStore } from '../src/store/postgres/open-postgres-store.js';
import type { SqlStore } from '../src/store/sql/sql-store.js';
import { SqlLogNodes } from './support/log-harness.js';

const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function openHarness(opts: LogOpenOptions = {}): Promise<LogHarness> {
  const schema = `gh_log_${randomBytes(6).toString('hex')}`;
  const url = new URL(DATABASE_URL);
  url.searchParams.set('schema', schema);
  const box = new SecretBox(randomBytes(32));
  const stores: SqlStore[] = [await openPostgresStore(url.toString(), box)];
  const nodes = new SqlLogNodes();
  const opened: EventLog[] = [];
  const close = async () => {
    for (const l of opened) await l.close();
    await nodes.bus.close();
    for (const s of stores) await s.close();
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  };
  try {
    const log = await nodes.open((stores[0] as SqlStore).sqlDriver, opts);
    opened.push(log);
    return {
      log,
      openPeer: async (peerOpts = {}) => {
        const store = await openPostgresStore(url.toString(), box);
        stores.push(store);
        const peer = await nodes.open(store.sqlDriver, peerOpts);
        opened.push(peer);
        return peer;
      },
      elapse: (ms) => nodes.elapse(ms),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

eventLogConformance('postgres', openHarness);
