/** A real counter store for unit tests: SQLite in memory, schema and all, one per call. */
import { randomBytes } from 'node:crypto';
import { SecretBox } from '../../src/core/secret-box.js';
import type { CounterStore } from '../../src/store/ports.js';
import { openSqliteStore } from '../../src/store/sqlite/open-sqlite-store.js';

export async function memoryCounters(): Promise<CounterStore> {
  const store = await openSqliteStore(':memory:', new SecretBox(randomBytes(32)));
  return store.counters;
}
