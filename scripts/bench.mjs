#!/usr/bin/env node
// `npm run bench:registry [-- --devices N --concurrency C]`: build, run bench/<name>, and record the
// table in docs/benchmarks.md.
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [name = 'registry', ...rest] = process.argv.slice(2);
const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(1);
const r = spawnSync(process.execPath, [join(root, 'dist/bench', `${name}.js`), '--write', ...rest], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
