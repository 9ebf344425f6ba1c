/** The event log conformance suite on SQLite (each test its own database file). */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretBox } from '../src/core/secret-box.js';
import { eventLogConformance, type LogHarness, type LogOpenOptions } from '../src/log/log.case.js';
import type { EventLog } from '../src/log/log-ports.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { SqlLogNodes } from './support/log-harness.js';

async function openHarness(opts: LogOpenOptions = {}): Promise<LogHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-log-'));
  const store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
  const nodes = new SqlLogNodes();
  const opened: EventLog[] = [];
  try {
    const log = await nodes.open(store.sqlDriver, opts);
    opened.push(log);
    return {
      log,
      // One SQLite file has one writer process; a second instance in it stands in for a restart or a second reader.
      openPeer: async () => {
        const peer = await nodes.open(store.sqlDriver, {});
        opened.push(peer);
        return peer;
      },
      elapse: (ms) => nodes.elapse(ms),
      async close() {
        for (const l of opened) await l.close();
        await nodes.bus.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

eventLogConformance('sqlite', openHarness);
