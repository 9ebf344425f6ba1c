/**
 * The source tree's layers (issue 16, "the house"): a folder imports only folders below it, and the
 * protocol adapters share transport pieces instead of importing each other. A new folder must be
 * placed here before it can be used, so the order is decided once, on purpose.
 *
 * Lowest first. Folders on one line are peers: they may not import each other either.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

const LAYERS: string[][] = [
  ['core', 'factory'],
  ['store', 'bus'],
  ['log'],
  ['routing'],
  ['pki'],
  ['auth'],
  ['hub'],
  ['dps', 'access', 'audit', 'alerts'],
  ['metrics', 'policies', 'settings'],
  ['posture'],
  ['protocol/transport'],
  ['protocol/mqtt', 'protocol/amqp', 'protocol/http', 'config'],
  ['(root)'],
  ['cli'],
];

/** The unit a file belongs to: its top folder under src/, protocol's adapters one level deeper. */
function unitOf(file: string): string {
  const parts = relative(SRC, file).split('/');
  if (parts.length === 1) return '(root)';
  if (parts[0] === 'protocol' && parts.length > 2) return `protocol/${parts[1]}`;
  return parts[0]!;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

interface Import {
  from: string;
  to: string;
  file: string;
  target: string;
}

function imports(): Import[] {
  const out: Import[] = [];
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const target = resolve(dirname(file), m[1]!).replace(/\.js$/, '.ts');
      if (!target.startsWith(SRC)) continue;
      out.push({ from: unitOf(file), to: unitOf(target), file: relative(SRC, file), target: relative(SRC, target) });
    }
  }
  return out;
}

const rank = new Map(LAYERS.flatMap((units, i) => units.map((u) => [u, i] as const)));

describe('source layers', () => {
  const all = imports();

  it('places every folder in a layer', () => {
    const units = new Set(sourceFiles(SRC).map(unitOf));
    assert.deepEqual([...units].filter((u) => !rank.has(u)).sort(), [], 'add the new folder to LAYERS in test/layers.test.ts');
  });

  it('has no import from a folder to one above it or beside it', () => {
    const upward = all.filter((i) => i.from !== i.to && rank.get(i.to)! >= rank.get(i.from)!).map((i) => `${i.file} imports ${i.target}`);
    assert.deepEqual(upward, []);
  });

  it('sees the imports it judges (the scan is not empty, and a known import is found)', () => {
    assert.ok(all.length > 500, `only ${all.length} imports found`);
    assert.ok(all.some((i) => i.from === 'protocol/mqtt' && i.to === 'protocol/transport'));
  });
});
