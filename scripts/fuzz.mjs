#!/usr/bin/env node
// `npm run fuzz -- --minutes N [--protocol mqtt,mqtt-ws,amqp,amqp-ws,http,query]`: builds, then runs
// the fuzz campaign (dist/fuzz/main.js) against a hub of its own. The hub listens on 443, so the
// right to bind it is checked first, as for npm test.
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { ensurePort443, SetupError } = await import('./test-setup.mjs');
try {
  await ensurePort443();
} catch (err) {
  if (!(err instanceof SetupError)) throw err;
  console.error(`npm run fuzz: ${err.message}`);
  process.exit(1);
}
const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(1);
const r = spawnSync(process.execPath, [join(root, 'dist/fuzz/main.js'), ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
