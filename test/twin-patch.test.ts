import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HubError } from '../src/core/errors.js';
import type { JsonObject } from '../src/core/json.js';
import { checkSectionSize, mergeInto, sectionSize, validatePatch } from '../src/hub/twins/twin-patch.js';

test('merges recursively, null deletes, metadata follows', () => {
  const target: JsonObject = { a: 1, nested: { x: 1, y: 2 }, gone: true };
  const meta: JsonObject = {};
  const changed = mergeInto(target, meta, { a: 2, nested: { y: null, z: { deep: 'v' } }, gone: null, $version: 99 }, 'T1', 5);
  assert.ok(changed);
  assert.deepEqual(target, { a: 2, nested: { x: 1, z: { deep: 'v' } } });
  assert.deepEqual(meta.a, { $lastUpdated: 'T1', $lastUpdatedVersion: 5 });
  assert.equal((meta.nested as JsonObject).$lastUpdated, 'T1');
  assert.deepEqual(((meta.nested as JsonObject).z as JsonObject).deep, { $lastUpdated: 'T1', $lastUpdatedVersion: 5 });
  assert.equal(meta.$lastUpdated, 'T1');
  assert.ok(!mergeInto(target, meta, { a: 2 }, 'T2', 6), 'an identical value changes nothing');
});

function rejects(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof HubError && e.code === 'ArgumentInvalid' && pattern.test(e.message));
}

test('rejects bad keys, deep nesting, long strings, huge integers', () => {
  rejects(() => validatePatch('tags', { 'a.b': 1 }), /'a\.b'/);
  rejects(() => validatePatch('tags', { 'a b': 1 }), /space/);
  rejects(() => validatePatch('tags', { $x: 1 }), /'\$x'/);
  let deep: JsonObject = { leaf: 1 };
  for (let i = 0; i < 10; i++) deep = { n: deep };
  rejects(() => validatePatch('properties.desired', deep), /deeper than 10/);
  rejects(() => validatePatch('tags', { s: 'x'.repeat(4097) }), /longer than 4096/);
  rejects(() => validatePatch('tags', { n: 2 ** 53 }), /integer range/);
  rejects(() => validatePatch('tags', [1]), /JSON object/);
  validatePatch('properties.desired', { ok: { fine: [1, 2, 'three'] }, $metadata: {}, $version: 3 });
});

test('counts size the way the twin doc does and enforces the section limits', () => {
  assert.equal(sectionSize({ ab: 'xyz', n: 1, b: true }), 2 + 3 + 1 + 8 + 1 + 4);
  const big: JsonObject = {};
  for (let i = 0; i < 9; i++) big[`k${i}`] = 'v'.repeat(1000);
  rejects(() => checkSectionSize('tags', big), /tags would be \d+ bytes, over the limit of 8192/);
  checkSectionSize('properties.desired', big);
});
