import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretBox } from '../src/core/secret-box.js';
import { storeConformance, type StoreHarness } from '../src/store/store.case.js';
import { c2dStoreConformance } from '../src/store/c2d-store.case.js';
import { certificateStoreConformance } from '../src/store/certificate-store.case.js';
import { enrollmentStoreConformance } from '../src/store/enrollment-store.case.js';
import { authorityStoreConformance } from '../src/store/authority-store.case.js';
import { auditStoreConformance } from '../src/store/audit-store.case.js';
import { operatorStoreConformance } from '../src/store/operator-store.case.js';
import { counterStoreConformance } from '../src/store/counter-store.case.js';
import { configurationStoreConformance } from '../src/store/configuration-store.case.js';
import { jobStoreConformance } from '../src/store/job-store.case.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { writeAllConformance } from './support/sql-driver-case.js';

async function openHarness(): Promise<StoreHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-sqlite-'));
  const file = join(dir, 'hub.db');
  const store = await openSqliteStore(file, new SecretBox(randomBytes(32)));
  return {
    store,
    async rawContent() {
      // WAL mode: recent pages sit in the -wal file until a checkpoint.
      return [file, `${file}-wal`]
        .filter((f) => existsSync(f))
        .map((f) => readFileSync(f).toString('latin1'))
        .join('\n');
    },
    async close() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

storeConformance('sqlite', openHarness);
writeAllConformance('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-sqlite-'));
  const store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
  return { store, close: async () => (await store.close(), rmSync(dir, { recursive: true, force: true })) };
});
c2dStoreConformance('sqlite', openHarness);
certificateStoreConformance('sqlite', openHarness);
enrollmentStoreConformance('sqlite', openHarness);
authorityStoreConformance('sqlite', openHarness);
auditStoreConformance('sqlite', openHarness);
operatorStoreConformance('sqlite', openHarness);
counterStoreConformance('sqlite', openHarness);
configurationStoreConformance('sqlite', openHarness);
jobStoreConformance('sqlite', openHarness);
