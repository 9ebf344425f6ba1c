/**
 * Every runtime dependency is one the hub or the device imports (or, like azurite, resolves to
 * run): an unused one is attack surface and install time for nothing (reflect-metadata sat in
 * package.json with no importer).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './support/hub-process.js';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.(ts|js|mjs)$/.test(name) ? [path] : [];
  });
}

describe('runtime dependencies', () => {
  it('each one in package.json is imported by the hub, its CLI or the device', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const code = ['src', 'bin', 'device/src', 'device/bin'].flatMap((d) => sources(join(ROOT, d))).map((f) => readFileSync(f, 'utf8')).join('\n');
    const unused = Object.keys(pkg.dependencies).filter((name) => {
      const n = name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      return !new RegExp(`(from\\s+|import\\(\\s*|require(\\.resolve)?\\(\\s*)'${n}(/[^']*)?'`).test(code);
    });
    assert.deepEqual(unused, [], `dependencies nothing imports: ${unused.join(', ')}`);
  });
});
