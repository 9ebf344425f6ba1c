import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { AUTH_FAILURE_CODES } from '../src/core/auth-failure.js';
import { ERROR_CODES } from '../src/core/errors.js';
import { ROOT } from './support/hub-process.js';

// The error codes are a contract: docs/errors.md must list each one with its status and number.
test('docs/errors.md lists every error code exactly', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');
  const documented = new Map<string, string>();
  for (const m of doc.matchAll(/^\| `(\w+)` \| (\d+) \| (\d+) \|/gm)) documented.set(m[1] ?? '', `${m[2]}/${m[3]}`);
  for (const [code, info] of Object.entries(ERROR_CODES)) {
    assert.equal(documented.get(code), `${info.status}/${info.number}`, `docs/errors.md: ${code}`);
  }
  assert.equal(documented.size, Object.keys(ERROR_CODES).length, 'docs/errors.md lists codes that do not exist');
});

// The authentication failure reasons are a contract too (metric labels, alert-rule inputs, audit rows).
test('docs/errors.md lists every authentication failure reason exactly', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Authentication failure reasons'));
  const documented = [...section.matchAll(/^\| `([a-z_]+)` \| \D/gm)].map((m) => m[1]);
  assert.deepEqual(documented, [...AUTH_FAILURE_CODES]);
});
