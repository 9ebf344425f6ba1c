/**
 * The Node.js floor is stated once per package and agrees everywhere: both package.json files,
 * both READMEs, and the running Node meets it (the device's settings block uses zlib.crc32, new
 * in 20.15).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as zlib from 'node:zlib';
import { ROOT } from './support/hub-process.js';

const floorOf = (file: string): string => {
  const pkg = JSON.parse(readFileSync(join(ROOT, file), 'utf8')) as { engines?: { node?: string } };
  const m = /^>=(\d+\.\d+)$/.exec(pkg.engines?.node ?? '');
  assert.ok(m, `${file} states engines.node as >=MAJOR.MINOR`);
  return m[1]!;
};

describe('the Node.js floor', () => {
  it('is the same in both packages and both READMEs, and this Node meets it', () => {
    const floor = floorOf('package.json');
    assert.equal(floorOf('device/package.json'), floor);
    assert.match(readFileSync(join(ROOT, 'README.md'), 'utf8'), new RegExp(`Node\\.js ${floor.replace('.', '\\.')} or later`));
    assert.match(readFileSync(join(ROOT, 'device', 'README.md'), 'utf8'), new RegExp(`Node\\.js ${floor.replace('.', '\\.')} or later`));
    const [major, minor] = process.versions.node.split('.').map(Number);
    const [fMajor, fMinor] = floor.split('.').map(Number);
    assert.ok(major! > fMajor! || (major === fMajor && minor! >= fMinor!), `Node ${process.versions.node} is below ${floor}`);
    assert.equal(typeof (zlib as { crc32?: unknown }).crc32, 'function', 'zlib.crc32 exists at this floor');
  });

  it('the lock file states the same floor as package.json', () => {
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: { node?: string } }> };
    assert.equal(lock.packages['']?.engines?.node, `>=${floorOf('package.json')}`);
  });
});
