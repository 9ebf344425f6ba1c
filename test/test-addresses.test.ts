/**
 * Test files run two at a time (scripts/test.mjs), each hub on its own loopback address because
 * the SDKs' HTTPS clients only reach port 443. Two files that bind the same address fail with
 * EADDRINUSE whenever the runner happens to schedule them together (alerts-cluster and
 * cluster-failover both used one address): no loopback address outside 127.0.0.0/24 may appear in
 * two test files.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const TEST_SRC = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'test');

/** Address -> the files that name it, for addresses named by more than one file. */
export function sharedAddresses(files: ReadonlyMap<string, string>): Map<string, string[]> {
  const users = new Map<string, Set<string>>();
  for (const [name, text] of files) {
    for (const m of text.matchAll(/\b127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b/g)) {
      if (m[1] === '0' && m[2] === '0') continue;
      const set = users.get(m[0]) ?? new Set<string>();
      set.add(name);
      users.set(m[0], set);
    }
  }
  return new Map([...users].filter(([, s]) => s.size > 1).map(([a, s]) => [a, [...s].sort()]));
}

describe('loopback addresses of test files', () => {
  it('no address outside 127.0.0.0/24 is named by two test files', () => {
    const files = new Map(
      readdirSync(TEST_SRC)
        .filter((f) => f.endsWith('.test.ts') && f !== 'test-addresses.test.ts')
        .map((f) => [f, readFileSync(join(TEST_SRC, f), 'utf8')] as const),
    );
    assert.ok(files.size > 50, `read ${files.size} test files from ${TEST_SRC}`);
    assert.deepEqual(Object.fromEntries(sharedAddresses(files)), {});
  });

  it('finds an address two files share, and ignores 127.0.0.x', () => {
    const found = sharedAddresses(new Map([
      ['a.test.ts', "const HOST = '127.0.250.1'; const ME = '127.0.0.1';"],
      ['b.test.ts', "const FRONT = '127.0.250.1'; const ME = '127.0.0.1'; const X = '127.0.250.10';"],
    ]));
    assert.deepEqual(Object.fromEntries(found), { '127.0.250.1': ['a.test.ts', 'b.test.ts'] });
  });
});
